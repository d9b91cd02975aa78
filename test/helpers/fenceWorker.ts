/**
 * A contender of the fencing proof (test/coordination/fencing-proof.test.ts):
 * `node fenceWorker.js <worker id> <driver> <options JSON> <ttl> <writes per hold> <gap ms>`.
 * It takes the lock "proof" again and again; each holding makes `writes`
 * fenced appends to a log in the same store, `gap` ms apart, then releases
 * and works elsewhere for 1 to 4 gaps.
 * Each append is one fenced transaction that reads the log's length ("count"),
 * writes the entry `{ token, worker, seq }` at `log:<count>` and raises the count,
 * so the log's order is the order in which appends committed. Every step is
 * reported as a JSON line on stdout, written before the next step starts (stdout
 * to a pipe is synchronous on Linux), so a parent that SIGSTOPs it knows where it
 * stands. It stops, after finishing its current holding, when stdin ends. Any
 * error but E_FENCED, E_CONFLICT of an append and E_LOCK_LOST of a release
 * ends it with a non-zero exit: that is a crash the proof reports.
 */
import { createLocks, type Lock } from "../../src/coordination/index.js";
import { createStorage, isStorageError, type Driver } from "../../src/index.js";

/** What the worker reports, one JSON object a line (a type only: importing this module would run a worker). */
export type WorkerEvent =
  | { e: "ready" }
  | { e: "hold"; token: number }
  | { e: "ok"; token: number; seq: number; left: number }
  | { e: "fenced"; token: number; seq: number }
  | { e: "conflict"; token: number; seq: number }
  | { e: "released"; token: number }
  | { e: "lost"; token: number }
  | { e: "done" };

/** The lock every worker contends on. */
const PROOF_LOCK = "proof";
/** An append that keeps conflicting this often means a second writer kept writing: a crash, not a retry. */
const MAX_CONFLICTS = 20;

/** The log entry at position `index`: zero-padded, so the keys sort in log order. */
function logKey(index: number): string {
  return `log:${String(index).padStart(8, "0")}`;
}

type Factory = (options: Record<string, unknown>) => Promise<Driver>;
const drivers: Record<string, Factory> = {
  sqlite: async (options) => (await import("../../src/drivers/sqlite.js")).default(options as never),
  "git-refs": async (options) => (await import("../../src/drivers/git-refs.js")).default(options as never),
  redis: async (options) => (await import("../../src/drivers/redis/index.js")).default(options as never),
  postgres: async (options) => (await import("../../src/drivers/postgres.js")).default(options as never),
  etcd: async (options) => (await import("../../src/drivers/etcd.js")).default(options as never),
};

function say(event: WorkerEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const [worker, driverName, optionsText, ttlText, writesText, gapText] = process.argv.slice(2);
  const factory = drivers[driverName!];
  if (!factory) throw new Error(`fenceWorker: no driver ${driverName}`);
  const storage = createStorage({ driver: await factory(JSON.parse(optionsText!) as Record<string, unknown>) });
  const locks = createLocks(storage, { ttl: Number(ttlText) });
  const writes = Number(writesText);
  const gap = Number(gapText);
  let stopping = false;
  process.stdin.on("data", () => undefined);
  process.stdin.on("end", () => (stopping = true));
  let seq = 0;
  // Connected (a first read answered): from here on the worker contends.
  await storage.getItem("count");
  say({ e: "ready" });

  /** One fenced append; false when it was fenced out. */
  async function append(lock: Lock, left: number): Promise<boolean> {
    const entrySeq = ++seq;
    for (let conflicts = 0; ; conflicts++) {
      try {
        await storage.transaction(
          async (tx) => {
            const count = (await tx.getItem<number>("count")) ?? 0;
            await tx.setItem(logKey(count), { token: lock.token, worker, seq: entrySeq });
            await tx.setItem("count", count + 1);
          },
          { fence: lock },
        );
        say({ e: "ok", token: lock.token, seq: entrySeq, left });
        return true;
      } catch (error) {
        if (isStorageError(error, "E_FENCED")) {
          say({ e: "fenced", token: lock.token, seq: entrySeq });
          return false;
        }
        // Another append committed between this one's read of the count and its commit: an old holder's
        // late write before this holder's first fenced write raised the fence (docs/coordination.md).
        if (!isStorageError(error, "E_CONFLICT") || conflicts >= MAX_CONFLICTS) throw error;
        say({ e: "conflict", token: lock.token, seq: entrySeq });
      }
    }
  }

  while (!stopping) {
    const lock = await locks.acquire(PROOF_LOCK, { wait: 1000, retryDelay: 5 });
    if (!lock) continue;
    say({ e: "hold", token: lock.token });
    for (let left = writes - 1; left >= 0; left--) {
      if (!(await append(lock, left))) break;
      if (left > 0) await sleep(gap);
    }
    try {
      await lock.release();
      say({ e: "released", token: lock.token });
    } catch (error) {
      // Expired or taken over while this worker was paused: the fence already kept its writes out.
      if (!isStorageError(error, "E_LOCK_LOST")) throw error;
      say({ e: "lost", token: lock.token });
    }
    // Other work between holdings: a worker that takes the lock back at once starves the others, whose tries back off.
    await sleep(gap + Math.random() * 3 * gap);
  }
  await storage.dispose();
  say({ e: "done" });
  process.stdin.destroy();
}

await main();
