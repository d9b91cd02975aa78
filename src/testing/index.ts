import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { isStorageError, type StorageErrorCode } from "../core/errors.js";
import { restoreSnapshot } from "../core/snapshot.js";
import { createCoreStorage } from "../core/storage.js";
import { keyDepth } from "../core/keys.js";
import { DEFAULT_KEY_LIMITS, type Driver, type DriverFlags, type Storage, type WatchEvent } from "../core/types.js";

/** What the tests of a driver see. */
export interface DriverTestContext {
  storage: Storage;
  driver: Driver;
}

export interface DriverTestOptions {
  /** Name of the describe block (default: the driver's name). */
  name?: string;
  /** Makes a driver over a fresh, empty store. Called once for the suite and once for the dispose test. */
  driver: () => Driver | Promise<Driver>;
  /** How long to wait for watch events and expiry, in ms (default 5000). */
  timeout?: number;
  /** TTL used by the expiry tests, in ms (default 200; raise it for drivers with coarse native expiry). */
  ttl?: number;
  /**
   * Titles of contract tests to skip, for a third-party driver with a known
   * gap (vitest reports each as skipped). stowage's own drivers skip none.
   */
  skip?: string[];
  /** Your driver's own tests, run with the same context. */
  additionalTests?: (context: DriverTestContext) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check` passes, retrying until `timeout`; then fails with its last error. */
export async function eventually(check: () => void | Promise<void>, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(25);
    }
  }
}

async function expectCode(action: () => unknown, code: StorageErrorCode): Promise<void> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a StorageError ${code}`).toBeDefined();
  expect(isStorageError(caught), `expected a StorageError, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

const sorted = (keys: string[]) => [...keys].sort();

/**
 * The longest key a driver's limits allow (segments of at most 100 bytes: a
 * limit on one segment's length is the driver's to declare lower) and the
 * deepest (one-byte segments).
 */
function keysAtLimits(driver: Driver): { atBytes: string; atSegments: string } {
  const { bytes, segments } = driver.keyLimits ?? DEFAULT_KEY_LIMITS;
  const atBytes = Array.from({ length: Math.ceil(bytes / 101) }, (_, index) => `${index}`.padEnd(100, "b"))
    .join(":")
    .slice(0, bytes)
    .replace(/:$/, "x");
  const atSegments = Array.from({ length: segments }, (_, index) => String(index % 10)).join(":");
  return { atBytes, atSegments };
}

/**
 * Registers the stowage driver contract as vitest tests: everything
 * unstorage's driver tests check, plus the sync API, TTL, meta, CAS,
 * transactions, watch, raw bytes, large values, many keys, odd keys and
 * dispose. Capabilities are taken from `driver.flags`: a declared capability
 * must work, an undeclared one must be refused with E_UNSUPPORTED.
 */
export function testDriver(options: DriverTestOptions): void {
  const timeout = options.timeout ?? 5000;
  const ttl = options.ttl ?? 200;
  const context = {} as DriverTestContext;
  let flags: DriverFlags = {};
  const skipped = new Set(options.skip ?? []);
  const test = (title: string, fn: () => Promise<void>) => (skipped.has(title) ? it.skip : it)(title, fn);

  describe(options.name ?? "driver contract", () => {
    beforeAll(async () => {
      context.driver = await options.driver();
      context.storage = createCoreStorage({ driver: context.driver });
      flags = context.driver.flags ?? {};
    });

    afterAll(async () => {
      await context.storage?.dispose();
    });

    describe("unstorage's driver tests", () => {
      test("init: restoreSnapshot", async () => {
        await context.storage.clear();
        await restoreSnapshot(context.storage, { initial: "backup" });
      });

      test("initial state", async () => {
        expect(await context.storage.hasItem("initial")).toBe(true);
        expect(await context.storage.getItem("initial")).toBe("backup");
        expect(await context.storage.getKeys()).toMatchObject(["initial"]);
      });

      describe("with a clean store", () => {
        beforeEach(async () => {
          await context.storage.clear();
        });

        // unstorage's tests write "s3:a?q=1" here and in getKeys and getItems; stowage refuses a "?" in a
        // key written or removed (it would act on "s3:a"), so those writes name "s3:a". Reads keep the query.
        test("setItem", async () => {
          await context.storage.setItem("s1:a", "test_data");
          await context.storage.setItem("s2:a", "test_data");
          await context.storage.setItem("s3:a", "test_data");
          expect(await context.storage.hasItem("s1:a")).toBe(true);
          expect(await context.storage.getItem("s1:a")).toBe("test_data");
          expect(await context.storage.getItem("s3:a?q=2")).toBe("test_data");
        });

        test("getKeys", async () => {
          await context.storage.setItem("s1:a", "test_data");
          await context.storage.setItem("s2:a", "test_data");
          await context.storage.setItem("s3:a", "test_data");
          expect(sorted(await context.storage.getKeys())).toEqual(["s1:a", "s2:a", "s3:a"]);
          expect(await context.storage.getKeys("s1")).toEqual(["s1:a"]);
          expect(await context.storage.getKeys("s1:")).toEqual(["s1:a"]);
        });

        test("getKeys with maxDepth", async () => {
          await context.storage.setItem("depth0_0", "test_data");
          await context.storage.setItem("depth0:depth1:depth2_0", "test_data");
          await context.storage.setItem("depth0:depth1:depth2_1", "test_data");
          await context.storage.setItem("depth0:depth1_0", "test_data");
          await context.storage.setItem("depth0:depth1_1", "test_data");
          expect(sorted(await context.storage.getKeys(undefined, { maxDepth: 0 }))).toEqual(["depth0_0"]);
          expect(sorted(await context.storage.getKeys(undefined, { maxDepth: 1 }))).toEqual(["depth0:depth1_0", "depth0:depth1_1", "depth0_0"]);
          expect(sorted(await context.storage.getKeys(undefined, { maxDepth: 2 }))).toEqual([
            "depth0:depth1:depth2_0",
            "depth0:depth1:depth2_1",
            "depth0:depth1_0",
            "depth0:depth1_1",
            "depth0_0",
          ]);
          expect(sorted(await context.storage.getKeys("depth0", { maxDepth: 1 }))).toEqual(["depth0:depth1_0", "depth0:depth1_1"]);
        });

        test("serializes objects", async () => {
          await context.storage.setItem("/data/test.json", { a: "b" });
          expect(await context.storage.getItem("/data/test.json")).toEqual({ a: "b" });
        });

        test("serializes primitives", async () => {
          await context.storage.setItem("/data/true.json", true);
          expect(await context.storage.getItem("/data/true.json")).toBe(true);
        });

        test("serializes with toJSON", async () => {
          class WithToJSON {
            toJSON() {
              return "exported";
            }
          }
          await context.storage.setItem("/data/serialized.json", new WithToJSON());
          expect(await context.storage.getItem("/data/serialized.json")).toBe("exported");
        });

        test("refuses a class instance without toJSON", async () => {
          class NoToJSON {
            value = 1;
          }
          await expect(context.storage.setItem("/data/bad.json", new NoToJSON())).rejects.toThrow("Cannot stringify value");
          expect(await context.storage.hasItem("/data/bad.json")).toBe(false);
        });

        test("raw support", async () => {
          const value = new Uint8Array([1, 2, 3]);
          await context.storage.setItemRaw("/data/raw.bin", value);
          const stored = await context.storage.getItemRaw("/data/raw.bin");
          expect(stored).toBeInstanceOf(Uint8Array);
          expect([...stored!]).toEqual([1, 2, 3]);
        });

        test("setItems", async () => {
          await context.storage.setItems([
            { key: "t:1", value: "test_data_t1" },
            { key: "t:2", value: "test_data_t2" },
            { key: "t:3", value: "test_data_t3" },
          ]);
          expect(await context.storage.getItem("t:1")).toBe("test_data_t1");
          expect(await context.storage.getItem("t:2")).toBe("test_data_t2");
          expect(await context.storage.getItem("t:3")).toBe("test_data_t3");
        });

        test("getItems", async () => {
          await context.storage.setItem("v1:a", "test_data_v1:a");
          await context.storage.setItem("v2:a", "test_data_v2:a");
          await context.storage.setItem("v3:a", "test_data_v3:a?q=1");
          expect(await context.storage.getItems([{ key: "v1:a" }, "v2:a", { key: "v3:a?q=1" }, "v4:missing"])).toEqual([
            { key: "v1:a", value: "test_data_v1:a" },
            { key: "v2:a", value: "test_data_v2:a" },
            { key: "v3:a", value: "test_data_v3:a?q=1" },
            { key: "v4:missing", value: null },
          ]);
        });

        test("falsy values", async () => {
          const falsy = [null, 0, false, ""] as const;
          for (const [index, value] of falsy.entries()) {
            await context.storage.setItem(`falsy:${index}`, value);
            expect(await context.storage.hasItem(`falsy:${index}`)).toBe(true);
            expect(await context.storage.getItem(`falsy:${index}`)).toBe(value);
          }
        });

        test("removeItem", async () => {
          await context.storage.setItem("s1:a", "test_data");
          await context.storage.removeItem("s1:a", { removeMeta: true });
          expect(await context.storage.hasItem("s1:a")).toBe(false);
          expect(await context.storage.getItem("s1:a")).toBe(null);
          await context.storage.removeItem("s1:never-existed");
        });

        test("clear", async () => {
          await context.storage.setItem("c1", 1);
          await context.storage.setItem("c2:deep:er", 2);
          await context.storage.clear();
          expect(await context.storage.getKeys()).toEqual([]);
          expect(await context.storage.getItem("c2:deep:er")).toBe(null);
        });
      });
    });

    describe("stowage's contract", () => {
      beforeEach(async () => {
        await context.storage.clear();
      });

      test("keeps strings and rich values exact", async () => {
        const value = {
          text: "456",
          date: new Date("2020-01-02T03:04:05.006Z"),
          map: new Map([["k", 1]]),
          set: new Set([1, 2]),
          big: 12345678901234567890n,
          nan: Number.NaN,
          inf: Number.NEGATIVE_INFINITY,
          missing: undefined,
        };
        await context.storage.setItem("rich", value);
        await context.storage.setItem("numeric-string", "456");
        expect(await context.storage.getItem("rich")).toEqual(value);
        expect(await context.storage.getItem("numeric-string")).toBe("456");
      });

      test("sync API, or E_UNSUPPORTED without the sync flag", async () => {
        const storage = context.storage;
        if (!flags.sync) {
          await expectCode(() => storage.getItemSync("x"), "E_UNSUPPORTED");
          await expectCode(() => storage.setItemSync("x", 1), "E_UNSUPPORTED");
          await expectCode(() => storage.getKeysSync(), "E_UNSUPPORTED");
          return;
        }
        storage.setItemSync("sync:a", { n: 1 });
        storage.setItemsSync([{ key: "sync:b", value: 2 }]);
        storage.setItemRawSync("sync:raw", new Uint8Array([9, 8]));
        expect(storage.hasItemSync("sync:a")).toBe(true);
        expect(storage.getItemSync("sync:a")).toEqual({ n: 1 });
        expect(storage.getItemsSync(["sync:a", "sync:b"])).toEqual([
          { key: "sync:a", value: { n: 1 } },
          { key: "sync:b", value: 2 },
        ]);
        expect([...storage.getItemRawSync("sync:raw")!]).toEqual([9, 8]);
        expect(sorted(storage.getKeysSync("sync"))).toEqual(["sync:a", "sync:b", "sync:raw"]);
        expect(storage.getMetaSync("sync:a")).toBeTypeOf("object");
        storage.removeItemSync("sync:a");
        expect(storage.getItemSync("sync:a")).toBe(null);
        storage.clearSync("sync");
        expect(storage.getKeysSync()).toEqual([]);
      });

      test("expires items after their ttl", async () => {
        const storage = context.storage;
        await storage.setItem("ttl:short", "soon gone", { ttl });
        await storage.setItems([{ key: "ttl:batch", value: 1, options: { ttl } }]);
        await storage.setItem("ttl:long", "stays");
        const meta = await storage.getMeta("ttl:short");
        expect(meta.ttl).toBeGreaterThan(0);
        expect(meta.ttl).toBeLessThanOrEqual(ttl);
        expect(meta.expires).toBeInstanceOf(Date);
        expect(await storage.getItem("ttl:short")).toBe("soon gone");
        await sleep(ttl + 50);
        await eventually(async () => {
          expect(await storage.hasItem("ttl:short")).toBe(false);
          expect(await storage.getItem("ttl:short")).toBe(null);
          expect(await storage.getItems(["ttl:batch", "ttl:long"])).toEqual([
            { key: "ttl:batch", value: null },
            { key: "ttl:long", value: "stays" },
          ]);
          expect(await storage.getKeys("ttl")).toEqual(["ttl:long"]);
        }, timeout);
        const iterated: string[] = [];
        for await (const batch of storage.iterateKeys("ttl")) iterated.push(...batch);
        expect(iterated).toEqual(["ttl:long"]);
      });

      test("a write without ttl clears an earlier expiry", async () => {
        const storage = context.storage;
        await storage.setItem("ttl:reset", 1, { ttl });
        await storage.setItem("ttl:reset", 2);
        await sleep(ttl + 50);
        expect(await storage.getItem("ttl:reset")).toBe(2);
        expect((await storage.getMeta("ttl:reset")).expires).toBeUndefined();
      });

      test("refuses a bad ttl", async () => {
        await expectCode(() => context.storage.setItem("ttl:bad", 1, { ttl: -5 }), "E_INVALID_OPTION");
        await expectCode(() => context.storage.setItem("ttl:bad", 1, { ttl: Number.NaN }), "E_INVALID_OPTION");
        expect(await context.storage.hasItem("ttl:bad")).toBe(false);
      });

      test("meta: setMeta, getMeta, removeMeta", async () => {
        const storage = context.storage;
        await storage.setItem("meta:a", "value");
        await storage.setMeta("meta:a", { owner: "ada", count: 2 });
        expect(await storage.getMeta("meta:a")).toMatchObject({ owner: "ada", count: 2 });
        expect(await storage.getKeys("meta")).toEqual(["meta:a"]);
        await storage.removeMeta("meta:a");
        expect((await storage.getMeta("meta:a")).owner).toBeUndefined();
        await storage.setMeta("meta:a", { owner: "ada" });
        await storage.removeItem("meta:a", { removeMeta: true });
        expect((await storage.getMeta("meta:a")).owner).toBeUndefined();
        expect(await storage.getMeta("meta:missing")).toBeTypeOf("object");
      });

      test("CAS: etags, ifMatch, ifNoneMatch", async () => {
        const storage = context.storage;
        await storage.setItem("cas:a", 1);
        if (!flags.cas) {
          await expectCode(() => storage.setItem("cas:a", 2, { ifMatch: "x" }), "E_UNSUPPORTED");
          await expectCode(() => storage.setItem("cas:a", 2, { ifNoneMatch: "*" }), "E_UNSUPPORTED");
          await expectCode(() => storage.update("cas:a", () => 2), "E_UNSUPPORTED");
          expect(await storage.getItem("cas:a")).toBe(1);
          return;
        }
        const { etag } = await storage.getMeta("cas:a");
        expect(typeof etag).toBe("string");
        await storage.setItem("cas:a", 2, { ifMatch: etag });
        await expectCode(() => storage.setItem("cas:a", 3, { ifMatch: etag }), "E_CONFLICT");
        await expectCode(() => storage.setItem("cas:a", 3, { ifNoneMatch: "*" }), "E_CONFLICT");
        await expectCode(() => storage.removeItem("cas:a", { ifMatch: etag }), "E_CONFLICT");
        expect(await storage.getItem("cas:a")).toBe(2);
        await storage.setItem("cas:new", 1, { ifNoneMatch: "*" });
        expect(await storage.getItem("cas:new")).toBe(1);
      });

      test("CAS: exactly one of many concurrent writers wins an etag", async () => {
        if (!flags.cas) return;
        const storage = context.storage;
        await storage.setItem("cas:race", 0);
        const { etag } = await storage.getMeta("cas:race");
        const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => storage.setItem("cas:race", i + 1, { ifMatch: etag })));
        const won = results.filter((result) => result.status === "fulfilled");
        expect(won).toHaveLength(1);
        for (const result of results) {
          if (result.status === "rejected") expect((result.reason as { code: string }).code).toBe("E_CONFLICT");
        }
      });

      test("CAS: concurrent update() calls lose no increment", async () => {
        if (!flags.cas) return;
        const storage = context.storage;
        const writers = 5;
        const rounds = 10;
        await Promise.all(
          Array.from({ length: writers }, async () => {
            for (let i = 0; i < rounds; i++) await storage.update<number>("cas:counter", (n) => (n ?? 0) + 1, { retries: 1000 });
          }),
        );
        expect(await storage.getItem("cas:counter")).toBe(writers * rounds);
      });

      test("CAS: a guard present with an undefined value is never ignored", async () => {
        const storage = context.storage;
        await storage.setItem("cas:guard", "theirs");
        // What `{ ifMatch: (await getMeta(key)).etag }` passes when the key was absent, or on a driver without etags.
        const code: StorageErrorCode = flags.cas ? "E_INVALID_OPTION" : "E_UNSUPPORTED";
        await expectCode(() => storage.setItem("cas:guard", "mine", { ifMatch: undefined }), code);
        await expectCode(() => storage.setItem("cas:guard", "mine", { ifNoneMatch: undefined }), code);
        await expectCode(() => storage.setItems([{ key: "cas:guard", value: "mine", options: { ifMatch: undefined } }]), code);
        await expectCode(() => storage.removeItem("cas:guard", { ifMatch: undefined }), code);
        if (!flags.cas) await expectCode(() => storage.removeItem("cas:guard", { ifMatch: "x", removeMeta: true }), "E_UNSUPPORTED");
        expect(await storage.getItem("cas:guard")).toBe("theirs");
      });

      test("CAS: guarded removeItem, with and without removeMeta and with a ttl", async () => {
        if (!flags.cas) return;
        const storage = context.storage;
        const cases: { name: string; ttl?: number; removeMeta?: boolean }[] = [
          { name: "plain" },
          { name: "meta", removeMeta: true },
          { name: "ttl", ttl: 600_000 },
          { name: "ttl-meta", ttl: 600_000, removeMeta: true },
        ];
        for (const { name, ttl: itemTtl, removeMeta } of cases) {
          const key = `cas:release:${name}`;
          // No setMeta: a driver may keep user meta out of reach (a stowage server over http); the core's tests cover it.
          await storage.setItem(key, { owner: "a" }, itemTtl === undefined ? {} : { ttl: itemTtl });
          const { etag } = await storage.getMeta(key);
          await expectCode(() => storage.removeItem(key, { ifMatch: `${etag}-stale`, removeMeta }), "E_CONFLICT");
          expect(await storage.getItem(key), `${name}: a failed guard removes nothing`).toEqual({ owner: "a" });
          await storage.removeItem(key, { ifMatch: etag, removeMeta });
          expect(await storage.hasItem(key), `${name}: removed`).toBe(false);
          expect((await storage.getMeta(key)).expires, `${name}: no expiry left`).toBeUndefined();
        }
        expect(await storage.getKeys("cas:release")).toEqual([]);
      });

      test("transaction and update hand back the caller's own error, the same object", async () => {
        const storage = context.storage;
        const error = new Error("boom");
        await expect(
          storage.transaction(() => {
            throw error;
          }),
        ).rejects.toBe(error);
        if (flags.transactions) {
          await expect(
            storage.transaction(async (tx) => {
              await tx.setItem("tx:identity", 1);
              throw error;
            }),
          ).rejects.toBe(error);
          expect(await storage.hasItem("tx:identity")).toBe(false);
        }
        if (flags.cas) {
          await storage.setItem("cas:identity", 1);
          await expect(
            storage.update("cas:identity", () => {
              throw error;
            }),
          ).rejects.toBe(error);
          expect(await storage.getItem("cas:identity")).toBe(1);
        }
      });

      test("setItems with undefined values removes those keys, as setItem does", async () => {
        const storage = context.storage;
        await storage.setItems([
          { key: "su:a", value: 1 },
          { key: "su:b", value: 2 },
        ]);
        await storage.setItem("su:t", 3, { ttl: 600_000 });
        await storage.setItems([
          { key: "su:a", value: undefined },
          { key: "su:t", value: undefined },
          { key: "su:c", value: 3 },
        ]);
        expect(sorted(await storage.getKeys("su"))).toEqual(["su:b", "su:c"]);
        expect(await storage.getItems(["su:a", "su:t", "su:c"])).toEqual([
          { key: "su:a", value: null },
          { key: "su:t", value: null },
          { key: "su:c", value: 3 },
        ]);
        expect((await storage.getMeta("su:t")).expires).toBeUndefined();
        await storage.setItems([{ key: "su:b", value: undefined }]);
        expect(await storage.getKeys("su")).toEqual(["su:c"]);
      });

      test("transactions: all writes or none", async () => {
        const storage = context.storage;
        if (!flags.transactions) {
          await expectCode(() => storage.transaction(async (tx) => tx.setItem("tx:a", 1)), "E_UNSUPPORTED");
          expect(await storage.hasItem("tx:a")).toBe(false);
          return;
        }
        await storage.setItem("tx:gone", "x");
        const result = await storage.transaction(async (tx) => {
          await tx.setItem("tx:a", 1);
          await tx.setItem("tx:b", { two: 2 });
          await tx.removeItem("tx:gone");
          expect(await tx.getItem("tx:a")).toBe(1);
          expect(await tx.hasItem("tx:gone")).toBe(false);
          return "done";
        });
        expect(result).toBe("done");
        expect(await storage.getItems(["tx:a", "tx:b", "tx:gone"])).toEqual([
          { key: "tx:a", value: 1 },
          { key: "tx:b", value: { two: 2 } },
          { key: "tx:gone", value: null },
        ]);
        await expect(
          storage.transaction(async (tx) => {
            await tx.setItem("tx:a", 100);
            await tx.setItem("tx:c", 3);
            throw new Error("changed my mind");
          }),
        ).rejects.toThrow("changed my mind");
        expect(await storage.getItem("tx:a")).toBe(1);
        expect(await storage.hasItem("tx:c")).toBe(false);
      });

      test("transactions: a conflicting write in between fails the whole commit", async () => {
        if (!flags.transactions || !flags.cas) return;
        const storage = context.storage;
        await storage.setItem("tx:balance", 10);
        await expectCode(
          () =>
            storage.transaction(async (tx) => {
              const balance = (await tx.getItem<number>("tx:balance"))!;
              await storage.setItem("tx:balance", 0);
              await tx.setItem("tx:balance", balance - 5);
              await tx.setItem("tx:log", "withdrew 5");
            }),
          "E_CONFLICT",
        );
        expect(await storage.getItem("tx:balance")).toBe(0);
        expect(await storage.hasItem("tx:log")).toBe(false);
      });

      test("history: past versions newest first, reads as of a version", async () => {
        const storage = context.storage;
        if (!flags.history) {
          await expectCode(() => storage.getHistory("h:a"), "E_UNSUPPORTED");
          await expectCode(() => storage.getItem("h:a", { version: "1" }), "E_UNSUPPORTED");
          return;
        }
        await storage.setItem("h:a", 1);
        await storage.setItem("h:other", "x");
        await storage.setItem("h:a", { two: 2 });
        await storage.setItem("h:a", "3");
        const history = await storage.getHistory("h:a");
        expect(history.map((entry) => entry.value)).toEqual(["3", { two: 2 }, 1]);
        for (const entry of history) {
          expect(typeof entry.version).toBe("string");
          expect(entry.date).toBeInstanceOf(Date);
        }
        expect((await storage.getHistory("h:a", { limit: 2 })).map((entry) => entry.value)).toEqual(["3", { two: 2 }]);
        expect(await storage.getItem("h:a", { version: history[2]!.version })).toBe(1);
        expect(await storage.getItem("h:a", { version: history[1]!.version })).toEqual({ two: 2 });
        // A removal is a version whose value is null; the key's earlier versions stay readable.
        await storage.removeItem("h:a");
        const afterRemove = await storage.getHistory("h:a", { limit: 2 });
        expect(afterRemove.map((entry) => entry.value)).toEqual([null, "3"]);
        expect(await storage.getItem("h:a", { version: afterRemove[0]!.version })).toBeNull();
        expect(await storage.getItem("h:a", { version: history[0]!.version })).toBe("3");
        expect(await storage.getHistory("h:never")).toEqual([]);
      });

      test("watch: events for setItem, setItems, removeItem and clear", async () => {
        const storage = context.storage;
        await storage.setItem("w:old", 1);
        const events: string[] = [];
        const unwatch = await storage.watch((event: WatchEvent, key: string) => events.push(`${event} ${key}`));
        try {
          // One write at a time: a watcher may fold a quick create-and-delete into nothing.
          await storage.setItem("w:a", 1);
          await eventually(() => expect(events).toContain("update w:a"), timeout);
          await storage.setItems([
            { key: "w:b", value: 2 },
            { key: "w:c", value: 3 },
          ]);
          await eventually(() => expect(events).toEqual(expect.arrayContaining(["update w:b", "update w:c"])), timeout);
          await storage.removeItem("w:a");
          await eventually(() => expect(events).toContain("remove w:a"), timeout);
          await storage.clear("w");
          await eventually(() => {
            expect(events).toContain("remove w:old");
            expect(events).toContain("remove w:b");
            expect(events).toContain("remove w:c");
          }, timeout);
        } finally {
          await unwatch();
        }
        const seen = events.length;
        await storage.setItem("w:after", 1);
        await sleep(flags.watch ? 300 : 0);
        expect(events.length).toBe(seen);
      });

      test("watch(base, cb): the key equal to base and keys below it, and a listener never fails a write", async () => {
        const failures: string[] = [];
        // A second storage over the same driver, to see where listener failures go; not disposed, as the driver is shared.
        const storage = createCoreStorage({ driver: context.driver, onWatchError: (error) => void failures.push(String(error)) });
        const events: string[] = [];
        const unwatchBase = await storage.watch("wb:user", (event: WatchEvent, key: string) => void events.push(`${event} ${key}`));
        const unwatchThrowing = await storage.watch(() => {
          throw new Error("a listener's own failure");
        });
        try {
          await expectCode(() => storage.watch("wb:user", "not a function" as never), "E_INVALID_OPTION");
          // The key equal to the base is written only where a key can also hold keys below it.
          const nested = flags.nestedKeys === true;
          if (nested) await storage.setItem("wb:user", 1);
          await storage.setItem("wb:user:pref", 2);
          await storage.setItem("wb:users", 3);
          await eventually(() => expect(events).toEqual(expect.arrayContaining([...(nested ? ["update wb:user"] : []), "update wb:user:pref"])), timeout);
          expect(events.filter((event) => event.endsWith("wb:users"))).toEqual([]);
          expect(await storage.getItem("wb:user:pref")).toBe(2);
          await eventually(() => expect(failures).toContain("Error: a listener's own failure"), timeout);
        } finally {
          await unwatchThrowing();
          await unwatchBase();
        }
      });

      test("raw bytes: all 256 byte values", async () => {
        const bytes = new Uint8Array(256 * 4);
        for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
        await context.storage.setItemRaw("raw:all", bytes);
        expect(Buffer.from((await context.storage.getItemRaw("raw:all"))!).equals(Buffer.from(bytes))).toBe(true);
        await context.storage.setItemRaw("raw:buffer", Buffer.from([0, 255, 0]));
        expect([...(await context.storage.getItemRaw("raw:buffer"))!]).toEqual([0, 255, 0]);
      });

      test("a value read or written cannot be changed from outside", async () => {
        const bytes = new Uint8Array([1, 2, 3]);
        await context.storage.setItemRaw("raw:own", bytes);
        bytes[0] = 99;
        const read = (await context.storage.getItemRaw("raw:own"))!;
        read[1] = 99;
        expect([...(await context.storage.getItemRaw("raw:own"))!]).toEqual([1, 2, 3]);
        const object = { list: [1] };
        await context.storage.setItem("obj:own", object);
        object.list.push(2);
        const got = (await context.storage.getItem<{ list: number[] }>("obj:own"))!;
        got.list.push(3);
        expect(await context.storage.getItem("obj:own")).toEqual({ list: [1] });
      });

      test("streams: setItemStream and getItemStream carry raw bytes, and a failing body writes nothing", async () => {
        const storage = context.storage;
        const parts = [randomBytes(100_000), Buffer.from("text chunk"), randomBytes(200_000)];
        await storage.setItemStream("stream:value", (async function* () {
          yield* parts;
        })());
        const whole = Buffer.concat(parts);
        expect(Buffer.from((await storage.getItemRaw("stream:value"))!).equals(whole)).toBe(true);
        const opened = (await storage.getItemStream("stream:value"))!;
        expect(opened.meta.size ?? whole.length).toBe(whole.length);
        const read: Buffer[] = [];
        for await (const chunk of opened.body) read.push(Buffer.from(chunk));
        expect(Buffer.concat(read).equals(whole)).toBe(true);
        await opened.close();
        expect(await storage.getItemStream("stream:absent")).toBeNull();
        // Opened and let go unread: the value stays readable, also as a stream.
        const untouched = (await storage.getItemStream("stream:value"))!;
        await untouched.close();
        const again = (await storage.getItemStream("stream:value"))!;
        const reread: Buffer[] = [];
        for await (const chunk of again.body) reread.push(Buffer.from(chunk));
        expect(Buffer.concat(reread).equals(whole)).toBe(true);
        const failing = (async function* () {
          yield randomBytes(1000);
          throw new Error("the body broke");
        })();
        await expect(storage.setItemStream("stream:value", failing)).rejects.toThrow("the body broke");
        // The body's own error comes back as it was thrown: the same object, not a driver's wrapping of it.
        const mine = new Error("mine");
        const throwing = (async function* () {
          yield randomBytes(70_000);
          throw mine;
        })();
        await expect(storage.setItemStream("stream:value", throwing)).rejects.toBe(mine);
        expect(Buffer.from((await storage.getItemRaw("stream:value"))!).equals(whole)).toBe(true);
        await expectCode(() => storage.setItemStream("stream:bad", "not a stream" as never), "E_INVALID_VALUE");
        expect(await storage.hasItem("stream:bad")).toBe(false);
      });

      test("a 10 MB value", async () => {
        const big = randomBytes(10 * 1024 * 1024);
        await context.storage.setItemRaw("big:raw", big);
        expect(Buffer.from((await context.storage.getItemRaw("big:raw"))!).equals(big)).toBe(true);
        const text = big.toString("base64").slice(0, 10 * 1024 * 1024);
        await context.storage.setItem("big:text", text);
        expect(await context.storage.getItem("big:text")).toBe(text);
      });

      test("10,000 keys: getKeys and iterateKeys in batches", async () => {
        const storage = context.storage;
        const count = 10_000;
        const items = Array.from({ length: count }, (_, i) => ({ key: `many:${i % 10}:${i}`, value: i }));
        await storage.setItems(items);
        expect((await storage.getKeys("many")).length).toBe(count);
        const seen = new Set<string>();
        for await (const batch of storage.iterateKeys("many", { batchSize: 700 })) {
          expect(batch.length).toBeLessThanOrEqual(700);
          for (const key of batch) seen.add(key);
        }
        expect(seen.size).toBe(count);
        const values = await storage.getItems(items.slice(0, 1000).map((item) => item.key));
        expect(values.map((entry) => entry.value)).toEqual(items.slice(0, 1000).map((item) => item.value));
      });

      test("unicode and emoji keys", async () => {
        const keys = ["ключ", "日本語:キー", "emoji:🚀✨", "mixed:ä ö ü:ß", "space in key"];
        for (const [index, key] of keys.entries()) await context.storage.setItem(key, index);
        for (const [index, key] of keys.entries()) expect(await context.storage.getItem(key)).toBe(index);
        expect(sorted(await context.storage.getKeys())).toEqual(sorted(keys.map((key) => key.replaceAll("/", ":"))));
      });

      test("a key that is a prefix of another key", async () => {
        const storage = context.storage;
        await storage.setItem("user:1", "profile");
        await storage.setItem("user:10", "other user");
        if (flags.nestedKeys === false) {
          await expectCode(() => storage.setItem("user:1:settings", "dark"), "E_INVALID_KEY");
          expect(await storage.getItem("user:1")).toBe("profile");
          expect(sorted(await storage.getKeys("user"))).toEqual(["user:1", "user:10"]);
          return;
        }
        await storage.setItem("user:1:settings", "dark");
        expect(await storage.getItem("user:1")).toBe("profile");
        expect(await storage.getItem("user:1:settings")).toBe("dark");
        expect(sorted(await storage.getKeys("user"))).toEqual(sorted(["user:1", "user:1:settings", "user:10"]));
        expect(await storage.getKeys("user:1")).toEqual(["user:1:settings"]);
        await storage.removeItem("user:1");
        expect(await storage.getItem("user:1:settings")).toBe("dark");
      });

      test("invalid keys are E_INVALID_KEY", async () => {
        const storage = context.storage;
        for (const key of ["", ":", "/", "a\0b", "../escape", "a:..:b", "./x"]) {
          await expectCode(() => storage.getItem(key), "E_INVALID_KEY");
          await expectCode(() => storage.setItem(key, 1), "E_INVALID_KEY");
          await expectCode(() => storage.hasItem(key), "E_INVALID_KEY");
          await expectCode(() => storage.removeItem(key), "E_INVALID_KEY");
        }
        await expectCode(() => storage.getItem(42 as unknown as string), "E_INVALID_KEY");
        expect(await storage.getKeys()).toEqual([]);
      });

      test("a ? never widens: an item key empty before its ? and any base with ? are E_INVALID_KEY", async () => {
        const storage = context.storage;
        await storage.setItem("q:1", 1);
        for (const key of ["?", "?x", ":?x", "/?a=1"]) {
          await expectCode(() => storage.setItem(key, 2), "E_INVALID_KEY");
          await expectCode(() => storage.removeItem(key), "E_INVALID_KEY");
        }
        for (const base of ["?", "?x", "q?x", "q:?x"]) {
          await expectCode(() => storage.clear(base), "E_INVALID_KEY");
          await expectCode(() => storage.getKeys(base), "E_INVALID_KEY");
        }
        expect(await storage.getKeys()).toEqual(["q:1"]);
      });

      test("a ? in a key written or removed is E_INVALID_KEY on every write path; reads ignore a ?query", async () => {
        const storage = context.storage;
        await storage.setItem("q", 1);
        const before = await storage.getMeta("q");
        const body = () =>
          (async function* () {
            yield new Uint8Array([1]);
          })();
        const writes: [string, () => Promise<unknown>][] = [
          ["setItem", () => storage.setItem("q?x", 2)],
          ["setItem undefined", () => storage.setItem("q?x", undefined)],
          ["setItemRaw", () => storage.setItemRaw("q?x", new Uint8Array([2]))],
          ["setItems", () => storage.setItems([{ key: "q?x", value: 2 }])],
          ["setItems undefined", () => storage.setItems([{ key: "q?x", value: undefined }])],
          ["setItemStream", () => storage.setItemStream("q?x", body())],
          ["removeItem", () => storage.removeItem("q?anything")],
          ["removeItem removeMeta", () => storage.removeItem("q?anything", { removeMeta: true })],
          ["setMeta", () => storage.setMeta("q?x", { note: "other" })],
          ["removeMeta", () => storage.removeMeta("q?x")],
          ["a ? inside a segment", () => storage.setItem("q:a?b:c", 2)],
        ];
        if (flags.cas) writes.push(["update", () => storage.update("q?x", () => 2)]);
        if (flags.transactions) {
          writes.push(["transaction setItem", () => storage.transaction((tx) => tx.setItem("q?x", 2))]);
          writes.push(["transaction setItemRaw", () => storage.transaction((tx) => tx.setItemRaw("q?x", new Uint8Array([2])))]);
          writes.push(["transaction removeItem", () => storage.transaction((tx) => tx.removeItem("q?x"))]);
        }
        if (flags.sync) {
          writes.push(["setItemSync", async () => storage.setItemSync("q?x", 2)]);
          writes.push(["removeItemSync", async () => storage.removeItemSync("q?x")]);
        }
        for (const [name, write] of writes) {
          await expectCode(write, "E_INVALID_KEY").catch((error: unknown) => {
            throw new Error(`${name}: ${String(error)}`, { cause: error });
          });
        }
        expect(await storage.getItem("q")).toBe(1);
        expect(await storage.getKeys()).toEqual(["q"]);
        // Reads strip a ?query, as unstorage does.
        expect(await storage.getItem("q?x")).toBe(1);
        expect(await storage.hasItem("q?anything")).toBe(true);
        expect((await storage.getMeta("q?x")).etag).toBe(before.etag);
        expect(await storage.getItems(["q?y"])).toEqual([{ key: "q", value: 1 }]);
      });

      test("removeItem with ifNoneMatch is E_INVALID_OPTION on every driver, and removes nothing", async () => {
        const storage = context.storage;
        await storage.setItem("rm:guarded", 1);
        const createOnly = { ifNoneMatch: "*" } as never;
        const removals: [string, () => Promise<unknown>][] = [
          ["removeItem", () => storage.removeItem("rm:guarded", createOnly)],
          ["removeItem absent", () => storage.removeItem("rm:absent", createOnly)],
          ["removeItem undefined", () => storage.removeItem("rm:guarded", { ifNoneMatch: undefined } as never)],
          ["removeItem removeMeta", () => storage.removeItem("rm:guarded", { ifNoneMatch: "*", removeMeta: true } as never)],
          ["setItem undefined", () => storage.setItem("rm:guarded", undefined, { ifNoneMatch: "*" })],
          ["setItems undefined", () => storage.setItems([{ key: "rm:guarded", value: undefined, options: { ifNoneMatch: "*" } }])],
        ];
        if (flags.transactions) removals.push(["transaction removeItem", () => storage.transaction((tx) => tx.removeItem("rm:guarded", createOnly))]);
        for (const [name, removal] of removals) {
          await expectCode(removal, "E_INVALID_OPTION").catch((error: unknown) => {
            throw new Error(`${name}: ${String(error)}`, { cause: error });
          });
        }
        expect(await storage.getItem("rm:guarded")).toBe(1);
      });

      test("keys past the driver's key limits are E_INVALID_KEY before anything is sent", async () => {
        const storage = context.storage;
        const { atBytes, atSegments } = keysAtLimits(context.driver);
        for (const key of [atBytes + "y", `${atSegments}:z`]) {
          await expectCode(() => storage.setItem(key, 1), "E_INVALID_KEY");
          await expectCode(() => storage.getItem(key), "E_INVALID_KEY");
          await expectCode(() => storage.removeItem(key), "E_INVALID_KEY");
          await expectCode(() => storage.setItems([{ key: "limits:ok", value: 1 }, { key, value: 2 }]), "E_INVALID_KEY");
        }
        expect(await storage.getKeys()).toEqual([]);
      });

      test("keys at the driver's key limits are stored", async () => {
        const storage = context.storage;
        const { atBytes, atSegments } = keysAtLimits(context.driver);
        const { bytes, segments } = context.driver.keyLimits ?? DEFAULT_KEY_LIMITS;
        if (keyDepth(atBytes) < segments) {
          await storage.setItem(atBytes, "longest");
          expect(await storage.getItem(atBytes)).toBe("longest");
        }
        if (atSegments.length <= bytes) {
          await storage.setItem(atSegments, "deepest");
          expect(await storage.getItem(atSegments)).toBe("deepest");
        }
      });

      test("clear(base) touches only base", async () => {
        const storage = context.storage;
        await storage.setItems([
          { key: "a:1", value: 1 },
          { key: "a:deep:2", value: 2 },
          { key: "ab:1", value: 3 },
          { key: "b:1", value: 4 },
        ]);
        await storage.clear("a");
        expect(sorted(await storage.getKeys())).toEqual(["ab:1", "b:1"]);
      });

      test("works mounted below a base", async () => {
        const driver = await options.driver();
        const storage = createCoreStorage({ driver: context.driver });
        storage.mount("mnt:sub", driver);
        try {
          await storage.setItem("mnt:sub:k:1", "mounted");
          await storage.setItem("mnt:sub:k:2:3", "deeper");
          expect(await storage.getItem("mnt:sub:k:1")).toBe("mounted");
          expect(sorted(await storage.getKeys("mnt"))).toEqual(["mnt:sub:k:1", "mnt:sub:k:2:3"]);
          expect(await storage.getKeys("mnt", { maxDepth: 3 })).toEqual(["mnt:sub:k:1"]);
          expect(await context.storage.getKeys("mnt")).toEqual([]);
          await storage.clear("mnt:sub:k:2");
          expect(await storage.getKeys("mnt:sub")).toEqual(["mnt:sub:k:1"]);
        } finally {
          await storage.clear("mnt:sub");
          await storage.unmount("mnt:sub", true);
        }
      });

      test("dispose", async () => {
        const driver = await options.driver();
        const storage = createCoreStorage({ driver });
        await storage.watch(() => undefined);
        await storage.setItem("dispose:a", 1);
        await storage.clear();
        await expect(storage.dispose()).resolves.toBeUndefined();
      });
    });

    options.additionalTests?.(context);
  });
}
