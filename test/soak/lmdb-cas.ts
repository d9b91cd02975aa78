/**
 * Soak for lmdb's multi-process CAS: each run has three processes make 100 `update()` increments
 * each on one file, then checks the counter is 300. Not part of `npm test`: `npm run soak:lmdb`.
 * SOAK_RUNS (default 1000) bounds the runs, SOAK_MINUTES (default 25) the time; prints each
 * short run with what the workers reported writing (a value two workers both wrote means two
 * guarded writes passed on one version; all 300 written once means a committed write was lost
 * afterwards), each run whose worker failed, and a summary; exits 1 if any run did either.
 */
import { startWorker } from "../helpers/spawnWorkers.js";
import { counterRun, diagnose } from "./counterSoak.js";

const PROCESSES = 3;
const INCREMENTS = 100;
const runs = Number(process.env.SOAK_RUNS ?? 1000);
const deadline = Date.now() + Number(process.env.SOAK_MINUTES ?? 25) * 60_000;

/** One run: PROCESSES workers of INCREMENTS increments each on a fresh store. */
const runOnce = () => counterRun((path) => Array.from({ length: PROCESSES }, () => startWorker(["lmdb", path, "increment", String(INCREMENTS)])));

let done = 0;
let short = 0;
let failed = 0;
const started = Date.now();
while (done < runs && Date.now() < deadline) {
  done++;
  try {
    const { counter, written } = await runOnce();
    if (counter !== PROCESSES * INCREMENTS) {
      short++;
      console.log(`run ${done}: counter ${counter} of ${PROCESSES * INCREMENTS}; ${diagnose(written, PROCESSES * INCREMENTS)}`);
    }
  } catch (error) {
    // A worker that failed (its error is on stderr) is a result too: counted, and the soak goes on.
    failed++;
    console.log(`run ${done}: ${String(error)}`);
  }
  if (done % 50 === 0) console.log(`${done} runs, ${short} short, ${failed} failed, ${Math.round((Date.now() - started) / 1000)} s`);
}
console.log(
  `lmdb CAS soak: ${done} runs of ${PROCESSES}x${INCREMENTS} increments, ${short} lost an increment, ${failed} had a worker fail (${Math.round((Date.now() - started) / 1000)} s)`,
);
process.exitCode = short + failed === 0 ? 0 : 1;
