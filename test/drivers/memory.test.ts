import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import memory from "../../src/drivers/memory.js";
import { testDriver } from "../../src/testing/index.js";

testDriver({
  name: "memory",
  driver: () => memory(),
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
  it("sweeps expired keys nobody reads", async () => {
    const driver = memory({ sweepInterval: 20 });
    const storage = createStorage({ driver });
    await storage.setItem("a", 1, { ttl: 10 });
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect((driver.getInstance!() as Map<string, unknown>).has("a")).toBe(false);
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
