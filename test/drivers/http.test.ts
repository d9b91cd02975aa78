import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createStorage as createUnstorage } from "unstorage";
import { createStorageServer as createUnstorageServer } from "unstorage/server";
import { afterAll, describe, expect, it, vi } from "vitest";
import { isStorageError, type StorageError } from "../../src/core/errors.js";
import { createCoreStorage } from "../../src/core/storage.js";
import gitNotes from "../../src/drivers/git-notes.js";
import http, { type HttpOptions } from "../../src/drivers/http.js";
import { testDriver } from "../../src/testing/index.js";
import { startServer } from "../server/helpers.js";
import { tempDir } from "../helpers/tempDir.js";

// The kit's 10,000-key test is 10,000+ HTTP requests (two per key against unstorage's
// server, where the core keeps TTL in sidecars): slow on a loaded 2-core machine, not stuck.
vi.setConfig({ testTimeout: 120_000 });

const servers: Server[] = [];

/** A node:http server on an ephemeral loopback port, closed when the file ends. */
async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

afterAll(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** unstorage's own server (h3) over unstorage's memory driver. */
async function unstorageServer(): Promise<string> {
  const { handle } = createUnstorageServer(createUnstorage());
  return listen(createServer(handle));
}

// A stowage server keeps meta sidecars (key$) out of clients' reach: setMeta is E_UNSUPPORTED (tested below).
testDriver({
  name: "http driver against a stowage server (memory)",
  driver: async () => http({ base: (await startServer()).url }),
  skip: ["meta: setMeta, getMeta, removeMeta"],
});

// unstorage's server stores a string body verbatim and reads it back with destr, so the
// string "456" comes back as the number 456: unstorage's behaviour, not the driver's.
testDriver({
  name: "http driver against unstorage's server",
  driver: async () => http({ base: await unstorageServer(), server: "unstorage" }),
  skip: ["keeps strings and rich values exact"],
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<StorageError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(isStorageError(error), String(error)).toBe(true);
  expect((error as StorageError).code).toBe(code);
  return error as StorageError;
}

describe("http driver", () => {
  it("a refused connection is E_UNAVAILABLE", async () => {
    const url = await listen(createServer());
    const dead = servers.pop()!;
    await new Promise((resolve) => dead.close(resolve));
    const storage = createCoreStorage({ driver: http({ base: url, retries: 1 }) });
    await expectCode(storage.getItem("k"), "E_UNAVAILABLE");
    await expectCode(storage.setItem("k", 1), "E_UNAVAILABLE");
  });

  it("a server that never answers is E_UNAVAILABLE within the timeout, never a hang", async () => {
    // Accepts connections, reads requests, answers nothing.
    const silent = createServer(() => undefined);
    const url = await listen(silent);
    const storage = createCoreStorage({ driver: http({ base: url, timeout: 300 }) });
    const started = Date.now();
    const error = await expectCode(storage.getItem("k"), "E_UNAVAILABLE");
    expect(error.message).toMatch(/no answer within 300 ms/);
    expect(Date.now() - started).toBeLessThan(5000);
    // A burst beyond the connection limit drains once the server is known to be silent.
    const burst = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => storage.hasItem(`k${i}`)));
    expect(burst.every((result) => result.status === "rejected")).toBe(true);
  });

  it("retries idempotent requests on 503, never a conditional write", async () => {
    const { server: target, storage: remote } = await startServer();
    await remote.setItem("k", "v");
    let failures = 2;
    let seen = 0;
    const flaky = createServer((req, res) => {
      seen++;
      if (failures-- > 0) {
        res.writeHead(503, { "content-type": "application/json" });
        return void res.end('{"code":"E_UNAVAILABLE","message":"busy"}');
      }
      void target.handle(req, res);
    });
    const storage = createCoreStorage({ driver: http({ base: await listen(flaky), retries: 3 }) });
    expect(await storage.getItem("k")).toBe("v");
    expect(seen).toBe(3);
    failures = 1;
    seen = 0;
    const { etag } = await remote.getMeta("k");
    await expectCode(storage.setItem("k", "w", { ifMatch: etag }), "E_UNAVAILABLE");
    expect(seen).toBe(1);
    expect(await remote.getItem("k")).toBe("v");
  });

  it("sends its headers option with every request", async () => {
    const { url } = await startServer({ authorize: ({ request }) => request.headers["x-tenant"] === "acme" });
    const tenant = createCoreStorage({ driver: http({ base: url, headers: { "x-tenant": "acme" } }) });
    await tenant.setItem("k", 1);
    expect(await tenant.getItem("k")).toBe(1);
    expect(await tenant.getKeys()).toEqual(["k"]);
    const stranger = createCoreStorage({ driver: http({ base: url }) });
    expect((await expectCode(stranger.getItem("k"), "E_DRIVER")).message).toMatch(/403/);
  });

  it("token, read-only server and body limit map to errors", async () => {
    const { url } = await startServer({ token: "t0ken", maxBodySize: 1000 });
    const good = createCoreStorage({ driver: http({ base: url, token: "t0ken" }) });
    await good.setItem("k", 1);
    expect(await good.getItem("k")).toBe(1);
    await expectCode(good.setItemRaw("big", new Uint8Array(5000)), "E_TOO_LARGE");
    const bad = createCoreStorage({ driver: http({ base: url, token: "wrong" }) });
    expect((await expectCode(bad.getItem("k"), "E_DRIVER")).message).toMatch(/401.*token/);

    const readOnly = await startServer({ readOnly: true });
    const reader = createCoreStorage({ driver: http({ base: readOnly.url }) });
    await expectCode(reader.setItem("k", 1), "E_READONLY");
  });

  it("ttl travels as x-ttl seconds and keeps milliseconds", async () => {
    const { url, storage: remote } = await startServer();
    const storage = createCoreStorage({ driver: http({ base: url }) });
    await storage.setItem("k", 1, { ttl: 1500 });
    const meta = await remote.getMeta("k");
    expect(meta.ttl).toBeGreaterThan(1000);
    expect(meta.ttl).toBeLessThanOrEqual(1500);
    const seen = await storage.getMeta("k");
    expect(seen.ttl).toBeLessThanOrEqual(1500);
    expect(seen.expires).toBeInstanceOf(Date);
  });

  it("x-ttl goes as plain decimal seconds: no exponent, at most 3 decimals, a fraction of a millisecond rounded up", async () => {
    const sent: (string | undefined)[] = [];
    const recorder = createServer((req, res) => {
      sent.push(req.headers["x-ttl"] as string | undefined);
      req.resume();
      res.end("OK");
    });
    const storage = createCoreStorage({ driver: http({ base: await listen(recorder) }) });
    for (const ttl of [0.5, 1001.25, 60_050, 3_600_000, 1e13]) await storage.setItem("k", 1, { ttl });
    expect(sent).toEqual(["0.001", "1.002", "60.05", "3600", "10000000000"]);
  });

  it("refuses unknown and malformed options with E_INVALID_OPTION, and declares its key limits", () => {
    const refused = (options: Record<string, unknown>) => {
      try {
        http({ base: "http://127.0.0.1:1/", ...options } as HttpOptions);
      } catch (error) {
        return isStorageError(error, "E_INVALID_OPTION") ? error.message : `not E_INVALID_OPTION: ${String(error)}`;
      }
      return "accepted";
    };
    expect(refused({ maxBodySiz: 10 })).toMatch(/unknown option maxBodySiz/);
    expect(refused({ token: "" })).toMatch(/token/);
    expect(refused({ timeout: -1 })).toMatch(/timeout/);
    expect(refused({ retries: 1.5 })).toMatch(/retries/);
    expect(refused({ concurrency: 0 })).toMatch(/concurrency/);
    expect(refused({ maxBodySize: 0 })).toMatch(/maxBodySize/);
    expect(refused({ maxBodySize: 2 ** 40 })).toMatch(/maxBodySize/);
    expect(refused({ server: "h3" })).toMatch(/server/);
    expect(refused({ headers: "x-tenant: acme" })).toMatch(/headers/);
    expect(refused({ headers: { "x-tenant": 1 } })).toMatch(/x-tenant/);
    expect(refused({ headers: { "x-tenant": "a\r\nx-evil: 1" } })).toMatch(/x-tenant/);
    expect(refused({ headers: { "bad name": "1" } })).toMatch(/bad name/);
    expect(refused({ etag: "hash" })).toMatch(/etag/);
    expect(refused({ etag: "version", server: "unstorage" })).toMatch(/etag/);
    expect(http({ base: "http://127.0.0.1:1/" }).flags?.etag).toBe("version");
    expect(http({ base: "http://127.0.0.1:1/", etag: "content" }).flags?.etag).toBe("content");
    expect(http({ base: "http://127.0.0.1:1/", server: "unstorage" }).flags?.etag).toBeUndefined();
    expect(refused({ maxBodySize: 1024, timeout: 50, retries: 0, concurrency: 1, server: "unstorage" })).toBe("accepted");
    expect(http({ base: "http://127.0.0.1:1/" }).keyLimits).toEqual({ bytes: 4096, segments: 1024 });
  });

  it('etag: "content" over a server on git notes: the same value keeps its etag, another value gets another, the old one conflicts', async () => {
    // The server hands on its store's etags (here blob ids); the option declares what they are.
    const { url } = await startServer({ driver: gitNotes({ dir: tempDir("http-git-notes-etag") }) });
    const storage = createCoreStorage({ driver: http({ base: url, etag: "content" }) });
    expect(storage.getMount().driver.flags?.etag).toBe("content");
    const etags: unknown[] = [];
    for (const value of ["same", "same", "other"]) {
      await storage.setItem("k", value);
      etags.push((await storage.getMeta("k")).etag);
    }
    expect(typeof etags[0]).toBe("string");
    expect(etags[1]).toBe(etags[0]);
    expect(etags[2]).not.toBe(etags[0]);
    await expectCode(storage.setItem("k", "third", { ifMatch: etags[0] as string }), "E_CONFLICT");
    expect(await storage.getItem("k")).toBe("other");
    await storage.dispose();
  });

  it("a key at the byte limit, every byte percent-encoded, fits the server's request line", async () => {
    const { url, storage: remote } = await startServer();
    const storage = createCoreStorage({ driver: http({ base: url }) });
    // 1,365 three-byte characters: 4,095 bytes, 12,285 characters of URL.
    const key = "€".repeat(1365);
    await storage.setItem(key, "long");
    expect(await storage.getItem(key)).toBe("long");
    expect(await remote.getItem(key)).toBe("long");
    expect(await storage.getKeys()).toEqual([key]);
  });

  it("setMeta is E_UNSUPPORTED against a stowage server: meta sidecars are out of clients' reach", async () => {
    const { url, storage: remote } = await startServer();
    const storage = createCoreStorage({ driver: http({ base: url }) });
    await storage.setItem("k", "v", { ttl: 60_000 });
    await expectCode(storage.setMeta("k", { expires: 1 }), "E_UNSUPPORTED");
    expect((await storage.getMeta("k")).ttl).toBeGreaterThan(50_000);
    await storage.removeItem("k", { removeMeta: true });
    expect(await remote.hasItem("k")).toBe(false);
  });

  it("maxBodySize bounds what is read whole: E_TOO_LARGE for a huge or endless answer, streams stay streams", async () => {
    const sent = new Map<string, number>();
    // Answers every GET with an endless chunked body (or a huge declared one), counting what it managed to send.
    const flood = createServer((req, res) => {
      const declared = req.url === "/declared";
      res.writeHead(200, declared ? { "content-length": String(2 ** 40) } : { "content-type": "application/json" });
      const chunk = Buffer.alloc(64 * 1024, declared ? 120 : 32);
      let bytes = 0;
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) bytes += chunk.length;
        sent.set(req.url!, bytes);
      };
      res.on("drain", pump);
      pump();
    });
    const url = await listen(flood);
    const storage = createCoreStorage({ driver: http({ base: url, maxBodySize: 1024 * 1024, retries: 0 }) });
    const before = process.memoryUsage().rss;
    const declared = await expectCode(storage.getItem("declared"), "E_TOO_LARGE");
    expect(declared.message).toMatch(/maxBodySize \(1048576 bytes\)/);
    await expectCode(storage.getItem("endless"), "E_TOO_LARGE");
    await expectCode(storage.getItemRaw("endless-raw"), "E_TOO_LARGE");
    await expectCode(storage.getKeys("listing"), "E_TOO_LARGE");
    expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
    // A stream is not bounded: it reads 4 MiB, past the limit, and lets go.
    const opened = (await storage.getItemStream("streamed"))!;
    let read = 0;
    for await (const chunk of opened.body) {
      read += chunk.byteLength;
      if (read > 4 * 1024 * 1024) break;
    }
    await opened.close();
    expect(read).toBeGreaterThan(4 * 1024 * 1024);
  });

  it("a value over maxBodySize: its meta and a stream still come, a whole read is E_TOO_LARGE and leaves the driver usable", async () => {
    const { url, storage: remote } = await startServer();
    await remote.setItemRaw("big", new Uint8Array(5000).fill(7));
    await remote.setItem("small", "ok");
    const storage = createCoreStorage({ driver: http({ base: url, maxBodySize: 1024 }) });
    // A HEAD's Content-Length is the value's size, with no body to bound.
    expect(await storage.hasItem("big")).toBe(true);
    expect((await storage.getMeta("big")).size).toBe(5000);
    await expectCode(storage.getItemRaw("big"), "E_TOO_LARGE");
    const opened = (await storage.getItemStream("big"))!;
    let read = 0;
    for await (const chunk of opened.body) read += chunk.byteLength;
    expect(read).toBe(5000);
    expect(await storage.getItem("small")).toBe("ok");
  });

    it("a listing that is not a JSON array of keys is E_CORRUPT, not an empty store", async () => {
    const bodies = ['{"keys":["a"]}', '["a",1]', "null", "[not json"];
    const liar = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(bodies.shift());
    });
    const storage = createCoreStorage({ driver: http({ base: await listen(liar), retries: 0 }) });
    for (let i = 0; i < 4; i++) await expectCode(storage.getKeys(), "E_CORRUPT");
  });

    it("an error answer with a huge body is its status, not a hang or a memory spike", async () => {
    const flood = createServer((_req, res) => {
      res.writeHead(503, { "content-type": "application/json" });
      const chunk = Buffer.alloc(64 * 1024, 123);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on("drain", pump);
      pump();
    });
    const storage = createCoreStorage({ driver: http({ base: await listen(flood), retries: 0 }) });
    await expectCode(storage.getItem("k"), "E_UNAVAILABLE");
  });

  it("a server over an unreachable store answers 503, which the client sees as E_UNAVAILABLE", async () => {
    const url = await listen(createServer());
    const dead = servers.pop()!;
    await new Promise((resolve) => dead.close(resolve));
    const { url: front } = await startServer({ driver: http({ base: url, retries: 0, timeout: 500 }) });
    const storage = createCoreStorage({ driver: http({ base: front, retries: 0 }) });
    await expectCode(storage.getItem("k"), "E_UNAVAILABLE");
  });
});
