import { spawn } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { expect } from "vitest";
import type { Storage } from "../../src/index.js";
import { driverSource } from "../../tsup.config.js";
import { codeOf, finish, freePort } from "./checks.js";
import { runnable, scriptArgs } from "./programs.js";
import { runWorkers } from "./workers.js";

/** Tests shared by the drivers that keep keys in one SQL table (postgres, mysql). */

/** Table names unique to this run of a test file (so parallel runs never meet), listed for dropping at the end. */
export function runTables(): { tables: string[]; fresh: (label: string) => string } {
  const run = `${process.pid}_${Date.now().toString(36)}`;
  const tables: string[] = [];
  return {
    tables,
    fresh(label) {
      const name = `stowage_${label}_${run}`;
      tables.push(name);
      return name;
    },
  };
}

/**
 * Runs `body` in a child process with `storage` made from the driver module
 * `driver` (a registered driver's name) and `options`, then disposes it: the child
 * must exit by itself, so nothing the driver opened is left holding it. `body`
 * is JavaScript: the child runs the build, untranspiled.
 */
export async function exitsAfterDispose(driver: string, options: Record<string, unknown>, body: string): Promise<void> {
  const script = `import { createStorage } from ${JSON.stringify(runnable("src/index.ts"))};
import driver from ${JSON.stringify(runnable(driverSource(driver)))};
const storage = createStorage({ driver: driver(${JSON.stringify(options)}) });
${body}
await storage.dispose();
console.log("disposed");
`;
  const result = await finish(spawn(process.execPath, scriptArgs(script), { stdio: ["ignore", "pipe", "inherit"] }), 60_000); // a hang, not a slow start on a loaded machine
  expect(result).toEqual({ code: 0, output: "disposed\n" });
}

/**
 * A server that refuses connections, and one that accepts them and never
 * answers: `open(url)` on either fails its operations with E_UNAVAILABLE
 * within `timeout` (plus scheduling slack).
 */
export async function unavailableWithinTimeout(urlAt: (port: number) => string, open: (url: string) => Storage, timeout: number): Promise<void> {
  const refused = open(urlAt(await freePort()));
  expect(await codeOf(() => refused.getItem("a"))).toBe("E_UNAVAILABLE");
  await refused.dispose();

  const sockets: Socket[] = [];
  const silent: Server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as { port: number };
  const storage = open(urlAt(port));
  const started = Date.now();
  expect(await codeOf(() => storage.setItem("a", 1))).toBe("E_UNAVAILABLE");
  expect(Date.now() - started).toBeLessThan(timeout + 2000);
  await storage.dispose();
  sockets.forEach((socket) => socket.destroy());
  await new Promise((resolve) => silent.close(resolve));
}

/**
 * A transaction through `storage` that read a key as absent fails with
 * E_CONFLICT when `other` creates that key before the commit; one whose read
 * still holds at the commit succeeds.
 */
export async function absentKeyHeldUntilCommit(storage: Storage, other: Storage): Promise<void> {
  const code = await codeOf(() =>
    storage.transaction(async (tx) => {
      expect(await tx.getItem("slot")).toBeNull();
      await other.setItem("slot", "taken");
      await tx.setItem("claim", "mine");
    }),
  );
  expect(code).toBe("E_CONFLICT");
  expect(await storage.getItem("claim")).toBeNull();
  await storage.transaction(async (tx) => {
    expect(await tx.getItem("free")).toBeNull();
    await tx.setItem("claim", "mine");
  });
  expect((await storage.getKeys()).sort()).toEqual(["claim", "slot"]);
}

/** Three processes start together on the fresh table `table` (storeWorker's `driver`) and make 30 CAS increments each: none is lost. */
export async function casAcrossProcesses(driver: string, table: string, open: (table: string) => Storage): Promise<void> {
  const processes = 3;
  const rounds = 30;
  await runWorkers(processes, [driver, table, "increment", String(rounds)]);
  const storage = open(table);
  expect(await storage.getItem("counter")).toBe(processes * rounds);
  await storage.dispose();
}
