import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bench } from "tinybench";
import { createStorage } from "stowage";
import fsDriver from "stowage/drivers/fs";
import queue from "stowage/drivers/queue";

/**
 * The queue driver over fs against fs direct: rounds of 100 setItem calls as
 * the caller sees them. The queue's flush runs after each round, outside the
 * timed part, and its time is printed beside; after the run every key is
 * checked on disk.
 */

const ROUND = 100;
const KEYS = 10_000;
const value = (i: number) => ({ id: i, name: `user-${String(i).padStart(6, "0")}`, email: `user${i}@example.com`, tags: ["a", "b"], active: true });

export async function runQueue(): Promise<Record<string, number>> {
  const directDir = mkdtempSync(join(tmpdir(), "stowage-bench-fs-direct-"));
  const queueDir = mkdtempSync(join(tmpdir(), "stowage-bench-fs-queue-"));
  const direct = createStorage({ driver: fsDriver({ base: directDir }) });
  const queued = queue({ driver: fsDriver({ base: queueDir }), flushInterval: 60_000 });
  const viaQueue = createStorage({ driver: queued });
  const flushTimes: number[] = [];
  try {
    const bench = new Bench({ time: 1500, warmupTime: 300 });
    let i = 0;
    let j = 0;
    bench.add("fs direct", async () => {
      for (let n = 0; n < ROUND; n++, i++) await direct.setItem(`k:${i % KEYS}`, value(i));
    });
    bench.add(
      "queue over fs",
      async () => {
        for (let n = 0; n < ROUND; n++, j++) await viaQueue.setItem(`k:${j % KEYS}`, value(j));
      },
      {
        afterEach: async () => {
          const start = performance.now();
          await queued.flush();
          flushTimes.push(performance.now() - start);
        },
      },
    );
    await bench.run();
    const ops = (name: string) => {
      const result = bench.getTask(name)!.result;
      if (result.state !== "completed") throw new Error(`${name}: ${result.state}`);
      return result.throughput.mean * ROUND;
    };
    const directOps = ops("fs direct");
    const queueOps = ops("queue over fs");
    const flushMs = flushTimes.reduce((a, b) => a + b, 0) / flushTimes.length;
    // Everything the queue took must be on disk, every key as its last write left it.
    const onDisk = createStorage({ driver: fsDriver({ base: queueDir }) });
    const written = Array.from({ length: Math.min(j, KEYS) }, (_, n) => n);
    const stored = await onDisk.getItems(written.map((n) => `k:${n}`));
    for (const [n, entry] of stored.entries()) {
      const last = n + KEYS * Math.floor((j - 1 - n) / KEYS);
      if ((entry.value as { id?: number } | null)?.id !== last) throw new Error(`queue bench: k:${n} on disk is ${JSON.stringify(entry.value)}, expected id ${last}`);
    }
    console.log("\nqueue: setItem (rounds of 100, flush after each round, untimed)");
    console.log(`  fs direct                    ${Math.round(directOps).toLocaleString("en-US").padStart(12)} ops/s`);
    console.log(`  queue over fs                ${Math.round(queueOps).toLocaleString("en-US").padStart(12)} ops/s  ${(queueOps / directOps).toFixed(2)}x fs direct (goal >= 10x)`);
    console.log(`  flush of 100 writes          ${flushMs.toFixed(2)} ms mean; all ${written.length.toLocaleString("en-US")} keys on disk as last written after flush(): yes`);
    console.log(`  ${queueOps / directOps >= 10 ? "met " : "MISS"} queue over fs setItem: ${(queueOps / directOps).toFixed(2)}x fs direct (goal >= 10x)`);
    return { fsDirect: directOps, queueOverFs: queueOps, flushMs };
  } finally {
    await viaQueue.dispose();
    await direct.dispose();
    rmSync(directDir, { recursive: true, force: true });
    rmSync(queueDir, { recursive: true, force: true });
  }
}
