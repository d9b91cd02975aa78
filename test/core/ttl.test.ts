import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import queue from "../../src/drivers/queue.js";
import { createStorage, type Driver } from "../../src/index.js";
import { codeOf } from "../helpers/checks.js";
import { manualClock } from "../helpers/clock.js";
import { tempDir } from "../helpers/tempDir.js";

const REF = "refs/stowage/default";

function commitCount(dir: string): number {
  return Number(execFileSync("git", ["rev-list", "--count", REF], { cwd: dir, encoding: "utf8" }).trim());
}

/**
 * The real memory driver with its native TTL hidden (so the core keeps
 * expiry in sidecars), every driver call counted by method name. A
 * pass-through, not a mock: each call goes to memory.
 */
function countingMemory(options: { getItems?: boolean; commit?: boolean } = {}) {
  const inner = memory();
  const calls: string[] = [];
  const driver: Record<string, unknown> = { name: "counting", flags: { ...inner.flags, ttl: false, transactions: options.commit !== false } };
  for (const [name, member] of Object.entries(inner)) {
    if (typeof member !== "function" || name === "watch") continue;
    if (name === "getItems" && options.getItems === false) continue;
    if (name === "commit" && options.commit === false) continue;
    driver[name] = (...args: unknown[]) => {
      calls.push(name);
      return (member as (...rest: unknown[]) => unknown).apply(inner, args);
    };
  }
  return { driver: driver as unknown as Driver, calls, inner };
}

describe("the TTL layer writes value and expiry in one atomic step", () => {
  it("git: a setItem with ttl is one commit; setItems with ttls, a guarded write and a removal one commit each", async () => {
    const dir = tempDir("ttl-git");
    const storage = createStorage({ driver: git({ dir }) });
    await storage.setItem("seed", 0);
    let before = commitCount(dir);
    await storage.setItem("k", "v", { ttl: 60_000 });
    expect(commitCount(dir) - before).toBe(1);
    expect((await storage.getMeta("k")).ttl).toBeGreaterThan(59_000);
    expect(execFileSync("git", ["show", `${REF}:k$`], { cwd: dir, encoding: "utf8" })).toContain("expires");

    before = commitCount(dir);
    await storage.setItems([
      { key: "a", value: 1, options: { ttl: 60_000 } },
      { key: "b", value: 2 },
      { key: "k", value: "plain" },
    ]);
    expect(commitCount(dir) - before).toBe(1);
    expect((await storage.getMeta("k")).ttl).toBeUndefined();
    expect((await storage.getMeta("a")).ttl).toBeGreaterThan(59_000);

    const { etag } = await storage.getMeta("a");
    before = commitCount(dir);
    await storage.setItem("a", 3, { ttl: 30_000, ifMatch: etag });
    expect(commitCount(dir) - before).toBe(1);
    // The guard stays on the value: a stale etag writes neither value nor sidecar.
    before = commitCount(dir);
    expect(await codeOf(() => storage.setItem("a", 4, { ttl: 90_000, ifMatch: etag }))).toBe("E_CONFLICT");
    expect(commitCount(dir)).toBe(before);
    expect(await storage.getItem("a")).toBe(3);
    expect((await storage.getMeta("a")).ttl).toBeLessThanOrEqual(30_000);

    before = commitCount(dir);
    await storage.removeItem("a");
    expect(commitCount(dir) - before).toBe(1);
    expect(() => execFileSync("git", ["cat-file", "-e", `${REF}:a$`], { cwd: dir, stdio: "ignore" })).toThrow();
    execFileSync("git", ["fsck", "--strict"], { cwd: dir, stdio: "ignore" });
    await storage.dispose();
  }, 60_000);

  it("a driver with commit gets one commit per TTL write, value and sidecar together", async () => {
    const { driver, calls, inner } = countingMemory();
    const storage = createStorage({ driver });
    await storage.setItem("k", 1, { ttl: 1000 });
    expect(calls).toEqual(["getItems", "commit"]);
    expect(inner.getKeys("", {})).toEqual(["k", "k$"]);
  });

  it("without commit: one setItems for value and sidecar; a guarded write goes value first, and its conflict leaves the sidecar alone", async () => {
    const { driver, calls, inner } = countingMemory({ commit: false });
    const storage = createStorage({ driver });
    await storage.setItem("k", 1, { ttl: 1000 });
    expect(calls).toEqual(["getItems", "setItems"]);
    const sidecar = inner.getItem("k$", {});
    calls.length = 0;
    expect(await codeOf(() => storage.setItem("k", 2, { ttl: 5000, ifNoneMatch: "*" }))).toBe("E_CONFLICT");
    expect(calls).toEqual(["getItems", "setItem"]);
    expect(inner.getItem("k$", {})).toBe(sidecar);
  });
});

describe("the TTL layer reads value and expiry in one driver call", () => {
  it("getItem and getItems cost one getItems where the driver has it; expiry comes from the storage's clock", async () => {
    const { driver, calls } = countingMemory();
    const clock = manualClock();
    const storage = createStorage({ driver, clock });
    await storage.setItem("k", "v", { ttl: 1000 });
    await storage.setItem("plain", "p");
    calls.length = 0;
    expect(await storage.getItem("k")).toBe("v");
    expect(calls).toEqual(["getItems"]);
    calls.length = 0;
    expect(await storage.getItems(["k", "plain"])).toEqual([
      { key: "k", value: "v" },
      { key: "plain", value: "p" },
    ]);
    expect(calls).toEqual(["getItems"]);
    expect((await storage.getMeta("k")).ttl).toBe(1000);

    clock.advance(999);
    expect((await storage.getMeta("k")).ttl).toBe(1);
    expect(await storage.getItem("k")).toBe("v");
    clock.advance(1);
    calls.length = 0;
    expect(await storage.getItem("k")).toBe(null);
    // The purge: versions of value and sidecar, the expiry again, one guarded commit.
    expect(calls).toEqual(["getItems", "getMeta", "getMeta", "getItem", "commit"]);
    expect(await storage.getKeys()).toEqual(["plain"]);
  });

  it("without getItems a read is value, then sidecar", async () => {
    const { driver, calls } = countingMemory({ getItems: false });
    const storage = createStorage({ driver });
    await storage.setItem("k", "v", { ttl: 1000 });
    calls.length = 0;
    expect(await storage.getItem("k")).toBe("v");
    expect(calls).toEqual(["getItem", "getItem"]);
  });

  it("expiry without sleeping: hasItem, getKeys, iterateKeys and streams see a key go at its moment", async () => {
    const clock = manualClock();
    const { driver } = countingMemory();
    const storage = createStorage({ driver, clock, ttl: 500 });
    await storage.setItem("a", 1);
    await storage.setItem("b", 2, { ttl: 2000 });
    clock.advance(500);
    expect(await storage.hasItem("a")).toBe(false);
    expect(await storage.getKeys()).toEqual(["b"]);
    const listed: string[] = [];
    for await (const batch of storage.iterateKeys()) listed.push(...batch);
    expect(listed).toEqual(["b"]);
    expect(await storage.getItemStream("b")).not.toBe(null);
    clock.advance(1500);
    expect(await storage.getItemStream("b")).toBe(null);
    expect(await storage.getKeys()).toEqual([]);
  });

  it("the default memory driver keeps time by the storage's clock", async () => {
    const clock = manualClock();
    const storage = createStorage({ clock });
    await storage.setItem("k", 1, { ttl: 1000 });
    expect((await storage.getMeta("k")).expires).toEqual(new Date(clock.now() + 1000));
    clock.advance(1000);
    expect(await storage.getItem("k")).toBe(null);
  });

  it("a transaction's expiries come from the storage's clock", async () => {
    const clock = manualClock();
    const { driver } = countingMemory();
    const storage = createStorage({ driver, clock });
    await storage.transaction(async (tx) => tx.setItem("t", 1, { ttl: 100 }));
    expect((await storage.getMeta("t")).expires).toEqual(new Date(clock.now() + 100));
    clock.advance(100);
    expect(await storage.getItem("t")).toBe(null);
  });
});

describe("sidecars are internal", () => {
  const sidecarKeys = ["a$", "x:a$", "a$?q=1"];

  it("every operation refuses a key naming a sidecar with E_INVALID_KEY, and writes nothing", async () => {
    const { driver, inner } = countingMemory();
    const storage = createStorage({ driver });
    await storage.setItem("a", 1, { ttl: 60_000 });
    await storage.setMeta("a", { owner: "ada" });
    const stored = (inner.getKeys("", {}) as string[]).sort();
    for (const key of sidecarKeys) {
      const chunks = async function* () {
        yield new Uint8Array([1]);
      };
      for (const [name, action] of Object.entries({
        getItem: () => storage.getItem(key),
        getItemSync: () => storage.getItemSync(key),
        getItems: () => storage.getItems(["a", key]),
        getItemRaw: () => storage.getItemRaw(key),
        hasItem: () => storage.hasItem(key),
        getMeta: () => storage.getMeta(key),
        setMeta: () => storage.setMeta(key, { x: 1 }),
        removeMeta: () => storage.removeMeta(key),
        setItem: () => storage.setItem(key, { expires: 0 }),
        setItems: () => storage.setItems([{ key: "b", value: 1 }, { key, value: 2 }]),
        setItemRaw: () => storage.setItemRaw(key, new Uint8Array([1])),
        getItemStream: () => storage.getItemStream(key),
        setItemStream: () => storage.setItemStream(key, chunks()),
        removeItem: () => storage.removeItem(key),
        update: () => storage.update(key, () => 1),
        transactionRead: () => storage.transaction((tx) => tx.getItem(key)),
        transactionWrite: () => storage.transaction((tx) => tx.setItem(key, 1)),
      })) {
        expect(await codeOf(action), `${name}(${key})`).toBe("E_INVALID_KEY");
      }
    }
    expect((inner.getKeys("", {}) as string[]).sort()).toEqual(stored);
    expect(await storage.getItem("a")).toBe(1);
    expect((await storage.getMeta("a")).owner).toBe("ada");
  });

  it("listings and watch events never show a sidecar; clear removes them with their keys", async () => {
    const { driver, inner } = countingMemory();
    const storage = createStorage({ driver });
    const events: string[] = [];
    await storage.watch((event, key) => void events.push(`${event} ${key}`));
    await storage.setItem("a", 1, { ttl: 60_000 });
    await storage.setItems([{ key: "b", value: 2, options: { ttl: 60_000 } }]);
    await storage.setMeta("b", { note: "x" });
    expect(await storage.getKeys()).toEqual(["a", "b"]);
    const listed: string[] = [];
    for await (const batch of storage.iterateKeys("", { batchSize: 1 })) listed.push(...batch);
    expect(listed).toEqual(["a", "b"]);
    await storage.removeItem("a");
    await storage.clear();
    expect(inner.getKeys("", {})).toEqual([]);
    expect(events.length).toBeGreaterThan(0);
    expect(events.filter((event) => event.endsWith("$"))).toEqual([]);
    await storage.unwatch();
  });
});

describe("drivers that keep time take the clock option", () => {
  it("queue: a queued write's ttl counts on the clock from the write, and what it flushes carries the ttl left", async () => {
    const clock = manualClock();
    const target = memory({ clock });
    const driver = queue({ driver: target, clock, flushInterval: 60_000 });
    const storage = createStorage({ driver });
    await storage.setItem("q", 1, { ttl: 1000 });
    await storage.setItem("gone", 2, { ttl: 100 });
    clock.advance(400);
    expect((await storage.getMeta("q")).ttl).toBe(600);
    expect(await storage.getItem("q")).toBe(1);
    expect(await storage.getItem("gone")).toBe(null);
    await driver.flush();
    expect(target.getMeta!("q", {})).toMatchObject({ ttl: 600 });
    expect(target.hasItem("gone", {})).toBe(false);
    clock.advance(600);
    expect(await storage.getItem("q")).toBe(null);
    await storage.dispose();
  });

  it("a clock without now() is E_INVALID_OPTION for createStorage, memory and queue", async () => {
    for (const bad of [null, {}, { now: 1 }] as never[]) {
      expect(await codeOf(() => createStorage({ clock: bad }))).toBe("E_INVALID_OPTION");
      expect(await codeOf(() => memory({ clock: bad }))).toBe("E_INVALID_OPTION");
      expect(await codeOf(() => queue({ driver: memory(), clock: bad }))).toBe("E_INVALID_OPTION");
    }
  });
});

describe("ttl: Infinity is no expiry, whatever the storage's default", () => {
  /** The real memory driver, the options of every write it gets recorded (ttl hidden or native). */
  function recording(nativeTtl: boolean) {
    const inner = memory();
    const seen: unknown[] = [];
    const driver: Driver = {
      ...inner,
      name: "recording",
      flags: { ...inner.flags, ttl: nativeTtl },
      setItem(key, value, opts) {
        seen.push(opts?.ttl);
        return inner.setItem!(key, value, opts);
      },
    };
    return { driver, seen };
  }

  for (const native of [true, false]) {
    it(`${native ? "native TTL" : "the TTL layer"}: setItem, setItems and transactions with ttl Infinity never expire, and drivers never see Infinity`, async () => {
      const clock = manualClock();
      const { driver, seen } = recording(native);
      const storage = createStorage({ driver, ttl: 50, clock });
      await storage.setItem("forever", 1, { ttl: Infinity });
      await storage.setItems([{ key: "batch", value: 2, options: { ttl: Infinity } }]);
      await storage.transaction((tx) => tx.setItem("tx", 3, { ttl: Infinity }));
      await storage.setItem("default", 4);
      clock.advance(60_000);
      expect(await storage.getItem("forever")).toBe(1);
      expect(await storage.getItem("batch")).toBe(2);
      expect(await storage.getItem("tx")).toBe(3);
      expect((await storage.getMeta("forever")).ttl).toBeUndefined();
      expect(seen).not.toContain(Infinity);
      if (!native) expect(await storage.getItem("default")).toBeNull();
      await storage.dispose();
    });
  }

  it("a storage ttl of Infinity is no default; NaN, 0 and negative ttls are still E_INVALID_OPTION", async () => {
    const storage = createStorage({ driver: memory(), ttl: Infinity });
    await storage.setItem("k", 1);
    expect((await storage.getMeta("k")).ttl).toBeUndefined();
    for (const ttl of [Number.NaN, 0, -1, -Infinity]) expect(await codeOf(() => storage.setItem("k", 1, { ttl }))).toBe("E_INVALID_OPTION");
    await storage.dispose();
  });
});
