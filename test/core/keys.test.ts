import { describe, expect, it } from "vitest";
import memory from "../../src/drivers/memory.js";
import overlay from "../../src/drivers/overlay.js";
import queue from "../../src/drivers/queue.js";
import { DEFAULT_KEY_LIMITS, StorageError, createStorage, type Driver } from "../../src/index.js";
import { normalizeItemKey, normalizeWriteKey } from "../../src/core/keys.js";

async function errorOf(action: () => unknown): Promise<StorageError> {
  try {
    await action();
  } catch (error) {
    if (error instanceof StorageError) return error;
    throw new Error(`not a StorageError: ${String(error)}`);
  }
  throw new Error("expected a StorageError, got none");
}

/** A real memory driver with declared key limits, counting the calls that reach it. */
function limited(bytes: number, segments: number) {
  const inner = memory();
  const calls: string[] = [];
  const record =
    <A extends unknown[], R>(name: string, fn: (...args: A) => R) =>
    (...args: A): R => {
      calls.push(name);
      return fn(...args);
    };
  const driver: Driver = {
    ...inner,
    keyLimits: { bytes, segments },
    getItem: record("getItem", inner.getItem),
    getItems: record("getItems", inner.getItems!),
    setItem: record("setItem", inner.setItem!),
    setItems: record("setItems", inner.setItems!),
    removeItem: record("removeItem", inner.removeItem!),
    getMeta: record("getMeta", inner.getMeta!),
    getKeys: record("getKeys", inner.getKeys),
    clear: record("clear", inner.clear!),
  };
  return { driver, calls };
}

describe("key limits", () => {
  it("refuses a key past a driver's bytes or segments on every operation, before the driver is called", async () => {
    const { driver, calls } = limited(10, 3);
    const storage = createStorage({ driver });
    const long = "k".repeat(11);
    const deep = "a:b:c:d";
    for (const key of [long, deep, "é".repeat(6)]) {
      for (const action of [
        () => storage.getItem(key),
        () => storage.hasItem(key),
        () => storage.getItemRaw(key),
        () => storage.setItem(key, 1),
        () => storage.setItemRaw(key, new Uint8Array([1])),
        () => storage.removeItem(key),
        () => storage.getMeta(key),
        () => storage.setMeta(key, { a: 1 }),
        () => storage.removeMeta(key),
        () => storage.getItems(["ok", key]),
        () => storage.setItems([{ key: "ok", value: 1 }, { key, value: 2 }]),
        () => storage.setItemSync(key, 1),
        () => storage.update(key, () => 1),
        () => storage.transaction((tx) => tx.setItem(key, 1)),
      ]) {
        const error = await errorOf(action);
        expect(error.code).toBe("E_INVALID_KEY");
        expect(error.driver).toBe("memory");
      }
    }
    expect(calls).toEqual([]);
    expect(await storage.getKeys()).toEqual([]);
  });

  it("accepts keys at the bounds exactly, counted in UTF-8 bytes and segments", async () => {
    const { driver } = limited(10, 3);
    const storage = createStorage({ driver });
    await storage.setItem("k".repeat(10), 1);
    await storage.setItem("é".repeat(5), 2);
    await storage.setItem("a:b:c", 3);
    expect(await storage.getItem("é".repeat(5))).toBe(2);
    expect((await storage.getKeys()).sort()).toEqual(["a:b:c", "kkkkkkkkkk", "ééééé"].sort());
  });

  it("checks the key relative to its mount, and the part of a base inside a mount", async () => {
    const { driver, calls } = limited(5, 2);
    const storage = createStorage().mount("mnt", driver);
    await storage.setItem("mnt:abcde", 1);
    await storage.setItem("mnt:a:b", 2);
    expect((await errorOf(() => storage.setItem("mnt:abcdef", 1))).code).toBe("E_INVALID_KEY");
    expect((await errorOf(() => storage.getKeys("mnt:abcdef"))).code).toBe("E_INVALID_KEY");
    expect((await errorOf(() => storage.clear("mnt:a:b:c"))).code).toBe("E_INVALID_KEY");
    expect(await storage.getItem("mnt:abcde")).toBe(1);
    // The root (default limits) takes long keys.
    await storage.setItem("x".repeat(1000), 3);
    expect(calls.filter((call) => call === "setItem" || call === "setItems")).toHaveLength(2);
  });

  it("applies the defaults to a driver that declares none, and refuses invalid declared limits", async () => {
    const storage = createStorage();
    const atLimit = "x".repeat(DEFAULT_KEY_LIMITS.bytes);
    await storage.setItem(atLimit, 1);
    expect((await errorOf(() => storage.setItem(atLimit + "x", 1))).code).toBe("E_INVALID_KEY");
    const deep = Array.from({ length: DEFAULT_KEY_LIMITS.segments + 1 }, () => "s").join(":");
    expect((await errorOf(() => storage.getItem(deep))).code).toBe("E_INVALID_KEY");
    for (const keyLimits of [{ bytes: 0, segments: 1 }, { bytes: 1.5, segments: 1 }, { bytes: 10 }, null]) {
      const error = await errorOf(() => createStorage({ driver: { ...memory(), keyLimits } as unknown as Driver }));
      expect(error.code).toBe("E_INVALID_OPTION");
    }
  });

  it("the queue and overlay drivers carry their drivers' limits, so a bad key is refused before it is queued", async () => {
    const { driver, calls } = limited(8, 4);
    const q = queue({ driver, flushInterval: 60_000 });
    const storage = createStorage({ driver: q });
    expect((await errorOf(() => storage.setItem("k".repeat(9), 1))).code).toBe("E_INVALID_KEY");
    expect(q.getInstance!().size).toBe(0);
    await storage.setItem("ok", 1);
    await q.flush();
    expect(calls).toContain("setItem");
    await storage.dispose();
    const layered = createStorage({ driver: overlay({ layers: [memory(), limited(6, 9).driver] }) });
    expect((await errorOf(() => layered.getItem("k".repeat(7)))).code).toBe("E_INVALID_KEY");
  });
});

describe("? in keys and bases", () => {
  it("strips a ?query from keys read as unstorage does; a key written or removed may not hold ?", async () => {
    const storage = createStorage();
    await storage.setItem("q", 1);
    for (const key of ["?", "?x", ":?x", "/?a=1", "?a:b", "q?other", "q?", "q:a?b:c", "q/?x"]) {
      expect((await errorOf(() => storage.setItem(key, 2))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.removeItem(key))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.setMeta(key, {}))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.update(key, () => 2))).code).toBe("E_INVALID_KEY");
      expect(() => storage.setItemSync(key, 2)).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    }
    expect(await storage.getItem("q?other")).toBe(1);
    expect(await storage.hasItem("q?")).toBe(true);
    expect(await storage.getKeys()).toEqual(["q"]);
    // Still refused on a read: a key empty before its ? never turns into the root.
    expect((await errorOf(() => storage.getItem("?x"))).code).toBe("E_INVALID_KEY");
  });

  it("normalizeWriteKey refuses ? and passes plain keys through untouched", () => {
    expect(normalizeWriteKey("a:b")).toBe("a:b");
    expect(normalizeWriteKey("/a/b/")).toBe("a:b");
    expect(() => normalizeWriteKey("a?b")).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(normalizeItemKey("a?b")).toBe("a");
  });

  it("refuses ? anywhere in a base, so a query never widens a clear or a listing", async () => {
    const storage = createStorage();
    await storage.setItem("a:1", 1);
    await storage.setItem("b:1", 1);
    for (const base of ["?", "?x", "a?x", "a:?x", "/%3F/".replace("%3F", "?")]) {
      expect((await errorOf(() => storage.clear(base))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.getKeys(base))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.iterateKeys(base).next())).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.watch(base, () => undefined))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.unmount(base))).code).toBe("E_INVALID_KEY");
      expect((await errorOf(() => storage.mount(base, memory()))).code).toBe("E_INVALID_KEY");
    }
    expect((await storage.getKeys()).sort()).toEqual(["a:1", "b:1"]);
  });
});
