import { randomBytes } from "node:crypto";
import { createServer, request as httpRequest, Agent, type ClientRequest, type IncomingMessage } from "node:http";
import { appendFileSync, readdirSync, readFileSync, readlinkSync, statSync, truncateSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defineDriver } from "../../src/core/defineDriver.js";
import { createCoreStorage } from "../../src/core/storage.js";
import memory from "../../src/drivers/memory.js";
import fsDriver from "../../src/drivers/fs.js";
import { createStorageServer } from "../../src/server/index.js";
import { eventually } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { send, startServer } from "./helpers.js";

const OCTET = { "content-type": "application/octet-stream" };
const temps = (dir: string) => readdirSync(dir).filter((name) => name.startsWith(".stowage-tmp-"));

/** A PUT whose body the test writes itself (chunked unless a length is given); `answer` settles with the response. */
function openUpload(url: string, path: string, headers: Record<string, string | number> = {}, agent?: Agent) {
  const { hostname, port } = new URL(url);
  let req!: ClientRequest;
  const answer = new Promise<{ status: number; body: string; res: IncomingMessage }>((resolve, reject) => {
    req = httpRequest({ host: hostname, port, method: "PUT", path, headers: { ...OCTET, ...headers }, agent: agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString(), res }));
    });
    req.on("error", reject);
  });
  return { req, answer };
}

/** Writes `data` to a request, waiting for the socket to take it. */
async function write(req: ClientRequest, data: Buffer): Promise<void> {
  if (!req.write(data)) await new Promise((resolve) => req.once("drain", resolve));
}

/** Files under `dir` this process holds open (Linux): the server's among them. */
function openFilesUnder(dir: string): number {
  let count = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) count++;
    } catch (error) {
      // The descriptor closed between listing and reading it: it is not open.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
  return count;
}

/** A raw GET that reads its first chunk, then runs `then` with the response paused; resolves with how the response ended. */
function partialDownload(url: string, path: string, then: (res: IncomingMessage, req: ClientRequest) => void): Promise<"end" | "error" | "close"> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const req = httpRequest({ host: hostname, port, path, headers: { accept: "application/octet-stream" }, agent: false }, (res) => {
      res.once("data", () => {
        res.pause();
        then(res, req);
      });
      res.on("end", () => resolve("end"));
      res.on("error", () => resolve("error"));
      res.on("close", () => resolve("close"));
    });
    req.on("error", () => resolve("error"));
    req.end();
  });
}

describe("storage server: large raw values streamed", () => {
  it("a client that goes away mid-download: the server lets go of the file and keeps serving", async () => {
    const base = tempDir();
    const { url, storage } = await startServer({ driver: fsDriver({ base }) });
    await storage.setItemRaw("big", randomBytes(32 * 1024 * 1024));
    for (let i = 0; i < 5; i++) await partialDownload(url, "/big", (_res, req) => req.destroy());
    await eventually(() => expect(openFilesUnder(base)).toBe(0));
    expect((await send(url, "GET", "/big", { headers: { accept: "application/octet-stream" } })).body.length).toBe(32 * 1024 * 1024);
  });

  it("a client that goes away while the store is slow to yield the next chunk: the stream is let go all the same", async () => {
    let released = 0;
    // A store whose stream yields a chunk every 20 ms: the client leaves between two of them.
    const slow = defineDriver(() => ({
      ...memory(),
      getItemStream: () => ({
        meta: { size: 100 * 1024 },
        body: (async function* () {
          try {
            for (let i = 0; i < 100; i++) {
              yield Buffer.alloc(1024, i);
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          } finally {
            released++;
          }
        })(),
        close: () => Promise.resolve(),
      }),
    }));
    const { url } = await startServer({ driver: slow() });
    for (let i = 0; i < 3; i++) await partialDownload(url, "/slow", (_res, req) => req.destroy());
    await eventually(() => expect(released).toBe(3));
    expect((await send(url, "GET", "/slow", { headers: { accept: "application/octet-stream" } })).body.length).toBe(100 * 1024);
  });

  it("a client that stops reading a download is cut off after idleTimeout, and the file is let go", async () => {
    const base = tempDir();
    const { url, storage } = await startServer({ driver: fsDriver({ base }), idleTimeout: 300 });
    await storage.setItemRaw("big", randomBytes(32 * 1024 * 1024));
    let stalled!: ClientRequest;
    void partialDownload(url, "/big", (_res, req) => (stalled = req));
    await eventually(() => expect(stalled).toBeDefined());
    const since = Date.now();
    expect(openFilesUnder(base)).toBe(1);
    await eventually(() => expect(openFilesUnder(base)).toBe(0));
    expect(Date.now() - since).toBeGreaterThanOrEqual(200);
    stalled.destroy();
  });

  it("a file changed in place during a download: cut short, the client sees a broken answer; grown, it gets the size it was told", async () => {
    const base = tempDir();
    const { url, storage } = await startServer({ driver: fsDriver({ base }) });
    const value = randomBytes(16 * 1024 * 1024);
    await storage.setItemRaw("shrinks", value);
    const shrunk = await partialDownload(url, "/shrinks", (res) => {
      truncateSync(join(base, "shrinks"), 1000);
      res.resume();
    });
    expect(shrunk).not.toBe("end");

    await storage.setItemRaw("grows", value);
    const { hostname, port } = new URL(url);
    const grown = await new Promise<Buffer>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, path: "/grows", headers: { accept: "application/octet-stream" }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.once("data", () => appendFileSync(join(base, "grows"), Buffer.alloc(1024 * 1024, 1)));
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve(Buffer.concat(chunks)));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end();
    });
    expect(grown.equals(value)).toBe(true);
  });

  it("an upload to an fs store is written as it arrives: the temp file grows while the client is still sending", async () => {
    const base = tempDir();
    const { url } = await startServer({ driver: fsDriver({ base }), maxBodySize: 64 * 1024 * 1024 });
    writeFileSync(join(base, "video"), "old");
    const { req, answer } = openUpload(url, "/video");
    const first = randomBytes(4 * 1024 * 1024);
    await write(req, first);
    // The server has 4 MiB and holds at most a few chunks of it: the rest is on disk already, and the key is unchanged.
    await eventually(() => {
      const [temp] = temps(base);
      expect(temp).toBeDefined();
      expect(statSync(join(base, temp!)).size).toBeGreaterThan(3 * 1024 * 1024);
    });
    expect(readFileSync(join(base, "video"), "utf8")).toBe("old");
    const second = randomBytes(3 * 1024 * 1024 + 5);
    await write(req, second);
    req.end();
    expect((await answer).status).toBe(200);
    expect(readFileSync(join(base, "video")).equals(Buffer.concat([first, second]))).toBe(true);
    expect(temps(base)).toEqual([]);
  });

  it("a download from an fs store carries the file's length and bytes, and a 304 for the etag the client has", async () => {
    const base = tempDir();
    const { url, storage } = await startServer({ driver: fsDriver({ base }) });
    const value = randomBytes(5 * 1024 * 1024 + 1);
    await storage.setItemRaw("files:blob", value);
    const got = await send(url, "GET", "/files/blob", { headers: { accept: "application/octet-stream" } });
    expect(got.status).toBe(200);
    expect(got.headers["content-type"]).toBe("application/octet-stream");
    expect(Number(got.headers["content-length"])).toBe(value.length);
    expect(got.headers["last-modified"]).toBe(statSync(join(base, "files", "blob")).mtime.toUTCString());
    expect(got.body.equals(value)).toBe(true);
    expect((await send(url, "GET", "/files/missing", { headers: { accept: "application/octet-stream" } })).status).toBe(404);

    const cas = await startServer();
    await cas.storage.setItemRaw("blob", value);
    const first = await send(cas.url, "GET", "/blob", { headers: { accept: "application/octet-stream" } });
    const etag = first.headers.etag!;
    expect(etag).toBeDefined();
    const again = await send(cas.url, "GET", "/blob", { headers: { accept: "application/octet-stream", "if-none-match": etag } });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
  });

  it("a client that goes away mid-upload leaves the old value and no temp file", async () => {
    const base = tempDir();
    const { url, storage } = await startServer({ driver: fsDriver({ base }), maxBodySize: 64 * 1024 * 1024 });
    await storage.setItemRaw("doc", Buffer.from("old"));
    const { req, answer } = openUpload(url, "/doc");
    answer.catch(() => undefined);
    await write(req, randomBytes(2 * 1024 * 1024));
    await eventually(() => expect(temps(base).length).toBe(1));
    req.destroy();
    await eventually(() => expect(temps(base)).toEqual([]));
    expect(Buffer.from((await storage.getItemRaw("doc"))!).toString()).toBe("old");
    expect((await send(url, "GET", "/doc")).status).toBe(200);
  });

  it("an upload that passes maxBodySize while it streams: 413, the old value kept, no temp file", async () => {
    const base = tempDir();
    const { url, storage } = await startServer({ driver: fsDriver({ base }), maxBodySize: 1024 * 1024 });
    await storage.setItemRaw("doc", Buffer.from("old"));
    const { req, answer } = openUpload(url, "/doc");
    req.on("error", () => undefined);
    const pump = async () => {
      for (let i = 0; i < 64 && !req.destroyed; i++) await write(req, Buffer.alloc(64 * 1024, 1));
    };
    void pump().catch(() => undefined);
    const { status, body } = await answer;
    req.destroy();
    expect(status).toBe(413);
    expect(JSON.parse(body)).toMatchObject({ code: "E_TOO_LARGE" });
    expect(Buffer.from((await storage.getItemRaw("doc"))!).toString()).toBe("old");
    await eventually(() => expect(temps(base)).toEqual([]));
  });

  it("over a store that cannot stream (memory): the upload is gathered, x-ttl and If-Match still apply", async () => {
    const { url, storage } = await startServer({ maxBodySize: 64 * 1024 * 1024 });
    const value = randomBytes(1024 * 1024);
    const created = openUpload(url, "/blob", { "x-ttl": 60, "if-none-match": "*" });
    await write(created.req, value);
    created.req.end();
    expect((await created.answer).status).toBe(200);
    expect(Buffer.from((await storage.getItemRaw("blob"))!).equals(value)).toBe(true);
    const meta = await storage.getMeta("blob");
    expect(meta.ttl).toBeGreaterThan(59_000);
    const stale = openUpload(url, "/blob", { "if-match": '"not-the-etag"' });
    await write(stale.req, randomBytes(200_000));
    stale.req.end();
    expect((await stale.answer).status).toBe(412);
    expect(Buffer.from((await storage.getItemRaw("blob"))!).equals(value)).toBe(true);
  });

  it("the connection stays open after a streamed upload: the next request on it is served", async () => {
    const base = tempDir();
    const { url } = await startServer({ driver: fsDriver({ base }) });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const value = randomBytes(1024 * 1024);
      const upload = openUpload(url, "/kept", {}, agent);
      await write(upload.req, value);
      upload.req.end();
      const { status, res } = await upload.answer;
      expect(status).toBe(200);
      expect(res.headers.connection).toBe("keep-alive");
      const { hostname, port } = new URL(url);
      const reused = await new Promise<{ reusedSocket: boolean; body: Buffer }>((resolve, reject) => {
        const req = httpRequest({ host: hostname, port, path: "/kept", headers: { accept: "application/octet-stream" }, agent }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => resolve({ reusedSocket: req.reusedSocket, body: Buffer.concat(chunks) }));
        });
        req.on("error", reject);
        req.end();
      });
      expect(reused.reusedSocket).toBe(true);
      expect(reused.body.equals(value)).toBe(true);
    } finally {
      agent.destroy();
    }
  });

  it("the handler mounted in a server of your own streams uploads too, under the same limit", async () => {
    const base = tempDir();
    const storage = createCoreStorage({ driver: fsDriver({ base }) });
    const storageServer = createStorageServer(storage, { maxBodySize: 2 * 1024 * 1024 });
    const own = createServer((req, res) => void storageServer.handle(req, res));
    await new Promise<void>((resolve) => own.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
    try {
      const value = randomBytes(1024 * 1024 + 3);
      const upload = openUpload(url, "/mine");
      await write(upload.req, value);
      upload.req.end();
      expect((await upload.answer).status).toBe(200);
      expect(readFileSync(join(base, "mine")).equals(value)).toBe(true);
      const tooBig = openUpload(url, "/mine");
      tooBig.req.on("error", () => undefined);
      void (async () => {
        for (let i = 0; i < 64 && !tooBig.req.destroyed; i++) await write(tooBig.req, Buffer.alloc(64 * 1024, 2));
      })().catch(() => undefined);
      expect((await tooBig.answer).status).toBe(413);
      tooBig.req.destroy();
      expect(readFileSync(join(base, "mine")).equals(value)).toBe(true);
      await eventually(() => expect(temps(base)).toEqual([]));
    } finally {
      own.closeAllConnections();
      await new Promise((resolve) => own.close(resolve));
    }
  });
});
