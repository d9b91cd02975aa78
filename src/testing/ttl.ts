import { expect } from "vitest";
import { eventually, expectCode, sleep, type Kit } from "./context.js";

/** TTL on every driver: native where flagged `ttl`, the core's otherwise. */
export function ttlTests({ context, test, ttl, timeout }: Kit): void {
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
}
