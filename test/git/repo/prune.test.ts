import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { indexObjectIds } from "../../../src/git/repo/indexFile.js";
import { maintain, Repository } from "../../../src/git/index.js";
import { loosePath } from "../../../src/git/objects/looseObjects.js";
import { tempDir } from "../../helpers/tempDir.js";
import { git, gitFails, gitInitBare } from "../gitCli.js";

const DAY = 24 * 3600 * 1000;

/** Writes blobs with stock git and moves them into one pack of their own, dated `age` ms ago. */
function packedBlobs(dir: string, texts: string[], age: number): { ids: string[]; pack: string } {
  const ids = texts.map((text) => git(dir, ["hash-object", "-w", "--stdin"], text));
  const hash = git(dir, ["pack-objects", "-q", join(dir, "objects", "pack", "pack")], ids.join("\n") + "\n");
  git(dir, ["prune-packed"]);
  const pack = join(dir, "objects", "pack", `pack-${hash}.pack`);
  const date = new Date(Date.now() - age);
  utimesSync(pack, date, date);
  return { ids, pack };
}

/** A commit on refs/heads/main holding one file, made with stock git plumbing. */
function commitFile(dir: string, text: string): string {
  const blob = git(dir, ["hash-object", "-w", "--stdin"], text);
  const tree = git(dir, ["mktree"], `100644 blob ${blob}\tfile\n`);
  const commit = git(dir, ["commit-tree", tree, "-m", "one file"]);
  git(dir, ["update-ref", "refs/heads/main", commit]);
  return blob;
}

const packCount = (dir: string) => readdirSync(join(dir, "objects", "pack")).filter((name) => name.endsWith(".pack")).length;

describe("maintenance prunes inside packs", () => {
  it("drops an old pack's unreachable objects, loosens a young pack's with the pack's date, keeps the reachable ones", () => {
    const dir = gitInitBare("prune-packs");
    const reachable = commitFile(dir, "kept");
    git(dir, ["repack", "-q", "-d"]);
    const old = packedBlobs(dir, ["old garbage 1", "old garbage 2"], 30 * DAY);
    const young = packedBlobs(dir, ["young garbage"], 2 * DAY);
    const youngDate = statSync(young.pack).mtimeMs;
    const repo = Repository.open(dir);
    const result = maintain(repo, { all: true, prune: true });
    expect(result).toMatchObject({ packsMerged: 3, packedObjectsPruned: 2, packedObjectsLoosened: 1 });
    for (const id of old.ids) expect(gitFails(dir, ["cat-file", "-e", id]).status).not.toBe(0);
    expect(git(dir, ["cat-file", "-p", young.ids[0]!])).toBe("young garbage");
    // The loosened object ages from its pack's date, so the next run past the grace drops it.
    expect(statSync(loosePath(repo.objectsDir, young.ids[0]!)).mtimeMs).toBeCloseTo(youngDate, -3);
    expect(git(dir, ["cat-file", "-p", reachable])).toBe("kept");
    expect(packCount(dir)).toBe(1);
    git(dir, ["fsck", "--strict"]);
    expect(maintain(Repository.open(dir), { prune: true, grace: DAY })).toMatchObject({ looseObjectsPruned: 1 });
    expect(gitFails(dir, ["cat-file", "-e", young.ids[0]!]).status).not.toBe(0);
    expect(git(dir, ["cat-file", "-p", reachable])).toBe("kept");
  });

  it("rewrites the commit-graph when a commit it lists is pruned, so git commit-graph verify still passes", () => {
    const dir = gitInitBare("prune-graph");
    commitFile(dir, "kept");
    const blob = git(dir, ["hash-object", "-w", "--stdin"], "on a branch deleted later");
    const tree = git(dir, ["mktree"], `100644 blob ${blob}\tfile\n`);
    const lost = git(dir, ["commit-tree", tree, "-p", "refs/heads/main", "-m", "lost"]);
    git(dir, ["update-ref", "refs/heads/gone", lost]);
    git(dir, ["commit-graph", "write", "--reachable"]);
    git(dir, ["update-ref", "-d", "refs/heads/gone"]);
    const past = new Date(Date.now() - 30 * DAY);
    for (const id of [blob, tree, lost]) utimesSync(loosePath(join(dir, "objects"), id), past, past);
    expect(maintain(Repository.open(dir), { prune: true })).toMatchObject({ looseObjectsPruned: 3 });
    expect(gitFails(dir, ["cat-file", "-e", lost]).status).not.toBe(0);
    git(dir, ["commit-graph", "verify"]);
    git(dir, ["fsck", "--strict"]);
  });

  it("without prune, merging keeps every object, reachable or not", () => {
    const dir = gitInitBare("prune-off");
    commitFile(dir, "kept");
    git(dir, ["repack", "-q", "-d"]);
    const old = packedBlobs(dir, ["old garbage"], 30 * DAY);
    expect(maintain(Repository.open(dir), { all: true })).toMatchObject({ packsMerged: 2, packedObjectsPruned: 0, packedObjectsLoosened: 0 });
    expect(git(dir, ["cat-file", "-p", old.ids[0]!])).toBe("old garbage");
  });

  it("keeps what a worktree's index holds: a file staged and never committed", () => {
    const dir = tempDir("prune-index");
    git(dir, ["init", "-q", "-b", "main"]);
    writeFileSync(join(dir, "committed.txt"), "committed\n");
    git(dir, ["add", "committed.txt"]);
    git(dir, ["commit", "-q", "-m", "first"]);
    writeFileSync(join(dir, "staged.txt"), "staged, never committed\n");
    git(dir, ["add", "staged.txt"]);
    const staged = git(dir, ["rev-parse", ":staged.txt"]);
    const gitDir = join(dir, ".git");
    const past = new Date(Date.now() - 30 * DAY);
    utimesSync(loosePath(join(gitDir, "objects"), staged), past, past);
    const stray = git(dir, ["hash-object", "-w", "--stdin"], "stray");
    utimesSync(loosePath(join(gitDir, "objects"), stray), past, past);
    expect(indexObjectIds(join(gitDir, "index"))).toContain(staged);
    expect(maintain(Repository.open(dir), { prune: true })).toMatchObject({ looseObjectsPruned: 1 });
    expect(git(dir, ["cat-file", "-p", staged])).toBe("staged, never committed");
    expect(gitFails(dir, ["cat-file", "-e", stray]).status).not.toBe(0);
    git(dir, ["commit", "-q", "-m", "second"]);
    git(dir, ["fsck", "--strict"]);
  });

  it("reads index versions 2, 3 and 4, extended flags and the cache-tree's trees", () => {
    const dir = tempDir("prune-index-versions");
    git(dir, ["init", "-q", "-b", "main"]);
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "a.txt"), "a");
    writeFileSync(join(dir, "sub", "b.txt"), "b");
    git(dir, ["add", "-A"]);
    const tree = git(dir, ["write-tree"]);
    const subtree = git(dir, ["rev-parse", `${tree}:sub`]);
    const blobs = git(dir, ["ls-files", "-s"])
      .split("\n")
      .map((line) => line.split(" ")[1]!);
    const index = join(dir, ".git", "index");
    for (const version of ["2", "3", "4"]) {
      git(dir, ["update-index", "--index-version", version]);
      expect(indexObjectIds(index)).toEqual(expect.arrayContaining([...blobs, tree, subtree]));
    }
    // An intent-to-add entry carries extended flags (version 3 or 4).
    writeFileSync(join(dir, "c.txt"), "c");
    git(dir, ["add", "-N", "c.txt"]);
    for (const version of ["3", "4"]) {
      git(dir, ["update-index", "--index-version", version]);
      expect(indexObjectIds(index)).toEqual(expect.arrayContaining(blobs));
    }
    expect(indexObjectIds(join(dir, "no-such-index"))).toEqual([]);
    writeFileSync(join(dir, "bad-index"), "not an index at all");
    expect(() => indexObjectIds(join(dir, "bad-index"))).toThrow(/not a git index/);
  });
});
