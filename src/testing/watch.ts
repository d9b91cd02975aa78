import { expect } from "vitest";
import { createCoreStorage } from "../core/storage.js";
import type { WatchEvent, WatchInfo } from "../core/types.js";
import { eventually, expectCode, sleep, type Kit } from "./context.js";

/** watch(cb) and watch(base, cb): every write path is heard, nothing after unwatch, a listener fails no write. */
export function watchTests({ context, test, timeout }: Kit): void {
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
    await sleep(context.driver.flags?.watch ? 300 : 0);
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
      const nested = context.driver.flags?.nestedKeys === true;
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

  test("watch info: this storage's writes are never remote; info is frozen; an etag or version given is the one getMeta or getHistory reports", async () => {
    const storage = context.storage;
    const heard: { event: WatchEvent; key: string; info: WatchInfo }[] = [];
    const unwatch = await storage.watch((event, key, info) => void heard.push({ event, key, info }));
    try {
      await storage.setItem("wi:a", { n: 1 });
      await eventually(() => expect(heard.some((entry) => entry.key === "wi:a")).toBe(true), timeout);
      // A file watcher may report one write twice (created, then changed): the last report is of the stored value.
      const { info } = heard.filter((entry) => entry.key === "wi:a").at(-1)!;
      expect(Object.isFrozen(info)).toBe(true);
      expect(["local", "unknown"]).toContain(info.origin);
      if (info.etag !== undefined) expect(info.etag).toBe((await storage.getMeta("wi:a")).etag);
      if (info.version !== undefined) expect(info.version).toBe((await storage.getHistory("wi:a", { limit: 1 }))[0]!.version);
      await storage.removeItem("wi:a");
      await eventually(() => expect(heard.some((entry) => entry.event === "remove" && entry.key === "wi:a")).toBe(true), timeout);
      const removed = heard.find((entry) => entry.event === "remove" && entry.key === "wi:a")!.info;
      expect(["local", "unknown"]).toContain(removed.origin);
      expect(removed.etag).toBeUndefined();
    } finally {
      await unwatch();
    }
  });
}
