import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import memory from "../../src/drivers/memory.js";
import { eventually, testDriver } from "../../src/testing/index.js";

testDriver({
  name: "memory",
  driver: () => memory(),
  scale: "small",
  additionalTests: (context) => {
    it("getInstance returns the Map of stored values", async () => {
      await context.storage.setItem("instance", { a: 1 });
      const map = context.driver.getInstance!() as Map<string, unknown>;
      expect(map).toBeInstanceOf(Map);
      expect(map.get("instance")).toBe('{"a":1}');
    });
  },
});

describe("memory driver", () => {
  it("refuses options it does not know, naming the known ones, and a bad sweepInterval", () => {
    expect(() => memory({ maxSize: 10 } as never)).toThrow(/unknown option maxSize \(known: sweepInterval\)/);
    expect(() => memory({ size: 10 } as never)).toThrow(/unknown option size/);
    for (const sweepInterval of [0, -1, Number.NaN, "10" as never]) expect(() => memory({ sweepInterval })).toThrow(/sweepInterval/);
    expect(() => memory()).not.toThrow();
    expect(() => memory({ sweepInterval: 5 })).not.toThrow();
  });

  it("a listener that throws never fails the write it is told of", async () => {
    const driver = memory();
    await driver.watch!(() => {
      throw new Error("listener boom");
    });
    const warned: string[] = [];
    const onWarning = (warning: Error) => void warned.push(warning.message);
    process.on("warning", onWarning);
    try {
      driver.setItem!("k", "1", {});
      expect(driver.getItem("k")).toBe("1");
      await expect.poll(() => warned.some((message) => message.includes("listener boom"))).toBe(true);
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("sweeps expired keys nobody reads", async () => {
    const driver = memory({ sweepInterval: 20 });
    const storage = createStorage({ driver });
    await storage.setItem("a", 1, { ttl: 10 });
    // However late the machine runs the sweep timer: waited for, not timed (nothing reads "a" meanwhile).
    await eventually(() => expect((driver.getInstance!() as Map<string, unknown>).has("a")).toBe(false));
    await storage.dispose();
  });

  it("applies a storage-wide default ttl", async () => {
    const storage = createStorage({ ttl: 30 });
    await storage.setItem("a", 1);
    await storage.setItem("b", 1, { ttl: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await storage.getKeys()).toEqual(["b"]);
  });
});
