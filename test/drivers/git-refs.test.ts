import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import gitRefs from "../../src/drivers/git-refs.js";
import { createStorage, isStorageError } from "../../src/index.js";
import { isValidRefName } from "../../src/git/index.js";
import { normalizeKey } from "../../src/core/keys.js";
import { keyPath, pathKey } from "../../src/git/store/keyNames.js";
import { testDriver } from "../../src/testing/index.js";
import { git, gitBytes, gitInitBare } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";
import { bothGuardsConflict } from "../helpers/gitGuards.js";
import { killWhileWriting, runWorkers } from "../helpers/workers.js";
import { stressCount } from "../helpers/stress.js";

// This machine's disk takes ~1 ms to create a file, and every key written is a lock file (and a blob):
// repositories go to tmpfs where there is one, so the suite's 10,000-key tests take seconds, not minutes.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const PREFIX = "refs/stowage/kv/";
const HOSTILE_KEYS = [
  "a..b",
  "x.lock",
  "x.lock:y",
  "a@{1}",
  "trailing.",
  ".hidden",
  "...",
  "sp ace",
  "tab\there",
  "nl\nhere",
  "del\x7f",
  "~^:*[",
  "@",
  "a:@:b",
  "ключ:日本語:🚀",
  "100%",
  "%41",
  "a%:b",
  "lone\ud800surrogate",
  ":leading",
  "trailing:",
  "a::b",
  "$(rm -rf /)",
  "`id`",
  "'\"quotes\"'",
];

/** Every key that round-trips also makes a valid ref name that stock git agrees is valid. */
describe("git-refs key encoding", () => {
  it("maps plain keys to readable refs and back", () => {
    expect(keyPath("user:1")).toBe("user/1%");
    expect(keyPath("user:1:settings")).toBe("user/1/settings%");
    expect(keyPath("a..b")).toBe("a.%2Eb%");
    expect(keyPath("x.lock")).toBe("x%2Elock%");
    expect(keyPath("a@{1}")).toBe("a@%7B1}%");
    expect(keyPath("sp ace")).toBe("sp%20ace%");
    expect(keyPath(".hidden")).toBe("%2Ehidden%");
    expect(keyPath("100%")).toBe("100%25%");
    expect(keyPath("a::b")).toBe("a%3A/b%");
    // The empty key would be the bare leaf mark, which names no key: refused.
    expect(() => keyPath("")).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(pathKey("%")).toBeUndefined();
  });

  it("round-trips hostile keys into names git check-ref-format accepts", () => {
    const dir = tempDir("git-refs-names");
    for (const key of [...HOSTILE_KEYS, "user:1", "a", "a:b"]) {
      const name = PREFIX + keyPath(key);
      expect(isValidRefName(name), name).toBe(true);
      expect(pathKey(keyPath(key))).toBe(key);
      if (!name.includes("\ud800")) git(dir, ["check-ref-format", name]);
    }
  });

  it("reads no key from names it would not write", () => {
    for (const path of ["user/1", "a%41%", "a%4%", "a%zz%", "a/%", "x.lock%", "%uD800x%"]) {
      const key = pathKey(path);
      if (key !== undefined) expect(keyPath(key)).toBe(path);
    }
    expect(pathKey("user/1")).toBeUndefined();
    expect(pathKey("a%41%")).toBeUndefined();
  });
});

const suiteDir = tempDir("git-refs-kit");
testDriver({
  name: "git-refs",
  driver: () => gitRefs({ dir: suiteDir }),
  additionalTests: (context) => {
    // git gc over a git-refs store: test/drivers/git-gc.test.ts.
    it("after the suite: git fsck --strict is clean, git reads the refs", async () => {
      const storage = context.storage;
      await storage.setItem("after:suite", { ok: true });
      await storage.setItemRaw("after:bytes", new Uint8Array([0, 1, 255]));
      git(suiteDir, ["fsck", "--strict", "--no-progress"]);
      expect(git(suiteDir, ["for-each-ref", "--format=%(refname)", PREFIX])).toContain(`${PREFIX}after/suite%`);
      expect(git(suiteDir, ["cat-file", "-p", `${PREFIX}after/suite%`])).toBe('{"ok":true}');
      expect([...(await storage.getItemRaw("after:bytes"))!]).toEqual([0, 1, 255]);
    });
  },
});

describe("git-refs driver", () => {
  it("ifMatch with ifNoneMatch is E_CONFLICT on setItem, setItems and a transaction, the right etag too; nothing written, git fsck clean", async () => {
    const dir = gitInitBare("git-refs-both-guards");
    const storage = createStorage({ driver: gitRefs({ dir }) });
    await bothGuardsConflict(storage, dir);
    await storage.dispose();
  });

  it("stores hostile keys and values; stock git reads them byte for byte", async () => {
    const dir = gitInitBare("git-refs-hostile");
    const storage = createStorage({ driver: gitRefs({ dir }) });
    const all256 = new Uint8Array(256).map((_, i) => i);
    const values = ["it's \"quoted\"", "$(touch /tmp/pwned)", "`id`", "line\nbreak\r\n", "nul\0byte"];
    for (const [index, key] of HOSTILE_KEYS.entries()) await storage.setItemRaw(key, Buffer.concat([Buffer.from(values[index % values.length]!), all256]));
    const refs = git(dir, ["for-each-ref", "--format=%(refname)", PREFIX]).split("\n");
    expect(refs).toHaveLength(new Set(HOSTILE_KEYS.map(normalizeKey)).size);
    for (const [index, key] of HOSTILE_KEYS.entries()) {
      const expected = Buffer.concat([Buffer.from(values[index % values.length]!), all256]);
      expect(Buffer.from((await storage.getItemRaw(key))!).equals(expected)).toBe(true);
      if (key.includes("\ud800")) continue;
      expect(gitBytes(dir, ["cat-file", "blob", PREFIX + keyPath(normalizeKey(key))]).equals(expected)).toBe(true);
    }
    expect((await storage.getKeys()).sort()).toEqual([...new Set(HOSTILE_KEYS.map(normalizeKey))].sort());
    git(dir, ["fsck", "--strict", "--no-progress"]);
    await storage.dispose();
  });

  it("a key that is a prefix of another key: both live side by side as refs", async () => {
    const dir = gitInitBare("git-refs-nested");
    const storage = createStorage({ driver: gitRefs({ dir }) });
    await storage.setItem("a", 1);
    await storage.setItem("a:b", 2);
    await storage.setItem("a:b:c", 3);
    expect(git(dir, ["for-each-ref", "--format=%(refname)", PREFIX]).split("\n")).toEqual([`${PREFIX}a%`, `${PREFIX}a/b%`, `${PREFIX}a/b/c%`]);
    await storage.removeItem("a:b");
    expect(await storage.getItems(["a", "a:b", "a:b:c"])).toEqual([
      { key: "a", value: 1 },
      { key: "a:b", value: null },
      { key: "a:b:c", value: 3 },
    ]);
    await storage.dispose();
  });

  it("sees refs stock git writes, and CAS holds against git update-ref", async () => {
    const dir = gitInitBare("git-refs-interop");
    const storage = createStorage({ driver: gitRefs({ dir }) });
    const blob = git(dir, ["hash-object", "-w", "--stdin"], '"from git"');
    git(dir, ["update-ref", `${PREFIX}greeting%`, blob]);
    expect(await storage.getItem("greeting")).toBe("from git");
    const { etag } = await storage.getMeta("greeting");
    expect(etag).toBe(blob);
    const other = git(dir, ["hash-object", "-w", "--stdin"], '"git again"');
    git(dir, ["update-ref", `${PREFIX}greeting%`, other, blob]);
    const error = await storage.setItem("greeting", "mine", { ifMatch: etag }).catch((caught: unknown) => caught);
    expect(isStorageError(error, "E_CONFLICT")).toBe(true);
    expect(await storage.getItem("greeting")).toBe("git again");
    // A ref git made that stowage would not write is not a key.
    git(dir, ["update-ref", `${PREFIX}no-mark`, blob]);
    expect(await storage.getKeys()).toEqual(["greeting"]);
    await storage.dispose();
  });

  it("setItems and transactions are all-or-nothing across refs", async () => {
    const dir = gitInitBare("git-refs-atomic");
    const storage = createStorage({ driver: gitRefs({ dir, lockTimeout: 50 }) });
    await storage.setItems([
      { key: "acct:a", value: 10 },
      { key: "acct:b", value: 20 },
    ]);
    // Another writer holds one ref's lock: nothing of the batch lands.
    const held = join(dir, `${PREFIX}acct/b%.lock`);
    writeFileSync(held, "");
    const error = await storage
      .setItems([
        { key: "acct:a", value: 0 },
        { key: "acct:b", value: 0 },
        { key: "acct:c", value: 0 },
      ])
      .catch((caught: unknown) => caught);
    expect(isStorageError(error, "E_UNAVAILABLE")).toBe(true);
    expect(await storage.getItems(["acct:a", "acct:b", "acct:c"])).toEqual([
      { key: "acct:a", value: 10 },
      { key: "acct:b", value: 20 },
      { key: "acct:c", value: null },
    ]);
    expect(git(dir, ["for-each-ref", "--format=%(refname)", PREFIX]).split("\n")).toHaveLength(2);
    // A failed condition on one key of a transaction: nothing lands either.
    const { etag } = await storage.getMeta("acct:a");
    await storage.setItem("acct:a", 11);
    const driver = storage.getMount("acct").driver;
    const conflict = (() => {
      try {
        driver.commit!(
          [
            { type: "set", key: "acct:a", value: "12", options: { ifMatch: etag } },
            { type: "set", key: "acct:d", value: "1", options: {} },
          ],
          {},
        );
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(isStorageError(conflict, "E_CONFLICT")).toBe(true);
    expect(await storage.getItems(["acct:a", "acct:d"])).toEqual([
      { key: "acct:a", value: 11 },
      { key: "acct:d", value: null },
    ]);
    await storage.dispose();
  });

  it("reads, updates and deletes packed refs (after git pack-refs)", async () => {
    const dir = gitInitBare("git-refs-packed");
    const storage = createStorage({ driver: gitRefs({ dir }) });
    await storage.setItems(Array.from({ length: 60 }, (_, i) => ({ key: `p:${i % 3}:${i}`, value: i })));
    git(dir, ["pack-refs", "--all", "--prune"]);
    expect(git(dir, ["for-each-ref", "--format=%(refname)", PREFIX]).split("\n")).toHaveLength(60);
    expect(await storage.getItem("p:1:7")).toBe(7);
    await storage.setItem("p:1:7", "seven");
    await storage.removeItem("p:0:6");
    await storage.clear("p:2");
    expect(await storage.getItem("p:1:7")).toBe("seven");
    expect(await storage.hasItem("p:0:6")).toBe(false);
    expect((await storage.getKeys("p")).length).toBe(39);
    expect(git(dir, ["for-each-ref", "--format=%(refname)", PREFIX]).split("\n")).toHaveLength(39);
    git(dir, ["fsck", "--strict", "--no-progress"]);
    await storage.dispose();
  });

  it("opens an existing worktree and keeps its refs in the worktree's repository", async () => {
    const dir = tempDir("git-refs-worktree");
    git(dir, ["init", "-q", "-b", "main"]);
    const storage = createStorage({ driver: gitRefs({ dir, prefix: "refs/stowage/app/" }) });
    await storage.setItem("k", "v");
    expect(git(dir, ["cat-file", "-p", "refs/stowage/app/k%"])).toBe('"v"');
    await storage.dispose();
  });

  const increments = stressCount(50, 250);
  it(`4 processes x ${increments} CAS increments of one counter end at exactly ${4 * increments}`, async () => {
    const dir = gitInitBare("git-refs-multi");
    await runWorkers(4, ["git-refs", dir, "increment", String(increments)]);
    const storage = createStorage({ driver: gitRefs({ dir }) });
    expect(await storage.getItem("counter")).toBe(4 * increments);
    expect(git(dir, ["cat-file", "-p", `${PREFIX}counter%`])).toBe(String(4 * increments));
    await storage.dispose();
  }, 120_000);

  const kills = stressCount(2, 5);
  it(`a writer killed with SIGKILL at random moments (${kills} times): git fsck finds no error, every acknowledged write is there`, async () => {
    for (let round = 0; round < kills; round++) {
      const dir = gitInitBare("git-refs-crash");
      await killWhileWriting("git-refs", dir, (path) => gitRefs({ dir: path }));
      git(dir, ["fsck", "--no-dangling", "--no-progress"]);
    }
  }, 120_000);
});
