import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { expect } from "vitest";
import { createStorage, type Driver, type Storage } from "../../src/index.js";
import { finish } from "./checks.js";

const WORKER = join(import.meta.dirname, "storeWorker.ts");
const TSX = import.meta.resolve("tsx");

/** Starts storeWorker.ts in its own process: `args` are `<driver> <path> <mode> <count>`; `env` adds variables. */
export function startWorker(args: string[], env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ["--import", TSX, WORKER, ...args], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
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

/**
 * Kills a process writing key:0, key:1, … with SIGKILL at a random moment
 * once writes flow, then reopens the store: every write it acknowledged
 * (printed) must be there.
 */
export async function killWhileWriting(driverName: string, path: string, open: (path: string) => Driver): Promise<number> {
  const child = startWorker([driverName, path, "write", "1000000"]);
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`worker exited ${code} before it was killed`)));
    const onData = () => {
      if (output.split("\n").length < 5) return;
      child.stdout!.off("data", onData);
      setTimeout(resolve, Math.random() * 200);
    };
    child.stdout!.on("data", onData);
  });
  child.removeAllListeners("exit");
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  const acknowledged = output.split("\n").filter(Boolean).map(Number);
  expect(acknowledged.length).toBeGreaterThan(0);
  const storage = createStorage({ driver: open(path) });
  try {
    const last = acknowledged[acknowledged.length - 1]!;
    const values = await storage.getItems(acknowledged.map((i) => `key:${i}`));
    expect(values.filter((entry) => entry.value === null)).toEqual([]);
    expect(await storage.getItem<{ i: number }>(`key:${last}`)).toMatchObject({ i: last });
  } finally {
    await storage.dispose();
  }
  return acknowledged.length;
}

/** A worker that watches, writes `count` keys (and one with a ttl), lists them, and must then exit by itself: nothing left open keeps it alive. */
export async function exitsOnItsOwn(driverName: string, location: string, env: Record<string, string>, count = 20): Promise<void> {
  const { code, output } = await finish(startWorker([driverName, location, "exercise", String(count)], env), 30_000);
  expect(code).toBe(0);
  expect(output.split("\n").filter(Boolean)).toHaveLength(count);
}
