import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import fsDriver from "../../src/drivers/fs.js";
import memory from "../../src/drivers/memory.js";
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
