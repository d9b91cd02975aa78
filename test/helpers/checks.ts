import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { expect } from "vitest";
import { isStorageError, type Storage } from "../../src/index.js";

/** The StorageError code an action fails with, or "none"; any other error is rethrown. */
export async function codeOf(action: () => unknown): Promise<string> {
  try {
    await action();
  } catch (error) {
    if (isStorageError(error)) return error.code;
    throw error;
  }
  return "none";
}

/** A loopback TCP port nobody listens on right now (taken from the OS, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Exit code and stdout of a child process; killed (code null) if still running after `limit` ms. */
export function finish(child: ChildProcess, limit: number): Promise<{ code: number | null; output: string }> {
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), limit);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * Writes `keys` (under `raw:`) straight to the storage's driver, below the
 * core's key rules (which strip "?" and split on "\\"), and reads and lists
 * them back exactly: the driver takes any key as it is.
 */
export async function rawKeysRoundTrip(storage: Storage, keys: string[]): Promise<void> {
  const driver = storage.getMount().driver;
  for (const key of keys) await driver.setItem!(`raw:${key}`, JSON.stringify(key), {});
  for (const key of keys) expect(await driver.getItem(`raw:${key}`, {})).toBe(JSON.stringify(key));
  expect(((await driver.getKeys("raw:", {})) as string[]).sort()).toEqual(keys.map((key) => `raw:${key}`).sort());
}
