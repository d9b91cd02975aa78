import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createStorage as createUnstorage } from "unstorage";
import { createStorageServer as createUnstorageServer } from "unstorage/server";
import { createStorage } from "stowage";
import memory from "stowage/drivers/memory";
import { createStorageServer } from "stowage/server";

/**
 * One storage server in a process of its own, for `bench/http.ts`: started
 * with `stowage` or `unstorage` as its argument, over stowage's memory
 * driver (which mounts in unstorage too) holding `KEYS` values. It sends its
 * URL over IPC, answers `"cpu"` with its CPU time so far, and exits on
 * `"close"`. Each server so runs as in production, alone in its process,
 * and no state the bench built before (other suites' heaps, timers and
 * connections) weighs on either.
 */

export const KEYS = 1000;

export const valueOf = (i: number) => ({ id: i, name: `user-${String(i).padStart(6, "0")}`, email: `user${i}@example.com`, city: "Lisbon", tags: ["a", "b"], active: true });

export type ServerKind = "stowage" | "unstorage";

/** What the server process sends its parent. */
export type ServerMessage = { url: string } | { cpu: number };

async function stowageServer(): Promise<string> {
  const storage = createStorage({ driver: memory() });
  for (let i = 0; i < KEYS; i++) await storage.setItem(`bench:user:${i}`, valueOf(i));
  return createStorageServer(storage, { port: 0 }).listen();
}

async function unstorageServer(): Promise<string> {
  const storage = createUnstorage({ driver: memory() as Parameters<typeof createUnstorage>[0] extends { driver?: infer D } ? D : never });
  for (let i = 0; i < KEYS; i++) await storage.setItem(`bench:user:${i}`, valueOf(i));
  const server = createServer(createUnstorageServer(storage).handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

async function main(kind: string): Promise<void> {
  if (kind !== "stowage" && kind !== "unstorage") throw new Error(`bench/httpServer: unknown server ${kind}`);
  const send = (message: ServerMessage) => process.send!(message);
  process.on("message", (message) => {
    if (message === "close") process.exit(0);
    if (message === "cpu") {
      const { user, system } = process.cpuUsage();
      send({ cpu: user + system });
    }
  });
  send({ url: kind === "stowage" ? await stowageServer() : await unstorageServer() });
}

// Run as a child process (bench/http.ts forks it); imported, it only lends its constants.
if (process.send !== undefined && process.argv[2] !== undefined) await main(process.argv[2]);
