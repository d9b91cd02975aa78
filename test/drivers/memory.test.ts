import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import memory from "../../src/drivers/memory.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { codeOf } from "../helpers/checks.js";
import { manualClock } from "../helpers/clock.js";

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
    expect(() => memory({ maxSize: 10 } as never)).toThrow(/unknown option maxSize \(known: sweepInterval, clock\)/);
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
    const clock = manualClock();
    const driver = memory({ sweepInterval: 20, clock });
    const storage = createStorage({ driver });
    await storage.setItem("a", 1, { ttl: 10 });
    clock.advance(10);
    // However late the machine runs the sweep timer: waited for, not timed (nothing reads "a" meanwhile).
    await eventually(() => expect((driver.getInstance!() as Map<string, unknown>).has("a")).toBe(false));
    await storage.dispose();
  });

  it("applies a storage-wide default ttl", async () => {
    const clock = manualClock();
    const storage = createStorage({ driver: memory({ clock }), ttl: 30 });
    await storage.setItem("a", 1);
    await storage.setItem("b", 1, { ttl: 10_000 });
    clock.advance(29);
    expect(await storage.getKeys()).toEqual(["a", "b"]);
    expect((await storage.getMeta("a")).ttl).toBe(1);
    clock.advance(1);
    expect(await storage.getKeys()).toEqual(["b"]);
  });

  it("takes its time from the clock option, and refuses a clock without now()", async () => {
    const clock = manualClock();
    const storage = createStorage({ driver: memory({ clock }) });
    await storage.setItem("a", 1, { ttl: 1000 });
    expect((await storage.getMeta("a")).expires).toEqual(new Date(clock.now() + 1000));
    clock.advance(999);
    expect(await storage.getItem("a")).toBe(1);
    clock.advance(1);
    expect(await storage.getItem("a")).toBe(null);
    for (const bad of [null, {}, { now: 5 }, Date.now] as never[]) {
      expect(await codeOf(() => memory({ clock: bad }))).toBe("E_INVALID_OPTION");
    }
  });
});
