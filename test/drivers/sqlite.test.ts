import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { testDriver } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { killWhileWriting, storeAfterWorkers } from "../helpers/workers.js";
import { stressCount } from "../helpers/stress.js";
import { KIT_TTL } from "../helpers/clock.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

testDriver({ name: "sqlite", driver: () => sqlite({ path: join(tempDir("sqlite"), "store.db") }), ttl: KIT_TTL });

describe("sqlite driver", () => {
  it("several processes share one file: concurrent CAS increments lose nothing", async () => {
    const path = join(tempDir("sqlite-multi"), "shared.db");
    const storage = await storeAfterWorkers("sqlite", path, (file) => sqlite({ path: file }), { processes: 3, mode: "increment", count: 40 });
    expect(await storage.getItem("counter")).toBe(3 * 40);
    await storage.dispose();
  }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

  const kills = stressCount(3, 10);
  it(`a process killed mid-write loses no acknowledged write (${kills} kills)`, async () => {
    for (let round = 0; round < kills; round++) {
      await killWhileWriting("sqlite", join(tempDir("sqlite-crash"), "crash.db"), (path) => sqlite({ path }));
    }
  }, 180_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

  it("refuses a bad table name and a missing directory with clear errors", () => {
    expect(() => sqlite({ path: ":memory:", table: "x; DROP TABLE y" })).toThrow(/Invalid table name/);
    expect(() => sqlite({ path: "/nonexistent/dir/store.db" })).toThrow(/Cannot open/);
  });

  it("lists a prefix from the index range, in pages", async () => {
    const storage = createStorage({ driver: sqlite({ path: ":memory:" }) });
    await storage.setItems(Array.from({ length: 2500 }, (_, i) => ({ key: `${i % 2 ? "odd" : "even"}:${i}`, value: i })));
    const pages: number[] = [];
    for await (const batch of storage.iterateKeys("odd", { batchSize: 500 })) pages.push(batch.length);
    expect(pages).toEqual([500, 500, 250]);
    await storage.dispose();
  });
});

describe("sqlite options, key limits and batched writes", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(sqlite, { path: ":memory:", table: "t" });
  });

  it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
    checkKeyLimit(createStorage({ driver: sqlite({ path: join(tempDir("sqlite-limit"), "store.db") }) })));

  it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: sqlite({ path: ":memory:" }) })));

  it("ifMatch together with ifNoneMatch never holds: E_CONFLICT whether the key holds that etag or is absent, and nothing is written", async () => {
    const storage = createStorage({ driver: sqlite({ path: ":memory:" }) });
    await storage.setItem("held", 1);
    const etag = (await storage.getMeta("held")).etag!;
    const both = { ifMatch: etag, ifNoneMatch: "*" as const };
    await expect(storage.setItem("held", 2, both)).rejects.toMatchObject({ code: "E_CONFLICT" });
    await expect(storage.setItem("absent", 2, both)).rejects.toMatchObject({ code: "E_CONFLICT" });
    expect(await storage.getItem("held")).toBe(1);
    expect(await storage.hasItem("absent")).toBe(false);
    await storage.dispose();
  });
});
