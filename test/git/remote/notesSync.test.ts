import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createStorage, isStorageError } from "../../../src/index.js";
import gitNotes from "../../../src/drivers/git-notes.js";
import { Repository, trackingRef } from "../../../src/git/index.js";
import { checkNotesTree } from "../../../src/git/remote/notesSync.js";
import { EMPTY_TREE } from "../../../src/git/store/keyTree.js";
import { tempDir } from "../../helpers/tempDir.js";
import { git as gitCli, gitFails, gitInitBare } from "../gitCli.js";

// This machine's disk takes ~1 ms per file created: repositories go to tmpfs where there is one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const REF = "refs/notes/stowage";
const ID = "ab" + "c".repeat(38);

/** A bare remote whose notes ref is made with stock git's plumbing (hash-object, mktree, commit-tree, update-ref). */
function hostileRemote() {
  const remote = gitInitBare("notes-hostile-remote");
  const blob = (text: string): string => gitCli(remote, ["hash-object", "-w", "--stdin"], text);
  // mktree takes "<mode> <type> <id>\t<name>" lines and checks nothing about the names.
  const tree = (...lines: string[]): string => gitCli(remote, ["mktree", "--missing"], lines.map((line) => `${line}\n`).join(""));
  const publish = (treeOrObject: string, asCommit = true): string => {
    const tip = asCommit ? gitCli(remote, ["commit-tree", "-m", "hostile", treeOrObject]) : treeOrObject;
    gitCli(remote, ["update-ref", REF, tip]);
    return tip;
  };
  return { remote, blob, tree, publish };
}

/**
 * A git-notes store holding one key syncs with `remote` (`syncs` times at once): each refused with E_CORRUPT,
 * and everything local stays as it was and keeps working.
 */
async function expectRefused(remote: string, message: RegExp, syncs = 1): Promise<void> {
  const dir = tempDir("notes-victim");
  const driver = gitNotes({ dir });
  const storage = createStorage({ driver });
  try {
    await storage.setItem("mine", 1);
    const before = gitCli(dir, ["rev-parse", REF]);
    const errors = await Promise.all(Array.from({ length: syncs }, () => driver.sync(remote).catch((failure: unknown) => failure)));
    for (const error of errors) {
      expect(isStorageError(error, "E_CORRUPT"), String(error)).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
    expect(gitCli(dir, ["rev-parse", REF])).toBe(before);
    expect(gitCli(dir, ["for-each-ref", "--format=%(refname)", "refs/stowage-remotes/"])).toBe("");
    expect(await storage.getKeys()).toEqual(["mine"]);
    await storage.setItem("after", 2);
    expect((await storage.getKeys()).sort()).toEqual(["after", "mine"]);
    gitCli(dir, ["fsck", "--strict", "--no-progress"]);
  } finally {
    await storage.dispose();
  }
}

describe("git-notes sync from a hostile remote", () => {
  it("refuses notes trees of odd shapes: names, modes, empty or doubled fan-outs, kept keys not under their own id", async () => {
    const { remote, blob, tree, publish } = hostileRemote();
    const x = blob("x");
    const note = (name: string) => `100644 blob ${x}\t${name}`;
    const shapes: [string, string][] = [
      [tree(note("README")), "a name that is neither a note nor a fan-out directory"],
      [tree(note(ID.slice(0, 39))), "a name that is neither a note nor a fan-out directory"],
      [tree(note(ID.toUpperCase())), "a name that is neither a note nor a fan-out directory"],
      [tree(`040000 tree ${tree(note(ID.slice(2)))}\tzz`), "a directory that is not a fan-out of notes"],
      [tree(`040000 tree ${tree(note("not-hex"))}\tab`), "a name that is neither a note nor a fan-out directory"],
      [tree(`120000 blob ${x}\t${ID}`), "mode 120000 for a note"],
      [tree(`160000 commit ${"1".repeat(40)}\t${ID}`), "mode 160000 for a note"],
      [tree(`040000 tree ${EMPTY_TREE}\tab`), "an empty directory"],
      [tree(note(ID), `040000 tree ${tree(note(ID.slice(2)))}\tab`), "also has one in a fan-out directory"],
      [tree(`040000 tree ${tree(`100644 blob ${x}\t${ID}`)}\tstowage-keys`), "a key blob under its own id"],
      [tree(`100644 blob ${x}\tstowage-keys`), "mode 100644 for the kept keys"],
    ];
    for (const [treeId, why] of shapes) {
      const tip = publish(treeId);
      await expectRefused(remote, new RegExp(`${tip} is refused, the local ref is unchanged: .*${why}`));
    }
  });

  it("refuses a deep tree (600 nested directories) at the notes' own depth, without recursion", async () => {
    const { remote, blob, publish } = hostileRemote();
    const repo = Repository.open(remote);
    let id = repo.writeTree([{ mode: "100644", name: ID, id: blob("deep") }]);
    for (let depth = 0; depth < 600; depth++) id = repo.writeTree([{ mode: "40000", name: "ab", id }]);
    publish(id);
    await expectRefused(remote, /fan-out abab.*a directory that is not a fan-out of notes/);
  });

  it("refuses a kept key past the key limit (a 1 MB key blob), a key blob that is not text, and a ref that is not a commit", async () => {
    const { remote, blob, tree, publish } = hostileRemote();
    for (const content of ["k".repeat(1 << 20), "a\0b"]) {
      const key = blob(content);
      publish(tree(`100644 blob ${blob("v")}\t${key}`, `040000 tree ${tree(`100644 blob ${key}\t${key}`)}\tstowage-keys`));
      await expectRefused(remote, content.length > 100 ? /a key of 1048576 bytes, past the key limit of 65536/ : /a key blob that is not UTF-8 text/);
    }
    publish(blob("not a commit"), false);
    await expectRefused(remote, /is a blob, not a commit/);
  });

  it("bounds the entries a check reads: E_TOO_LARGE past the bound (the sync's bound is ten million; here 19 of 20)", async () => {
    const { remote, blob, tree, publish } = hostileRemote();
    const lines = Array.from({ length: 20 }, (_, i) => `100644 blob ${blob(String(i))}\t${i.toString(16).padStart(2, "0")}${"d".repeat(38)}`);
    const big = tree(...lines);
    publish(big);
    const repo = Repository.open(remote);
    checkNotesTree(repo, big);
    const error = (() => {
      try {
        checkNotesTree(repo, big, undefined, undefined, 19);
      } catch (failure) {
        return failure;
      }
      return undefined;
    })();
    expect(isStorageError(error, "E_TOO_LARGE"), String(error)).toBe(true);
  });

  it("takes notes stock git wrote (git notes add, fan-out included) and what the driver wrote; the tracking ref follows", async () => {
    const { remote } = hostileRemote();
    const work = tempDir("notes-stock");
    gitCli(work, ["init", "-q"]);
    gitCli(work, ["commit", "-q", "--allow-empty", "-m", "one"]);
    const head = gitCli(work, ["rev-parse", "HEAD"]);
    gitCli(work, ["notes", `--ref=${REF}`, "add", "-m", "from stock git", head]);
    // Enough notes that git fans them out into ab/cdef… directories.
    const many = Array.from({ length: 300 }, (_, i) => gitCli(work, ["hash-object", "-w", "--stdin"], `object ${i}`));
    for (const id of many.slice(0, 300)) gitCli(work, ["notes", `--ref=${REF}`, "add", "-m", `n ${id}`, id]);
    expect(gitCli(work, ["ls-tree", "--name-only", REF]).split("\n").some((name) => name.length === 2)).toBe(true);
    gitCli(work, ["push", "-q", remote, REF]);

    const dir = tempDir("notes-taker");
    const driver = gitNotes({ dir });
    const storage = createStorage({ driver });
    await storage.setItem("mine", 1);
    expect(await driver.sync(remote)).toMatchObject({ merged: true, pushed: true });
    expect(gitCli(dir, ["notes", `--ref=${REF}`, "show", head])).toBe("from stock git");
    expect(await storage.getItem("mine")).toBe(1);
    // Back from the remote, the tree holds the driver's own key blobs and notes: accepted.
    const other = gitNotes({ dir: tempDir("notes-other") });
    const otherStorage = createStorage({ driver: other });
    expect(await other.sync(remote)).toMatchObject({ fastForwarded: true });
    expect(await otherStorage.getItem("mine")).toBe(1);
    expect(gitFails(dir, ["rev-parse", "--verify", "-q", trackingRef(remote, REF)]).status).toBe(0);
    await storage.dispose();
    await otherStorage.dispose();
  });
});

describe("git-notes sync", () => {
  it("runs one sync at a time per driver: syncs called together from a hostile remote each refuse it, and no refused commit stays reachable", async () => {
    const { remote, blob, tree, publish } = hostileRemote();
    publish(tree(`100644 blob ${blob("x")}\tREADME`));
    await expectRefused(remote, /a name that is neither a note nor a fan-out directory/, 4);
  });
});
