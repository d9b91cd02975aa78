import { createStorage as createUnstorage, type Driver as UnstorageDriver } from "unstorage";
import { describe, expect, it } from "vitest";
import fsDriver from "../../src/drivers/fs.js";
import fsLite from "../../src/drivers/fs-lite.js";
import memory from "../../src/drivers/memory.js";
import unstorageMemory from "unstorage/drivers/memory";
import { createStorage, type Driver } from "../../src/index.js";
import { tempDir } from "../helpers/tempDir.js";

const drivers: [string, () => Driver][] = [
  ["memory", () => memory()],
  ["fs", () => fsDriver({ base: tempDir("in-unstorage-fs") })],
  ["fs-lite", () => fsLite({ base: tempDir("in-unstorage-fs-lite") })],
];

// Every stowage driver mounted in unstorage's own createStorage.
describe.each(drivers)("stowage %s driver in unstorage", (_name, make) => {
  const mountIn = () => createUnstorage({ driver: make() as unknown as UnstorageDriver });

  it("reads and writes values, as unstorage serializes them", async () => {
    const storage = mountIn();
    await storage.setItem("a:b", { x: 1 });
    await storage.setItem("n", 456);
    await storage.setItem("s", "text");
    expect(await storage.getItem("a:b")).toEqual({ x: 1 });
    expect(await storage.getItem("n")).toBe(456);
    expect(await storage.getItem("s")).toBe("text");
    expect(await storage.hasItem("a:b")).toBe(true);
    expect(await storage.hasItem("missing")).toBe(false);
  });

  it("lists keys with base and maxDepth", async () => {
    const storage = mountIn();
    await storage.setItem("d0", 1);
    await storage.setItem("x:d1", 1);
    await storage.setItem("x:y:d2", 1);
    expect((await storage.getKeys()).sort()).toEqual(["d0", "x:d1", "x:y:d2"]);
    expect((await storage.getKeys("", { maxDepth: 1 })).sort()).toEqual(["d0", "x:d1"]);
    expect(await storage.getKeys("x:y")).toEqual(["x:y:d2"]);
  });

  it("setItems, getItems, removeItem, clear", async () => {
    const storage = mountIn();
    await storage.setItems([
      { key: "t:1", value: "one" },
      { key: "t:2", value: "two" },
    ]);
    expect(await storage.getItems(["t:1", "t:2"])).toEqual([
      { key: "t:1", value: "one" },
      { key: "t:2", value: "two" },
    ]);
    await storage.removeItem("t:1");
    expect(await storage.getItem("t:1")).toBe(null);
    await storage.clear();
    expect(await storage.getKeys()).toEqual([]);
  });

  it("raw values and meta", async () => {
    const storage = mountIn();
    await storage.setItemRaw("raw", new Uint8Array([0, 1, 255]));
    expect([...((await storage.getItemRaw("raw")) as Uint8Array)]).toEqual([0, 1, 255]);
    await storage.setItem("m", 1);
    expect((await storage.getMeta("m")).size).toBe(1);
  });

  it("watch events reach unstorage's listeners", async () => {
    const storage = mountIn();
    const events: string[] = [];
    const unwatch = await storage.watch((event, key) => events.push(`${event} ${key}`));
    await storage.setItem("w", 1);
    await expect.poll(() => events, { timeout: 5000 }).toContain("update w");
    await unwatch();
    await storage.dispose();
  });
});

// unstorage's own storage test "mount overides", run on stowage's storage with unstorage's memory driver.
describe("unstorage's storage tests on stowage", () => {
  it("mount overides", async () => {
    const mainStorage = unstorageMemory() as unknown as Driver;
    const storage = createStorage({ driver: mainStorage });
    await storage.setItem("/mnt/test.txt", "v1");
    await storage.setItem("/mnt/test.base64", "v2");
    expect(await storage.getKeys()).toEqual(["mnt:test.txt", "mnt:test.base64"]);

    storage.mount("/mnt", unstorageMemory() as unknown as Driver);
    await storage.setItem("/mnt/test.txt", "v3");
    expect(await storage.getItem("/mnt/test.txt")).toBe("v3");
    expect(await storage.getKeys()).toEqual(["mnt:test.txt"]);

    await storage.clear("/mnt");
    await storage.unmount("/mnt");
    expect(await storage.getKeys()).toEqual(["mnt:test.txt", "mnt:test.base64"]);
    expect(await storage.getItem("/mnt/test.txt")).toBe("v1");
  });
});
