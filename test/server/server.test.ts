import { randomBytes } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import { connect } from "node:net";
import type { AddressInfo, Socket } from "node:net";
import { describe, expect, it, vi } from "vitest";
import { defineDriver } from "../../src/core/defineDriver.js";
import { StorageError } from "../../src/core/errors.js";
import { prefixStorage } from "../../src/core/prefix.js";
import { richSerializer } from "../../src/core/serializer.js";
import { createCoreStorage } from "../../src/core/storage.js";
import http from "../../src/drivers/http.js";
import fsDriver from "../../src/drivers/fs.js";
import memory from "../../src/drivers/memory.js";
import { createStorageServer, type StorageServer } from "../../src/server/index.js";
import { eventually } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { send, startServer } from "./helpers.js";

const json = (body: Buffer) => JSON.parse(body.toString("utf8")) as unknown;

describe("storage server: unstorage's protocol", () => {
  it("PUT, GET, HEAD, DELETE and listings on bases ending in : or /", async () => {
    const { url, storage } = await startServer();
    expect((await send(url, "PUT", "/users/ada", { body: '{"name":"Ada"}' })).status).toBe(200);
    await send(url, "PUT", "/users/bob", { body: "plain text" });
    await send(url, "PUT", "/other", { body: "1" });
    expect(await storage.getItem("users:ada")).toEqual({ name: "Ada" });
    expect(await storage.getItem("users:bob")).toBe("plain text");

    const got = await send(url, "GET", "/users:ada");
    expect(got.status).toBe(200);
    expect(got.body.toString()).toBe('{"name":"Ada"}');
    expect(got.headers["content-type"]).toBe("text/plain; charset=utf-8");
    expect((await send(url, "GET", "/users/bob")).body.toString()).toBe('"plain text"');

    expect(json((await send(url, "GET", "/users/")).body)).toEqual(["users/ada", "users/bob"]);
    expect(json((await send(url, "GET", "/users:")).body)).toEqual(["users/ada", "users/bob"]);
    expect((json((await send(url, "GET", "/")).body) as string[]).sort()).toEqual(["other", "users/ada", "users/bob"]);

    expect((await send(url, "HEAD", "/users/ada")).status).toBe(200);
    expect((await send(url, "HEAD", "/users/nobody")).status).toBe(404);
    const missing = await send(url, "GET", "/users/nobody");
    expect(missing.status).toBe(404);
    expect(json(missing.body)).toMatchObject({ code: "E_NOT_FOUND" });

    expect((await send(url, "DELETE", "/users/ada")).status).toBe(200);
    expect(await storage.hasItem("users:ada")).toBe(false);
    expect((await send(url, "DELETE", "/users/")).status).toBe(200);
    expect(await storage.getKeys()).toEqual(["other"]);
  });

  it("raw bytes with application/octet-stream, streamed out in chunks", async () => {
    const { url, storage } = await startServer({ maxBodySize: 64 * 1024 * 1024 });
    const big = randomBytes(20 * 1024 * 1024);
    const put = await send(url, "PUT", "/blob", { body: big, headers: { "content-type": "application/octet-stream" } });
    expect(put.status).toBe(200);
    expect(Buffer.from((await storage.getItemRaw("blob"))!).equals(big)).toBe(true);
    const got = await send(url, "GET", "/blob", { headers: { accept: "application/octet-stream" } });
    expect(got.headers["content-type"]).toBe("application/octet-stream");
    expect(Number(got.headers["content-length"])).toBe(big.length);
    expect(got.body.equals(big)).toBe(true);
  });

  it("x-ttl in seconds on writes, and in meta headers", async () => {
    const { url, storage } = await startServer();
    await send(url, "PUT", "/session", { body: "x", headers: { "x-ttl": "60" } });
    const meta = await storage.getMeta("session");
    expect(meta.ttl).toBeGreaterThan(59_000);
    expect(meta.ttl).toBeLessThanOrEqual(60_000);
    const head = await send(url, "HEAD", "/session");
    expect(Number(head.headers["x-ttl"])).toBeGreaterThan(59);
    expect(head.headers["cache-control"]).toMatch(/^max-age=(59|60)$/);
    await send(url, "PUT", "/short", { body: "x", headers: { "x-ttl": "0.25" } });
    expect((await storage.getMeta("short")).ttl).toBeLessThanOrEqual(250);
    expect((await send(url, "PUT", "/bad", { body: "x", headers: { "x-ttl": "soon" } })).status).toBe(400);
  });

  it("last-modified from the store's mtime", async () => {
    const { url } = await startServer({ driver: fsDriver({ base: tempDir("server-fs") }) });
    await send(url, "PUT", "/a", { body: "1" });
    const head = await send(url, "HEAD", "/a");
    expect(Date.now() - Date.parse(head.headers["last-modified"]!)).toBeLessThan(60_000);
  });
});

describe("storage server: stored text in and out", () => {
  it("GET answers stored JSON text as stored; other text through the serializer", async () => {
    const driver = memory();
    const { url, storage } = await startServer({ driver });
    // Written past the serializer, as another tool would: spaced JSON, a bare string (unstorage's way), a rich value.
    await driver.setItem!("spaced", '{ "b": 1, "a": [1, 2] }', {});
    await driver.setItem!("bare", "hello", {});
    await storage.setItem("when", new Date(0));
    expect((await send(url, "GET", "/spaced")).body.toString()).toBe('{ "b": 1, "a": [1, 2] }');
    expect((await send(url, "GET", "/bare")).body.toString()).toBe('"hello"');
    const when = (await send(url, "GET", "/when")).body.toString();
    expect(when).toBe(await driver.getItem("when", {}));
    const client = createCoreStorage({ driver: http({ base: url }) });
    expect(await client.getItem("when")).toEqual(new Date(0));
    expect(await client.getItem("spaced")).toEqual({ b: 1, a: [1, 2] });
  });

  it("PUT stores JSON text as sent; a bare string and a tagged envelope go through the serializer", async () => {
    const driver = memory();
    const { url, storage } = await startServer({ driver });
    await send(url, "PUT", "/spaced", { body: '{ "a": 1 }' });
    expect(await driver.getItem("spaced", {})).toBe('{ "a": 1 }');
    expect(await storage.getItem("spaced")).toEqual({ a: 1 });
    await send(url, "PUT", "/bare", { body: "hello" });
    expect(await driver.getItem("bare", {})).toBe('"hello"');
    const envelope = richSerializer.serialize(new Map([["k", 1]]));
    await send(url, "PUT", "/map", { body: envelope });
    expect(await storage.getItem("map")).toEqual(new Map([["k", 1]]));
    const broken = await send(url, "PUT", "/broken", { body: '{"$stowage":1,"json":{},"meta":{"values":"nonsense"}}' });
    expect(broken.status).toBe(400);
    expect(json(broken.body)).toMatchObject({ code: "E_INVALID_VALUE", message: expect.stringContaining("Malformed $stowage envelope") });
    expect(await storage.hasItem("broken")).toBe(false);
  });

  it("any PUT body reads back as the value the serializer makes of it, whether stored as sent or through the serializer", async () => {
    const driver = memory();
    const { url, storage } = await startServer({ driver });
    const bodies = [
      '{"name":"Ada","tags":["a","b"],"n":-1.5e3}',
      "a sentence that is not JSON at all",
      '{"truncated": [1, 2, 3',
      '"a"b" quoted, but not one JSON string"',
      "   -Infinity   ",
      "  UNDEFINED  ",
      "NaN",
      '{"nested":{"$stowage":1},"x":"fine"}',
      '{"\u0024stowage":1,"json":"escaped marker key","meta":{}}',
      '"caf\u00e9 and more than sixteen characters"',
      "1234567890123456789012345",
      "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]",
      "undefined          ",
      "\n\t   NULL   \t\n  \n",
      "a NUL \0 inside a sentence",
      "base64:aGVsbG8gd29ybGQgYWdhaW4=",
    ];
    for (const [i, body] of bodies.entries()) {
      const expected = richSerializer.deserialize(body);
      const put = await send(url, "PUT", `/v${i}`, { body });
      expect(put.status, body).toBe(200);
      if (expected === undefined) {
        // destr's "undefined": a write of undefined is a removal.
        expect(await storage.hasItem(`v${i}`), body).toBe(false);
        continue;
      }
      expect(await storage.getItem(`v${i}`), body).toEqual(expected);
      const got = await send(url, "GET", `/v${i}`);
      expect(richSerializer.deserialize(got.body.toString("utf8")), body).toEqual(expected);
    }
    // A long body that is not JSON is stored verbatim, as unstorage stores a string.
    expect(await driver.getItem("v1", {})).toBe("a sentence that is not JSON at all");
    // Text a store could refuse (a NUL) goes through the serializer, which escapes it.
    expect(await driver.getItem("v14", {})).not.toContain("\0");
    // Text that a raw read would take for base64 bytes is stored as a string, not as the bytes.
    expect(Buffer.from((await storage.getItemRaw("v15"))!).toString()).not.toBe("hello world again");
  });

  it("a driver without native expiry: the core's TTL holds on the direct path", async () => {
    const { url } = await startServer({ driver: fsDriver({ base: tempDir("server-ttl") }) });
    // A TTL a loaded machine cannot outrun between the PUT and the first GET; the expiry itself is waited for.
    await send(url, "PUT", "/short", { body: '{"a":1}', headers: { "x-ttl": "1" } });
    expect((await send(url, "GET", "/short")).body.toString()).toBe('{"a":1}');
    await eventually(async () => expect((await send(url, "GET", "/short")).status).toBe(404), 5_000);
  });

  it("a Storage that is not stowage's own (a prefixed view) is served through the public API", async () => {
    const storage = createCoreStorage({ driver: memory() });
    const server = createStorageServer(prefixStorage(storage, "app"), { port: 0 });
    const url = await server.listen();
    try {
      expect((await send(url, "PUT", "/k", { body: '{"a":1}' })).status).toBe(200);
      expect(await storage.getItem("app:k")).toEqual({ a: 1 });
      const got = await send(url, "GET", "/k");
      expect(got.body.toString()).toBe('{"a":1}');
      expect(got.headers.etag).toMatch(/^".+"$/);
      expect((await send(url, "GET", "/k", { headers: { accept: "application/octet-stream" } })).body.toString()).toBe('{"a":1}');
    } finally {
      await server.close();
    }
  });

  it("answers finished in the same turn go out together, each on its own connection", async () => {
    const { url, storage } = await startServer();
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    await storage.setItems(keys.map((key, i) => ({ key, value: { i } })));
    const answers = await Promise.all(keys.map((key) => send(url, "GET", `/${key}`)));
    expect(answers.map((answer) => json(answer.body))).toEqual(keys.map((_, i) => ({ i })));
    const writes = await Promise.all(keys.map((key, i) => send(url, "PUT", `/${key}`, { body: String(-i) })));
    expect(writes.every((answer) => answer.status === 200 && answer.body.toString() === "OK")).toBe(true);
    expect(await storage.getItem("k99")).toBe(-99);
  });

  it("requests pipelined on one connection run in order: a GET right behind two PUTs sees the second's value", async () => {
    const { url } = await startServer();
    for (let round = 0; round < 20; round++) {
      const first = JSON.stringify({ round });
      const second = JSON.stringify({ round, again: true });
      // The second PUT's body is parsed before its turn comes, in two chunks: the server must keep it whole until then.
      const half = Math.floor(second.length / 2);
      const chunked = `${half.toString(16)}\r\n${second.slice(0, half)}\r\n${(second.length - half).toString(16)}\r\n${second.slice(half)}\r\n0\r\n\r\n`;
      const wire =
        `PUT /p${round} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${Buffer.byteLength(first)}\r\n\r\n${first}` +
        `PUT /p${round} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}` +
        `GET /p${round} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` +
        `DELETE /p${round} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n` +
        `GET /p${round} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
      const responses = (await exchange(url, wire)).split(/(?=HTTP\/1\.1 )/);
      expect(responses.map((response) => response.slice(9, 12))).toEqual(["200", "200", "200", "200", "404"]);
      expect(responses[2]!.endsWith(`\r\n\r\n${second}`)).toBe(true);
    }
  });
});

/** A driver over a Map whose writes to keys starting with `slow` wait for `gate`: a request that stays in flight. */
const gated = defineDriver((gate: Promise<void>) => {
  const data = new Map<string, string>();
  return {
    name: "gated",
    hasItem: (key: string) => data.has(key),
    getItem: (key: string) => data.get(key) ?? null,
    setItem: async (key: string, value: string) => {
      if (key.startsWith("slow")) await gate;
      data.set(key, value);
    },
    removeItem: (key: string) => void data.delete(key),
    getKeys: () => [...data.keys()],
  };
});

/** The server side of each connection a server accepts. */
function acceptedSockets(server: StorageServer): Socket[] {
  const sockets: Socket[] = [];
  server.server.on("connection", (socket: Socket) => sockets.push(socket));
  return sockets;
}

/** Sends `wire` on one connection and resolves with everything the server answers until it closes. */
function exchange(url: string, wire: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1", () => socket.end(wire));
    const chunks: Buffer[] = [];
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    socket.on("error", reject);
  });
}

describe("storage server: pipelined bodies", () => {
  it("a body pipelined behind a request still in flight is not read past a small buffer until its turn", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { url, server, storage } = await startServer({ driver: gated(gate) });
    const sockets = acceptedSockets(server);
    const big = "x".repeat(4 * 1024 * 1024);
    const wire =
      "PUT /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n1" +
      `PUT /big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${big.length}\r\nConnection: close\r\n\r\n${big}`;
    const answered = exchange(url, wire);
    // Give the client time to send as much as the server will take.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.bytesRead).toBeLessThan(512 * 1024);
    expect(await storage.hasItem("big")).toBe(false);
    open();
    const responses = (await answered).split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((response) => response.slice(9, 12))).toEqual(["200", "200"]);
    expect(sockets[0]!.bytesRead).toBeGreaterThan(big.length);
    expect(await storage.getItem("big")).toBe(big);
    expect(await storage.getItem("slow")).toBe(1);
  });
  it("a request whose body stalled the connection and is refused before it is read leaves the connection reading", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { url } = await startServer({ driver: gated(gate) });
    const socket = connect(Number(new URL(url).port), "127.0.0.1");
    let received = "";
    const answers = (count: number) =>
      new Promise<string[]>((resolve, reject) => {
        const check = () => {
          const responses = received.split(/(?=HTTP\/1\.1 )/).filter(Boolean);
          if (responses.length >= count) {
            socket.off("data", onData);
            resolve(responses.map((response) => response.slice(9, 12)));
          }
        };
        const onData = (chunk: Buffer) => {
          received += chunk.toString("latin1");
          check();
        };
        socket.on("data", onData);
        socket.once("error", reject);
        check();
      });
    // A whole 20 KiB body behind a write in flight: it stalls the connection, then its key is refused (400) unread.
    socket.write(`PUT /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n1PUT /a/../b HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20480\r\n\r\n${"z".repeat(20480)}`);
    const first = answers(2);
    await new Promise((resolve) => setTimeout(resolve, 100));
    open();
    expect(await first).toEqual(["200", "400"]);
    // A request sent afterwards on the same connection is read and answered.
    received = "";
    socket.write("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    const late = await Promise.race([answers(1), new Promise<string[]>((resolve) => setTimeout(() => resolve(["none"]), 2000))]);
    socket.destroy();
    expect(late).toEqual(["200"]);
  });
});

describe("storage server: ETags and conditional writes", () => {
  it("ETag on GET and HEAD; If-Match and If-None-Match: * on PUT and DELETE; 412 on conflict", async () => {
    const { url, storage } = await startServer();
    expect((await send(url, "PUT", "/k", { body: "1", headers: { "if-none-match": "*" } })).status).toBe(200);
    expect((await send(url, "PUT", "/k", { body: "2", headers: { "if-none-match": "*" } })).status).toBe(412);
    const etag = (await send(url, "GET", "/k")).headers.etag!;
    expect(etag).toMatch(/^".+"$/);
    expect((await send(url, "HEAD", "/k")).headers.etag).toBe(etag);
    expect((await send(url, "GET", "/k", { headers: { "if-none-match": etag } })).status).toBe(304);

    expect((await send(url, "PUT", "/k", { body: "2", headers: { "if-match": etag } })).status).toBe(200);
    const stale = await send(url, "PUT", "/k", { body: "3", headers: { "if-match": etag } });
    expect(stale.status).toBe(412);
    expect(json(stale.body)).toMatchObject({ code: "E_CONFLICT" });
    expect((await send(url, "DELETE", "/k", { headers: { "if-match": etag } })).status).toBe(412);
    expect(await storage.getItem("k")).toBe(2);

    expect((await send(url, "PUT", "/k", { body: "4", headers: { "if-match": "*" } })).status).toBe(200);
    expect((await send(url, "PUT", "/absent", { body: "4", headers: { "if-match": "*" } })).status).toBe(412);
    expect((await send(url, "DELETE", "/k", { headers: { "if-none-match": "*" } })).status).toBe(412);
    const current = (await send(url, "HEAD", "/k")).headers.etag!;
    expect((await send(url, "DELETE", "/k", { headers: { "if-match": current } })).status).toBe(200);
    expect(await storage.hasItem("k")).toBe(false);
    expect((await send(url, "PUT", "/k", { body: "5", headers: { "if-match": 'W/"1"' } })).status).toBe(400);
    expect((await send(url, "PUT", "/k", { body: "5", headers: { "if-match": '"1", "2"' } })).status).toBe(400);
  });

  it("a store without CAS answers conditional writes with 501 and sends no ETag", async () => {
    const { url, storage } = await startServer({ driver: fsDriver({ base: tempDir("server-nocas") }) });
    await send(url, "PUT", "/k", { body: "1" });
    expect((await send(url, "GET", "/k")).headers.etag).toBeUndefined();
    const refused = await send(url, "PUT", "/k", { body: "2", headers: { "if-match": '"1"' } });
    expect(refused.status).toBe(501);
    expect(json(refused.body)).toMatchObject({ code: "E_UNSUPPORTED" });
    expect((await send(url, "PUT", "/k", { body: "2", headers: { "if-match": "*" } })).status).toBe(501);
    expect(await storage.getItem("k")).toBe(1);
  });
});

describe("storage server: auth and read-only mode", () => {
  it("a bearer token: 401 without it or with a wrong one", async () => {
    const { url } = await startServer({ token: "s3cret" });
    const none = await send(url, "GET", "/k");
    expect(none.status).toBe(401);
    expect(none.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect((await send(url, "GET", "/k", { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await send(url, "GET", "/k", { headers: { authorization: "Bearer s3cret-but-longer" } })).status).toBe(401);
    expect((await send(url, "GET", "/k", { headers: { authorization: "Basic s3cret" } })).status).toBe(401);
    expect((await send(url, "PUT", "/k", { body: "1", headers: { authorization: "Bearer s3cret" } })).status).toBe(200);
    expect((await send(url, "GET", "/k", { headers: { authorization: "bearer s3cret" } })).status).toBe(200);
  });

  it("authorize hook: 403 when it refuses; it sees type, key and base", async () => {
    const seen: string[] = [];
    const { url } = await startServer({
      authorize: ({ type, method, key, base }) => {
        seen.push(`${type} ${method} ${key} ${base}`);
        return type === "read" || key.startsWith("public:");
      },
    });
    expect((await send(url, "PUT", "/private/x", { body: "1" })).status).toBe(403);
    expect((await send(url, "PUT", "/public/x", { body: "1" })).status).toBe(200);
    expect((await send(url, "GET", "/public/")).status).toBe(200);
    expect(seen).toEqual(["write PUT private:x false", "write PUT public:x false", "read GET public: true"]);
  });

  it("read-only: 405 with Allow for writes, reads served", async () => {
    const storage = createCoreStorage({ driver: memory() });
    await storage.setItem("k", 1);
    const server = createStorageServer(storage, { port: 0, readOnly: true });
    const url = await server.listen();
    try {
      const refused = await send(url, "PUT", "/k", { body: "2" });
      expect(refused.status).toBe(405);
      expect(refused.headers.allow).toBe("GET, HEAD");
      expect((await send(url, "DELETE", "/k")).status).toBe(405);
      expect((await send(url, "GET", "/k")).body.toString()).toBe("1");
      expect(await storage.getItem("k")).toBe(1);
    } finally {
      await server.close();
    }
  });
});

/** A store whose backend fails: down (E_UNAVAILABLE) or broken (a plain Error with a stack). */
const failing = defineDriver(() => ({
  name: "failing",
  hasItem: () => true,
  getItem: (key: string) => {
    if (key.startsWith("down")) throw new StorageError("E_UNAVAILABLE", "backend down");
    throw new Error("secret internals at /srv/app.js:42");
  },
  getKeys: () => [],
}));

describe("storage server: limits and errors", () => {
  it("400 for invalid keys, 405 with Allow for unknown methods, 400 for PUT on a base", async () => {
    const { url } = await startServer();
    for (const path of ["/a/../b", "/..", "/a/%00b", "/%E0%A4%A", "/a/./b"]) {
      const res = await send(url, "GET", path);
      expect(res.status, path).toBe(400);
      expect(json(res.body)).toMatchObject({ code: "E_INVALID_KEY" });
    }
    const post = await send(url, "POST", "/k", { body: "1" });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD, PUT, DELETE");
    expect((await send(url, "PUT", "/base/", { body: "1" })).status).toBe(400);
  });

  it("503 for E_UNAVAILABLE, 500 with { code, message } and no stack for other failures", async () => {
    const errors: unknown[] = [];
    const { url } = await startServer({ driver: failing(undefined), onError: (error) => errors.push(error) });
    const down = await send(url, "GET", "/down");
    expect(down.status).toBe(503);
    // The store's own message stays on the server: onError gets it.
    expect(json(down.body)).toEqual({ code: "E_UNAVAILABLE", message: "The store is unavailable" });
    const broken = await send(url, "GET", "/broken");
    expect(broken.status).toBe(500);
    const body = json(broken.body) as { code: string; message: string };
    expect(Object.keys(body).sort()).toEqual(["code", "message"]);
    expect(broken.body.toString()).not.toMatch(/at |\/srv\/app\.js/);
    expect(errors).toHaveLength(2);
  });

  it("an async onError hook that rejects: both errors are logged, no unhandled rejection", async () => {
    let rejected!: () => void;
    const hookDone = new Promise<void>((resolve) => (rejected = resolve));
    const { url } = await startServer({
      driver: failing(undefined),
      onError: async () => {
        rejected();
        throw new Error("async hook broke");
      },
    });
    const logged: string[] = [];
    const write = vi.spyOn(process.stderr, "write").mockImplementation((line) => logged.push(String(line)) > 0);
    try {
      expect((await send(url, "GET", "/broken")).status).toBe(500);
      await hookDone;
      await eventually(() => expect(logged).toHaveLength(2));
    } finally {
      write.mockRestore();
    }
    expect(logged[1]).toBe("stowage server: GET /broken: async hook broke\n");
  });

  it("a refusal of a request without a body keeps the connection; one whose body was not read closes it", async () => {
    const { url } = await startServer({ maxBodySize: 4 });
    const wire =
      "GET /missing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
      "GET /a/../b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" +
      "PUT /k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n" +
      "PUT /k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n0123456789" +
      "GET /k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const responses = (await exchange(url, wire)).split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((response) => response.slice(9, 12))).toEqual(["404", "400", "200", "413"]);
    expect(responses.slice(0, 3).every((response) => !/connection: close/i.test(response))).toBe(true);
    expect(responses[3]).toMatch(/connection: close/i);
  });

  it("an onError hook that throws: the failure is still answered, logged, and the requests behind it served", async () => {
    const { url } = await startServer({
      driver: failing(undefined),
      onError: () => {
        throw new Error("hook broke");
      },
    });
    const logged: string[] = [];
    const write = vi.spyOn(process.stderr, "write").mockImplementation((line) => logged.push(String(line)) > 0);
    try {
      const wire = "GET /broken HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /down HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
      const responses = (await exchange(url, wire)).split(/(?=HTTP\/1\.1 )/);
      expect(responses.map((response) => response.slice(9, 12))).toEqual(["500", "503"]);
    } finally {
      write.mockRestore();
    }
    expect(logged).toEqual([
      "stowage server: GET /broken: [failing] secret internals at /srv/app.js:42\n",
      "stowage server: GET /broken: hook broke\n",
      "stowage server: GET /down: backend down\n",
      "stowage server: GET /down: hook broke\n",
    ]);
  });

  it("413 for a declared Content-Length over the limit, before reading the body", async () => {
    const { url, storage } = await startServer({ maxBodySize: 1024 });
    const res = await send(url, "PUT", "/k", { body: Buffer.alloc(4096) });
    expect(res.status).toBe(413);
    expect(json(res.body)).toMatchObject({ code: "E_TOO_LARGE" });
    expect(await storage.hasItem("k")).toBe(false);
    expect((await send(url, "PUT", "/k", { body: Buffer.alloc(1024, 97) })).status).toBe(200);
    // A client that sends its 64 MiB anyway, to a server taking up to 16 MiB: the server keeps none and reads little of it.
    const large = await startServer();
    const sockets = acceptedSockets(large.server);
    const huge = `PUT /huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n${"y".repeat(8 * 1024 * 1024)}`;
    const answer = await exchange(large.url, huge).catch((error: Error) => error.message);
    expect(answer).toMatch(/^HTTP\/1\.1 413|ECONNRESET|EPIPE/);
    expect(sockets[0]!.bytesRead).toBeLessThan(1024 * 1024);
  });

  it("413 for a chunked body while it streams: the server answers long before the client is done", async () => {
    const { url, storage } = await startServer({ maxBodySize: 1024 * 1024 });
    const { hostname, port } = new URL(url);
    const chunk = Buffer.alloc(64 * 1024, 120);
    let sent = 0;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: hostname, port, method: "PUT", path: "/huge", headers: { "transfer-encoding": "chunked" } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
        req.destroy();
      });
      // Once the 413 is in, the server closes the upload: a reset mid-write is expected then.
      req.on("error", (error) => (sent > 0 ? undefined : reject(error)));
      // Up to 256 MiB, written as fast as the socket takes it; stops once the answer is in.
      const pump = () => {
        while (sent < 256 * 1024 * 1024 && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once("drain", pump);
        }
      };
      pump();
    });
    expect(status).toBe(413);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
    expect(await storage.hasItem("huge")).toBe(false);
    expect((await send(url, "GET", "/")).status).toBe(200);
  });
});

describe("storage server: embedding and shutdown", () => {
  it("handle() mounts in a server of your own, under a base path", async () => {
    const storage = createCoreStorage({ driver: memory() });
    const storageServer = createStorageServer(storage, { basePath: "/kv" });
    const own = createServer((req, res) => {
      if (req.url?.startsWith("/kv/")) return void storageServer.handle(req, res);
      res.end("app");
    });
    await new Promise<void>((resolve) => own.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
    try {
      expect((await send(url, "PUT", "/kv/a/b", { body: "1" })).status).toBe(200);
      expect(await storage.getItem("a:b")).toBe(1);
      expect((await send(url, "GET", "/kv/")).body.toString()).toBe('["a/b"]');
      expect((await send(url, "GET", "/elsewhere")).body.toString()).toBe("app");
    } finally {
      await new Promise((resolve) => own.close(resolve));
    }
  });

  it("close(): a request that arrives on an open connection meanwhile is answered 503 with Retry-After", async () => {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const { url, server } = await startServer({ driver: gated(gate) });
    const socket = connect(Number(new URL(url).port), "127.0.0.1");
    let received = "";
    socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
    const ended = new Promise((resolve) => socket.once("close", resolve));
    socket.write("PUT /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n1");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = server.close();
    socket.write("GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await new Promise((resolve) => setTimeout(resolve, 50));
    open();
    await ended;
    await closed;
    const responses = received.split(/(?=HTTP\/1\.1 )/);
    expect(responses.map((response) => response.slice(9, 12))).toEqual(["200", "503"]);
    expect(responses[1]).toMatch(/retry-after: 1/i);
    expect(responses[1]).toMatch(/connection: close/i);
  });

  it("close(): in-flight requests finish, idle keep-alive connections close, new connections are refused", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const base = memory();
    const slow = { ...base, flags: { ...base.flags, sync: false }, getItem: async (key: string) => (key === "slow" ? (await gate, "1") : base.getItem(key)) };
    const storage = createCoreStorage({ driver: slow });
    const server = createStorageServer(storage, { port: 0 });
    const url = await server.listen();
    const { port } = new URL(url);

    // An idle keep-alive connection: one request answered, socket left open.
    const idle = connect(Number(port), "127.0.0.1");
    await new Promise((resolve) => idle.once("connect", resolve));
    idle.write("HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const idleClosed = new Promise((resolve) => idle.once("close", resolve));
    idle.resume();

    const inFlight = send(url, "GET", "/slow");
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closed = server.close();
    await expect(send(url, "GET", "/x")).rejects.toMatchObject({ code: "ECONNREFUSED" });
    await idleClosed;
    release();
    const answer = await inFlight;
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe("1");
    expect(answer.headers.connection).toBe("close");
    await closed;
  });
});
