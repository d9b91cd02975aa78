import { execFile } from "node:child_process";
import { rmSync } from "node:fs";
import { promisify } from "node:util";
import { createStorage, type Storage } from "stowage";
import git from "stowage/drivers/git";
import { encodeCommit, hashObject, signatureNow, type GitObject, type ObjectId } from "stowage/git";
// buildHistory writes the git driver's key layout straight into a repository (setup, not measured); that layout is
// internal to the engine, not in stowage/git, so it comes from the sources, on the sources' Repository.
import { Repository } from "../src/git/repo/repository.js";
import { keyToNames } from "../src/git/store/keyNames.js";
import { KeyTree, treeObjects } from "../src/git/store/keyTree.js";
import { median, tempRepo as repoFor, timed } from "./helpers.js";

const tempRepo = (label: string) => repoFor(`git-${label}`);

/**
 * The git driver against its peers (issue #4): one `git` CLI call per step
 * (`hash-object -w` + `update-ref` per write, `cat-file` per read) and
 * isomorphic-git writing the same full commits (blob + tree + commit + ref),
 * skipped with a notice when it is not installed. Ratios from one run.
 */

const run = promisify(execFile);
const REF = "refs/stowage/default";
const value = (i: number) => ({ id: i, name: `user-${i}`, email: `user${i}@example.com`, active: true });
const ms = (n: number) => `${n.toFixed(2)} ms`;
const perSecond = (ops: number, elapsed: number) => (ops * 1000) / elapsed;
const format = (n: number) => Math.round(n).toLocaleString("en-US");


/** The CLI approach: two processes per write, one per read. */
const cli = {
  async write(dir: string, key: string, text: string): Promise<void> {
    const child = execFile("git", ["hash-object", "-w", "--stdin"], { cwd: dir });
    child.stdin!.end(text);
    const id = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString()));
      child.on("error", reject);
      child.on("close", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`hash-object exited ${code}`))));
    });
    await run("git", ["update-ref", `refs/cli/${key}`, id], { cwd: dir });
  },
  async read(dir: string, key: string): Promise<string> {
    return (await run("git", ["cat-file", "-p", `refs/cli/${key}`], { cwd: dir })).stdout;
  },
};

interface IsoGit {
  writeBlob(args: { fs: unknown; gitdir: string; blob: Uint8Array }): Promise<string>;
  writeTree(args: { fs: unknown; gitdir: string; tree: { mode: string; path: string; oid: string; type: string }[] }): Promise<string>;
  writeCommit(args: { fs: unknown; gitdir: string; commit: Record<string, unknown> }): Promise<string>;
  writeRef(args: { fs: unknown; gitdir: string; ref: string; value: string; force: boolean }): Promise<void>;
}

async function loadIsomorphicGit(): Promise<IsoGit | undefined> {
  const name = "isomorphic-git";
  try {
    return (await import(name)) as IsoGit;
  } catch (error) {
    console.log(`  (isomorphic-git is not installed, its peer is skipped: ${(error as Error).message.split("\n")[0]})`);
    return undefined;
  }
}

/** isomorphic-git writing a full commit per write: blob, the whole (flat) tree, commit, ref. */
async function isoWrites(iso: IsoGit, dir: string, count: number): Promise<number> {
  const fs = await import("node:fs");
  const tree = new Map<string, string>();
  let parent: string | undefined;
  const who = { name: "bench", email: "bench@localhost", timestamp: 1700000000, timezoneOffset: 0 };
  return timed(async () => {
    for (let i = 0; i < count; i++) {
      const oid = await iso.writeBlob({ fs, gitdir: dir, blob: Buffer.from(JSON.stringify(value(i))) });
      tree.set(`k${i % 100}`, oid);
      const treeOid = await iso.writeTree({ fs, gitdir: dir, tree: [...tree].map(([path, id]) => ({ mode: "100644", path, oid: id, type: "blob" })) });
      parent = await iso.writeCommit({ fs, gitdir: dir, commit: { tree: treeOid, parent: parent ? [parent] : [], author: who, committer: who, message: `set k${i}\n` } });
      await iso.writeRef({ fs, gitdir: dir, ref: "refs/iso/default", value: parent, force: true });
    }
  });
}

/** Builds `commits` commits on REF with the engine, written as packs: each sets one key of `keys`. */
function buildHistory(dir: string, commits: number, keys: number): void {
  const repo = Repository.open(dir);
  const tree = new KeyTree(repo);
  const who = signatureNow("bench", "bench@localhost");
  let root: ObjectId | undefined;
  let parent: ObjectId | undefined;
  let objects: GitObject[] = [];
  for (let i = 0; i < commits; i++) {
    const body = Buffer.from(JSON.stringify(value(i)));
    const made: Parameters<KeyTree["apply"]>[2] = [];
    root = tree.apply(root, [{ names: keyToNames(`h:${i % keys}`), value: hashObject("blob", body) }], made);
    for (const item of made) tree.remember(item.id, item.entries);
    const commit = encodeCommit({ tree: root, parents: parent === undefined ? [] : [parent], author: who, committer: who, extraHeaders: [], message: `set h:${i % keys}\n` });
    parent = hashObject("commit", commit);
    objects.push({ type: "blob", body }, ...treeObjects(made), { type: "commit", body: commit });
    if (objects.length > 20_000) {
      repo.writeObjects(objects);
      objects = [];
    }
  }
  repo.writeObjects(objects);
  repo.refs.update(REF, parent!, { message: "bench history" });
  repo.close();
}

async function fillFlat(storage: Storage, count: number): Promise<void> {
  for (let i = 0; i < count; i += 10_000) {
    await storage.setItems(Array.from({ length: Math.min(10_000, count - i) }, (_, j) => ({ key: `user:${i + j}`, value: value(i + j) })));
  }
}

/** Median time of one awaited setItem on a random existing key, in a store of `count` flat keys. */
async function setItemAtScale(count: number): Promise<number> {
  const dir = tempRepo(`scale-${count}`);
  try {
    const storage = createStorage({ driver: git({ dir }) });
    await fillFlat(storage, count);
    const times: number[] = [];
    for (let i = 0; i < 60; i++) times.push(await timed(() => storage.setItem(`user:${(i * 7919) % count}`, value(i))));
    await storage.dispose();
    return median(times.slice(10));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A new driver's first getHistory (cold) and a second one on another key. */
async function historyWalks(dir: string): Promise<{ cold: number; warm: number }> {
  const history = createStorage({ driver: git({ dir }) });
  const cold = await timed(() => history.getHistory("h:42", { limit: 10 }));
  const warm = await timed(() => history.getHistory("h:43", { limit: 10 }));
  await history.dispose();
  return { cold, warm };
}

export async function runGit(): Promise<Record<string, unknown>> {
  console.log("\ngit driver");
  const results: Record<string, number> = {};
  const goals: { name: string; value: number; goal: string; met: boolean }[] = [];
  const goal = (name: string, value: number, text: string, met: boolean) => {
    goals.push({ name, value, goal: text, met });
  };
  const dirs: string[] = [];
  const repo = (label: string) => {
    const dir = tempRepo(label);
    dirs.push(dir);
    return dir;
  };
  try {
    // Sequential writes: one commit each, awaited one by one.
    const cliDir = repo("cli");
    const cliSeq = perSecond(50, await timed(async () => {
      for (let i = 0; i < 50; i++) await cli.write(cliDir, `k${i}`, JSON.stringify(value(i)));
    }));
    const storage = createStorage({ driver: git({ dir: repo("stowage") }) });
    await storage.setItem("warm", 1);
    const seq = perSecond(200, await timed(async () => {
      for (let i = 0; i < 200; i++) await storage.setItem(`k:${i % 100}`, value(i));
    }));
    results.cliSetItem = cliSeq;
    results.setItem = seq;
    console.log(`  sequential setItem  ${format(seq).padStart(8)} commits/s   git CLI ${format(cliSeq)}/s   ${(seq / cliSeq).toFixed(1)}x`);
    goal("sequential setItem vs CLI", seq / cliSeq, ">= 4x", seq / cliSeq >= 4);

    const iso = await loadIsomorphicGit();
    if (iso) {
      const isoRate = perSecond(100, await isoWrites(iso, repo("iso"), 100));
      results.isoSetItem = isoRate;
      console.log(`  isomorphic-git full commits ${format(isoRate)}/s: stowage ${(seq / isoRate).toFixed(1)}x`);
      goal("sequential setItem vs isomorphic-git", seq / isoRate, ">= 2x", seq / isoRate >= 2);
    }

    // 100 writers in flight at once: group commit for stowage, 100 concurrent CLI writers for the peer.
    const cliConcurrent = perSecond(100, await timed(() => Promise.all(Array.from({ length: 100 }, (_, i) => cli.write(cliDir, `c${i}`, JSON.stringify(value(i)))))));
    const concurrent = perSecond(1000, await timed(async () => {
      for (let round = 0; round < 10; round++) await Promise.all(Array.from({ length: 100 }, (_, i) => storage.setItem(`c:${i}`, value(round * 100 + i))));
    }));
    results.cliConcurrent = cliConcurrent;
    results.concurrent = concurrent;
    console.log(`  100 concurrent writers ${format(concurrent).padStart(8)} writes/s   git CLI ${format(cliConcurrent)}/s   ${(concurrent / cliConcurrent).toFixed(1)}x`);
    goal("100 concurrent writers vs CLI", concurrent / cliConcurrent, ">= 30x", concurrent / cliConcurrent >= 30);

    // Reads.
    const cliRead = perSecond(50, await timed(async () => {
      for (let i = 0; i < 50; i++) await cli.read(cliDir, `k${i}`);
    }));
    const reads = 200_000;
    const read = perSecond(reads, await timed(async () => {
      for (let i = 0; i < reads; i++) await storage.getItem(`k:${i % 100}`);
    }));
    results.cliGetItem = cliRead;
    results.getItem = read;
    console.log(`  getItem            ${format(read).padStart(8)} reads/s     git CLI ${format(cliRead)}/s   ${(read / cliRead).toFixed(0)}x`);
    goal("getItem vs CLI", read / cliRead, ">= 500x", read / cliRead >= 500);
    await storage.dispose();

    // Bulk writes: one setItems, one commit, one pack.
    for (const count of [1000, 10_000]) {
      const bulk = createStorage({ driver: git({ dir: repo(`bulk-${count}`) }) });
      await bulk.setItem("warm", 1);
      const elapsed = await timed(() => bulk.setItems(Array.from({ length: count }, (_, i) => ({ key: `bulk:${i}`, value: value(i) }))));
      results[`setItems${count}`] = elapsed;
      // The core hands setItems to a driver without native TTL key by key (group commit makes them one commit); the driver's own setItems:
      const driver = git({ dir: repo(`bulk-driver-${count}`) });
      const direct = await timed(() => driver.asyncWrites!.setItems!(Array.from({ length: count }, (_, i) => ({ key: `bulk:${i}`, value: JSON.stringify(value(i)) }))));
      await driver.dispose!();
      results[`driverSetItems${count}`] = direct;
      console.log(`  setItems(${count}) ${ms(elapsed)} through storage.setItems, ${ms(direct)} through the driver's setItems`);
      goal(`setItems(${count})`, elapsed, count === 1000 ? "< 100 ms" : "< 500 ms", elapsed < (count === 1000 ? 100 : 500));
      await bulk.dispose();
    }

    // A single write with 100,000 keys in one flat directory, against 1,000.
    const small = await setItemAtScale(1000);
    const large = await setItemAtScale(100_000);
    results.setItemWith1k = small;
    results.setItemWith100k = large;
    console.log(`  setItem with 1,000 keys ${ms(small)}, with 100,000 keys ${ms(large)}: ${(large / small).toFixed(2)}x`);
    goal("setItem at 100k keys / at 1k keys", large / small, "<= 3x", large / small <= 3);

    // History on 10,000 commits (100 keys, each changed every 100 commits), cold: a new driver's first walk.
    const historyDir = repo("history");
    buildHistory(historyDir, 10_000, 100);
    const unmaintained = await historyWalks(historyDir);
    // What maintenance (run by the driver after commits, or by hand) leaves: packs merged, a commit-graph with changed-path filters.
    const maintainer = git({ dir: historyDir });
    const maintenance = await timed(() => maintainer.maintenance());
    await maintainer.dispose!();
    const { cold, warm } = await historyWalks(historyDir);
    results.historyColdNoGraph = unmaintained.cold;
    results.historyCold = cold;
    results.historyWarm = warm;
    results.historyMaintenance = maintenance;
    console.log(`  getHistory(limit 10) on 10,000 commits: ${ms(cold)} cold, ${ms(warm)} next key (without a commit-graph: ${ms(unmaintained.cold)} cold; maintenance writing it: ${ms(maintenance)})`);
    goal("getHistory limit 10 on 10,000 commits (maintained)", cold, "< 50 ms", cold < 50);
  } finally {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
  console.log("\ngit targets");
  for (const entry of goals) console.log(`  ${entry.met ? "met " : "MISS"} ${entry.name}: ${entry.value.toFixed(2)} (goal ${entry.goal})`);
  return { results, goals };
}
