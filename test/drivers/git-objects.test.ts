import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import gitObjects, { gitObjectStore } from "../../src/drivers/git-objects.js";
import { createStorage, isStorageError } from "../../src/index.js";
import { testDriver } from "../../src/testing/index.js";
import { errorCode, git, gitBytes, gitInitBare } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";
import { bothGuardsConflict } from "../helpers/gitGuards.js";

// This machine's disk takes ~1 ms per file created: repositories go to tmpfs where there is one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const INDEX = "refs/stowage/objects";

const suiteDir = tempDir("git-objects-kit");
testDriver({
  name: "git-objects (keyed)",
  // The kit opens more than one driver on the store at once: an explicit ref shares the index on purpose.
  driver: () => gitObjects({ dir: suiteDir, ref: INDEX }),
  additionalTests: (context) => {
    // git gc over a git-objects store: test/drivers/git-gc.test.ts.
    it("after the suite: git fsck --strict is clean, git reads the index", async () => {
      await context.storage.setItem("after:suite", { ok: true });
      git(suiteDir, ["fsck", "--strict", "--no-progress"]);
      expect(git(suiteDir, ["cat-file", "-p", `${INDEX}:keys/after/suite%`])).toBe('{"ok":true}');
      expect(git(suiteDir, ["ls-tree", "-r", "--name-only", INDEX])).toContain("keys/after/suite%");
    });
  },
});

describe("git-objects content-addressed store", () => {
  it("put returns git's blob id; get, has and delete; everything reachable from the index ref", () => {
    const dir = gitInitBare("git-objects-put");
    const store = gitObjectStore({ dir });
    const all256 = new Uint8Array(256).map((_, i) => i);
    const values: (string | Uint8Array)[] = ["hello", "$(touch /tmp/pwned) `id` 'q' \"q\"\n", all256, new Uint8Array(0)];
    const ids = values.map((value) => store.put(value));
    values.forEach((value, index) => {
      expect(ids[index]).toBe(git(dir, ["hash-object", "--stdin"], value));
      expect(Buffer.from(store.get(ids[index]!)!).equals(Buffer.from(value))).toBe(true);
      expect(gitBytes(dir, ["cat-file", "blob", ids[index]!]).equals(Buffer.from(value))).toBe(true);
      expect(store.has(ids[index]!)).toBe(true);
    });
    expect(git(dir, ["ls-tree", "-r", "--name-only", INDEX])).toContain(`blobs/${ids[0]!.slice(0, 2)}/${ids[0]!.slice(2)}`);
    expect(store.delete(ids[0]!)).toBe(true);
    expect(store.delete(ids[0]!)).toBe(false);
    expect(store.has(ids[0]!)).toBe(false);
    expect(store.get(ids[0]!)).toBeNull();
    expect(errorCode(() => store.get("not-an-id"))).toBe("E_INVALID_KEY");
    git(dir, ["gc", "--prune=now", "--quiet"]);
    // Deleted from the index and pruned by gc; the others are kept.
    expect(git(dir, ["cat-file", "-t", ids[1]!])).toBe("blob");
    store.close();
    const reopened = gitObjectStore({ dir });
    expect(Buffer.from(reopened.get(ids[2]!)!).equals(Buffer.from(all256))).toBe(true);
    reopened.close();
    git(dir, ["fsck", "--strict", "--no-progress"]);
  });

  it("get detects a damaged object: E_CORRUPT", () => {
    const dir = gitInitBare("git-objects-corrupt");
    const writer = gitObjectStore({ dir });
    const id = writer.put("the real content");
    writer.close();
    const path = join(dir, "objects", id.slice(0, 2), id.slice(2));
    const forged = deflateSync(Buffer.from("blob 16\0the fake content"));
    rmSync(path, { force: true });
    writeFileSync(path, forged);
    expect(readFileSync(path).equals(forged)).toBe(true);
    const reader = gitObjectStore({ dir });
    expect(errorCode(() => reader.get(id))).toBe("E_CORRUPT");
    reader.close();
  });

  it("as a driver in content mode: keys are blob ids; another key is E_INVALID_KEY", async () => {
    const dir = gitInitBare("git-objects-content");
    const storage = createStorage({ driver: gitObjects({ dir, mode: "content" }) });
    const text = '"stored"';
    const id = git(dir, ["hash-object", "--stdin"], text);
    await storage.setItemRaw(id, Buffer.from(text));
    expect(await storage.getItem(id)).toBe("stored");
    expect(await storage.getKeys()).toEqual([id]);
    const error = await storage.setItem("e".repeat(40), "other").catch((caught: unknown) => caught);
    expect(isStorageError(error, "E_INVALID_KEY")).toBe(true);
    const named = await storage.setItem("user:1", "x").catch((caught: unknown) => caught);
    expect(isStorageError(named, "E_INVALID_KEY")).toBe(true);
    await storage.dispose();
  });
});

describe("git-objects keyed mode", () => {
  it("ifMatch with ifNoneMatch is E_CONFLICT on setItem, setItems and a transaction, the right etag too; nothing written, git fsck clean", async () => {
    const dir = gitInitBare("git-objects-both-guards");
    const storage = createStorage({ driver: gitObjects({ dir }) });
    await bothGuardsConflict(storage, dir);
    await storage.dispose();
  });

  it("hostile keys and values round-trip; git fsck --strict accepts the index tree", async () => {
    const dir = gitInitBare("git-objects-hostile");
    const storage = createStorage({ driver: gitObjects({ dir }) });
    const keys = [".git", ".gitmodules", "..x", "x.lock", "a@{1}", "sp ace", "git~1", "ключ:🚀", "100%", "nl\nhere", "tab\there", "'\"q\"'", "`id`"];
    const all256 = new Uint8Array(256).map((_, i) => i);
    for (const key of keys) await storage.setItemRaw(key, Buffer.concat([Buffer.from(`$(${key})\0`), all256]));
    for (const key of keys) {
      const expected = Buffer.concat([Buffer.from(`$(${key})\0`), all256]);
      expect(Buffer.from((await storage.getItemRaw(key))!).equals(expected)).toBe(true);
    }
    expect((await storage.getKeys()).sort()).toEqual([...keys].sort());
    git(dir, ["fsck", "--strict", "--no-progress"]);
    await storage.dispose();
  });


  it("concurrent writers in one process land in one commit each turn; the index history is a commit chain", async () => {
    const dir = gitInitBare("git-objects-group");
    const storage = createStorage({ driver: gitObjects({ dir }) });
    await Promise.all(Array.from({ length: 100 }, (_, i) => storage.setItem(`k:${i}`, i)));
    expect(Number(git(dir, ["rev-list", "--count", INDEX]))).toBe(1);
    await storage.setItem("k:0", "changed");
    expect(Number(git(dir, ["rev-list", "--count", INDEX]))).toBe(2);
    expect(git(dir, ["cat-file", "-p", `${INDEX}:keys/k/0%`])).toBe('"changed"');
    expect((await storage.getKeys("k")).length).toBe(100);
    await storage.dispose();
  });

  it("a commit that moved the index under us is re-applied on the new tip (no lost write)", async () => {
    const dir = gitInitBare("git-objects-moved");
    const first = createStorage({ driver: gitObjects({ dir, ref: INDEX }) });
    const second = createStorage({ driver: gitObjects({ dir, ref: INDEX }) });
    await first.setItem("a", 1);
    await second.setItem("b", 2);
    await first.setItem("c", 3);
    expect((await second.getKeys()).sort()).toEqual(["a", "b", "c"]);
    const { etag } = await first.getMeta("a");
    await second.setItem("a", 10);
    const error = await first.setItem("a", 11, { ifMatch: etag }).catch((caught: unknown) => caught);
    expect(isStorageError(error, "E_CONFLICT")).toBe(true);
    expect(await first.getItem("a")).toBe(10);
    await first.dispose();
    await second.dispose();
  });
});
