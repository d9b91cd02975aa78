import { rmSync } from "node:fs";
import { join } from "node:path";
import { createStorage, type Storage } from "stowage";
import gitNotes from "stowage/drivers/git-notes";
import sqlite from "stowage/drivers/sqlite";
import { createReceipts, type Receipt, type Receipts } from "stowage/coordination";
import { benchDir } from "./helpers.js";

/**
 * `npm run bench -- receipts`: 100,000 receipts (timestamps spread over a
 * week, a quarter of them `deploy`) on sqlite and git-notes, seeded through
 * batched transactions (storeMany), then the time of `recent(100)` and of
 * `find({ command: "deploy" }, { since: a day ago, limit: 100 })` (issue #17's goal:
 * recent(100) under 20 ms). The first call on a fresh store is printed apart
 * (git-notes reads every key's blob once into its cache there). Then
 * recent(100) right after a store: one receipt stored, recent(100) timed,
 * RUNS times (git-notes follows its own write in its sorted key listing;
 * before #17's change it sorted every key again after each write).
 * STOWAGE_BENCH_RECEIPTS sets the count.
 */

const COUNT = Number(process.env.STOWAGE_BENCH_RECEIPTS ?? 100_000);
const BATCH = 5000;
const WEEK = 7 * 24 * 3_600_000;
const NOW = Date.UTC(2026, 11, 1);
const RUNS = 30;

function receiptAt(i: number): Receipt {
  // Spread evenly over the week before NOW, newest last.
  const timestamp = NOW - WEEK + Math.floor((i * WEEK) / COUNT);
  return {
    id: `r${String(i).padStart(7, "0")}`,
    command: i % 4 === 0 ? "deploy" : "build",
    timestamp,
    duration: 100 + (i % 900),
    exitCode: i % 50 === 0 ? 1 : 0,
    output: `step ${i} ok\n`.repeat(8),
    metadata: { host: `ci-${i % 7}`, branch: "main" },
  };
}

async function seed(receipts: Receipts): Promise<number> {
  const start = performance.now();
  for (let from = 0; from < COUNT; from += BATCH) {
    await receipts.storeMany(Array.from({ length: Math.min(BATCH, COUNT - from) }, (_, n) => receiptAt(from + n)));
  }
  return performance.now() - start;
}

/** The first call's ms, then the mean ms of RUNS more. */
async function timed(run: () => Promise<unknown>): Promise<{ first: number; mean: number }> {
  let start = performance.now();
  await run();
  const first = performance.now() - start;
  start = performance.now();
  for (let n = 0; n < RUNS; n++) await run();
  return { first, mean: (performance.now() - start) / RUNS };
}

/** RUNS times: store one receipt (newer than all), then time recent(100) alone; its mean and max ms. */
async function recentAfterStore(name: string, receipts: Receipts): Promise<{ mean: number; max: number }> {
  let total = 0;
  let max = 0;
  for (let n = 0; n < RUNS; n++) {
    const id = `s${String(n).padStart(7, "0")}`;
    await receipts.store({ ...receiptAt(COUNT - 1), id, timestamp: NOW + 1 + n });
    const start = performance.now();
    const latest = await receipts.recent(100);
    const took = performance.now() - start;
    if (latest[0]?.id !== id) throw new Error(`${name}: recent(100) after a store did not return it first`);
    total += took;
    max = Math.max(max, took);
  }
  return { mean: total / RUNS, max };
}

async function measure(name: string, storage: Storage, results: Record<string, number>): Promise<void> {
  const receipts = createReceipts(storage, { clock: { now: () => NOW } });
  const seeded = await seed(receipts);
  const recent = await timed(() => receipts.recent(100));
  const found = await timed(() => receipts.find({ command: "deploy" }, { since: NOW - 24 * 3_600_000, limit: 100 }));
  const sample = await receipts.recent(100);
  if (sample.length !== 100 || sample[0]!.id !== receiptAt(COUNT - 1).id) throw new Error(`${name}: recent(100) returned the wrong receipts`);
  const afterStore = await recentAfterStore(name, receipts);
  console.log(
    `  ${name.padEnd(10)} seed ${COUNT} in ${(seeded / 1000).toFixed(1)} s   recent(100) ${recent.mean.toFixed(2)} ms (first ${recent.first.toFixed(0)} ms)   ` +
      `find(deploy, last day, limit 100) ${found.mean.toFixed(2)} ms (first ${found.first.toFixed(0)} ms)   ` +
      `recent(100) right after a store ${afterStore.mean.toFixed(2)} ms (max ${afterStore.max.toFixed(1)} ms)`,
  );
  Object.assign(results, {
    [`${name} recent(100) ms`]: recent.mean,
    [`${name} recent(100) first ms`]: recent.first,
    [`${name} find ms`]: found.mean,
    [`${name} recent(100) after store ms`]: afterStore.mean,
    [`${name} recent(100) after store max ms`]: afterStore.max,
    [`${name} seed s`]: seeded / 1000,
  });
}

export async function runReceipts(): Promise<Record<string, number>> {
  console.log(`receipts: ${COUNT} receipts over a week`);
  const dir = benchDir("receipts");
  const results: Record<string, number> = {};
  const stores = [
    { name: "sqlite", storage: createStorage({ driver: sqlite({ path: join(dir, "receipts.sqlite") }) }) },
    { name: "git-notes", storage: createStorage({ driver: gitNotes({ dir: join(dir, "notes") }) }) },
  ];
  try {
    for (const { name, storage } of stores) await measure(name, storage, results);
  } finally {
    for (const { storage } of stores) await storage.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
