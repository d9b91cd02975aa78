import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Helpers the bench suites share. */

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Milliseconds `action` took, awaited. */
export async function timed(action: () => Promise<unknown> | unknown): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

/** A new bare Git repository in a temporary directory. */
export function tempRepo(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `stowage-bench-${label}-`));
  execFileSync("git", ["init", "-q", "--bare", dir]);
  return dir;
}

/** A temporary directory on tmpfs where there is one: Git writes a file per ref or object. */
export function benchDir(label: string): string {
  return mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), `stowage-bench-${label}-`));
}
