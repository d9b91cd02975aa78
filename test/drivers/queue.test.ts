import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { createStorage, findLayer, isStorageError, wrapDriver, type Driver, type Storage, type StorageError } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import queue, { type QueueDriver } from "../../src/drivers/queue.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { codeOf } from "../helpers/checks.js";
import { KIT_TTL } from "../helpers/clock.js";
import { redisRunBase } from "../helpers/redisRun.js";
import { serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";

testDriver({ name: "queue over memory", driver: () => queue({ driver: memory(), flushInterval: 20 }), scale: "small" });
testDriver({
  name: "queue over sqlite, every update in order",
  driver: () => queue({ driver: sqlite({ path: join(tempDir("queue-kit"), "store.db") }), mergeUpdates: false, batchSize: 7 }),
});
testDriver({ name: "queue over git", driver: () => queue({ driver: git({ dir: tempDir("queue-kit-git") }) }), ttl: KIT_TTL, scale: "small" });

/** A real memory driver that records the writes reaching it, and can be told to fail them. */
function recorded() {
  const inner = memory();
  const calls: string[] = [];
  let failures = 0;
  const fail = () => {
    if (failures > 0) {
      failures--;
      throw new Error("backend down");
    }
  };
  const driver: Driver = {
    ...inner,
    setItem: (key, value, opts) => {
      fail();
      calls.push(`set ${key}=${value}`);
      return inner.setItem!(key, value, opts);
    },
    setItems: (items, common) => {
      fail();
      calls.push(`setItems ${items.map((item) => `${item.key}=${item.value}`).join(",")}`);
      return inner.setItems!(items, common);
    },
    removeItem: (key, opts) => {
      fail();
      calls.push(`remove ${key}`);
      return inner.removeItem!(key, opts);
    },
  };
  return { driver, inner: createStorage({ driver: inner }), calls, failNext: (n: number) => (failures = n) };
}

describe("queue driver", () => {
  it("reads see queued writes and removals before they reach the driver", async () => {
    const { driver, inner } = recorded();
    await inner.setItem("old", "x");
    const q = queue({ driver, flushInterval: 60_000 });
    const storage = createStorage({ driver: q });
    await storage.setItem("a", { n: 1 });
    await storage.removeItem("old");
    expect(await storage.getItem("a")).toEqual({ n: 1 });
    expect(await storage.hasItem("old")).toBe(false);
    expect((await storage.getKeys()).sort()).toEqual(["a"]);
    expect(await inner.getKeys()).toEqual(["old"]);
    expect(q.getInstance!().size).toBe(2);
    await q.flush();
    expect(q.getInstance!().size).toBe(0);
    expect(await inner.getKeys()).toEqual(["a"]);
    await storage.dispose();
  });

  it("mergeUpdates: the latest write of a key wins; without it, every update reaches the driver in order", async () => {
    const merged = recorded();
    const mergedQueue = queue({ driver: merged.driver, flushInterval: 60_000 });
    for (let i = 0; i < 5; i++) await mergedQueue.setItem!("k", String(i), {});
    await mergedQueue.setItem!("j", "x", {});
    await mergedQueue.flush();
    expect(merged.calls).toEqual(["setItems k=4,j=x"]);

    const ordered = recorded();
    const orderedQueue = queue({ driver: ordered.driver, flushInterval: 60_000, mergeUpdates: false });
    await orderedQueue.setItem!("k", "0", {});
    await orderedQueue.setItem!("k", "1", {});
    await orderedQueue.removeItem!("k", {});
    await orderedQueue.setItem!("k", "2", {});
    await orderedQueue.flush();
    expect(ordered.calls).toEqual(["setItems k=0,k=1", "remove k", "set k=2"]);
  });

  it("flushes by itself after flushInterval, in batches of batchSize", async () => {
    const { driver, calls, inner } = recorded();
    const q = queue({ driver, flushInterval: 30, batchSize: 2 });
    await q.setItem!("a", "1", {});
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toEqual(["set a=1"]);
    for (const key of ["b", "c", "d"]) await q.setItem!(key, key, {});
    await q.flush();
    expect(calls.slice(1)).toEqual(["setItems b=b,c=c", "set d=d"]);
    expect((await inner.getKeys()).sort()).toEqual(["a", "b", "c", "d"]);
  });

  it("batchSize writes waiting start a flush on the next turn, long before flushInterval", async () => {
    const { driver, calls, inner } = recorded();
    const q = queue({ driver, flushInterval: 60_000, batchSize: 3 });
    for (const key of ["a", "b", "c"]) await q.setItem!(key, key, {});
    // The write that filled the batch returned without sending it.
    expect(calls).toEqual([]);
    await eventually(() => expect(calls).toEqual(["setItems a=a,b=b,c=c"]));
    expect((await inner.getKeys()).sort()).toEqual(["a", "b", "c"]);
    expect(q.getInstance!().size).toBe(0);
  });

  it("flush() waits for a write queued at any moment of the flush before it, even as that flush ends", async () => {
    // A write and a flush() made some microtasks after a flush began: at one of these depths they land in
    // the moment the earlier flush has sent everything but not yet finished.
    for (let depth = 0; depth < 12; depth++) {
      const inner = memory();
      const q = queue({ driver: inner, flushInterval: 60_000 });
      await q.setItem!("a", "1", {});
      const first = q.flush();
      expect(q.getInstance!().flushing).toBe(true);
      let later: Promise<void> | undefined;
      const step = (left: number): void => {
        if (left > 0) return void queueMicrotask(() => step(left - 1));
        void q.setItem!("b", "2", {});
        later = q.flush();
      };
      step(depth);
      await first;
      while (later === undefined) await Promise.resolve();
      await later;
      expect(await inner.getItem!("b", {}), `depth ${depth}`).toBe("2");
      expect(q.getInstance!().flushing).toBe(false);
    }
  });

  it("reaching maxQueueSize flushes at once", async () => {
    const { driver, inner } = recorded();
    const q = queue({ driver, flushInterval: 60_000, maxQueueSize: 10, batchSize: 100 });
    for (let i = 0; i < 10; i++) await q.setItem!(`k${i}`, String(i), {});
    expect((await inner.getKeys()).length).toBe(10);
    expect(q.getInstance!().size).toBe(0);
  });

  it("a failed flush keeps the writes, reports the error, rejects flush() and retries with backoff", async () => {
    const { driver, inner, failNext } = recorded();
    const errors: StorageError[] = [];
    const q = queue({ driver, flushInterval: 60_000, retryDelay: 20, onError: (error) => errors.push(error) });
    const storage = createStorage({ driver: q });
    await storage.setItem("kept", "value");
    failNext(2);
    const flushed = await q.flush().catch((error: unknown) => error);
    expect(isStorageError(flushed)).toBe(true);
    expect(String((flushed as Error).message)).toMatch(/stay queued/);
    expect(await storage.getItem("kept")).toBe("value");
    expect(q.getInstance!().size).toBe(1);
    // Two failures (the flush and the first retry), then the second retry lands it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(errors.length).toBe(2);
    expect(await inner.getItem("kept")).toBe("value");
    expect(q.getInstance!().size).toBe(0);
  });

  it("a full queue whose driver keeps failing refuses further writes with E_UNAVAILABLE", async () => {
    const { driver, failNext } = recorded();
    const q = queue({ driver, flushInterval: 60_000, maxQueueSize: 3, retryDelay: 60_000, onError: () => undefined });
    const storage = createStorage({ driver: q });
    failNext(1_000);
    for (let i = 0; i < 3; i++) await storage.setItem(`k${i}`, i);
    const refused = await storage.setItem("k3", 3).catch((error: unknown) => error);
    expect(isStorageError(refused, "E_UNAVAILABLE")).toBe(true);
    expect(await storage.hasItem("k3")).toBe(false);
    expect(await storage.getItem("k0")).toBe(0);
    failNext(0);
    await q.flush();
    await storage.dispose();
  });

  it("dispose flushes everything to disk first", async () => {
    const base = tempDir("queue-dispose");
    const storage = createStorage({ driver: queue({ driver: fsDriver({ base }), flushInterval: 60_000 }) });
    await storage.setItems(Array.from({ length: 250 }, (_, i) => ({ key: `k:${i}`, value: i })));
    await storage.dispose();
    const reopened = createStorage({ driver: fsDriver({ base }) });
    expect((await reopened.getKeys("k")).length).toBe(250);
    expect(await reopened.getItem("k:249")).toBe(249);
  });

  it("a write the driver refuses for good is dropped and reported; the rest of its batch lands", async () => {
    const base = tempDir("queue-refused");
    const errors: StorageError[] = [];
    const q = queue({ driver: fsDriver({ base }), flushInterval: 60_000, onError: (error) => errors.push(error) });
    const storage = createStorage({ driver: q });
    const flushed = await flushWithOneRefused(storage, q);
    expect(isStorageError(flushed, "E_INVALID_KEY")).toBe(true);
    expect(errors.map((error) => error.key)).toEqual(["a:b"]);
    expect(q.getInstance!().size).toBe(0);
    const direct = createStorage({ driver: fsDriver({ base }) });
    expect((await direct.getKeys()).sort()).toEqual(["a", "c"]);
    await storage.dispose();
  });

  it("a write that keeps failing for a passing reason fails alone: its batch-mates land, it stays queued and is retried", async () => {
    const inner = memory();
    let poisoned = true;
    const poison = (key: string) => {
      if (poisoned && key === "poison") throw new Error("this value upsets the backend");
    };
    const driver: Driver = {
      ...inner,
      setItem: (key, value, opts) => {
        poison(key);
        return inner.setItem!(key, value, opts);
      },
      setItems: (items, common) => {
        for (const item of items) poison(item.key);
        return inner.setItems!(items, common);
      },
    };
    const errors: StorageError[] = [];
    const q = queue({ driver, flushInterval: 60_000, retryDelay: 60_000, mergeUpdates: false, onError: (error) => errors.push(error) });
    const storage = createStorage({ driver: q });
    await storage.setItem("a", 1);
    await storage.setItem("poison", 1);
    await storage.setItem("b", 2);
    await storage.setItem("poison", 2);
    await storage.setItem("c", 3);
    const flushed = await q.flush().catch((error: unknown) => error);
    expect(isStorageError(flushed, "E_DRIVER")).toBe(true);
    const direct = createStorage({ driver: inner });
    expect((await direct.getKeys()).sort()).toEqual(["a", "b", "c"]);
    // Both writes of the failing key wait, in order; reads see the newest.
    expect(q.getInstance!().size).toBe(2);
    expect(await storage.getItem("poison")).toBe(2);
    expect(errors).toHaveLength(1);
    poisoned = false;
    await q.flush();
    expect(await direct.getItem("poison")).toBe(2);
    await storage.dispose();
  });

  it("an onError that throws breaks no flush: refused writes are reported, the rest land, retries go on", async () => {
    const base = tempDir("queue-throwing-handler");
    const q = queue({
      driver: fsDriver({ base }),
      flushInterval: 60_000,
      onError: () => {
        throw new Error("handler boom");
      },
    });
    const storage = createStorage({ driver: q });
    const flushed = await flushWithOneRefused(storage, q);
    expect(isStorageError(flushed, "E_INVALID_KEY")).toBe(true);
    expect(q.getInstance!().size).toBe(0);
    const direct = createStorage({ driver: fsDriver({ base }) });
    expect((await direct.getKeys()).sort()).toEqual(["a", "c"]);
    await storage.dispose();
  });

  it("refuses bad options, unknown ones by name", () => {
    expect(() => queue({ driver: undefined as unknown as Driver })).toThrow(/needs a driver/);
    expect(() => queue({ driver: memory(), batchSize: 0 })).toThrow(/batchSize/);
    expect(() => queue({ driver: memory(), batchsize: 10 } as never)).toThrow(/unknown option batchsize \(known: driver, batchSize/);
    expect(() => queue({ driver: memory(), mergeUpdates: "no" } as never)).toThrow(/mergeUpdates/);
    expect(() => queue({ driver: memory(), onError: "log" } as never)).toThrow(/onError/);
  });
});

/** Writes "a", "a:b" (which fs refuses: "a" is a file) and "c" through `storage` over `q`, then flushes `q`: what the flush threw. */
async function flushWithOneRefused(storage: Storage, q: ReturnType<typeof queue>): Promise<unknown> {
  await storage.setItem("a", 1);
  await storage.setItem("a:b", 2);
  await storage.setItem("c", 3);
  return q.flush().catch((error: unknown) => error);
}

describe("queue driver on wrapDriver: what its driver has beyond reads and writes", () => {
  it("keeps exactly the members its driver has (less watch, setItemStream, asyncWrites), flags narrowed by the rule, inner exposed", () => {
    const inner = git({ dir: tempDir("queue-members") });
    const q = queue({ driver: inner });
    for (const member of ["getItems", "commit", "keyLimits"] as const) expect(q[member], member).toBeDefined();
    const overFs = queue({ driver: fsDriver({ base: tempDir("queue-members-fs") }) });
    expect(overFs.getItemStream).toBeDefined();
    expect(queue({ driver: memory() }).iterateKeys).toBeDefined();
    for (const member of ["watch", "setItemStream", "asyncWrites", "getHistory"] as const) expect(q[member], member).toBeUndefined();
    expect(q.flags).toMatchObject({ sync: false, cas: false, transactions: false, watch: false, history: false });
    expect(q.inner).toBe(inner);
    expect(findLayer(createStorage({ driver: q }).getMount("").driver, (layer) => layer.name === "git")).toBe(inner);
    const bare = queue({ driver: { hasItem: () => false, getItem: () => null, getKeys: () => [], setItem: () => undefined, removeItem: () => undefined } });
    for (const member of ["getItems", "iterateKeys", "getItemStream", "commit", "getHistory"] as const) expect(bare[member], member).toBeUndefined();
  });

  it("its flush() is found under other wrappers, and flushes", async () => {
    const inner = memory();
    const wrapped = wrapDriver(wrapDriver(queue({ driver: inner, flushInterval: 60_000 }), { name: "outer" }), { name: "outermost" });
    const storage = createStorage({ driver: wrapped });
    await storage.setItem("a", 1);
    expect(inner.hasItem("a", {})).toBe(false);
    const found = findLayer(wrapped, (layer): layer is QueueDriver => layer.name === "queue");
    await found!.flush();
    expect(inner.hasItem("a", {})).toBe(true);
    await storage.dispose();
  });

  it("getItems, iterateKeys and getItemStream see queued writes and removals over the driver's", async () => {
    const inner = memory();
    const direct = createStorage({ driver: inner });
    await direct.setItems([
      { key: "k:landed", value: "on the driver" },
      { key: "k:removed", value: "gone soon" },
      { key: "k:replaced", value: "old" },
    ]);
    const q = queue({ driver: inner, flushInterval: 60_000 });
    const storage = createStorage({ driver: q });
    await storage.setItem("k:queued", "in the queue");
    await storage.setItem("k:replaced", "new");
    await storage.removeItem("k:removed");
    await storage.setItemRaw("k:bytes", new Uint8Array([1, 2, 3]));
    expect(await storage.getItems(["k:landed", "k:queued", "k:replaced", "k:removed"])).toEqual([
      { key: "k:landed", value: "on the driver" },
      { key: "k:queued", value: "in the queue" },
      { key: "k:replaced", value: "new" },
      { key: "k:removed", value: null },
    ]);
    const pages: string[][] = [];
    for await (const page of storage.iterateKeys("k", { batchSize: 2 })) pages.push(page);
    expect(pages.flat().sort()).toEqual(["k:bytes", "k:landed", "k:queued", "k:replaced"]);
    expect(pages.every((page) => page.length <= 2)).toBe(true);
    const opened = await storage.getItemStream("k:bytes");
    const chunks: Uint8Array[] = [];
    for await (const chunk of opened!.body) chunks.push(chunk);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from([1, 2, 3]));
    expect(opened!.meta.size).toBe(3);
    expect(await storage.getItemStream("k:removed")).toBeNull();
    expect(q.getInstance!().size).toBe(4);
    await storage.dispose();
  });

  it("commit lands after every write queued before it", async () => {
    const inner = git({ dir: tempDir("queue-commit") });
    const q = queue({ driver: inner, flushInterval: 60_000 });
    const storage = createStorage({ driver: q });
    await storage.setItem("a", "queued first");
    await q.commit!([{ type: "set", key: "a", value: JSON.stringify("committed after"), options: {} }], {});
    expect(q.getInstance!().size).toBe(0);
    expect(await storage.getItem("a")).toBe("committed after");
    expect((await inner.getHistory!("a", {})).map((entry) => entry.value)).toEqual([JSON.stringify("committed after"), JSON.stringify("queued first")]);
    await storage.dispose();
  });

  it("refuses history with E_UNSUPPORTED: a flush is one batch, one commit on git, so its writes would not be versions", async () => {
    const inner = git({ dir: tempDir("queue-history") });
    const q = queue({ driver: inner, flushInterval: 60_000, mergeUpdates: false });
    const storage = createStorage({ driver: q });
    await storage.setItem("a", 1);
    await storage.setItem("a", 2);
    expect(await codeOf(() => storage.getHistory("a"))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.getItem("a", { version: "0".repeat(40) }))).toBe("E_UNSUPPORTED");
    await q.flush();
    expect((await inner.getHistory!("a", {})).map((entry) => entry.value)).toEqual(["2"]);
    expect(await storage.getItem("a")).toBe(2);
    await storage.dispose();
  });
});

const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
if (await serviceUp("Redis", redisUrl)) {
  const run = redisRunBase(redisUrl, "queue");
  testDriver({ name: "queue over redis", driver: () => queue({ driver: redis({ url: redisUrl, base: `${run}:kit` }) }), ttl: KIT_TTL, scale: "small" });

  describe("queue over redis", () => {
    it("getItems reads the keys not queued in one MGET (seen with MONITOR)", async () => {
      const base = `stowage-test:queue:${randomUUID()}`;
      const driver = redis({ url: redisUrl, base, watch: "off" });
      const q = queue({ driver, flushInterval: 60_000 });
      const storage = createStorage({ driver: q });
      const monitor = await new Redis(redisUrl).monitor();
      const commands: string[][] = [];
      monitor.on("monitor", (_time: string, args: string[]) => {
        if (args.some((arg) => arg.startsWith(base))) commands.push(args);
      });
      try {
        await storage.setItems([
          { key: "a", value: 1 },
          { key: "b", value: 2 },
          { key: "c", value: 3 },
        ]);
        await q.flush();
        await storage.setItem("queued", 4);
        await eventually(() => expect(commands.length).toBeGreaterThan(0));
        commands.length = 0;
        expect(await storage.getItems(["a", "b", "c", "queued"])).toEqual([
          { key: "a", value: 1 },
          { key: "b", value: 2 },
          { key: "c", value: 3 },
          { key: "queued", value: 4 },
        ]);
        await eventually(() => expect(commands.some((args) => args[0]!.toLowerCase() === "mget")).toBe(true));
        const reads = commands.filter((args) => ["get", "mget"].includes(args[0]!.toLowerCase()));
        expect(reads).toEqual([["mget", `${base}:a`, `${base}:b`, `${base}:c`]]);
      } finally {
        monitor.disconnect();
        await storage.clear();
        await storage.dispose();
      }
    });
  });
}
