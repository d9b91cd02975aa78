import { describe, expect, it } from "vitest";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import overlay from "../../src/drivers/overlay.js";
import { createStorage, prefixStorage, type Driver, type WatchInfo } from "../../src/index.js";
import { eventually } from "../../src/testing/index.js";
import { codeOf } from "../helpers/checks.js";
import { tempDir } from "../helpers/tempDir.js";

// memory has a watch of its own; without it, the core reports the writes.
describe.each([
  ["memory", () => memory()],
  ["memory without its watch", () => ({ ...memory(), watch: undefined })],
])("watch over %s", (_name, make) => {
  it("watch(base, cb) gets the key equal to the base and keys below it, and unwatch stops it", async () => {
    const storage = createStorage({ driver: make() });
    const events: string[] = [];
    const unwatch = await storage.watch("user:preferences", (event, key) => void events.push(`${event} ${key}`));
    await storage.setItem("user:preferences", { theme: "dark" });
    await storage.setItem("user:preferences:color", "red");
    await storage.setItem("user:preferencesX", 1);
    await storage.setItem("user", 1);
    await storage.setItems([{ key: "user:preferences:a", value: 1 }, { key: "other", value: 1 }]);
    await storage.removeItem("user:preferences:color");
    await storage.clear("user:preferences");
    await unwatch();
    await storage.setItem("user:preferences", 2);
    expect(events.sort()).toEqual(
      ["update user:preferences", "update user:preferences:color", "update user:preferences:a", "remove user:preferences:color", "remove user:preferences:a"].sort(),
    );
    await storage.dispose();
  });

  it("a three-argument listener gets info: origin local for this storage's writes, and memory's own feed adds the etag", async () => {
    const driver = make();
    const storage = createStorage({ driver });
    const seen: { event: string; key: string; info: WatchInfo }[] = [];
    await storage.watch((event, key, info) => void seen.push({ event, key, info }));
    await storage.setItem("k", 1);
    await storage.setItems([{ key: "j", value: 2 }]);
    await storage.removeItem("k");
    const etagOf = async (key: string) => (driver.watch ? (await storage.getMeta(key)).etag : undefined);
    expect(seen).toEqual([
      { event: "update", key: "k", info: { origin: "local", etag: seen[0]!.info.etag } },
      { event: "update", key: "j", info: { origin: "local", ...(driver.watch ? { etag: await etagOf("j") } : {}) } },
      { event: "remove", key: "k", info: { origin: "local" } },
    ]);
    // memory's etag of k, before it was removed, was the version just below j's.
    expect(seen[0]!.info.etag).toBe(driver.watch ? String(Number(await etagOf("j")) - 1) : undefined);
    // Listeners share one info: frozen, so none can change what the next one sees.
    expect(seen.every(({ info }) => Object.isFrozen(info))).toBe(true);
    await storage.dispose();
  });

  it("a view made by prefixStorage passes info on with its relative key", async () => {
    const storage = createStorage({ driver: make() });
    const view = prefixStorage(storage, "app");
    const seen: string[] = [];
    await view.watch((event, key, info) => void seen.push(`${event} ${key} ${info.origin}`));
    await view.setItem("a", 1);
    expect(seen).toEqual(["update a local"]);
    await storage.dispose();
  });

  it("a listener that throws or rejects never fails the write; the error goes to onWatchError", async () => {
    const failures: string[] = [];
    const storage = createStorage({ driver: make(), onWatchError: (error, event, key) => void failures.push(`${String(error)} ${event} ${key}`) });
    const events: string[] = [];
    await storage.watch(() => {
      throw new Error("thrown boom");
    });
    await storage.watch(async () => Promise.reject(new Error("async boom")));
    await storage.watch((event, key) => void events.push(`${event} ${key}`));
    await storage.setItem("k", 1);
    await storage.setItems([{ key: "j", value: 1 }]);
    await storage.removeItem("k");
    await storage.clear();
    expect(await storage.getKeys()).toEqual([]);
    await expect.poll(() => failures.length).toBe(8);
    expect(failures.filter((failure) => failure.includes("thrown boom"))).toHaveLength(4);
    expect(events).toContain("update k");
    await storage.dispose();
  });

  it("a callback that is not a function is E_INVALID_OPTION at watch() time, and writes go on", async () => {
    const storage = createStorage({ driver: make() });
    for (const bad of ["nope", 1, null, {}]) {
      expect(await codeOf(() => storage.watch(bad as never))).toBe("E_INVALID_OPTION");
      expect(await codeOf(() => storage.watch("user:preferences", bad as never))).toBe("E_INVALID_OPTION");
    }
    expect(await codeOf(() => storage.watch("user:preferences" as never))).toBe("E_INVALID_OPTION");
    await storage.setItem("user:preferences", 1);
    expect(await storage.getItem("user:preferences")).toBe(1);
    await storage.dispose();
  });
});

describe("watch info from a driver that passes none", () => {
  it("an unstorage-style driver calling callback(event, key) gives info { origin: 'unknown' }", async () => {
    const inner = memory();
    // unstorage's drivers call their callback with two arguments.
    const driver: Driver = { ...inner, watch: (callback) => inner.watch!((event, key) => callback(event, key)) };
    const storage = createStorage({ driver });
    const seen: unknown[] = [];
    await storage.watch((event, key, info) => void seen.push([event, key, info]));
    await storage.setItem("k", 1);
    expect(seen).toEqual([["update", "k", { origin: "unknown" }]]);
    await storage.dispose();
  });
});

describe("watch info a driver reuses", () => {
  it("listeners get a frozen copy, so a driver that changes its own info object afterwards can, and they keep what they got", async () => {
    const inner = memory();
    const shared: WatchInfo = { origin: "remote", etag: "1" };
    const driver: Driver = {
      ...inner,
      watch: (callback) =>
        inner.watch!((event, key) => {
          callback(event, key, shared);
          shared.etag = String(Number(shared.etag) + 1);
        }),
    };
    const storage = createStorage({ driver });
    const seen: WatchInfo[] = [];
    await storage.watch((_event, _key, info) => void seen.push(info));
    await storage.setItem("a", 1);
    await storage.setItem("b", 1);
    expect(seen).toEqual([{ origin: "remote", etag: "1" }, { origin: "remote", etag: "2" }]);
    expect(seen.every((info) => Object.isFrozen(info))).toBe(true);
    await storage.dispose();
  });
});

describe("watch info from a driver not flagged history", () => {
  it("has no version: overlay over a git layer passes on git's info, the commit left out, the blob etag kept", async () => {
    const storage = createStorage({ driver: overlay({ layers: [git({ dir: tempDir("watch-overlay-git") }), memory()] }) });
    expect(storage.getMount("").driver.flags?.history).toBe(false);
    const seen: WatchInfo[] = [];
    const unwatch = await storage.watch((_event, key, info) => void (key === "k" && seen.push(info)));
    await storage.setItem("k", { n: 1 });
    await eventually(() => expect(seen.length).toBeGreaterThan(0));
    const { etag } = await storage.getMeta("k");
    expect(seen.at(-1)).toEqual({ origin: "local", etag });
    expect(Object.isFrozen(seen.at(-1))).toBe(true);
    await unwatch();
    await storage.dispose();
  });
});

describe("onWatchError", () => {
  it("a handler that throws is turned into a process warning, not thrown at the writer", async () => {
    const storage = createStorage({
      onWatchError: () => {
        throw new Error("handler boom");
      },
    });
    await storage.watch(() => {
      throw new Error("listener boom");
    });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning.message);
    process.on("warning", onWarning);
    try {
      await storage.setItem("k", 1);
      await expect.poll(() => warnings.some((warning) => warning.includes("handler boom"))).toBe(true);
    } finally {
      process.off("warning", onWarning);
    }
    expect(await storage.getItem("k")).toBe(1);
    expect(await codeOf(() => createStorage({ onWatchError: "log" as never }))).toBe("E_INVALID_OPTION");
  });
});
