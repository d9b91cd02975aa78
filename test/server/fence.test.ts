import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { afterAll, describe, expect, it } from "vitest";
import { createStorage as createUnstorage } from "unstorage";
import { createStorageServer as createUnstorageServer } from "unstorage/server";
import { createCoreStorage } from "../../src/core/storage.js";
import http from "../../src/drivers/http.js";
import { codeOf } from "../helpers/checks.js";
import { send, startServer } from "./helpers.js";

const servers: Server[] = [];
afterAll(() => Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve)))));

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return `http://127.0.0.1:${address.port}/`;
}

/**
 * A forwarding proxy in front of `target` that drops the X-Fence-* request
 * headers of the requests `drops` picks, as a proxy with a header allowlist
 * would; `seen` records each request's method.
 */
async function proxy(target: string, drops: (request: IncomingMessage) => boolean): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const { port } = new URL(target);
  const server = createServer((request, response) => {
    seen.push(request.method!);
    const headers = { ...request.headers };
    if (drops(request)) {
      delete headers["x-fence-id"];
      delete headers["x-fence-token"];
    }
    const forwarded = httpRequest({ host: "127.0.0.1", port, method: request.method, path: request.url, headers }, (answer) => {
      response.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(response);
    });
    forwarded.on("error", (error) => response.destroy(error));
    request.pipe(forwarded);
  });
  return { url: await listen(server), seen };
}

/*
 * Fenced writes through the server: X-Fence-Id (percent-encoded) and
 * X-Fence-Token on PUT and DELETE, applied by the server's storage on its
 * own data; E_FENCED answers 409. Hostile headers are refused with 400.
 */
describe("server: fenced writes", () => {
  const fenced = (id: string, token: string | number) => ({ "x-fence-id": id, "x-fence-token": token });

  it("applies the fence on its storage, and answers 409 E_FENCED to a lower token", async () => {
    const { url, storage } = await startServer();
    expect((await send(url, "PUT", "/a", { headers: fenced("locks%3Aa", 2), body: "one" })).status).toBeLessThan(300);
    const late = await send(url, "PUT", "/a", { headers: fenced("locks%3Aa", 1), body: "late" });
    expect(late.status).toBe(409);
    expect(JSON.parse(late.body.toString()).code).toBe("E_FENCED");
    expect((await send(url, "DELETE", "/a", { headers: fenced("locks%3Aa", 1) })).status).toBe(409);
    expect(await storage.getItem("a")).toBe("one");
    // The server's storage holds the record under the decoded id.
    expect(await storage.setItem("a", "x", { fence: { fenceId: "locks:a", token: 1 } }).catch((error: { code: string }) => error.code)).toBe("E_FENCED");
    expect((await send(url, "DELETE", "/a", { headers: fenced("locks%3Aa", 2) })).status).toBeLessThan(300);
    expect(await storage.hasItem("a")).toBe(false);
  });

  it("refuses malformed fences, half a fence, and a fence on a read or a base", async () => {
    const { url, storage } = await startServer();
    const bad: Record<string, string | number>[] = [
      { "x-fence-id": "a" },
      { "x-fence-token": 1 },
      fenced("a", 0),
      fenced("a", "01"),
      fenced("a", "1.5"),
      fenced("a", "-1"),
      fenced("a", "9007199254740993"),
      fenced("a", "1, 2"),
      fenced("a, b", 1),
      fenced("%zz", 1),
      fenced("a b", 1),
      fenced("x".repeat(4097), 1),
    ];
    for (const headers of bad) {
      const answer = await send(url, "PUT", "/k", { headers, body: "v" });
      expect(answer.status, JSON.stringify(headers)).toBe(400);
      expect(JSON.parse(answer.body.toString()).code).toBe("E_INVALID_OPTION");
    }
    expect((await send(url, "GET", "/k", { headers: fenced("a", 1) })).status).toBe(400);
    expect((await send(url, "HEAD", "/k", { headers: fenced("a", 1) })).status).toBe(400);
    expect((await send(url, "DELETE", "/base/", { headers: fenced("a", 1) })).status).toBe(400);
    expect(await storage.getKeys()).toEqual([]);
  });

  it("answers 501 E_UNSUPPORTED when its storage cannot fence", async () => {
    const inner = (await import("../../src/drivers/memory.js")).default();
    const driver = { name: "plain", hasItem: inner.hasItem, getItem: inner.getItem, getKeys: inner.getKeys, setItem: inner.setItem, removeItem: inner.removeItem };
    const { url, storage } = await startServer({ driver });
    const answer = await send(url, "PUT", "/k", { headers: fenced("a", 1), body: "v" });
    expect(answer.status).toBe(501);
    expect(await storage.hasItem("k")).toBe(false);
  });
});

describe("server: fence with conditions on DELETE", () => {
  const fenced = (id: string, token: number) => ({ "x-fence-id": id, "x-fence-token": token });

  it("refuses a fenced DELETE with If-None-Match (a stale token would get 200 for an absent key)", async () => {
    const { url, storage } = await startServer();
    await storage.setItem("other", "v", { fence: { fenceId: "l", token: 5 } });
    const answer = await send(url, "DELETE", "/absent", { headers: { ...fenced("l", 1), "if-none-match": "*" } });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body.toString()).code).toBe("E_INVALID_OPTION");
  });
});

describe("server and http driver: a fence is never reported applied when it was not", () => {
  const fence = (token: number) => ({ fenceId: "locks:a", token });

  it("the server answers OPTIONS of its base path, echoing a fence's token, and echoes it on fenced writes", async () => {
    const { url } = await startServer();
    const probe = await send(url, "OPTIONS", "/", { headers: { "x-fence-id": "p", "x-fence-token": 7 } });
    expect(probe.status).toBe(204);
    expect(probe.headers["x-fence-accepted"]).toBe("7");
    expect(probe.headers.allow).toBe("GET, HEAD, PUT, DELETE, OPTIONS");
    expect((await send(url, "OPTIONS", "/")).headers["x-fence-accepted"]).toBeUndefined();
    expect((await send(url, "OPTIONS", "/", { headers: { "x-fence-id": "p" } })).status).toBe(400);
    expect((await send(url, "OPTIONS", "/k")).status).toBe(405);
    const headers = { "x-fence-id": "locks%3Aa", "x-fence-token": 3 };
    expect((await send(url, "PUT", "/k", { headers, body: "short" })).headers["x-fence-applied"]).toBe("3");
    expect((await send(url, "PUT", "/k", { headers, body: JSON.stringify({ long: "x".repeat(40) }) })).headers["x-fence-applied"]).toBe("3");
    expect((await send(url, "DELETE", "/k", { headers })).headers["x-fence-applied"]).toBe("3");
    expect((await send(url, "PUT", "/k", { body: "unfenced" })).headers["x-fence-applied"]).toBeUndefined();
    expect((await send(url, "DELETE", "/k", { headers: { ...headers, "x-fence-token": 2 } })).headers["x-fence-applied"]).toBeUndefined();
    const readOnly = await startServer({ readOnly: true });
    expect((await send(readOnly.url, "OPTIONS", "/")).headers.allow).toBe("GET, HEAD, OPTIONS");
  });

  it("the driver asks once, then fences through the server", async () => {
    const { url, storage: remote } = await startServer();
    const { url: front, seen } = await proxy(url, () => false);
    const storage = createCoreStorage({ driver: http({ base: front }) });
    await storage.setItem("a", "one", { fence: fence(2) });
    await storage.setItemRaw("b", new Uint8Array([1]), { fence: fence(2) });
    await storage.removeItem("b", { fence: fence(2) });
    expect(await codeOf(() => storage.setItem("a", "late", { fence: fence(1) }))).toBe("E_FENCED");
    expect(await remote.getItem("a")).toBe("one");
    expect(seen.filter((method) => method === "OPTIONS")).toHaveLength(1);
  });

  it("against unstorage's server a fenced write is E_UNSUPPORTED and never sent", async () => {
    const remote = createUnstorage();
    await remote.setItem("kept", "v");
    const url = await listen(createServer(createUnstorageServer(remote).handle));
    const storage = createCoreStorage({ driver: http({ base: url, retries: 0 }) });
    expect(await codeOf(() => storage.setItem("a", "fenced", { fence: fence(1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.removeItem("kept", { fence: fence(1) }))).toBe("E_UNSUPPORTED");
    expect(await remote.getKeys()).toEqual(["kept"]);
  });

  it("behind a proxy that drops X-Fence-* a fenced write is E_UNSUPPORTED and never sent", async () => {
    const { url, storage: remote } = await startServer();
    await remote.setItem("a", "one", { fence: fence(5) });
    const { url: front, seen } = await proxy(url, () => true);
    const storage = createCoreStorage({ driver: http({ base: front }) });
    expect(await codeOf(() => storage.setItem("a", "late", { fence: fence(1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.removeItem("a", { fence: fence(1) }))).toBe("E_UNSUPPORTED");
    expect(await remote.getItem("a")).toBe("one");
    expect(seen).toEqual(["OPTIONS", "OPTIONS"]);
  });

  it("a fenced write answered without the echo is E_DRIVER, never a success (the proxy changed after the probe)", async () => {
    const { url, storage: remote } = await startServer();
    await remote.setItem("a", "one", { fence: fence(5) });
    const { url: front } = await proxy(url, (request) => request.method !== "OPTIONS");
    const storage = createCoreStorage({ driver: http({ base: front }) });
    expect(await codeOf(() => storage.setItem("a", "late", { fence: fence(1) }))).toBe("E_DRIVER");
    expect(await codeOf(() => storage.removeItem("b", { fence: fence(1) }))).toBe("E_DRIVER");
    // The residual risk docs/http.md names: the unfenced write did land.
    expect(await remote.getItem("a")).toBe("late");
  });
});
