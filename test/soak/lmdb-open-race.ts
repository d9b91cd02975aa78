/**
 * Soak for lmdb's lost update across processes (docs/lmdb.md, "Several processes"): three processes
 * each open the store again and again (SOAK_CYCLES, default 30) and make SOAK_INCREMENTS (default 3)
 * `update()` increments per open; a run checks the counter equals the increments the workers made.
 * Every open while another process commits is a chance for lmdb-js's open race, so a run exercises it
 * 90 times where `npm run soak:lmdb` does 3. Writes skip the flush (SOAK_SYNC=1 flushes) and the store
 * lives in SOAK_DIR (default the OS temp dir; /dev/shm makes runs faster). SOAK_RUNS (default 1000) and
 * SOAK_MINUTES (default 25) bound the soak; exits 1 if a run lost an increment or a worker failed.
 * `node --import tsx test/soak/lmdb-open-race.ts`
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { counterRun, diagnose } from "./counterSoak.js";

const PROCESSES = 3;
const cycles = Number(process.env.SOAK_CYCLES ?? 30);
const increments = Number(process.env.SOAK_INCREMENTS ?? 3);
const runs = Number(process.env.SOAK_RUNS ?? 1000);
const deadline = Date.now() + Number(process.env.SOAK_MINUTES ?? 25) * 60_000;
const WORKER = join(import.meta.dirname, "lmdb-open-race-worker.ts");
const TSX = import.meta.resolve("tsx");

/** One run: PROCESSES workers, each opening the store `cycles` times, on a fresh store. */
const runOnce = () =>
  counterRun((path) =>
    Array.from({ length: PROCESSES }, () =>
      spawn(process.execPath, ["--import", TSX, WORKER, path, String(cycles), String(increments)], { stdio: ["ignore", "pipe", "inherit"] }),
    ),
  );

let done = 0;
let short = 0;
let failed = 0;
const started = Date.now();
const expected = PROCESSES * cycles * increments;
while (done < runs && Date.now() < deadline) {
  done++;
  try {
    const { counter, written } = await runOnce();
    if (counter !== expected) {
      short++;
      console.log(`run ${done}: counter ${counter} of ${expected}; ${diagnose(written, expected)}`);
    }
  } catch (error) {
    // A worker that failed (its error is on stderr) is a result too: counted, and the soak goes on.
    failed++;
    console.log(`run ${done}: ${String(error)}`);
  }
  if (done % 50 === 0) console.log(`${done} runs, ${short} short, ${failed} failed, ${Math.round((Date.now() - started) / 1000)} s`);
}
console.log(
  `lmdb open-race soak: ${done} runs of ${PROCESSES} processes x ${cycles} opens x ${increments} increments (${done * PROCESSES * cycles} opens), ` +
    `${short} lost an increment, ${failed} had a worker fail (${Math.round((Date.now() - started) / 1000)} s)`,
);
process.exitCode = short + failed === 0 ? 0 : 1;
