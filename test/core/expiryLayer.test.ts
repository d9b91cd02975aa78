import { describe, expect, it } from "vitest";
import fs from "../../src/drivers/fs.js";
import memory from "../../src/drivers/memory.js";
import { createStorage, wrapDriver, type Driver } from "../../src/index.js";
import { manualClock } from "../helpers/clock.js";
import { tempDir } from "../helpers/tempDir.js";

/*
 * The TTL layer as the mount table puts it in front of a driver without
 * native TTL (src/core/storage/expiry.ts): what the storage hands out is
 * still the user's driver, and the layer's shape costs no extra driver call.
 */

/** Real memory with its native TTL narrowed away, the reads it gets counted by method. */
function countedMemory() {
  const inner = memory();
  const calls: string[] = [];
  const counted = <A extends unknown[], R>(name: string, method: (...args: A) => R) => (...args: A): R => {
    calls.push(name);
    return method(...args);
  };
  const driver = wrapDriver(inner, {
    name: "counted",
    flags: { ttl: false },
    getItem: counted("getItem", inner.getItem.bind(inner)),
    getItems: counted("getItems", inner.getItems!.bind(inner)),
    getMeta: counted("getMeta", inner.getMeta!.bind(inner)),
  });
  return { driver, calls };
}

describe("the TTL layer in front of a driver without native TTL", () => {
  it("getMount and getMounts hand out the driver as mounted, not the layer", () => {
    const root = fs({ base: tempDir("expiry-layer-root") });
    const mounted: Driver = fs({ base: tempDir("expiry-layer-mnt") });
    const storage = createStorage({ driver: root });
    storage.mount("mnt", mounted);
    expect(storage.getMount("").driver).toBe(root);
    expect(storage.getMount("mnt:x").driver).toBe(mounted);
    expect(storage.getMounts("", { parents: true }).map((mount) => mount.driver)).toEqual([mounted, root]);
  });

  it("getMeta reads the sidecar once for the expiry and the user's meta together", async () => {
    const clock = manualClock();
    const { driver, calls } = countedMemory();
    const storage = createStorage({ driver, clock });
    await storage.setItem("k", "v", { ttl: 60_000 });
    await storage.setMeta("k", { owner: "ann" });
    calls.length = 0;
    const meta = await storage.getMeta("k");
    expect(meta).toMatchObject({ owner: "ann", ttl: 60_000 });
    expect(meta.expires).toEqual(new Date(clock.now() + 60_000));
    expect(calls).toEqual(["getMeta", "getItem"]);
  });

  it("an expired key is gone from listings and meta, and purged from the driver with its sidecar", async () => {
    const clock = manualClock();
    const { driver } = countedMemory();
    const storage = createStorage({ driver, clock });
    await storage.setItem("short", "soon gone", { ttl: 1000 });
    await storage.setItem("long", "stays");
    clock.advance(1000);
    expect(await storage.getKeys()).toEqual(["long"]);
    expect(await storage.getItem("short")).toBeNull();
    expect(await storage.getMeta("short")).toEqual({});
    expect(await driver.getKeys("", {})).toEqual(["long"]);
  });

  it("the sync API keeps the expiry on a sync driver (fs)", () => {
    const clock = manualClock();
    const storage = createStorage({ driver: fs({ base: tempDir("expiry-layer-sync") }), clock });
    storage.setItemSync("k", { n: 1 }, { ttl: 500 });
    expect(storage.getItemSync("k")).toEqual({ n: 1 });
    expect(storage.getMetaSync("k").ttl).toBe(500);
    clock.advance(500);
    expect(storage.hasItemSync("k")).toBe(false);
    expect(storage.getKeysSync()).toEqual([]);
  });

  it("removeItem with removeMeta takes value and sidecar (expiry and user meta) on a driver without commit", async () => {
    const driver = fs({ base: tempDir("expiry-layer-remove") });
    const storage = createStorage({ driver });
    await storage.setItem("k", "v", { ttl: 60_000 });
    await storage.setMeta("k", { owner: "ann" });
    await storage.removeItem("k", { removeMeta: true });
    expect(await driver.getKeys("", {})).toEqual([]);
    expect(await storage.getMeta("k")).toEqual({});
  });

  it("removeMeta keeps the expiry; setMeta keeps it too", async () => {
    const clock = manualClock();
    const storage = createStorage({ driver: fs({ base: tempDir("expiry-layer-meta") }), clock });
    await storage.setItem("k", "v", { ttl: 60_000 });
    await storage.setMeta("k", { owner: "ann" });
    await storage.removeMeta("k");
    const meta = await storage.getMeta("k");
    expect(meta.owner).toBeUndefined();
    expect(meta.ttl).toBe(60_000);
    await storage.setMeta("k", { owner: "bob" });
    expect(await storage.getMeta("k")).toMatchObject({ owner: "bob", ttl: 60_000 });
  });
});
