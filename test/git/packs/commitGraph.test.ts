import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bloomFilter, bloomKey, bloomMaybe, DEFAULT_BLOOM } from "../../../src/git/packs/bloom.js";
import { CommitGraph, writeCommitGraph } from "../../../src/git/packs/commitGraph.js";
import { KeyValueRepo } from "../../../src/git/store/kvStore.js";
import { Repository } from "../../../src/git/repo/repository.js";
import { tempDir } from "../../helpers/tempDir.js";
import { git } from "../gitCli.js";

const REF = "refs/stowage/default";

function open(dir: string): KeyValueRepo {
  return new KeyValueRepo({
    dir,
    ref: REF,
    author: { name: "Ada", email: "ada@example.com" },
    message: "stowage: {op} {key}",
    fsync: false,
    // Small, so the `a:` directory fans out into buckets and folds back.
    fanout: 16,
    lockTimeout: 5000,
    pollInterval: 500,
    packLimit: 0,
  });
}

const KEYS = ["top", "a:1", "a:7", "a:23", "n", "n:child", "ü:ключ", "deep:x:y:z"];

/** `count` commits of sets and removes over KEYS and 40 keys under `a:` (deterministic). */
function writeCommits(store: KeyValueRepo, count: number, seed: number): void {
  let state = seed;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  for (let i = 0; i < count; i++) {
    const pick = next() % 3 === 0 ? KEYS[next() % KEYS.length]! : `a:${next() % 40}`;
    const remove = next() % 7 === 0;
    store.commitSync([{ op: remove ? "remove" : "set", ops: [remove ? { type: "remove", key: pick, options: {} } : { type: "set", key: pick, value: `${pick}=${seed}.${i}`, options: {} }] }]);
  }
}

/** Every key's full history, as a fresh store (empty caches) reads it. */
function histories(dir: string): Record<string, unknown[]> {
  const store = open(dir);
  const out: Record<string, unknown[]> = {};
  for (const key of [...KEYS, "a:0", "a:39", "never:there"]) out[key] = store.history(key, Number.POSITIVE_INFINITY).map((entry) => [entry.version, entry.value]);
  store.repo.close();
  return out;
}

function graphFile(dir: string): string {
  return join(dir, "objects", "info", "commit-graph");
}

function logOf(dir: string, path: string, graph: boolean): string {
  return git(dir, ["-c", `core.commitGraph=${graph}`, "log", "--format=%H", REF, "--", path]);
}

describe("commit-graph", () => {
  it("writes a graph stock git verifies, and history through it equals history without it", () => {
    const dir = tempDir("graph");
    const store = open(dir);
    writeCommits(store, 150, 1);
    const before = histories(dir);
    const written = store.maintenance();
    expect(written.commitGraph?.commits).toBe(Number(git(dir, ["rev-list", "--count", REF])));
    expect(existsSync(graphFile(dir))).toBe(true);
    git(dir, ["commit-graph", "verify"]);
    git(dir, ["fsck", "--strict"]);
    expect(histories(dir)).toEqual(before);
    store.repo.close();
  });

  it("writes filters that give stock git's path-limited log the same commits as without the graph", () => {
    const dir = tempDir("graph-log");
    const store = open(dir);
    writeCommits(store, 120, 2);
    store.maintenance();
    const paths = git(dir, ["ls-tree", "-r", "--name-only", REF]).split("\n");
    // Files (bucketed and not, non-ASCII), their directories, and paths no commit touched.
    const probes = [...paths.slice(0, 12), "a", "deep/x", "n", "nothing/here", "ü"];
    for (const path of probes) expect(logOf(dir, path, true), path).toBe(logOf(dir, path, false));
    store.repo.close();
  });

  it("reads a graph that covers only part of the history, and one a stock-git commit went past", () => {
    const dir = tempDir("graph-partial");
    const store = open(dir);
    writeCommits(store, 60, 3);
    store.maintenance();
    writeCommits(store, 40, 4);
    // A commit by stock git on the ref, changing `top`.
    const tip = git(dir, ["rev-parse", REF]);
    const blob = git(dir, ["hash-object", "-w", "--stdin"], "from stock git");
    const entries = git(dir, ["ls-tree", tip]).split("\n").filter((line) => !line.endsWith("\ttop"));
    const tree = git(dir, ["mktree"], `${[...entries, `100644 blob ${blob}\ttop`].join("\n")}\n`);
    const commit = git(dir, ["commit-tree", tree, "-p", tip, "-m", "stock git"]);
    git(dir, ["update-ref", REF, commit, tip]);
    const withStale = histories(dir);
    expect(withStale.top![0]).toEqual([commit, "from stock git"]);
    rmSync(graphFile(dir));
    expect(histories(dir)).toEqual(withStale);
    store.repo.close();
  });

  it("rewrites the graph from the previous one, and reads one stock git wrote", () => {
    const dir = tempDir("graph-rewrite");
    const store = open(dir);
    writeCommits(store, 50, 5);
    const first = store.maintenance().commitGraph!.commits;
    writeCommits(store, 30, 6);
    const again = store.maintenance().commitGraph!;
    expect(again).toEqual({ path: graphFile(dir), commits: Number(git(dir, ["rev-list", "--count", REF])), reused: first });
    git(dir, ["commit-graph", "verify"]);
    const ours = histories(dir);
    rmSync(graphFile(dir));
    git(dir, ["commit-graph", "write", "--reachable", "--changed-paths"]);
    expect(CommitGraph.parse(readFileSync(graphFile(dir))).bloom).toEqual(DEFAULT_BLOOM);
    expect(histories(dir)).toEqual(ours);
    store.repo.close();
  });

  it("writes what stock git writes for the same commits, byte for byte (without its generation-data chunk)", () => {
    const dir = tempDir("graph-bytes");
    const store = open(dir);
    writeCommits(store, 40, 7);
    const repo = Repository.open(dir);
    writeCommitGraph(repo);
    const ours = readFileSync(graphFile(dir));
    rmSync(graphFile(dir));
    git(dir, ["-c", "commitGraph.generationVersion=1", "commit-graph", "write", "--reachable", "--changed-paths"]);
    expect(readFileSync(graphFile(dir)).equals(ours)).toBe(true);
    repo.close();
    store.repo.close();
  });

  it("sets aside a damaged graph with a warning; history still reads the commits", () => {
    const dir = tempDir("graph-damaged");
    const store = open(dir);
    writeCommits(store, 20, 8);
    const before = histories(dir);
    store.maintenance();
    execFileSync("sh", ["-c", 'printf "XXXX" | dd of="$0" bs=1 seek=200 conv=notrunc status=none', graphFile(dir)]);
    expect(histories(dir)).toEqual(before);
    store.repo.close();
  });
});

describe("changed-path Bloom filters", () => {
  it("hold every path added and say no to most others", () => {
    const paths = new Set(Array.from({ length: 50 }, (_, i) => `dir/file-${i}`));
    const filter = bloomFilter(paths, DEFAULT_BLOOM);
    for (const path of paths) expect(bloomMaybe(filter, bloomKey(path, DEFAULT_BLOOM))).toBe(true);
    const misses = Array.from({ length: 1000 }, (_, i) => `other/${i}`).filter((path) => bloomMaybe(filter, bloomKey(path, DEFAULT_BLOOM)));
    expect(misses.length).toBeLessThan(50);
    // Too many paths: Git's one-byte filter that says "maybe" to everything.
    expect(bloomMaybe(bloomFilter(undefined, DEFAULT_BLOOM), bloomKey("anything", DEFAULT_BLOOM))).toBe(true);
  });
});
