import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
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
});
