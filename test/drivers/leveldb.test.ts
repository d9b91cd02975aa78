import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import leveldb from "../../src/drivers/leveldb.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { killWhileWriting } from "../helpers/workers.js";
import { stressCount } from "../helpers/stress.js";
import { KIT_TTL } from "../helpers/clock.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

testDriver({ name: "leveldb", driver: () => leveldb({ path: join(tempDir("leveldb"), "db") }), ttl: KIT_TTL });

describe("leveldb driver", () => {
  const kills = stressCount(3, 10);
  it(`a process killed mid-write loses no acknowledged write (${kills} kills)`, async () => {
    for (let round = 0; round < kills; round++) {
      await killWhileWriting("leveldb", join(tempDir("leveldb-crash"), "db"), (path) => leveldb({ path }));
    }
  }, 180_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

  it("reopens with what was written, and lists a prefix from its range", async () => {
    const path = join(tempDir("leveldb-reopen"), "db");
    const first = createStorage({ driver: leveldb({ path }) });
    await first.setItems(Array.from({ length: 300 }, (_, i) => ({ key: `${i % 3 ? "x" : "y"}:${i}`, value: i })));
    await first.dispose();
    const second = createStorage({ driver: leveldb({ path }) });
    expect((await second.getKeys("y")).length).toBe(100);
    expect(await second.getItem("x:1")).toBe(1);
    await second.dispose();
  });
});

describe("leveldb expiry", () => {
  it("purges expired keys from the database, and keeps a key whose expiry a later write removed", async () => {
    const driver = leveldb({ path: join(tempDir("leveldb-purge"), "db"), purgeInterval: 50 });
    const storage = createStorage({ driver });
    await storage.setItem("short", 1, { ttl: 20 });
    await storage.setItem("kept", 1, { ttl: 20 });
    await storage.setItem("kept", 2);
    const db = driver.getInstance!();
    // However late the machine runs the purge timer: waited for, not timed.
    await eventually(async () => expect(await db.keys({ lt: "\u0001" }).all()).toEqual(["\u0000kept"]));
    expect(await db.get("short")).toBeUndefined();
    expect(await storage.getItem("kept")).toBe(2);
    await storage.dispose();
  });
});

describe("leveldb transactions", () => {
  it("carry raw values too", async () => {
    const storage = createStorage({ driver: leveldb({ path: join(tempDir("leveldb-raw"), "db") }) });
    await storage.transaction(async (tx) => tx.setItemRaw("bin", new Uint8Array([0, 255])));
    expect([...(await storage.getItemRaw("bin"))!]).toEqual([0, 255]);
    await storage.dispose();
  });
});

describe("leveldb options, key limits and batched writes", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(leveldb, { path: "unused" });
  });

  it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
    checkKeyLimit(createStorage({ driver: leveldb({ path: join(tempDir("leveldb-limit"), "db") }) })));

  it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: leveldb({ path: join(tempDir("leveldb-alone"), "db") }) })));
});
