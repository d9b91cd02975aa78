import { describe, expect, it } from "vitest";
import fsLite from "../../src/drivers/fs-lite.js";
import memory from "../../src/drivers/memory.js";
import {
  StorageError,
  createStorage,
  defineDriver,
  joinKeys,
  normalizeBaseKey,
  normalizeKey,
  prefixStorage,
  restoreSnapshot,
  snapshot,
  type Driver,
} from "../../src/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { codeOf } from "../helpers/checks.js";
import { manualClock } from "../helpers/clock.js";

/** A driver of unstorage's minimal shape: async, no flags, no meta. */
const plainDriver = defineDriver(() => {
  const data = new Map<string, string>();
  return {
    name: "plain",
    hasItem: async (key: string) => data.has(key),
    getItem: async (key: string) => data.get(key) ?? null,
    setItem: async (key: string, value: string) => void data.set(key, value),
    removeItem: async (key: string) => void data.delete(key),
    getKeys: async () => [...data.keys()],
    clear: async () => data.clear(),
  };
});

/** plainDriver with getItems and setItems, counting the calls that read and write values. */
function batchingDriver() {
  const data = new Map<string, string>();
  const calls = { getItem: 0, getItems: 0, setItem: 0, setItems: 0 };
  const driver = defineDriver(() => ({
    name: "batching",
    hasItem: async (key: string) => data.has(key),
    getItem: async (key: string) => {
      calls.getItem++;
      return data.get(key) ?? null;
    },
    getItems: async (items: { key: string }[]) => {
      calls.getItems++;
      return items.map(({ key }) => ({ key, value: data.get(key) ?? null }));
    },
    setItem: async (key: string, value: string) => {
      calls.setItem++;
      data.set(key, value);
    },
    setItems: async (items: { key: string; value: string }[]) => {
      calls.setItems++;
      for (const { key, value } of items) data.set(key, value);
    },
    removeItem: async (key: string) => void data.delete(key),
    getKeys: async () => [...data.keys()],
    clear: async () => data.clear(),
  }))({});
  return { driver, calls, data };
}

describe("keys", () => {
  it("normalizes like unstorage", () => {
    expect(normalizeKey("/a/b\\c::d:?q=1")).toBe("a:b:c:d");
    expect(normalizeKey(undefined)).toBe("");
    expect(normalizeBaseKey("a/b")).toBe("a:b:");
    expect(normalizeBaseKey("")).toBe("");
    expect(joinKeys("a", "/b/", "c")).toBe("a:b:c");
  });
});

describe("mounts", () => {
  it("routes keys to the most specific mount and lists across mounts", async () => {
    const storage = createStorage();
    storage.mount("/mnt", memory());
    storage.mount("/mnt/deep", memory());
    await storage.setItem("root", 1);
    await storage.setItem("mnt:a", 2);
    await storage.setItem("mnt:deep:b", 3);
    expect(storage.getMount("mnt:deep:b").base).toBe("mnt:deep:");
    expect(storage.getMount("mnt:x").base).toBe("mnt:");
    expect(storage.getMounts("mnt:deep", { parents: true }).map((m) => m.base)).toEqual(["mnt:deep:", "mnt:", ""]);
    expect(storage.getMounts("mnt").map((m) => m.base)).toEqual(["mnt:deep:", "mnt:"]);
    expect((await storage.getKeys()).sort()).toEqual(["mnt:a", "mnt:deep:b", "root"]);
    expect(await storage.getKeys("mnt:deep")).toEqual(["mnt:deep:b"]);
    expect((storage.getMount("mnt:deep:").driver.getInstance!() as Map<string, unknown>).get("b")).toBe("3");
    expect(() => storage.mount("mnt", memory())).toThrow(/Already mounted/);
    await storage.unmount("mnt:deep");
    expect(await storage.getItem("mnt:deep:b")).toBe(null);
  });

  it("clear(base) reaches into the mount that holds the base", async () => {
    const storage = createStorage();
    storage.mount("mnt", plainDriver({}));
    await storage.setItem("mnt:a:1", 1);
    await storage.setItem("mnt:b:1", 1);
    await storage.clear("mnt:a");
    expect(await storage.getKeys()).toEqual(["mnt:b:1"]);
  });

  it("iterateKeys pages across mounts", async () => {
    const storage = createStorage();
    storage.mount("m", plainDriver({}));
    await storage.setItems(Array.from({ length: 25 }, (_, i) => ({ key: `${i % 2 ? "m" : "r"}:${i}`, value: i })));
    const batches: string[][] = [];
    for await (const batch of storage.iterateKeys("", { batchSize: 10 })) batches.push(batch);
    expect(batches.map((batch) => batch.length)).toEqual([10, 10, 5]);
    expect(new Set(batches.flat()).size).toBe(25);
    await expect(async () => {
      for await (const batch of storage.iterateKeys("", { batchSize: 0 })) expect(batch).toBeUndefined();
    }).rejects.toMatchObject({ code: "E_INVALID_OPTION" });
  });
});

describe("errors", () => {
  it("wraps a driver's own failure as E_DRIVER with driver and cause", async () => {
    const cause = new Error("disk on fire");
    const storage = createStorage({
      driver: { ...plainDriver({}), name: "broken", getItem: async () => Promise.reject(cause) } as Driver,
    });
    const error = await storage.getItem("k").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: "E_DRIVER", driver: "broken", cause });
  });

  it("a driver without setItem is read-only", async () => {
    const { setItem: _setItem, removeItem: _removeItem, clear: _clear, ...rest } = plainDriver({});
    const storage = createStorage({ driver: rest as Driver });
    expect(await codeOf(() => storage.setItem("k", 1))).toBe("E_READONLY");
    expect(await codeOf(() => storage.removeItem("k"))).toBe("E_READONLY");
    expect(await codeOf(() => storage.clear())).toBe("E_READONLY");
  });

  it("refuses what a driver cannot do, without emulating it", async () => {
    const storage = createStorage({ driver: plainDriver({}) });
    expect(await codeOf(() => storage.getItemSync("k"))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.setItem("k", 1, { ifNoneMatch: "*" }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.transaction(async (tx) => tx.setItem("k", 1)))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.getHistory("k"))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.getItem("k", { version: "1" }))).toBe("E_UNSUPPORTED");
    expect(await storage.hasItem("k")).toBe(false);
  });

  it("a transaction stays in one mount", async () => {
    const storage = createStorage();
    storage.mount("other", memory());
    const code = await codeOf(() =>
      storage.transaction(async (tx) => {
        await tx.setItem("a", 1);
        await tx.setItem("other:b", 2);
      }),
    );
    expect(code).toBe("E_UNSUPPORTED");
    expect(await storage.getKeys()).toEqual([]);
  });

  it("update gives up with E_CONFLICT after its retries", async () => {
    const storage = createStorage();
    await storage.setItem("k", 0);
    let calls = 0;
    const code = await codeOf(() =>
      storage.update<number>(
        "k",
        async (n) => {
          calls++;
          await storage.setItem("k", 100 + calls);
          return (n ?? 0) + 1;
        },
        { retries: 2 },
      ),
    );
    expect(code).toBe("E_CONFLICT");
    expect(calls).toBe(3);
  });
});

describe("core TTL and events for drivers without them", () => {
  it("keeps ttl in the meta sidecar next to user meta", async () => {
    const storage = createStorage({ driver: plainDriver({}) });
    await storage.setItem("k", 1, { ttl: 60_000 });
    await storage.setMeta("k", { owner: "ada" });
    const meta = await storage.getMeta("k");
    expect(meta.owner).toBe("ada");
    expect(meta.ttl).toBeGreaterThan(59_000);
    await storage.removeMeta("k");
    expect((await storage.getMeta("k")).expires).toBeInstanceOf(Date);
    await storage.setItem("k", 2);
    expect(await storage.getKeys()).toEqual(["k"]);
    expect((await storage.getMeta("k")).expires).toBeUndefined();
  });

  it("setItems keeps and clears expiries as setItem does: sidecars read in one driver call, written with the values in one more", async () => {
    const { driver, calls, data } = batchingDriver();
    const storage = createStorage({ driver });
    await storage.setItem("expiring", 0, { ttl: 60_000 });
    await storage.setItem("owned", 0, { ttl: 60_000 });
    await storage.setMeta("owned", { owner: "ada" });
    await storage.setItem("unchanged", 0, { ttl: 60_000 });
    Object.assign(calls, { getItem: 0, getItems: 0, setItem: 0, setItems: 0 });

    await storage.setItems([
      { key: "expiring", value: 1 },
      { key: "owned", value: 2 },
      { key: "fresh", value: 3, options: { ttl: 30_000 } },
      { key: "plain", value: 4 },
    ]);
    // One getItems for the sidecars, one setItems for values and sidecars together.
    expect(calls).toEqual({ getItem: 0, getItems: 1, setItem: 0, setItems: 1 });
    expect(await storage.getItem("owned")).toBe(2);
    expect((await storage.getMeta("expiring")).ttl).toBeUndefined();
    expect(data.has("expiring$")).toBe(false);
    const owned = await storage.getMeta("owned");
    expect(owned.owner).toBe("ada");
    expect(owned.ttl).toBeUndefined();
    expect((await storage.getMeta("fresh")).ttl).toBeGreaterThan(29_000);
    expect(data.has("plain$")).toBe(false);
    expect((await storage.getMeta("unchanged")).ttl).toBeGreaterThan(59_000);

    await storage.setItems([{ key: "plain", value: 5 }], { ttl: 10_000 });
    expect((await storage.getMeta("plain")).ttl).toBeGreaterThan(9_000);
  });

  it("purges expired items on read", async () => {
    const driver = plainDriver({});
    const clock = manualClock();
    const storage = createStorage({ driver, clock });
    await storage.setItem("k", 1, { ttl: 10 });
    clock.advance(9);
    expect(await storage.getItem("k")).toBe(1);
    clock.advance(1);
    expect(await storage.getItem("k")).toBe(null);
    expect(await driver.getKeys("", {})).toEqual([]);
  });

  it("reports setItems and clear to watchers", async () => {
    const storage = createStorage({ driver: fsLite({ base: tempDir() }) });
    const events: string[] = [];
    await storage.watch((event, key) => events.push(`${event} ${key}`));
    await storage.setItems([
      { key: "a", value: 1 },
      { key: "b:c", value: 2 },
    ]);
    await storage.clear();
    expect(events).toEqual(expect.arrayContaining(["update a", "update b:c", "remove a", "remove b:c"]));
    expect(events).toHaveLength(4);
    await storage.unwatch();
  });
});

describe("prefixStorage and snapshots", () => {
  it("prefixStorage scopes keys, listings, batches and watch", async () => {
    const storage = createStorage();
    const users = prefixStorage(storage, "users");
    const events: string[] = [];
    await users.watch((event, key) => events.push(`${event} ${key}`));
    await users.setItem("ada", { admin: true });
    await users.setItems([{ key: "bob", value: 1 }]);
    await storage.setItem("other", 1);
    expect(await storage.getItem("users:ada")).toEqual({ admin: true });
    expect((await users.getKeys()).sort()).toEqual(["ada", "bob"]);
    expect(users.getItemSync("bob")).toBe(1);
    expect(await users.getItems(["ada"])).toEqual([{ key: "ada", value: { admin: true } }]);
    expect(events).toEqual(["update ada", "update bob"]);
  });

  it("snapshot and restoreSnapshot", async () => {
    const storage = createStorage();
    await storage.setItems([
      { key: "s:a", value: 1 },
      { key: "s:b:c", value: "two" },
    ]);
    const data = await snapshot(storage, "s");
    expect(data).toEqual({ a: 1, "b:c": "two" });
    const copy = createStorage();
    await restoreSnapshot(copy, data, "restored");
    expect(await copy.getItem("restored:b:c")).toBe("two");
  });
});

describe("clear under mounts", () => {
  it("clears only what is reachable under base: keys a more specific mount shadows stay", async () => {
    const root = memory();
    const storage = createStorage({ driver: root });
    await storage.setItem("a:shadowed", 1);
    await storage.setItem("a:b:shadowed", 1);
    await storage.setItem("a:seen", 1);
    await storage.setItem("top", 1);
    storage.mount("a:b", memory());
    await storage.setItem("a:b:mounted", 2);
    await storage.clear("a");
    expect(await storage.getKeys()).toEqual(["top"]);
    await storage.unmount("a:b");
    expect((await storage.getKeys()).sort()).toEqual(["a:b:shadowed", "top"]);
    storage.mount("a:b", memory());
    await storage.clear();
    await storage.unmount("a:b");
    expect(await storage.getKeys()).toEqual(["a:b:shadowed"]);
  });
});

describe("setItems with undefined values", () => {
  it("removes those keys as setItem(key, undefined) does, in one commit with the values where the driver commits", async () => {
    const inner = memory();
    const commits: string[][] = [];
    const driver: Driver = {
      ...inner,
      commit: (operations, opts) => {
        commits.push(operations.map((op) => `${op.type} ${op.key}`));
        return inner.commit!(operations, opts);
      },
    };
    const storage = createStorage({ driver });
    await storage.setItems([{ key: "a", value: 1 }, { key: "b", value: 2 }]);
    await storage.setItems([{ key: "a", value: undefined }, { key: "c", value: 3 }]);
    expect((await storage.getKeys()).sort()).toEqual(["b", "c"]);
    expect(commits).toEqual([["remove a", "set c"]]);
    await storage.setItems([{ key: "x", value: undefined }, { key: "x", value: 5 }, { key: "c", value: 6 }, { key: "c", value: undefined }]);
    expect(await storage.getItems(["x", "c"])).toEqual([{ key: "x", value: 5 }, { key: "c", value: null }]);
    await storage.setItems([{ key: "x", value: undefined }, { key: "c", value: 3 }]);
    commits.length = 0;
    const { etag } = await storage.getMeta("b");
    expect(await codeOf(() => storage.setItems([{ key: "b", value: undefined, options: { ifMatch: "stale" } }, { key: "d", value: 4 }]))).toBe("E_CONFLICT");
    expect((await storage.getKeys()).sort()).toEqual(["b", "c"]);
    await storage.setItems([{ key: "b", value: undefined, options: { ifMatch: etag } }]);
    expect(await storage.getKeys()).toEqual(["c"]);
  });

  it("on a driver without commit: the values are written, then the keys removed, expiries the core kept dropped", async () => {
    const storage = createStorage({ driver: plainDriver({}) });
    await storage.setItem("a", 1, { ttl: 60_000 });
    await storage.setItem("b", 1);
    await storage.setItems([{ key: "a", value: undefined }, { key: "c", value: 3 }]);
    expect((await storage.getKeys()).sort()).toEqual(["b", "c"]);
    expect(await storage.getMeta("a")).toEqual({});
    // A key named twice: its last entry wins, as in a commit applied in order.
    await storage.setItems([{ key: "b", value: undefined }, { key: "b", value: 5 }, { key: "c", value: 6 }, { key: "c", value: undefined }]);
    expect(await storage.getItems(["b", "c"])).toEqual([{ key: "b", value: 5 }, { key: "c", value: null }]);
  });
});

describe("options stowage defines whole", () => {
  it("createStorage refuses options it does not know, naming the known ones", async () => {
    const error = await (async () => {
      try {
        createStorage({ driver: memory(), tll: 10 } as never);
      } catch (caught) {
        return caught as StorageError;
      }
    })();
    expect(error?.code).toBe("E_INVALID_OPTION");
    expect(error?.message).toContain("tll");
    expect(error?.message).toContain("serializer");
  });

  it("createStorage refuses a bad serializer, ttl or driver with E_INVALID_OPTION", async () => {
    for (const options of [{ serializer: null }, { serializer: "yaml" }, { serializer: {} }, { ttl: -1 }, { ttl: "1s" }, { driver: {} }, { clock: null }, { clock: {} }, { clock: Date.now }]) {
      expect(await codeOf(() => createStorage(options as never))).toBe("E_INVALID_OPTION");
    }
  });

  it("update, getHistory and getMounts refuse unknown options; per-call driver options pass through", async () => {
    const storage = createStorage({ driver: memory() });
    expect(await codeOf(() => storage.update("k", () => 1, { retry: 3 } as never))).toBe("E_INVALID_OPTION");
    expect(() => storage.getMounts("", { parent: true } as never)).toThrow(StorageError);
    expect(storage.getMounts("", null as never)).toHaveLength(1);
    for (const limit of [0, -1, 1.5, "2"]) expect(await codeOf(() => storage.getHistory("k", { limit } as never))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.transaction(() => undefined, "x" as never))).toBe("E_INVALID_OPTION");
    expect(await storage.update("n", (n: number | null) => (n ?? 0) + 1, null as never)).toBe(1);
    await storage.setItem("k", 1, { someDriverOption: true });
    expect(await storage.getItem("k", { someDriverOption: true })).toBe(1);
  });
});

describe("per-call options", () => {
  it("must be an object: null, a string or an array is E_INVALID_OPTION, and nothing is written", async () => {
    const storage = createStorage({ driver: memory() });
    for (const bad of [null, "ttl", 5, ["a"]] as never[]) {
      for (const action of [
        () => storage.setItem("k", 1, bad),
        () => storage.setItemRaw("k", new Uint8Array([1]), bad),
        () => storage.setItems([{ key: "k", value: 1 }], bad),
        () => storage.removeItem("k", bad),
        () => storage.getItem("k", bad),
        () => storage.getItemRaw("k", bad),
        () => storage.getItems(["k"], bad),
        () => storage.hasItem("k", bad),
        () => storage.getMeta("k", bad),
        () => storage.setMeta("k", {}, bad),
        () => storage.removeMeta("k", bad),
        () => storage.getKeys("", bad),
        () => storage.clear("", bad),
        () => storage.getItemStream("k", bad),
        () =>
          storage.setItemStream(
            "k",
            (async function* () {
              yield new Uint8Array([1]);
            })(),
            bad,
          ),
      ]) {
        expect(await codeOf(action)).toBe("E_INVALID_OPTION");
      }
    }
    for (const bad of ["ttl", 5] as never[]) {
      expect(await codeOf(() => storage.setItems([{ key: "k", value: 1, options: bad }]))).toBe("E_INVALID_OPTION");
      expect(await codeOf(() => storage.getItems([{ key: "k", options: bad }]))).toBe("E_INVALID_OPTION");
    }
    expect(await storage.getKeys()).toEqual([]);
    // The boolean forms unstorage has stay.
    await storage.setItem("k", 1);
    expect(await storage.getMeta("k", true)).toHaveProperty("etag");
    await storage.removeItem("k", true);
  });
});
