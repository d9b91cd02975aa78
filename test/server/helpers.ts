import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { afterAll } from "vitest";
import { createCoreStorage } from "../../src/core/storage.js";
import type { Driver, Storage } from "../../src/core/types.js";
import memory from "../../src/drivers/memory.js";
import { createStorageServer, type StorageServer, type StorageServerOptions } from "../../src/server/index.js";

const running: StorageServer[] = [];

/** A stowage server on an ephemeral loopback port over `driver` (default memory), closed when the file ends. */
export async function startServer(
  options: StorageServerOptions & { driver?: Driver } = {},
): Promise<{ server: StorageServer; storage: Storage; url: string }> {
  const { driver, ...serverOptions } = options;
  const storage = createCoreStorage({ driver: driver ?? memory() });
  const server = createStorageServer(storage, { ...serverOptions, port: 0 });
  running.push(server);
  const url = await server.listen();
  return { server, storage, url };
}

afterAll(async () => {
  await Promise.all(running.splice(0).map((server) => server.close()));
});

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request through node:http with the path sent exactly as given (fetch
 * would normalize `..` and percent-encodings away).
 */
export function send(
  url: string,
  method: string,
  path: string,
  options: { headers?: Record<string, string | number>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: hostname, port, method, path, headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}
