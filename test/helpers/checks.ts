import type { ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { isStorageError } from "../../src/index.js";

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
