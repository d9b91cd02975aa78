import { spawn, type ChildProcess } from "node:child_process";
import { expect } from "vitest";
import { isStorageError, type Storage } from "../../src/index.js";
import { codeOf } from "./checks.js";

/** A server a test may stop and start again. */
export interface StoppableServer {
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** Fails unless `action` fails with E_UNAVAILABLE within `limit` ms. */
async function unavailableWithin(limit: number, action: () => unknown): Promise<void> {
  const started = Date.now();
  expect(await codeOf(action)).toBe("E_UNAVAILABLE");
  expect(Date.now() - started).toBeLessThan(limit);
}

/**
 * Stops a server while a writer runs against it: calls during the outage
 * (a read, a write, opening a watch) each fail with E_UNAVAILABLE within the
 * storage's `timeout` and some slack for a loaded machine, the same storage
 * works again once the server is back within `recovery` ms, and every write
 * acknowledged before the stop reads back.
 */
export async function survivesOutage(storage: Storage, server: StoppableServer, { timeout, recovery }: { timeout: number; recovery: number }): Promise<void> {
  const acknowledged: number[] = [];
  let stopped = false;
  const writer = (async () => {
    for (let i = 0; !stopped; i++) {
      try {
        await storage.setItem(`key:${i}`, i);
        acknowledged.push(i);
      } catch (error) {
        expect(isStorageError(error, "E_UNAVAILABLE")).toBe(true);
      }
    }
  })();
  while (acknowledged.length < 50) await new Promise((resolve) => setTimeout(resolve, 10));
  await server.stop();
  // Not a speed check: calls must end near their timeout, never hang.
  const limit = timeout + 1500;
  await unavailableWithin(limit, () => storage.getItem("key:0"));
  await unavailableWithin(limit, () => storage.setItem("during", 1));
  await unavailableWithin(limit, () => storage.watch(() => undefined));
  await server.start();
  const deadline = Date.now() + recovery;
  for (;;) {
    const code = await codeOf(() => storage.setItem("after", "restart"));
    if (code === "none") break;
    expect(code).toBe("E_UNAVAILABLE");
    if (Date.now() > deadline) throw new Error("the server did not come back");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  stopped = true;
  await writer;
  expect(await storage.getItem("after")).toBe("restart");
  const values = await storage.getItems(acknowledged.map((i) => `key:${i}`));
  expect(values.filter((entry, index) => entry.value !== acknowledged[index])).toEqual([]);
}

/**
 * A server process of the test's own (never a shared one): `start` spawns
 * `command args` and resolves once `ready()` holds, `stop` SIGKILLs it.
 */
export function privateServer(name: string, command: string, args: string[], ready: () => boolean | Promise<boolean>): StoppableServer {
  let child: ChildProcess | undefined;
  return {
    async start() {
      child = spawn(command, args, { stdio: "ignore" });
      const deadline = Date.now() + 15_000;
      while (!(await ready())) {
        if (Date.now() > deadline) throw new Error(`the private ${name} did not start`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = new Promise((resolve) => running.once("exit", resolve));
      running.kill("SIGKILL");
      await exited;
    },
  };
}
