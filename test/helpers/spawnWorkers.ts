/** Starting storeWorker.ts processes; free of vitest, so soak scripts outside the test runner use it too. */
import { spawn, type ChildProcess } from "node:child_process";
import { createStorage, type Driver, type Storage } from "../../src/index.js";
import { programArgs } from "./programs.js";

/** Starts storeWorker.ts in its own process: `args` are `<driver> <path> <mode> <count>`; `env` adds variables. */
export function startWorker(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, programArgs("test/helpers/storeWorker.ts", args), { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
}

/** Runs workers side by side and resolves when all exited cleanly. */
export async function runWorkers(count: number, args: string[], env: Record<string, string> = {}): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, () => {
      const child = startWorker(args, env);
      return new Promise<void>((resolve, reject) => child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}`)))));
    }),
  );
}

/**
 * Creates the store file at `path` (so its schema exists before the workers race), runs `processes`
 * storeWorker processes on it in `mode` with `count` writes each, and opens it again for the caller to check.
 */
export async function storeAfterWorkers(
  driverName: string,
  path: string,
  open: (path: string) => Driver,
  work: { processes: number; mode: "increment" | "unique"; count: number },
): Promise<Storage> {
  await createStorage({ driver: open(path) }).dispose();
  await runWorkers(work.processes, [driverName, path, work.mode, String(work.count)]);
  return createStorage({ driver: open(path) });
}
