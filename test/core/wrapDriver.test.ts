import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage, findLayer, innermost, isWrapped, layersOf, transformValues, wrapDriver, type Driver } from "../../src/index.js";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { testDriver } from "../../src/testing/index.js";
import { KIT_TTL } from "../helpers/clock.js";
import { redisRunBase } from "../helpers/redisRun.js";
import { serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";
import { codeOf } from "../helpers/checks.js";
import http from "../../src/drivers/http.js";
import { startServer } from "../server/helpers.js";

/** A decorator that changes nothing: what the kit must pass over any driver. */
const passThrough = (inner: Driver) => wrapDriver(inner, { name: "pass-through" });

/** XOR with a fixed byte: a real, synchronous transform whose stored bytes differ from the user's. */
const xor = (inner: Driver) =>
  transformValues(inner, { name: "xor", encode: (bytes) => bytes.map((byte) => byte ^ 0x5a), decode: (bytes) => bytes.map((byte) => byte ^ 0x5a), sync: true });

// Forwarding does not depend on sizes: the small scale. Memory keeps to the kit's 200 ms ttl as memory.test.ts
// does; the stores behind I/O get KIT_TTL, which a loaded 2-core machine keeps to.
const small = { scale: "small" } as const;
const kit = { ...small, ttl: KIT_TTL } as const;
testDriver({ name: "pass-through over memory", driver: () => passThrough(memory()), ...small });
testDriver({ name: "pass-through over sqlite", driver: () => passThrough(sqlite({ path: join(tempDir("wrap-sqlite"), "store.db") })), ...kit });
testDriver({ name: "pass-through over git", driver: () => passThrough(git({ dir: tempDir("wrap-git") })), ...kit });
testDriver({ name: "pass-through over pass-through over memory", driver: () => passThrough(passThrough(memory())), ...small });
testDriver({ name: "xor transform over memory", driver: () => xor(memory()), ...small });
testDriver({ name: "xor transform over sqlite", driver: () => xor(sqlite({ path: join(tempDir("wrap-xor-sqlite"), "store.db") })), ...kit });

const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
if (await serviceUp("Redis", redisUrl)) {
  const run = redisRunBase(redisUrl, "wrap");
  testDriver({ name: "pass-through over redis", driver: () => passThrough(redis({ url: redisUrl, base: `${run}:kit` })), ...kit });
  testDriver({ name: "xor transform over redis", driver: () => xor(redis({ url: redisUrl, base: `${run}:xor` })), ...kit });
}
// A stowage server keeps meta sidecars (key$) out of clients' reach, as in http.test.ts: setMeta is E_UNSUPPORTED there.
testDriver({
  name: "xor transform over http (a stowage server over sqlite)",
  driver: async () => xor(http({ base: (await startServer({ driver: sqlite({ path: join(tempDir("wrap-xor-http"), "store.db") }) })).url })),
  ...kit,
  skip: ["meta: setMeta, getMeta, removeMeta"],
});

describe("wrapDriver's forwarding rule", () => {
  /** A driver with only the required members and the few optional ones named. */
  const bare = (extra: Partial<Driver> = {}): Driver => ({
    name: "bare",
    hasItem: () => false,
    getItem: () => null,
    getKeys: () => [],
    ...extra,
  });

  it("forwards exactly the optional members the inner driver has", () => {
    const inner = memory();
    const wrapped = passThrough(inner);
    const members = (driver: Driver) => Object.keys(driver).filter((key) => (driver as unknown as Record<string, unknown>)[key] !== undefined).sort();
    expect(members(wrapped)).toEqual(members(inner));
    const sparse = passThrough(bare({ setItem: () => undefined }));
    expect(members(sparse)).toEqual(["flags", "getItem", "getKeys", "hasItem", "name", "setItem"]);
    expect("getItems" in sparse || "commit" in sparse || "watch" in sparse || "asyncWrites" in sparse).toBe(false);
  });

  it("forwards every member of a git driver, asyncWrites with its members", () => {
    const inner = git({ dir: tempDir("wrap-members") });
    const wrapped = passThrough(inner);
    for (const member of ["getItems", "iterateKeys", "commit", "getHistory", "getItemStream", "setItemStream", "watch", "keyLimits"] as const) {
      expect(wrapped[member] === undefined, member).toBe(inner[member] === undefined);
    }
    expect(Object.keys(wrapped.asyncWrites ?? {}).sort()).toEqual(Object.keys(inner.asyncWrites ?? {}).sort());
    expect(wrapped.getInstance!()).toBe(inner.getInstance!());
  });

  it("a layer's own member replaces the inner one; dropped members are absent; inner's asyncWrites of a replaced write are left out", async () => {
    const inner = git({ dir: tempDir("wrap-override") });
    const seen: string[] = [];
    const wrapped = wrapDriver(inner, {
      name: "logged",
      setItem: (key, value, opts) => (seen.push(key), inner.setItem!(key, value, opts)),
      drop: ["getHistory", "iterateKeys"],
    });
    expect(wrapped.getHistory).toBeUndefined();
    expect(wrapped.iterateKeys).toBeUndefined();
    expect(wrapped.flags?.history).toBe(false);
    // git's asyncWrites.setItem would bypass the layer's setItem in the async API.
    expect(wrapped.asyncWrites?.setItem).toBeUndefined();
    expect(wrapped.asyncWrites?.removeItem).toBeDefined();
    const storage = createStorage({ driver: wrapped });
    await storage.setItem("a", 1);
    expect(seen).toEqual(["a"]);
    expect(await storage.getItem("a")).toBe(1);
    await storage.dispose();
  });

  it("flags: the inner driver's, narrowed by the layer; a promised method missing narrows its flag; a claim without the method is refused", async () => {
    const inner = memory();
    expect(passThrough(inner).flags).toEqual(inner.flags);
    const narrowed = wrapDriver(inner, { name: "narrow", flags: { sync: false, cas: false } });
    // The etag kind goes with cas.
    expect(narrowed.flags).toEqual({ ...inner.flags, sync: false, cas: false, etag: undefined });
    expect(Object.keys(narrowed.flags)).not.toContain("etag");
    expect(wrapDriver(inner, { name: "no-commit", drop: ["commit", "watch"] }).flags).toMatchObject({ transactions: false, watch: false });
    const refused = await codeOf(() => wrapDriver(bare(), { name: "claims", flags: { history: true } }));
    expect(refused).toBe("E_INVALID_OPTION");
    const claimed = wrapDriver(bare(), { name: "implements", flags: { history: true }, getHistory: () => [] });
    expect(claimed.flags?.history).toBe(true);
    // The sync API follows the narrowed flag.
    expect(await codeOf(() => createStorage({ driver: narrowed }).getItemSync("a"))).toBe("E_UNSUPPORTED");
  });

  it("refuses to wrap what is not a driver", async () => {
    expect(await codeOf(() => wrapDriver(null as never, { name: "x" }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => wrapDriver({ getItem: () => null } as never, { name: "x" }))).toBe("E_INVALID_OPTION");
  });

  it("exposes inner, read-only, and the chain helpers walk any number of wrappers", () => {
    const bottom = git({ dir: tempDir("wrap-chain") });
    const middle = passThrough(bottom);
    const top = xor(middle);
    expect(top.inner).toBe(middle);
    expect(() => ((top as { inner: Driver }).inner = memory())).toThrow(TypeError);
    expect(layersOf(top)).toEqual([top, middle, bottom]);
    expect(innermost(top)).toBe(bottom);
    expect(isWrapped(bottom)).toBe(false);
    expect(findLayer(top, (layer) => layer.name === "git")).toBe(bottom);
    expect(findLayer(top, (layer) => layer.name === "nothing")).toBeUndefined();
    // getInstance reaches through as it is forwarded.
    expect(top.getInstance!()).toBe(bottom.getInstance!());
  });
});
