import { existsSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Repository, TreeMode, type GitObject } from "../../../src/git/index.js";
import { LRUCache } from "lru-cache";
import { loosePath } from "../../../src/git/objects/looseObjects.js";
import { tempDir } from "../../helpers/tempDir.js";
import { errorCode, git, gitInitBare } from "../gitCli.js";

const sig = { name: "T", email: "t@example.com", timestamp: 1700000000, timezone: "+0000" };


/** A worktree repository with one commit made by git. */
function worktreeRepo(): string {
  const dir = tempDir("git-wt");
  git(dir, ["init", "-q", "-b", "main"]);
  writeFileSync(join(dir, "file.txt"), "content\n");
  git(dir, ["add", "file.txt"]);
  git(dir, ["commit", "-q", "-m", "one"]);
  return dir;
}

describe("Repository.init", () => {
  it("creates a bare repository git accepts, commits into and fscks", () => {
    const dir = join(tempDir("git-init"), "store.git");
    const repo = Repository.init(dir);
    expect(git(dir, ["rev-parse", "--is-bare-repository"])).toBe("true");
    expect(git(dir, ["symbolic-ref", "HEAD"])).toBe("refs/heads/main");
    for (const path of ["HEAD", "config", "objects/pack", "objects/info", "refs/heads", "refs/tags"]) expect(existsSync(join(dir, path))).toBe(true);
    const tree = repo.writeTree([{ mode: TreeMode.file, name: "k", id: repo.writeBlob(Buffer.from("v")) }]);
    const commit = repo.writeCommit({ tree, parents: [], author: sig, committer: sig, extraHeaders: [], message: "init\n" });
    repo.refs.update("HEAD", commit, { expected: null, message: "commit (initial): init" });
    expect(git(dir, ["log", "--format=%s"])).toBe("init");
    expect(git(dir, ["show", "HEAD:k"])).toBe("v");
    expect(git(dir, ["fsck", "--strict"])).toBe("");
    // init on an existing repository opens it.
    expect(Repository.init(dir).refs.resolve("HEAD")).toBe(commit);
  });
});

describe("Repository.open", () => {
  it("opens a worktree, its .git directory, and a bare repository", () => {
    const dir = worktreeRepo();
    const head = git(dir, ["rev-parse", "HEAD"]);
    expect(Repository.open(dir).refs.resolve("HEAD")).toBe(head);
    expect(Repository.open(join(dir, ".git")).readCommit(head).message).toBe("one\n");
    expect(Repository.open(gitInitBare()).refs.read("HEAD")).toEqual({ symbolic: "refs/heads/main" });
  });

  it("follows a .git file's gitdir: pointer (separate git dir)", () => {
    const work = tempDir("git-sep-work");
    const gitDir = join(tempDir("git-sep"), "repo.git");
    git(work, ["init", "-q", "-b", "main", `--separate-git-dir=${gitDir}`]);
    writeFileSync(join(work, "a"), "a\n");
    git(work, ["add", "a"]);
    git(work, ["commit", "-q", "-m", "sep"]);
    const repo = Repository.open(work);
    expect(repo.gitDir).toBe(gitDir);
    expect(repo.readCommit(repo.refs.resolve("HEAD")!).message).toBe("sep\n");
  });

  it("opens a linked worktree: its own HEAD, the main repository's objects and refs", () => {
    const main = worktreeRepo();
    const linked = join(tempDir("git-linked"), "wt");
    git(main, ["worktree", "add", "-q", "-b", "side", linked]);
    writeFileSync(join(linked, "side.txt"), "side\n");
    git(linked, ["add", "side.txt"]);
    git(linked, ["commit", "-q", "-m", "on side"]);
    const repo = Repository.open(linked);
    expect(repo.refs.read("HEAD")).toEqual({ symbolic: "refs/heads/side" });
    expect(repo.readCommit(repo.refs.resolve("HEAD")!).message).toBe("on side\n");
    expect(repo.refs.resolve("refs/heads/main")).toBe(git(main, ["rev-parse", "main"]));
    expect(repo.objectsDir).toBe(join(main, ".git", "objects"));
  });

  it("reads objects through alternates (git clone --shared) and writes its own", () => {
    const source = worktreeRepo();
    git(source, ["gc", "-q"]);
    const clone = join(tempDir("git-shared"), "clone");
    git(source, ["clone", "-q", "--shared", source, clone]);
    expect(readFileSync(join(clone, ".git", "objects", "info", "alternates"), "utf8")).toContain(source);
    const repo = Repository.open(clone);
    const head = repo.refs.resolve("HEAD")!;
    const tree = repo.readTree(repo.readCommit(head).tree);
    expect(repo.readBlob(tree[0]!.id).toString()).toBe("content\n");
    const id = repo.writeBlob(Buffer.from("only in the clone"));
    expect(existsSync(loosePath(repo.objectsDir, id))).toBe(true);
    expect(git(clone, ["cat-file", "-p", id])).toBe("only in the clone");
    // An object the alternate holds is not copied into the clone.
    expect(repo.writeBlob(Buffer.from("content\n"))).toBe(tree[0]!.id);
    expect(existsSync(loosePath(repo.objectsDir, tree[0]!.id))).toBe(false);
  });

  it("refuses what is not a repository (E_NOT_FOUND) and a SHA-256 repository (E_UNSUPPORTED)", () => {
    expect(errorCode(() => Repository.open(tempDir("not-git")))).toBe("E_NOT_FOUND");
    const sha256 = tempDir("git-sha256");
    git(sha256, ["init", "-q", "--bare", "--object-format=sha256"]);
    expect(errorCode(() => Repository.open(sha256))).toBe("E_UNSUPPORTED");
    expect(() => Repository.open(sha256)).toThrow(/sha256/);
    expect(errorCode(() => Repository.init(sha256))).toBe("E_UNSUPPORTED");
  });
});

describe("Repository objects", () => {
  it("writeObjects writes few objects loose and many as one pack; git reads both", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir, { packThreshold: 20 });
    const few: GitObject[] = Array.from({ length: 5 }, (_, i) => ({ type: "blob", body: Buffer.from(`few ${i}`) }));
    const many: GitObject[] = Array.from({ length: 500 }, (_, i) => ({ type: "blob", body: Buffer.from(`many ${i}`) }));
    const fewIds = repo.writeObjects(few);
    const manyIds = repo.writeObjects(many);
    expect(existsSync(loosePath(repo.objectsDir, fewIds[0]!))).toBe(true);
    expect(existsSync(loosePath(repo.objectsDir, manyIds[0]!))).toBe(false);
    expect(readdirSync(join(dir, "objects", "pack")).filter((name) => name.endsWith(".pack"))).toHaveLength(1);
    expect(repo.readBlob(manyIds[499]!).toString()).toBe("many 499");
    const tree = repo.writeTree([...fewIds, ...manyIds].map((id, i) => ({ mode: TreeMode.file, name: `k${i}`, id })));
    repo.refs.update("refs/stowage/default", repo.writeCommit({ tree, parents: [], author: sig, committer: sig, extraHeaders: [], message: "bulk\n" }));
    expect(git(dir, ["show", "refs/stowage/default:k3"])).toBe("few 3");
    expect(git(dir, ["show", "refs/stowage/default:k504"])).toBe("many 499");
    expect(git(dir, ["fsck", "--strict", "--no-dangling"])).toBe("");
  });

  it("writing an object that is already packed refreshes the pack instead of writing a loose copy", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir, { packThreshold: 2 });
    const [id] = repo.writeObjects([
      { type: "blob", body: Buffer.from("packed") },
      { type: "blob", body: Buffer.from("also packed") },
    ]);
    const pack = repo.packFiles[0]!;
    const old = new Date(Date.now() - 3600_000);
    utimesSync(pack, old, old);
    expect(repo.writeBlob(Buffer.from("packed"))).toBe(id);
    expect(existsSync(loosePath(repo.objectsDir, id!))).toBe(false);
    expect(statSync(pack).mtimeMs).toBeGreaterThan(Date.now() - 60_000);
  });

  it("serves recent objects and parsed trees from its cache", () => {
    const repo = Repository.open(gitInitBare());
    const blob = repo.writeBlob(Buffer.from("cached"));
    const tree = repo.writeTree([{ mode: TreeMode.file, name: "x", id: blob }]);
    expect(repo.readBlob(blob).toString()).toBe("cached");
    expect(repo.readTree(tree)).toBe(repo.readTree(tree));
    rmSync(loosePath(repo.objectsDir, blob), { force: true });
    expect(repo.readBlob(blob).toString()).toBe("cached");
    repo.clearCache();
    expect(errorCode(() => repo.readBlob(blob))).toBe("E_NOT_FOUND");
  });

  it("a cache budget of zero bytes still reads", () => {
    const repo = Repository.open(gitInitBare(), { cacheBytes: 0 });
    const blob = repo.writeBlob(Buffer.from("uncached"));
    expect(repo.readBlob(blob).toString()).toBe("uncached");
    expect(repo.readBlob(blob).toString()).toBe("uncached");
  });
});

describe("the engine's LRU (lru-cache, configured as the repository's caches are)", () => {
  it("evicts the least recently used entry by count and by weight, and keeps no entry heavier than the budget", () => {
    const cache = new LRUCache<string, number>({ max: 3, maxSize: 10 });
    cache.set("a", 1, { size: 1 });
    cache.set("b", 2, { size: 1 });
    cache.set("c", 3, { size: 1 });
    expect(cache.get("a")).toBe(1);
    cache.set("d", 4, { size: 1 });
    expect(cache.has("b")).toBe(false);
    expect([cache.has("a"), cache.has("c"), cache.has("d")]).toEqual([true, true, true]);
    cache.set("heavy", 5, { size: 8 });
    expect(cache.has("c")).toBe(false);
    expect(cache.size).toBe(3);
    expect(cache.calculatedSize).toBe(10);
    cache.set("huge", 6, { size: 11 });
    expect(cache.has("huge")).toBe(false);
    cache.set("heavy", 7, { size: 1 });
    expect(cache.calculatedSize).toBe(3);
    expect(cache.delete("heavy")).toBe(true);
    cache.clear();
    expect(cache.size).toBe(0);
  });
});
