import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage, isStorageError } from "../../src/index.js";
import fsLite from "../../src/drivers/fs-lite.js";
import { testDriver } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";

testDriver({ name: "fs-lite", driver: () => fsLite({ base: tempDir("fs-lite-driver") }) });

describe("fs-lite driver", () => {
  it("has no watcher of its own and takes an ignore function", async () => {
    const base = tempDir();
    const driver = fsLite({ base, ignore: (path) => path.endsWith(".log") });
    expect(driver.watch).toBeUndefined();
    writeFileSync(join(base, "debug.log"), "x");
    writeFileSync(join(base, "kept"), "1");
    expect(await createStorage({ driver }).getKeys()).toEqual(["kept"]);
  });

  it("keys its ignore function hides are E_INVALID_KEY on every operation (it gets the key's absolute path, and each directory's)", async () => {
    const base = tempDir();
    const asked: string[] = [];
    const ignore = (path: string) => {
      asked.push(path);
      return path.endsWith(".log") || path === join(base, "tmp");
    };
    const storage = createStorage({ driver: fsLite({ base, ignore }) });
    for (const key of ["debug.log", "a:b.log", "tmp:x"]) {
      for (const action of [() => storage.setItem(key, 1), () => storage.getItem(key), () => storage.hasItem(key), () => storage.removeItem(key)]) {
        const error = await Promise.resolve().then(action).catch((caught: unknown) => caught);
        expect(isStorageError(error, "E_INVALID_KEY"), key).toBe(true);
      }
    }
    expect(asked).toContain(join(base, "a"));
    expect(asked).toContain(join(base, "a", "b.log"));
    expect(readdirSync(base)).toEqual([]);
    await storage.setItem("a:kept", 1);
    expect(await storage.getKeys()).toEqual(["a:kept"]);
  });
});
