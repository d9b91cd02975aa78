import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { isStorageError } from "../../src/core/errors.js";
import { createStorage } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import memory from "../../src/drivers/memory.js";
import { createStorageServer, type StorageServerOptions } from "../../src/server/index.js";
import { eventually } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { send, startServer } from "./helpers.js";

const TOKEN = "hostile-test-token";
const AUTH = `Authorization: Bearer ${TOKEN}\r\n`;

/** One hostile request as raw bytes, and the status it must get (`null`: the client is gone before any answer). */
interface Hostile {
  name: string;
  bytes: Buffer;
  expected: number | null;
  /** Half-close after writing (a truncated body); `destroy`: reset the connection mid-upload. */
  then?: "end" | "destroy";
}

function request(method: string, path: string, headers = "", body = ""): Buffer {
  const length = body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : "";
  return Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers}${length}\r\n${body}`, "latin1");
}

function rawChunkedHead(path: string): Buffer {
  return Buffer.from(`PUT ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${AUTH}Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n`);
}

function rawChunks(count: number, size: number): Buffer {
  return Buffer.from(`${size.toString(16)}\r\n${"r".repeat(size)}\r\n`.repeat(count));
}

const KINDS: ((i: number) => Hostile)[] = [
  (i) => ({ name: "dot-dot key", bytes: request("GET", `/a/../${i}`, AUTH), expected: 400 }),
  (i) => ({ name: "dot-dot write", bytes: request("PUT", `/../../etc/passwd${i}`, AUTH, "x"), expected: 400 }),
  () => ({ name: "encoded dot-dot", bytes: request("PUT", "/a/%2e%2e/%2e%2e/b", AUTH, "x"), expected: 400 }),
  (i) => ({ name: "percent-encoded NUL", bytes: request("PUT", `/a%00b${i}`, AUTH, "x"), expected: 400 }),
  () => ({ name: "malformed percent-encoding", bytes: request("GET", "/%E0%A4%A", AUTH), expected: 400 }),
  () => ({ name: "dot segment", bytes: request("DELETE", "/keep/./x", AUTH), expected: 400 }),
  () => ({ name: "empty key write", bytes: request("PUT", "/", AUTH, "x"), expected: 400 }),
  (i) => ({ name: "no token", bytes: request("PUT", `/keep/${i}`, "", "x"), expected: 401 }),
  (i) => ({ name: "wrong token", bytes: request("DELETE", "/keep/", `Authorization: Bearer wrong-${i}\r\n`), expected: 401 }),
  () => ({ name: "token prefix", bytes: request("DELETE", "/keep/0", `Authorization: Bearer ${TOKEN.slice(0, -1)}\r\n`), expected: 401 }),
  () => ({ name: "huge header", bytes: request("GET", "/keep/0", `${AUTH}X-Big: ${"a".repeat(64 * 1024)}\r\n`), expected: 431 }),
  (i) => ({ name: "bad method", bytes: request(["POST", "PATCH", "OPTIONS", "PROPFIND"][i % 4]!, "/keep/0", AUTH, "x"), expected: 405 }),
  () => ({ name: "oversized declared body", bytes: request("PUT", "/keep/0", `${AUTH}Content-Length: 999999999\r\n`), expected: 413 }),
  () => ({
    name: "oversized chunked body",
    bytes: Buffer.concat([
      Buffer.from(`PUT /keep/0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${AUTH}Transfer-Encoding: chunked\r\n\r\n`),
      Buffer.from(`${(8192).toString(16)}\r\n${"z".repeat(8192)}\r\n`.repeat(4)),
    ]),
    expected: 413,
  }),
  // The fs driver keeps no etags: conditional writes are refused as unsupported, not guessed at.
  () => ({ name: "If-Match on a store without CAS", bytes: request("PUT", "/keep/0", `${AUTH}If-Match: "no-such-version"\r\n`, "x"), expected: 501 }),
  () => ({ name: "create-only on a store without CAS", bytes: request("PUT", "/keep/1", `${AUTH}If-None-Match: *\r\n`, "x"), expected: 501 }),
  () => ({ name: "stale If-Match", bytes: request("PUT", "/cas/x", `${AUTH}If-Match: "no-such-version"\r\n`, "x"), expected: 412 }),
  () => ({ name: "create-only on an existing key", bytes: request("PUT", "/cas/x", `${AUTH}If-None-Match: *\r\n`, "x"), expected: 412 }),
  () => ({ name: "stale If-Match delete", bytes: request("DELETE", "/cas/x", `${AUTH}If-Match: "1"\r\n`), expected: 412 }),
  () => ({ name: "malformed If-Match", bytes: request("DELETE", "/keep/1", `${AUTH}If-Match: a, "b\r\n`), expected: 400 }),
  () => ({ name: "garbage x-ttl", bytes: request("PUT", "/keep/1", `${AUTH}X-Ttl: -1e999\r\n`, "x"), expected: 400 }),
  () => ({ name: "garbage request line", bytes: Buffer.from("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", "latin1"), expected: 400 }),
  () => ({ name: "bad HTTP version", bytes: Buffer.from("GET /keep/0 HTTP/9.9\r\nHost: x\r\n\r\n"), expected: 400 }),
  () => ({ name: "conflicting lengths", bytes: request("PUT", "/keep/0", `${AUTH}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n`, "0\r\n\r\n"), expected: 400 }),
  (i) => ({
    name: "truncated body",
    bytes: Buffer.from(`PUT /keep/${i % 5} HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Length: 100\r\n\r\npartial`),
    // node:http answers a body cut short by the client's FIN with 400 and writes nothing.
    expected: 400,
    then: "end",
  }),
  (i) => ({
    name: "disconnect mid-upload",
    bytes: Buffer.from(`PUT /keep/${i % 5} HTTP/1.1\r\nHost: x\r\n${AUTH}Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n${"p".repeat(30_000)}`),
    expected: null,
    then: "destroy",
  }),
  // Raw chunked uploads go to the store as they arrive (fs streams them into a temp file): none may leave a trace.
  (i) => ({
    name: "truncated streamed upload",
    bytes: Buffer.concat([rawChunkedHead(`/keep/${i % 5}`), rawChunks(2, 4096)]),
    expected: 400,
    then: "end",
  }),
  (i) => ({ name: "streamed upload cut off", bytes: Buffer.concat([rawChunkedHead(`/keep/${i % 5}`), rawChunks(3, 4096)]), expected: null, then: "destroy" }),
  (i) => ({ name: "oversized streamed upload", bytes: Buffer.concat([rawChunkedHead(`/keep/${i % 5}`), rawChunks(4, 8192)]), expected: 413 }),
  (i) => ({ name: "valid read", bytes: request("GET", `/keep/${i % 5}`, AUTH), expected: 200 }),
  () => ({ name: "missing key", bytes: request("HEAD", "/keep/none", AUTH), expected: 404 }),
];

/** Sends raw bytes on a fresh connection; resolves with the answer's status, or null when none came. */
function sendRaw(port: number, hostile: Hostile): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${hostile.name}: no answer and no close within 10 s`));
    }, 10_000);
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString("latin1")));
    // A reset is the expected end of a refused upload; what matters is the status read before it.
    socket.on("error", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      resolve(status ? Number(status[1]) : null);
    });
    socket.write(hostile.bytes, () => {
      if (hostile.then === "destroy") socket.destroy();
      else if (hostile.then === "end") socket.end();
    });
  });
}

/** Every file below `dir` and a hash of its bytes: what "unchanged and uncorrupted" is checked against. */
function fileSnapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    out[relative(dir, path)] = createHash("sha256").update(readFileSync(path)).digest("hex");
  }
  return out;
}

describe("storage server under hostile clients", () => {
  it("1,000 malformed or hostile requests: each gets the right status, the server keeps serving, the data is unchanged", async () => {
    const dir = tempDir("hostile");
    const { url, storage } = await startServer({ driver: fsDriver({ base: dir }), token: TOKEN, maxBodySize: 16 * 1024 });
    // A memory mount with etags, for the conditional requests that must fail with 412.
    storage.mount("cas", memory());
    await storage.setItem("cas:x", "original");
    await storage.setItem("cas:x", "current");
    for (let i = 0; i < 5; i++) await storage.setItem(`keep:${i}`, { i, text: `value ${i}` });
    await storage.setItemRaw("keep:blob", new Uint8Array([0, 1, 2, 255]));
    const before = fileSnapshot(dir);
    const port = Number(new URL(url).port);

    const hostiles = Array.from({ length: 1000 }, (_, i) => KINDS[i % KINDS.length]!(i));
    const mismatches: string[] = [];
    // A few connections at a time, as a crowd of clients would.
    for (let i = 0; i < hostiles.length; i += 8) {
      const batch = hostiles.slice(i, i + 8);
      const statuses = await Promise.all(batch.map((hostile) => sendRaw(port, hostile)));
      batch.forEach((hostile, j) => {
        if (statuses[j] !== hostile.expected) mismatches.push(`${hostile.name}: got ${statuses[j]}, expected ${hostile.expected}`);
      });
    }
    expect([...new Set(mismatches)]).toEqual([]);

    // Still serving, and nothing changed on disk or through the API.
    const read = await send(url, "GET", "/keep/3", { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(read.status).toBe(200);
    expect(JSON.parse(read.body.toString())).toEqual({ i: 3, text: "value 3" });
    // A cut-off upload's temp file goes as its connection closes.
    await eventually(() => expect(fileSnapshot(dir)).toEqual(before));
    expect((await storage.getKeys()).sort()).toEqual(["cas:x", "keep:0", "keep:1", "keep:2", "keep:3", "keep:4", "keep:blob"]);
    expect(await storage.getItem("cas:x")).toBe("current");
    for (let i = 0; i < 5; i++) expect(await storage.getItem(`keep:${i}`)).toEqual({ i, text: `value ${i}` });
    expect([...(await storage.getItemRaw("keep:blob"))!]).toEqual([0, 1, 2, 255]);
  });
});

/** Sends one raw request on a fresh connection (it asks the server to close), and reads the whole answer. */
function rawAnswer(port: number, wire: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.on("data", (chunk: Buffer) => (answer += chunk.toString("utf8")));
    socket.on("error", reject);
    socket.on("close", () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer);
      if (!status) return reject(new Error(`no answer to ${JSON.stringify(wire.split("\r\n")[0])}`));
      const split = answer.indexOf("\r\n\r\n");
      const body = answer.slice(split + 4);
      resolve({ status: Number(status[1]), body: /transfer-encoding: chunked/i.test(answer.slice(0, split)) ? unchunk(body) : body });
    });
    socket.end(wire);
  });
}

/** A chunked body's data. */
function unchunk(body: string): string {
  let data = "";
  for (let at = 0; ; ) {
    const line = body.indexOf("\r\n", at);
    const size = parseInt(body.slice(at, line), 16);
    if (!(size > 0)) return data;
    data += body.slice(line + 2, line + 2 + size);
    at = line + 2 + size + 2;
  }
}

/** A raw request with a Host header of the caller's choosing (`null`: none). */
function wire(method: string, target: string, host: string | null, extra = "", body = ""): string {
  const length = body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : "";
  return `${method} ${target} HTTP/1.1\r\n${host === null ? "" : `Host: ${host}\r\n`}Connection: close\r\n${extra}${length}\r\n${body}`;
}

describe("storage server: safe by default", () => {
  it("without a token on loopback, only requests for a loopback Host or an allowed one are served (DNS rebinding)", async () => {
    const { url, storage } = await startServer({ allowedHosts: ["stowage.internal"] });
    const port = Number(new URL(url).port);
    await storage.setItem("k", "kept");
    const cases: [string, string, number][] = [
      ["rebinding page, read", wire("GET", "/k", "evil.example"), 421],
      ["rebinding page, write", wire("PUT", "/k", `evil.example:${port}`, "", '"stolen"'), 421],
      ["rebinding page, clear", wire("DELETE", "/", "evil.example"), 421],
      ["a name that only starts like localhost", wire("GET", "/k", "localhost.evil.example"), 421],
      ["127 inside another name", wire("GET", "/k", "127.0.0.1.evil.example"), 421],
      ["the any address", wire("GET", "/k", "0.0.0.0"), 421],
      ["absolute form naming another host", wire("DELETE", "http://evil.example/", "127.0.0.1"), 421],
      ["no Host", wire("GET", "/k", null), 400],
      ["malformed Host", wire("GET", "/k", "a b"), 400],
      ["two Hosts", wire("GET", "/k", "127.0.0.1", "Host: evil.example\r\n"), 400],
      ["127.0.0.1 with port", wire("GET", "/k", `127.0.0.1:${port}`), 200],
      ["localhost", wire("GET", "/k", `localhost:${port}`), 200],
      ["LOCALHOST.", wire("GET", "/k", "LOCALHOST."), 200],
      ["a .localhost name", wire("GET", "/k", "app.localhost"), 200],
      ["another 127/8 address", wire("GET", "/k", "127.1.2.3"), 200],
      ["IPv6 loopback", wire("GET", "/k", `[::1]:${port}`), 200],
      ["an allowedHosts entry", wire("GET", "/k", "Stowage.Internal:8787"), 200],
      ["absolute form naming loopback outranks the Host header", wire("GET", `http://localhost:${port}/k`, "evil.example"), 200],
    ];
    for (const [name, request, status] of cases) expect((await rawAnswer(port, request)).status, name).toBe(status);
    const refused = await rawAnswer(port, wire("GET", "/k", "evil.example"));
    expect(JSON.parse(refused.body)).toMatchObject({ code: "E_MISDIRECTED" });
    expect(await storage.getKeys()).toEqual(["k"]);
    expect(await storage.getItem("k")).toBe("kept");
  });

  it("with a token the token is the check; allowedHosts, when given, still applies", async () => {
    const open = await startServer({ token: TOKEN });
    expect((await rawAnswer(Number(new URL(open.url).port), wire("GET", "/k", "any.example", AUTH))).status).toBe(404);
    const pinned = await startServer({ token: TOKEN, allowedHosts: ["kv.example"] });
    const port = Number(new URL(pinned.url).port);
    expect((await rawAnswer(port, wire("GET", "/k", "any.example", AUTH))).status).toBe(421);
    expect((await rawAnswer(port, wire("GET", "/k", "kv.example", AUTH))).status).toBe(404);
  });

  it("refuses an empty or unsendable token, an exposed address without a token, malformed allowedHosts and unknown options", () => {
    const storage = createStorage({ driver: memory() });
    const refused = (options: Record<string, unknown>) => {
      try {
        createStorageServer(storage, options as StorageServerOptions);
      } catch (error) {
        return isStorageError(error, "E_INVALID_OPTION") ? error.message : `not E_INVALID_OPTION: ${String(error)}`;
      }
      return "accepted";
    };
    expect(refused({ token: "" })).toMatch(/token/);
    expect(refused({ token: " padded " })).toMatch(/token/);
    expect(refused({ token: "a\nb" })).toMatch(/token/);
    expect(refused({ token: 42 })).toMatch(/token/);
    expect(refused({ host: "0.0.0.0" })).toMatch(/without a token/);
    expect(refused({ host: "::" })).toMatch(/without a token/);
    expect(refused({ host: "192.168.1.10" })).toMatch(/without a token/);
    expect(refused({ host: "0.0.0.0", insecure: true })).toBe("accepted");
    expect(refused({ host: "0.0.0.0", token: TOKEN })).toBe("accepted");
    expect(refused({ host: "localhost" })).toBe("accepted");
    expect(refused({ host: "::1" })).toBe("accepted");
    for (const hosts of [["kv.example:80"], ["http://kv.example"], [""], ["a b"], [1], "kv.example"]) expect(refused({ allowedHosts: hosts })).toMatch(/allowedHosts/);
    expect(refused({ tokn: TOKEN })).toMatch(/unknown option tokn/);
    expect(refused({ port: 70000 })).toMatch(/port/);
    expect(refused({ port: "8787" })).toMatch(/port/);
    expect(refused({ insecure: "yes", host: "0.0.0.0" })).toMatch(/insecure/);
    expect(refused({ readOnly: 1 })).toMatch(/readOnly/);
  });

  it("meta sidecars (key$) are out of reach: a write is 400 before the authorize hook, a read finds nothing", async () => {
    const asked: string[] = [];
    // fs keeps no native expiry: the core keeps victim's in the sidecar victim$.
    const { url, storage } = await startServer({
      driver: fsDriver({ base: tempDir("hostile-meta") }),
      authorize: ({ key }) => {
        asked.push(key);
        return key !== "victim";
      },
    });
    const port = Number(new URL(url).port);
    await storage.setItem("victim", "precious", { ttl: 3_600_000 });
    const expires = (await storage.getMeta("victim")).expires;
    const host = "127.0.0.1";
    for (const target of ["/victim$", "/victim%24", "/a/../victim$"]) {
      const put = await rawAnswer(port, wire("PUT", target, host, "", '{"expires":1}'));
      expect(put.status, target).toBe(400);
      expect((await rawAnswer(port, wire("DELETE", target, host))).status, target).toBe(400);
    }
    expect((await rawAnswer(port, wire("GET", "/victim$", host))).status).toBe(404);
    expect((await rawAnswer(port, wire("HEAD", "/victim%24", host))).status).toBe(404);
    expect(JSON.parse((await rawAnswer(port, wire("GET", "/", host))).body)).toEqual(["victim"]);
    expect(asked).not.toContain("victim$");
    expect(await storage.getItem("victim")).toBe("precious");
    expect((await storage.getMeta("victim")).expires).toEqual(expires);
  });

  it("error bodies carry a code and a message, never the server's paths; onError gets the whole error", async () => {
    const dir = tempDir("hostile-paths");
    const outside = tempDir("hostile-outside");
    writeFileSync(join(outside, "secret"), "s");
    symlinkSync(outside, join(dir, "link"));
    const errors: unknown[] = [];
    const readOnly = await startServer({ driver: fsDriver({ base: dir, readOnly: true }), onError: (error) => errors.push(error) });
    const noClear = await startServer({ driver: fsDriver({ base: dir, noClear: true }), onError: (error) => errors.push(error) });
    const answers = [
      await rawAnswer(Number(new URL(readOnly.url).port), wire("PUT", "/k", "127.0.0.1", "", "1")),
      await rawAnswer(Number(new URL(noClear.url).port), wire("DELETE", "/", "127.0.0.1")),
      await rawAnswer(Number(new URL(noClear.url).port), wire("GET", "/link/secret", "127.0.0.1")),
      await rawAnswer(Number(new URL(noClear.url).port), wire("PUT", "/link/secret", "127.0.0.1", "", "1")),
    ];
    expect(answers.map((answer) => answer.status).slice(0, 2)).toEqual([405, 405]);
    for (const answer of answers) {
      expect(answer.status).toBeGreaterThanOrEqual(400);
      const body = JSON.parse(answer.body) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(["code", "message"]);
      expect(answer.body).not.toContain(dir);
      expect(answer.body).not.toContain(outside);
      expect(answer.body).not.toMatch(/\/tmp\//);
    }
    expect(readFileSync(join(outside, "secret"), "utf8")).toBe("s");
    // The causes, with their paths, went to onError.
    expect(errors.map((error) => String((error as Error).message)).join("\n")).toContain(dir);
  });

  it("X-TTL takes plain decimal seconds only", async () => {
    const { url, storage } = await startServer();
    const port = Number(new URL(url).port);
    for (const ttl of ["0x10", "1e3", "-1", "+5", "5 5", "Infinity", "NaN", ".5", "5.", "1.2345", "1,5", "٣", "9999999999999"]) {
      const answer = await rawAnswer(port, wire("PUT", "/t", "127.0.0.1", `X-TTL: ${ttl}\r\n`, "1"));
      expect(answer.status, ttl).toBe(400);
      expect(JSON.parse(answer.body), ttl).toMatchObject({ code: "E_INVALID_OPTION" });
    }
    expect(await storage.hasItem("t")).toBe(false);
    expect((await rawAnswer(port, wire("PUT", "/t", "127.0.0.1", "X-TTL: 16\r\n", "1"))).status).toBe(200);
    expect((await storage.getMeta("t")).ttl).toBeGreaterThan(15_000);
    expect((await storage.getMeta("t")).ttl).toBeLessThanOrEqual(16_000);
    expect((await rawAnswer(port, wire("PUT", "/t", "127.0.0.1", "X-TTL: 90.25\r\n", "1"))).status).toBe(200);
    expect((await storage.getMeta("t")).ttl).toBeGreaterThan(80_000);
    expect((await storage.getMeta("t")).ttl).toBeLessThanOrEqual(90_250);
  });

  it("a percent-encoded ? / \\ or : never widens a write or a clear: 400, nothing touched", async () => {
    const { url, storage } = await startServer();
    const port = Number(new URL(url).port);
    await storage.setItem("q", "kept");
    await storage.setItem("a:b", "kept");
    const before = await storage.getKeys();
    const cases = [
      wire("DELETE", "/%3F/", "127.0.0.1"),
      wire("DELETE", "/%3f", "127.0.0.1"),
      wire("PUT", "/q%3Fother", "127.0.0.1", "", '"overwritten"'),
      wire("DELETE", "/a%2F", "127.0.0.1"),
      wire("DELETE", "/a%3A", "127.0.0.1"),
      wire("DELETE", "/a%5C", "127.0.0.1"),
      wire("DELETE", "/%2F", "127.0.0.1"),
      wire("PUT", "/a%2Fb", "127.0.0.1", "", '"overwritten"'),
      wire("GET", "/q%3F", "127.0.0.1"),
    ];
    for (const request of cases) {
      const answer = await rawAnswer(port, request);
      expect(answer.status, request.split("\r\n")[0]).toBe(400);
      expect(JSON.parse(answer.body)).toMatchObject({ code: "E_INVALID_KEY" });
    }
    expect(await storage.getKeys()).toEqual(before);
    expect(await storage.getItem("q")).toBe("kept");
    expect(await storage.getItem("a:b")).toBe("kept");
    // A literal ? starts a query, which is no part of a key: a read ignores it, a write is refused.
    expect((await rawAnswer(port, wire("GET", "/q?t=1", "127.0.0.1"))).body).toBe('"kept"');
    for (const request of [wire("PUT", "/q?other", "127.0.0.1", "", '"overwritten"'), wire("DELETE", "/?x", "127.0.0.1"), wire("DELETE", "/q?", "127.0.0.1")]) {
      const answer = await rawAnswer(port, request);
      expect(answer.status, request.split("\r\n")[0]).toBe(400);
      expect(JSON.parse(answer.body)).toMatchObject({ code: "E_INVALID_KEY" });
    }
    expect(await storage.getKeys()).toEqual(before);
    // A doubly encoded ? is a literal "%3F" in the key, which widens nothing.
    expect((await rawAnswer(port, wire("PUT", "/q%253F", "127.0.0.1", "", '"own"'))).status).toBe(200);
    expect(await storage.getItem("q%3F")).toBe("own");
    expect(await storage.getItem("q")).toBe("kept");
  });

  it("absolute-form request targets are answered as their origin-form path (RFC 9112 §3.2.2)", async () => {
    const { url, storage } = await startServer({ basePath: "/kv" });
    const port = Number(new URL(url).port);
    await storage.setItem("x", "value");
    const got = await rawAnswer(port, wire("GET", `http://127.0.0.1:${port}/kv/x`, "127.0.0.1"));
    expect(got.status).toBe(200);
    expect(got.body).toBe('"value"');
    expect((await rawAnswer(port, wire("PUT", "HTTP://LOCALHOST/kv/y", "localhost", "", "2"))).status).toBe(200);
    expect(await storage.getItem("y")).toBe(2);
    expect((await rawAnswer(port, wire("GET", `http://localhost:${port}/kv/y?cache=1`, "localhost"))).body).toBe("2");
    expect(JSON.parse((await rawAnswer(port, wire("GET", `http://localhost:${port}/kv/`, "localhost"))).body)).toEqual(["x", "y"]);
    expect((await rawAnswer(port, wire("GET", `http://localhost:${port}/other`, "localhost"))).status).toBe(404);
    for (const target of ["ftp://localhost/kv/x", "http:///kv/x", "http://user@localhost/kv/x", "kv/x"]) {
      expect((await rawAnswer(port, wire("GET", target, "localhost"))).status, target).toBe(400);
    }
  });
});

describe("storage server over fs: nothing outside base", () => {
  it("DELETE, PUT and GET through a symlink out of base are 400 E_INVALID_KEY; the outside and the repository stay as they were", async () => {
    const dir = tempDir("hostile-fs");
    const outside = tempDir("hostile-fs-outside");
    writeFileSync(join(outside, "secret"), '"s"');
    writeFileSync(join(outside, "secret$"), "{}");
    mkdirSync(join(outside, "sub"));
    writeFileSync(join(outside, "sub", "x"), '"x"');
    symlinkSync(outside, join(dir, "link"));
    mkdirSync(join(dir, ".git"));
    writeFileSync(join(dir, ".git", "config"), "[core]\n");
    const { url, storage } = await startServer({ driver: fsDriver({ base: dir, ignore: [] }) });
    const port = Number(new URL(url).port);
    await storage.setItem("kept", 1);
    const outsideBefore = fileSnapshot(outside);
    const refused = [
      wire("DELETE", "/link/secret", "127.0.0.1"),
      wire("DELETE", "/link/sub/x", "127.0.0.1"),
      wire("DELETE", "/link/", "127.0.0.1"),
      wire("DELETE", "/link/sub/", "127.0.0.1"),
      wire("PUT", "/link/secret", "127.0.0.1", "", '"overwritten"'),
      wire("PUT", "/link/new/deeper", "127.0.0.1", "", "1"),
      wire("PUT", "/link/raw", "127.0.0.1", "Content-Type: application/octet-stream\r\n", "raw"),
      wire("GET", "/link/secret", "127.0.0.1"),
      wire("GET", "/link/", "127.0.0.1"),
      wire("DELETE", "/.git/config", "127.0.0.1"),
      wire("PUT", "/.git/config", "127.0.0.1", "", '"[core]\\n\\thooksPath = /tmp"'),
    ];
    for (const request of refused) {
      const answer = await rawAnswer(port, request);
      expect(answer.status, request.split("\r\n")[0]).toBe(400);
      expect(JSON.parse(answer.body), request.split("\r\n")[0]).toMatchObject({ code: "E_INVALID_KEY" });
    }
    // Clearing everything clears the store's own keys only.
    expect((await rawAnswer(port, wire("DELETE", "/", "127.0.0.1"))).status).toBeLessThan(300);
    expect(await storage.getKeys()).toEqual([]);
    expect(fileSnapshot(outside)).toEqual(outsideBefore);
    expect(readdirSync(outside).sort()).toEqual(["secret", "secret$", "sub"]);
    expect(readFileSync(join(dir, ".git", "config"), "utf8")).toBe("[core]\n");
  });
});
