import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bench } from "tinybench";
import { createStorage, type Driver, type Storage } from "stowage";
import leveldb from "stowage/drivers/leveldb";
import lmdb from "stowage/drivers/lmdb";
import sqlite from "stowage/drivers/sqlite";
import { median } from "./helpers.js";

/**
 * The embedded drivers at scale: latencies with 100,000 keys stored (the
 * govc targets: median setItem < 1 ms, getItem < 0.5 ms, setItems of 1,000
 * < 100 ms), and prefix listings over 1,000,000 keys, whose time must follow
 * the keys that match and whose memory must stay bounded while iterating.
 */

const LATENCY_KEYS = 100_000;
const SCALE_KEYS = 1_000_000;
const GROUPS = 1000;

const DRIVERS: { name: string; make: (dir: string) => Driver }[] = [
  { name: "sqlite", make: (dir) => sqlite({ path: join(dir, "store.db") }) },
  { name: "leveldb", make: (dir) => leveldb({ path: join(dir, "db") }) },
  { name: "lmdb", make: (dir) => lmdb({ path: join(dir, "store.mdb") }) },
];

const value = (i: number) => ({ id: i, name: `user-${String(i).padStart(7, "0")}`, email: `user${i}@example.com`, active: true });

async function fill(storage: Storage, from: number, to: number, keyOf: (i: number) => string): Promise<number[]> {
  const batchTimes: number[] = [];
  for (let i = from; i < to; i += 1000) {
    const items = [];
    for (let j = i; j < Math.min(i + 1000, to); j++) items.push({ key: keyOf(j), value: value(j) });
    const start = performance.now();
    await storage.setItems(items);
    batchTimes.push(performance.now() - start);
  }
  return batchTimes;
}

const ms = (n: number) => `${n.toFixed(3)} ms`;

async function latencies(storage: Storage) {
  const keyOf = (i: number) => `lat:${i}`;
  const batchTimes = await fill(storage, 0, LATENCY_KEYS, keyOf);
  const bench = new Bench({ time: 1000, warmupTime: 200 });
  let i = 0;
  bench.add("setItem", () => storage.setItem(keyOf((i = (i + 7919) % LATENCY_KEYS)), value(i + 1)));
  bench.add("getItem", () => storage.getItem(keyOf((i = (i + 7919) % LATENCY_KEYS))));
  await bench.run();
  const p50 = (name: string) => {
    const result = bench.getTask(name)!.result;
    if (result.state !== "completed") throw new Error(`${name}: ${result.state}`);
    return result.latency.p50;
  };
  return { setItemsOf1000: median(batchTimes), setItem: p50("setItem"), getItem: p50("getItem") };
}

async function timed<T>(action: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const start = performance.now();
  const result = await action();
  return { ms: performance.now() - start, result };
}

async function scale(storage: Storage) {
  await fill(storage, 0, SCALE_KEYS, (i) => `s:${i % GROUPS}:${i}`);
  const small = await timed(() => storage.getKeys("s:7:"));
  await storage.setItems(Array.from({ length: 10 }, (_, i) => ({ key: `few:${i}`, value: i })));
  const few = await timed(() => storage.getKeys("few"));
  const whole = await timed(() => storage.getKeys("s"));
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage().heapUsed;
  let peak = before;
  let counted = 0;
  const iterated = await timed(async () => {
    for await (const batch of storage.iterateKeys("s", { batchSize: 1000 })) {
      counted += batch.length;
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
  });
  return {
    prefixOf10: { keys: few.result.length, ms: few.ms },
    prefixOf1000: { keys: small.result.length, ms: small.ms },
    prefixOf1M: { keys: whole.result.length, ms: whole.ms },
    iterate1M: { keys: counted, ms: iterated.ms, heapGrowthMB: (peak - before) / 2 ** 20 },
  };
}

export async function runEmbedded(): Promise<Record<string, unknown>> {
  const results: Record<string, unknown> = {};
  for (const { name, make } of DRIVERS) {
    const dir = mkdtempSync(join(tmpdir(), `stowage-bench-${name}-`));
    try {
      const latencyStore = createStorage({ driver: make(dir) });
      const latency = await latencies(latencyStore);
      await latencyStore.clear();
      const scaled = await scale(latencyStore);
      await latencyStore.dispose();
      results[name] = { latency, scale: scaled };
      console.log(`\n${name} with ${LATENCY_KEYS.toLocaleString("en-US")} keys`);
      console.log(`  setItems(1000) median ${ms(latency.setItemsOf1000)} (goal < 100 ms)`);
      console.log(`  setItem        median ${ms(latency.setItem)} (goal < 1 ms)`);
      console.log(`  getItem        median ${ms(latency.getItem)} (goal < 0.5 ms)`);
      console.log(`${name} with ${SCALE_KEYS.toLocaleString("en-US")} keys`);
      for (const [label, entry] of Object.entries(scaled)) {
        const extra = "heapGrowthMB" in entry ? `, heap grew ${entry.heapGrowthMB.toFixed(1)} MB` : "";
        console.log(`  ${label.padEnd(14)} ${entry.keys.toLocaleString("en-US").padStart(9)} keys in ${ms(entry.ms)}${extra}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}
