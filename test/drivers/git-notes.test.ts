import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import gitNotes from "../../src/drivers/git-notes.js";
import { normalizeKey } from "../../src/core/keys.js";
import { fanoutPath } from "../../src/git/store/notesLayout.js";
import { createStorage, isStorageError } from "../../src/index.js";
import { testDriver } from "../../src/testing/index.js";
import { git, gitBytes, gitInitBare } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";
import { bothGuardsConflict } from "../helpers/gitGuards.js";
import { killWhileWriting, runWorkers } from "../helpers/workers.js";
import { stressCount } from "../helpers/stress.js";

// This machine's disk takes ~1 ms per file created: repositories go to tmpfs where there is one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const REF = "refs/notes/stowage";
const idOfKey = (dir: string, key: string) => git(dir, ["hash-object", "--stdin"], key);
const noteOf = (dir: string, key: string, ref = REF) => gitBytes(dir, ["notes", `--ref=${ref}`, "show", idOfKey(dir, key)]);

const suiteDir = tempDir("git-notes-kit");
testDriver({
  name: "git-notes",
  driver: () => gitNotes({ dir: suiteDir }),
  additionalTests: (context) => {
    // git gc over a git-notes store: test/drivers/git-gc.test.ts.
    it("after the suite: git fsck --strict is clean, git notes show reads values", async () => {
      await context.storage.setItem("after:suite", { ok: true });
      git(suiteDir, ["fsck", "--strict", "--no-progress"]);
      expect(noteOf(suiteDir, "after:suite").toString()).toBe('{"ok":true}');
    });
  },
});

/** A repository with one commit on main, made by stock git. */
function repoWithCommit(label: string): string {
  const dir = tempDir(label);
  git(dir, ["init", "-q", "-b", "main"]);
  git(dir, ["commit", "-q", "--allow-empty", "-m", "first"]);
  return dir;
}

describe("git-notes driver", () => {
  it("ifMatch with ifNoneMatch is E_CONFLICT on setItem, setItems and a transaction, the right etag too; nothing written, git fsck clean", async () => {
    const dir = gitInitBare("git-notes-both-guards");
    const storage = createStorage({ driver: gitNotes({ dir }) });
    await bothGuardsConflict(storage, dir);
    await storage.dispose();
  });

  it("hostile keys and values: git notes show prints them byte for byte", async () => {
    const dir = gitInitBare("git-notes-hostile");
    const storage = createStorage({ driver: gitNotes({ dir }) });
    const all256 = new Uint8Array(256).map((_, i) => i);
    const rawKeys = ["a..b", "x.lock", "a@{1}", "sp ace", "ключ:🚀", "$(touch /tmp/pwned)", "`id`", "'\"q\"'", "nl\nhere"];
    const keys = rawKeys.map(normalizeKey);
    for (const key of keys) await storage.setItemRaw(key, Buffer.concat([Buffer.from(`${key}\0`), all256]));
    for (const key of keys) {
      const expected = Buffer.concat([Buffer.from(`${key}\0`), all256]);
      expect(Buffer.from((await storage.getItemRaw(key))!).equals(expected)).toBe(true);
      expect(noteOf(dir, key).equals(expected)).toBe(true);
    }
    expect((await storage.getKeys()).sort()).toEqual([...keys].sort());
    git(dir, ["fsck", "--strict", "--no-progress"]);
    await storage.dispose();
  });

  it("reads what git notes add wrote, keeps working after it, and git keeps stowage's entries", async () => {
    const dir = repoWithCommit("git-notes-interop");
    const storage = createStorage({ driver: gitNotes({ dir }) });
    await storage.setItem("ours", 1);
    const keyId = git(dir, ["hash-object", "-w", "--stdin"], "theirs");
    git(dir, ["notes", `--ref=${REF}`, "add", "-m", '"from git"', keyId]);
    git(dir, ["notes", `--ref=${REF}`, "add", "-m", "on the commit", "HEAD"]);
    expect(await storage.getItem("theirs")).toBe("from git");
    expect((await storage.getKeys()).sort()).toEqual(["ours", "theirs"]);
    await storage.setItem("after", 2);
    expect(git(dir, ["notes", `--ref=${REF}`, "show", "HEAD"])).toBe("on the commit");
    expect(await storage.getItems(["ours", "after"])).toEqual([
      { key: "ours", value: 1 },
      { key: "after", value: 2 },
    ]);
    await storage.dispose();
  });

  it("notesFor: the note of HEAD, a branch or an id, shared with git notes", () => {
    const dir = repoWithCommit("git-notes-commit");
    const driver = gitNotes({ dir, namespace: "receipts" });
    const head = git(dir, ["rev-parse", "HEAD"]);
    const note = driver.notesFor("HEAD");
    expect(note.id).toBe(head);
    expect(note.get()).toBeNull();
    note.set("receipt: ok\n");
    expect(git(dir, ["notes", "--ref=refs/notes/stowage-receipts", "show", "HEAD"])).toBe("receipt: ok");
    expect(driver.notesFor("main").get()).toBe("receipt: ok\n");
    expect(driver.notesFor(head).get()).toBe("receipt: ok\n");
    git(dir, ["notes", "--ref=refs/notes/stowage-receipts", "add", "-f", "-m", "rewritten by git", "HEAD"]);
    expect(note.get()).toBe("rewritten by git\n");
    expect(note.remove()).toBe(true);
    expect(note.remove()).toBe(false);
    expect(git(dir, ["notes", "--ref=refs/notes/stowage-receipts", "list"])).toBe("");
    let error: unknown;
    try {
      driver.notesFor("no-such-branch");
    } catch (caught) {
      error = caught;
    }
    expect(isStorageError(error, "E_NOT_FOUND")).toBe(true);
    driver.dispose!();
  });

  it("reads a fan-out notes tree written by git, and fans its own out as git does", async () => {
    const dir = gitInitBare("git-notes-fanout");
    // fast-import writes 600 commits and a note on each; git fans the notes tree out.
    const count = 600;
    let stream = "";
    for (let i = 1; i <= count; i++) {
      stream += `commit refs/heads/side\nmark :${i}\ncommitter Ada <ada@example.com> ${1700000000 + i} +0000\ndata 2\nc\n${i > 1 ? `from :${i - 1}\n` : ""}`;
    }
    stream += `commit ${REF}\ncommitter Ada <ada@example.com> 1700000000 +0000\ndata 5\nnotes\n`;
    for (let i = 1; i <= count; i++) stream += `N inline :${i}\ndata ${String(i).length}\n${i}\n`;
    git(dir, ["fast-import", "--quiet"], stream);
    // Two key notes added by stock git into the fanned-out tree.
    for (const key of ["key:a", "key:b"]) git(dir, ["notes", `--ref=${REF}`, "add", "-m", `"${key}"`, git(dir, ["hash-object", "-w", "--stdin"], key)]);
    expect(git(dir, ["ls-tree", "--name-only", REF]).split("\n").every((name) => /^[0-9a-f]{2}$/.test(name))).toBe(true);
    const driver = gitNotes({ dir });
    const storage = createStorage({ driver });
    expect((await storage.getKeys()).sort()).toEqual(["key:a", "key:b"]);
    expect(await storage.getItem("key:b")).toBe("key:b");
    const commits = git(dir, ["rev-list", "refs/heads/side"]).split("\n");
    expect(driver.notesFor(commits[0]!).get()).toBe(`${count}`);
    expect(driver.notesFor(commits[count - 1]!).get()).toBe("1");
    // Our next commit lays the notes out by git's rule: one level of 2-hex directories at this size.
    await storage.setItem("key:c", "changed");
    const ours = git(dir, ["ls-tree", "-r", "--name-only", REF]).split("\n").filter((path) => !path.startsWith("stowage-keys/"));
    expect(ours).toHaveLength(count + 3);
    for (const path of ours) expect(path).toBe(fanoutPath(path.replaceAll("/", ""), 1));
    expect(git(dir, ["notes", `--ref=${REF}`, "list"]).split("\n")).toHaveLength(count + 3);
    expect(noteOf(dir, "key:c").toString()).toBe('"changed"');
    expect(driver.notesFor(commits[0]!).get()).toBe(`${count}`);
    git(dir, ["fsck", "--strict", "--no-progress"]);
    await storage.dispose();
  });

  it("a small notes tree stays flat, as git writes it", async () => {
    const dir = gitInitBare("git-notes-flat");
    const storage = createStorage({ driver: gitNotes({ dir }) });
    await storage.setItems(Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: i })));
    const names = git(dir, ["ls-tree", "--name-only", REF]).split("\n");
    expect(names.filter((name) => name !== "stowage-keys").every((name) => /^[0-9a-f]{40}$/.test(name))).toBe(true);
    await storage.dispose();
  });

  /** The keys a driver opened afresh on `dir` lists under `base`: the listing rebuilt from the tip. */
  const freshKeys = async (dir: string, base = ""): Promise<string[]> => {
    const fresh = createStorage({ driver: gitNotes({ dir }) });
    const keys = await fresh.getKeys(base);
    await fresh.dispose();
    return keys.sort();
  };
  const expectListingOf = async (storage: ReturnType<typeof createStorage>, dir: string): Promise<void> => {
    expect((await storage.getKeys()).sort()).toEqual(await freshKeys(dir));
    for (const base of ["a", "a:1", "b", "zz"]) expect((await storage.getKeys(base)).sort()).toEqual(await freshKeys(dir, base));
  };

  it("the sorted listing follows own writes, removals, clears, group commits and failed commits: it matches a fresh driver's listing of the repo", async () => {
    const dir = repoWithCommit("git-notes-listing-own");
    const driver = gitNotes({ dir });
    const storage = createStorage({ driver });
    await storage.setItems(Array.from({ length: 40 }, (_, i) => ({ key: `${i % 2 ? "a" : "b"}:${i}`, value: i })));
    await expectListingOf(storage, dir);
    await storage.setItem("a:100", "x");
    await storage.removeItem("b:0");
    await storage.setItem("a:1", "changed");
    await expectListingOf(storage, dir);
    // Several writes of one turn fold into one commit (group commit), one of them refused on its guard.
    const results = await Promise.allSettled([
      storage.setItem("a:200", 1),
      storage.removeItem("b:2"),
      storage.setItem("b:300", 3),
      storage.setItem("a:3", 4, { ifNoneMatch: "*" }),
    ]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "fulfilled", "fulfilled", "rejected"]);
    expect(await storage.hasItem("b:2")).toBe(false);
    await expectListingOf(storage, dir);
    // A failed transaction (and a failed guarded write) changes neither the repo nor the listing.
    const before = (await storage.getKeys()).sort();
    await expect(storage.setItem("new:key", 1, { ifMatch: '"nope"' })).rejects.toMatchObject({ code: "E_CONFLICT" });
    await expect(
      storage.transaction(async (tx) => {
        await tx.setItem("new:other", 1);
        await tx.removeItem("a:1");
        await tx.setItem("a:5", 2, { ifNoneMatch: "*" });
      }),
    ).rejects.toMatchObject({ code: "E_CONFLICT" });
    expect((await storage.getKeys()).sort()).toEqual(before);
    await expectListingOf(storage, dir);
    await storage.transaction(async (tx) => {
      await tx.setItem("new:other", 1);
      await tx.removeItem("a:1");
    });
    await storage.clear("b");
    await expectListingOf(storage, dir);
    // A note on a commit (notesFor) is not a key: the listing is unchanged by it.
    driver.notesFor("HEAD").set("on the commit");
    await expectListingOf(storage, dir);
    // More names than the listing follows (MAX_FOLLOWED): rebuilt instead.
    await storage.setItems(Array.from({ length: 600 }, (_, i) => ({ key: `a:big:${i}`, value: i })));
    await expectListingOf(storage, dir);
    await storage.clear();
    expect(await storage.getKeys()).toEqual([]);
    await expectListingOf(storage, dir);
    await storage.dispose();
  });

  it("after a foreign write (another driver instance, git notes add) between listings, or between own commits, the listing is rebuilt", async () => {
    const dir = repoWithCommit("git-notes-listing-foreign");
    const storage = createStorage({ driver: gitNotes({ dir }) });
    const other = createStorage({ driver: gitNotes({ dir }) });
    await storage.setItems(Array.from({ length: 10 }, (_, i) => ({ key: `a:${i}`, value: i })));
    expect(await storage.getKeys()).toHaveLength(10);
    await other.setItem("a:other", 1);
    await other.removeItem("a:0");
    await expectListingOf(storage, dir);
    expect(await storage.hasItem("a:other")).toBe(true);
    // Own commit, then a foreign one by stock git, then own again: the chain of own commits is broken.
    await storage.setItem("a:mine", 1);
    git(dir, ["notes", `--ref=${REF}`, "add", "-m", '"from git"', git(dir, ["hash-object", "-w", "--stdin"], "a:git")]);
    await storage.setItem("a:mine2", 2);
    await expectListingOf(storage, dir);
    expect(await storage.getKeys("a")).toContain("a:git");
    // Stock git removes a note after our last commit: the listing no longer has it.
    git(dir, ["notes", `--ref=${REF}`, "remove", idOfKey(dir, "a:mine")]);
    await expectListingOf(storage, dir);
    expect(await storage.getKeys("a")).not.toContain("a:mine");
    expect(await storage.getKeys("a")).toContain("a:mine2");
    await other.dispose();
    await storage.dispose();
  });

  const notes = stressCount(25, 100);
  it(`8 processes writing ${notes} notes each end with all ${8 * notes} notes`, async () => {
    const dir = gitInitBare("git-notes-multi");
    await runWorkers(8, ["git-notes", dir, "unique", String(notes)]);
    expect(git(dir, ["notes", `--ref=${REF}`, "list"]).split("\n")).toHaveLength(8 * notes);
    const storage = createStorage({ driver: gitNotes({ dir }) });
    expect((await storage.getKeys()).length).toBe(8 * notes);
    await storage.dispose();
    git(dir, ["fsck", "--strict", "--no-progress"]);
  }, 120_000);

  const kills = stressCount(2, 5);
  it(`a writer killed with SIGKILL at random moments (${kills} times): git fsck finds no error, every acknowledged write is there`, async () => {
    for (let round = 0; round < kills; round++) {
      const dir = gitInitBare("git-notes-crash");
      await killWhileWriting("git-notes", dir, (path) => gitNotes({ dir: path }));
      git(dir, ["fsck", "--no-dangling", "--no-progress"]);
    }
  }, 120_000);
});
