/** What the lmdb soaks share: runs of worker processes incrementing one counter in a fresh store. */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import lmdb from "../../src/drivers/lmdb.js";
import { createStorage } from "../../src/index.js";

/** The values a worker printed (one per line), once it exited cleanly. */
export function valuesWritten(child: ChildProcess): Promise<number[]> {
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) =>
    child.on("exit", (code) => (code === 0 ? resolve(output.split("\n").filter(Boolean).map(Number)) : reject(new Error(`worker exited ${code}`)))),
  );
}

/**
 * One run in a fresh directory (SOAK_DIR, default the OS temp dir): creates the store, runs the
 * workers `start` begins on its path, and returns the counter's final value and what they wrote.
 * Every worker has exited before the directory goes, a failed one too.
 */
export async function counterRun(start: (path: string) => ChildProcess[]): Promise<{ counter: number | null; written: number[] }> {
  const dir = mkdtempSync(join(process.env.SOAK_DIR ?? tmpdir(), "lmdb-soak-"));
  const path = join(dir, "shared.mdb");
  try {
    // The file exists before the workers race to open it.
    await createStorage({ driver: lmdb({ path }) }).dispose();
    const results = await Promise.allSettled(start(path).map(valuesWritten));
    const failure = results.find((result) => result.status === "rejected");
    if (failure) throw failure.reason;
    const written = results.flatMap((result) => (result.status === "fulfilled" ? result.value : []));
    const storage = createStorage({ driver: lmdb({ path }) });
    const counter = await storage.getItem<number>("counter");
    await storage.dispose();
    return { counter, written };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Values written more than once (two guarded writes passed on one version), and those never written, of 1..total. */
export function diagnose(written: number[], total: number): string {
  const seen = new Set<number>();
  const twice = written.filter((value) => seen.has(value) || !seen.add(value));
  const missing = Array.from({ length: total }, (_, i) => i + 1).filter((value) => !seen.has(value));
  return `written twice: [${twice.join(", ")}], never written: [${missing.join(", ")}]`;
}
