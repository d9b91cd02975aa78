/**
 * Soak for lmdb's multi-process CAS: each run has three processes make 100 `update()` increments
 * each on one file, then checks the counter is 300. Not part of `npm test`: `npm run soak:lmdb`.
 * SOAK_RUNS (default 1000) bounds the runs, SOAK_MINUTES (default 25) the time; prints each
 * short run with what the workers reported writing (a value two workers both wrote means two
 * guarded writes passed on one version; all 300 written once means a committed write was lost
 * afterwards), each run whose worker failed, and a summary; exits 1 if any run did either.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import lmdb from "../../src/drivers/lmdb.js";
import { createStorage } from "../../src/index.js";
import { startWorker } from "../helpers/spawnWorkers.js";

const PROCESSES = 3;
const INCREMENTS = 100;
const runs = Number(process.env.SOAK_RUNS ?? 1000);
const deadline = Date.now() + Number(process.env.SOAK_MINUTES ?? 25) * 60_000;

/** The values one worker reported writing, once it exited. */
function valuesWritten(path: string): Promise<number[]> {
  const child = startWorker(["lmdb", path, "increment", String(INCREMENTS)]);
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) =>
    child.on("exit", (code) => (code === 0 ? resolve(output.split("\n").filter(Boolean).map(Number)) : reject(new Error(`worker exited ${code}`)))),
  );
}

/** One run in a fresh directory: the counter's final value, and what the workers wrote. */
async function runOnce(): Promise<{ counter: number | null; written: number[] }> {
  const dir = mkdtempSync(join(tmpdir(), "lmdb-soak-"));
  const path = join(dir, "shared.mdb");
  try {
    // The file exists before the workers race to open it.
    await createStorage({ driver: lmdb({ path }) }).dispose();
    const written = (await Promise.all(Array.from({ length: PROCESSES }, () => valuesWritten(path)))).flat();
    const storage = createStorage({ driver: lmdb({ path }) });
    const counter = await storage.getItem<number>("counter");
    await storage.dispose();
    return { counter, written };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What the workers' reports say about a short run. */
function diagnose(written: number[]): string {
  const seen = new Set<number>();
  const twice = written.filter((value) => seen.has(value) || !seen.add(value));
  const missing = Array.from({ length: PROCESSES * INCREMENTS }, (_, i) => i + 1).filter((value) => !seen.has(value));
  return `written twice: [${twice.join(", ")}], never written: [${missing.join(", ")}]`;
}

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
      console.log(`run ${done}: counter ${counter} of ${PROCESSES * INCREMENTS}; ${diagnose(written)}`);
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
