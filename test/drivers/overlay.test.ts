import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage as createUnstorage } from "unstorage";
import unstorageMemory from "unstorage/drivers/memory";
import unstorageOverlay from "unstorage/drivers/overlay";
import { createStorage } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import overlay, { OVERLAY_REMOVED } from "../../src/drivers/overlay.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { testDriver } from "../../src/testing/index.js";
import { KIT_TTL } from "../helpers/clock.js";
import { redisRunBase } from "../helpers/redisRun.js";
import { serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";

testDriver({ name: "overlay (memory over memory)", driver: () => overlay({ layers: [memory(), memory()] }), scale: "small" });
testDriver({
  name: "overlay (sqlite over fs, async-style layers)",
  driver: () => overlay({ layers: [sqlite({ path: join(tempDir("overlay-kit"), "top.db") }), fsDriver({ base: tempDir("overlay-kit-fs") })] }),
});

// Over git (its watch info carries commits the overlay's missing history must not offer) and redis.
testDriver({
  name: "overlay (git over memory)",
  driver: () => overlay({ layers: [git({ dir: tempDir("overlay-kit-git") }), memory()] }),
  ttl: KIT_TTL,
  scale: "small",
});
const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
if (await serviceUp("Redis", redisUrl)) {
  const run = redisRunBase(redisUrl, "overlay");
  testDriver({
    name: "overlay (redis over memory)",
    driver: () => overlay({ layers: [redis({ url: redisUrl, base: `${run}:kit` }), memory()] }),
    ttl: KIT_TTL,
    scale: "small",
  });
}

/** A top layer over a base layer holding `base:*` values. */
async function layered() {
  const top = memory();
  const base = memory();
  const baseStorage = createStorage({ driver: base });
  await baseStorage.setItems([
    { key: "base:a", value: "from base" },
    { key: "base:b", value: { n: 1 } },
    { key: "shared", value: "base" },
  ]);
  const storage = createStorage({ driver: overlay({ layers: [top, base] }) });
  return { storage, top: createStorage({ driver: top }), base: baseStorage };
}

describe("overlay driver", () => {
  it("refuses options it does not know, naming the known ones", () => {
    expect(() => overlay({ layers: [memory()], writeLayer: 0 } as never)).toThrow(/unknown option writeLayer \(known: layers, writeTo\)/);
    expect(() => overlay({ layers: [memory(), {} as never] })).toThrow(/layers\[1\] is not a driver/);
    expect(() => overlay({ layers: [null as never] })).toThrow(/layers\[0\] is not a driver/);
  });

  it("reads through the layers in order and writes to the write layer", async () => {
    const { storage, top, base } = await layered();
    await storage.setItem("shared", "top");
    expect(await storage.getItem("shared")).toBe("top");
    expect(await base.getItem("shared")).toBe("base");
    expect(await storage.getItem("base:a")).toBe("from base");
    expect(await top.hasItem("base:a")).toBe(false);
  });

  it("a removal masks the key below until it is written again", async () => {
    const { storage, top, base } = await layered();
    await storage.removeItem("base:a");
    expect(await storage.getItem("base:a")).toBeNull();
    expect(await storage.hasItem("base:a")).toBe(false);
    expect(await storage.getMeta("base:a")).toEqual({});
    expect(await storage.getKeys("base")).toEqual(["base:b"]);
    expect(await base.getItem("base:a")).toBe("from base");
    await storage.setItem("base:a", "again");
    expect(await storage.getItem("base:a")).toBe("again");
    expect((await storage.getKeys("base")).sort()).toEqual(["base:a", "base:b"]);
    // A key only the write layer held is removed outright, leaving no mark behind.
    await storage.setItem("mine", 1);
    await storage.removeItem("mine");
    expect(await top.getKeys()).not.toContain("mine");
  });

  it("lists every layer's keys once, and clear(base) masks what lower layers hold under it", async () => {
    const { storage, base } = await layered();
    await storage.setItem("base:c", 3);
    await storage.setItem("other", 4);
    expect((await storage.getKeys()).sort()).toEqual(["base:a", "base:b", "base:c", "other", "shared"]);
    await storage.clear("base");
    expect((await storage.getKeys()).sort()).toEqual(["other", "shared"]);
    expect((await base.getKeys("base")).sort()).toEqual(["base:a", "base:b"]);
  });

  it("getMeta comes from the layer that holds the value", async () => {
    const { storage } = await layered();
    await storage.setItem("short", 1, { ttl: 60_000 });
    expect((await storage.getMeta("short")).ttl).toBeGreaterThan(0);
    expect((await storage.getMeta("base:b")).etag).toEqual(expect.any(String));
  });

  it("reports a masking removal as a remove event", async () => {
    const { storage } = await layered();
    const events: string[] = [];
    const unwatch = await storage.watch((event, key) => events.push(`${event} ${key}`));
    await storage.removeItem("base:a");
    await storage.setItem("base:a", 1);
    await unwatch();
    expect(events).toEqual(["remove base:a", "update base:a"]);
  });

  it("writes to the layer writeTo names", async () => {
    const cache = memory();
    const main = memory();
    const storage = createStorage({ driver: overlay({ layers: [cache, main], writeTo: 1 }) });
    await storage.setItem("k", 1);
    expect(await createStorage({ driver: main }).getItem("k")).toBe(1);
    expect(await createStorage({ driver: cache }).hasItem("k")).toBe(false);
    expect(() => overlay({ layers: [memory()], writeTo: 3 })).toThrow(/writeTo/);
    expect(() => overlay({ layers: [] })).toThrow(/at least one layer/);
  });

  it("shares removal marks with unstorage's overlay driver", async () => {
    const top = unstorageMemory();
    const base = unstorageMemory();
    const theirs = createUnstorage({ driver: unstorageOverlay({ layers: [top, base] }) });
    await createUnstorage({ driver: base }).setItem("k", "v");
    await theirs.removeItem("k");
    expect(await createUnstorage({ driver: top }).getItem("k")).toBe(OVERLAY_REMOVED);
    const ours = createStorage({ driver: overlay({ layers: [top, base] }) });
    expect(await ours.hasItem("k")).toBe(false);
  });
});

describe("overlay on wrapDriver", () => {
  it("keeps getItems, iterateKeys and the write layer's setItemStream; leaves out commit, history and getItemStream; flags by the rule", () => {
    const top = memory();
    const driver = overlay({ layers: [top, memory()] });
    for (const member of ["getItems", "iterateKeys", "watch"] as const) expect(driver[member], member).toBeDefined();
    expect(driver.setItemStream, "memory has no setItemStream to keep").toBeUndefined();
    expect(overlay({ layers: [fsDriver({ base: tempDir("overlay-stream-members") }), memory()] }).setItemStream).toBeDefined();
    for (const member of ["commit", "getHistory", "getItemStream", "asyncWrites"] as const) expect(driver[member], member).toBeUndefined();
    expect(driver.flags).toMatchObject({ sync: true, cas: false, transactions: false, clearBase: true, ttl: true });
    expect(overlay({ layers: [git({ dir: tempDir("overlay-history") }), memory()] }).flags).toMatchObject({ history: false, transactions: false, cas: false });
    expect((driver as { inner?: unknown }).inner).toBe(top);
    // A layer without iterateKeys or watch: the overlay has none either (the core falls back to getKeys and its own events).
    const plain = { hasItem: () => false, getItem: () => null, getKeys: () => [] };
    const mixed = overlay({ layers: [memory(), plain] });
    expect(mixed.iterateKeys).toBeUndefined();
    expect(mixed.watch).toBeUndefined();
    expect(mixed.flags?.watch).toBe(false);
  });

  it("getItems answers each key from the first layer holding it, marks hiding the layers below", async () => {
    const { storage, top } = await layered();
    await storage.setItem("shared", "top");
    await storage.removeItem("base:b");
    expect(await top.getItemRaw("base:b")).toEqual(new TextEncoder().encode(OVERLAY_REMOVED));
    expect(await storage.getItems(["base:a", "base:b", "shared", "none"])).toEqual([
      { key: "base:a", value: "from base" },
      { key: "base:b", value: null },
      { key: "shared", value: "top" },
      { key: "none", value: null },
    ]);
  });

  it("iterateKeys pages through every layer once, without marks or keys a layer above holds", async () => {
    const { storage } = await layered();
    await storage.setItem("shared", "top");
    await storage.setItem("top:only", 1);
    await storage.removeItem("base:b");
    const pages: string[][] = [];
    for await (const page of storage.iterateKeys("", { batchSize: 1 })) pages.push(page);
    expect(pages.flat().sort()).toEqual(["base:a", "shared", "top:only"]);
    expect(pages.every((page) => page.length <= 1)).toBe(true);
    expect(pages.flat().sort()).toEqual((await storage.getKeys()).sort());
  });

  it("a streamed write lands in the write layer (through fs's own setItemStream) and overrides the layers below", async () => {
    const base = createStorage({ driver: memory() });
    await base.setItem("base:a", "from base");
    const topDriver = fsDriver({ base: tempDir("overlay-stream") });
    const storage = createStorage({ driver: overlay({ layers: [topDriver, base.getMount("").driver] }) });
    const top = createStorage({ driver: topDriver });
    await storage.setItemStream("base:a", (async function* () {
      yield new TextEncoder().encode("streamed");
    })());
    expect(new TextDecoder().decode((await storage.getItemRaw("base:a"))!)).toBe("streamed");
    expect(new TextDecoder().decode((await top.getItemRaw("base:a"))!)).toBe("streamed");
    expect(await base.getItem("base:a")).toBe("from base");
  });
});
