import { writeFileSync } from "node:fs";
import { runEmbedded } from "./embedded.js";
import { runGit } from "./git.js";
import { runHttp } from "./http.js";
import { runQueue } from "./queue.js";
import { runReceipts } from "./receipts.js";
import { makeTargets, type Target } from "./targets.js";
import { measure, printWorkload, type SliceWorkload } from "./slices.js";
import { runLocks } from "./locks.js";

/**
 * `npm run bench [-- <filter>] [-- --json <file>]`: every workload for
 * stowage and its peers in one process, with ops/s and ratios, then the
 * suites of their own (the embedded drivers at scale, the queue; `-- embedded`
 * or `-- queue` runs one alone).
 *
 * stowage is imported by its package name, so this runs the build in dist/
 * (npm's `prebench` makes it first), as the peers run their published
 * builds. Run from the sources through tsx, every named closure made per
 * call also costs an `Object.defineProperty` (tsx keeps function names),
 * which no user pays.
 */

const KEY_COUNT = 10_000;
const BATCH = 1000;

const keys = Array.from({ length: KEY_COUNT }, (_, i) => `bench:user:${String(i).padStart(6, "0")}`);
// About 100 bytes of JSON per value, made up front so the loop measures storage, not value building.
const values = Array.from({ length: KEY_COUNT }, (_, i) => ({
  id: i,
  name: `user-${String(i).padStart(6, "0")}`,
  email: `user${i}@example.com`,
  tags: ["a", "b"],
  active: true,
}));
// Each pass over the keys writes every key a different value than the last pass did: a store
// that skips rewriting identical bytes (SQLite does) must not be timed on no-op writes.
const valueOf = (i: number) => values[(i + Math.floor(i / KEY_COUNT)) % KEY_COUNT];

/** `ops` operations per sample, so the harness's own per-sample cost does not blur the ratios. */
type Workload = SliceWorkload<Target>;

// Single-key operations run in rounds of this many, awaited one after another.
const ROUND = 100;

function rounds(step: (target: Target, i: number) => unknown): Workload["run"] {
  return async (target, i) => {
    const first = i * ROUND;
    for (let j = first; j < first + ROUND; j++) await step(target, j);
  };
}

const batchKeys = (i: number) => keys.slice((i * BATCH) % KEY_COUNT, ((i * BATCH) % KEY_COUNT) + BATCH);

const WORKLOADS: Workload[] = [
  { name: "setItem", ops: ROUND, run: rounds((t, i) => t.setItem(keys[i % KEY_COUNT]!, valueOf(i))) },
  { name: "getItem", ops: ROUND, run: rounds((t, i) => t.getItem(keys[i % KEY_COUNT]!)) },
  { name: "hasItem", ops: ROUND, run: rounds((t, i) => t.hasItem(keys[i % KEY_COUNT]!)) },
  { name: "getKeys", ops: 1, run: (t) => t.getKeys() },
  { name: `setItems(${BATCH})`, ops: 1, run: (t, i) => t.setItems(batchKeys(i).map((key, j) => ({ key, value: valueOf(i + j) }))) },
  { name: `getItems(${BATCH})`, ops: 1, run: (t, i) => t.getItems(batchKeys(i)) },
];

/** Suites with workloads of their own, run after the rest or alone by name (`npm run bench -- queue`). */
const SUITES: Record<string, () => Promise<unknown>> = {
  embedded: runEmbedded,
  queue: runQueue,
  receipts: runReceipts,
  locks: runLocks,
  http: runHttp,
  git: runGit,
};

/** The ratios the foundation issue sets as targets. */
const GOALS: { workload: string; target: string; peer: string; min: number }[] = [
  { workload: "getItem", target: "stowage memory", peer: "unstorage memory", min: 1.5 },
  { workload: "setItem", target: "stowage memory", peer: "unstorage memory", min: 1.5 },
  { workload: "getItem", target: "stowage memory (sync API)", peer: "Map + JSON", min: 0.7 },
  { workload: "getItem", target: "stowage fs", peer: "unstorage fs-lite", min: 3 },
  { workload: "setItem", target: "stowage fs", peer: "unstorage fs-lite", min: 1 },
  { workload: "getKeys", target: "stowage fs", peer: "unstorage fs-lite", min: 1 },
  { workload: "getItem", target: "stowage sqlite", peer: "better-sqlite3 (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage sqlite", peer: "better-sqlite3 (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage leveldb", peer: "classic-level (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage leveldb", peer: "classic-level (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage nats-kv", peer: "@nats-io/kv (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage nats-kv", peer: "@nats-io/kv (raw)", min: 0.8 },
  { workload: "setItems(1000)", target: "stowage nats-kv", peer: "@nats-io/kv (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage etcd", peer: "etcd3 (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage etcd", peer: "etcd3 (raw)", min: 0.8 },
  { workload: "setItems(1000)", target: "stowage etcd", peer: "etcd3 (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage redis", peer: "ioredis (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage redis", peer: "ioredis (raw)", min: 0.8 },
  { workload: "setItems(1000)", target: "stowage redis", peer: "ioredis (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage redis (vs unstorage)", peer: "unstorage redis", min: 1.0 },
  { workload: "setItem", target: "stowage redis (vs unstorage)", peer: "unstorage redis", min: 1.0 },
  { workload: "getItem", target: "stowage lmdb", peer: "lmdb (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage lmdb", peer: "lmdb (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage postgres", peer: "pg (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage postgres", peer: "pg (raw)", min: 0.8 },
  { workload: "setItems(1000)", target: "stowage postgres", peer: "pg (raw)", min: 0.8 },
  { workload: "getItem", target: "stowage mysql", peer: "mysql2 (raw)", min: 0.8 },
  { workload: "setItem", target: "stowage mysql", peer: "mysql2 (raw)", min: 0.8 },
  { workload: "setItems(1000)", target: "stowage mysql", peer: "mysql2 (raw)", min: 0.8 },
];

function parseArgs(argv: string[]): { filter?: string; json?: string } {
  const args: { filter?: string; json?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--json") args.json = argv[++i];
    else args.filter = argv[i];
  }
  return args;
}

/** A filter names workloads (by prefix) or targets (by substring; their peers come along). */
function select(filter: string | undefined, targets: Target[]): { workloads: Workload[]; chosen: Target[] } {
  if (!filter) return { workloads: WORKLOADS, chosen: targets };
  const workloads = WORKLOADS.filter((w) => w.name.startsWith(filter));
  if (workloads.length > 0) return { workloads, chosen: targets };
  const named = targets.filter((t) => t.name.includes(filter));
  if (named.length === 0) throw new Error(`No workload or target matches ${JSON.stringify(filter)}`);
  const peers = new Set(named.map((t) => t.peer));
  return { workloads: WORKLOADS, chosen: targets.filter((t) => named.includes(t) || peers.has(t.name)) };
}

async function populate(target: Target): Promise<void> {
  for (let i = 0; i < KEY_COUNT; i += BATCH) {
    // Values other than the first setItem pass writes: stores that skip identical rewrites must not be timed on no-ops.
    await target.setItems(keys.slice(i, i + BATCH).map((key, j) => ({ key, value: valueOf(i + j + 1) })));
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const suite = args.filter === undefined ? undefined : SUITES[args.filter];
  if (suite) {
    const result = await suite();
    if (args.json) writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), node: process.version, [args.filter!]: result }, null, 2));
    return;
  }
  const targets = await makeTargets();
  const { workloads, chosen } = select(args.filter, targets);
  for (const target of chosen) await populate(target);

  const results: Record<string, Record<string, number>> = {};
  for (const workload of workloads) {
    results[workload.name] = await measure(workload, chosen);
    printWorkload(workload.name, chosen, results[workload.name]!);
  }
  const goals = printGoals(results);
  // Every target closes before the suites run: a teardown left running would race their load (and time out under it).
  await Promise.all(
    targets.map(async (target) => {
      try {
        await target.close();
      } catch (error) {
        // One target failing to close must not leave the others' tables and keys behind.
        console.warn(`bench: closing ${target.name} failed: ${String(error)}`);
      }
    }),
  );
  const suites: Record<string, unknown> = {};
  if (!args.filter) for (const [name, run] of Object.entries(SUITES)) suites[name] = await run();
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), node: process.version, keys: KEY_COUNT, results, goals, ...suites }, null, 2));
  }
}

function printGoals(results: Record<string, Record<string, number>>) {
  console.log("\ntargets");
  return GOALS.flatMap((goal) => {
    const ops = results[goal.workload]?.[goal.target];
    const peerOps = results[goal.workload]?.[goal.peer];
    if (ops === undefined || peerOps === undefined) return [];
    const ratio = ops / peerOps;
    const met = ratio >= goal.min;
    console.log(`  ${met ? "met " : "MISS"} ${goal.target} ${goal.workload}: ${ratio.toFixed(2)}x ${goal.peer} (goal >= ${goal.min}x)`);
    return [{ ...goal, ratio, met }];
  });
}

await main();
