import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createStorage as createUnstorage } from "unstorage";
import unstorageHttp from "unstorage/drivers/http";
import { createStorageServer as createUnstorageServer } from "unstorage/server";
import { describe, expect, it } from "vitest";
import { createCoreStorage } from "../../src/core/storage.js";
import http from "../../src/drivers/http.js";
import { startServer } from "./helpers.js";

describe("unstorage's http driver against stowage's server", () => {
  it("set, get, has, remove, getKeys, clear", async () => {
    const { url, storage: stowage } = await startServer();
    const driver = unstorageHttp({ base: url });
    const client = createUnstorage({ driver });
    await client.setItem("users:ada", { name: "Ada" });
    await client.setItem("users:bob", "text");
    await client.setItem("count", 42);
    await client.setItem("flag", true);
    expect(await client.getItem("users:ada")).toEqual({ name: "Ada" });
    expect(await client.getItem("users:bob")).toBe("text");
    expect(await client.getItem("count")).toBe(42);
    expect(await client.getItem("flag")).toBe(true);
    expect(await client.getItem("missing")).toBe(null);
    expect(await client.hasItem("users:ada")).toBe(true);
    expect(await client.hasItem("missing")).toBe(false);
    // What unstorage wrote, stowage reads as values.
    expect(await stowage.getItem("users:ada")).toEqual({ name: "Ada" });
    expect(await stowage.getItem("count")).toBe(42);
    expect((await client.getKeys()).sort()).toEqual(["count", "flag", "users:ada", "users:bob"]);
    expect(await client.getKeys("users")).toEqual(["users:ada", "users:bob"]);
    await client.removeItem("users:bob");
    expect(await stowage.hasItem("users:bob")).toBe(false);
    // unstorage's clear(base) skips a root mount, so the driver's clear is called directly.
    await driver.clear!("users:", {});
    expect((await stowage.getKeys()).sort()).toEqual(["count", "flag"]);
  });

  it("keys with spaces, unicode, % and # survive the URL encoding", async () => {
    const { url, storage: stowage } = await startServer();
    const client = createUnstorage({ driver: unstorageHttp({ base: url }) });
    const keys = ["space in key", "ключ:日本語", "100%:done", "a#b"];
    for (const [i, key] of keys.entries()) await client.setItem(key, i);
    for (const [i, key] of keys.entries()) {
      expect(await client.getItem(key)).toBe(i);
      expect(await stowage.getItem(key)).toBe(i);
    }
    expect((await client.getKeys()).sort()).toEqual([...keys].sort());
  });

  it("raw bytes and meta (mtime, ttl in seconds)", async () => {
    const { url, storage: stowage } = await startServer();
    const client = createUnstorage({ driver: unstorageHttp({ base: url }) });
    const bytes = new Uint8Array(Array.from({ length: 256 }, (_, i) => i));
    await client.setItemRaw("bin", bytes);
    expect(Buffer.from((await stowage.getItemRaw("bin"))!).equals(Buffer.from(bytes))).toBe(true);
    const back = await client.getItemRaw("bin");
    expect(Buffer.from(back as ArrayBuffer).equals(Buffer.from(bytes))).toBe(true);
    await client.setItem("session", "x", { ttl: 60 });
    expect((await stowage.getMeta("session")).ttl).toBeGreaterThan(59_000);
    const meta = await client.getMeta("session");
    expect(meta.ttl).toBeGreaterThanOrEqual(59);
    expect(meta.ttl).toBeLessThanOrEqual(60);
  });
});

describe("stowage's http driver against unstorage's server", () => {
  it("round trips values, raw bytes, listings and removals", async () => {
    const remote = createUnstorage();
    const server = createServer(createUnstorageServer(remote).handle);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const storage = createCoreStorage({ driver: http({ base, server: "unstorage" }) });
      await storage.setItem("users:ada", { name: "Ada" });
      await storage.setItemRaw("bin", new Uint8Array([0, 1, 255]));
      expect(await storage.getItem("users:ada")).toEqual({ name: "Ada" });
      expect(await remote.getItem("users:ada")).toEqual({ name: "Ada" });
      expect([...(await storage.getItemRaw("bin"))!]).toEqual([0, 1, 255]);
      await remote.setItem("from:unstorage", "plain");
      expect(await storage.getItem("from:unstorage")).toBe("plain");
      expect((await storage.getKeys()).sort()).toEqual(["bin", "from:unstorage", "users:ada"]);
      expect(await storage.hasItem("users:ada")).toBe(true);
      await storage.removeItem("users:ada");
      expect(await remote.hasItem("users:ada")).toBe(false);
      // No etags from unstorage's server: the driver declares no cas and the core refuses.
      await expect(storage.setItem("x", 1, { ifNoneMatch: "*" })).rejects.toMatchObject({ code: "E_UNSUPPORTED" });
      await storage.dispose();
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
