import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage, isStorageError } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import { testDriver } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";

testDriver({ name: "fs", driver: () => fsDriver({ base: tempDir("fs-driver") }) });

async function codeOf(action: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await action();
  } catch (error) {
    return isStorageError(error) ? error.code : `not a StorageError: ${String(error)}`;
  }
  return undefined;
}

describe("fs driver", () => {
  it("needs a base", () => {
    expect(() => fsDriver({} as { base: string })).toThrow(/base directory/);
  });

  it("stores one plain file per key, readable by other tools", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    await storage.setItem("users:ada", { name: "Ada" });
    expect(readFileSync(join(base, "users", "ada"), "utf8")).toBe('{"name":"Ada"}');
    writeFileSync(join(base, "users", "bob"), "hello");
    expect(await storage.getItem("users:bob")).toBe("hello");
  });

  it("leaves no temp files behind and hides in-flight ones", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    for (let i = 0; i < 20; i++) await storage.setItem("k", i);
    writeFileSync(join(base, ".stowage-tmp-abandoned"), "x");
    expect(readdirSync(base).sort()).toEqual([".stowage-tmp-abandoned", "k"]);
    expect(await storage.getKeys()).toEqual(["k"]);
    expect(await codeOf(() => storage.setItem(".stowage-tmp-x", 1))).toBe("E_INVALID_KEY");
  });

  it("ignores node_modules and .git by default, and custom globs", async () => {
    const base = tempDir();
    mkdirSync(join(base, "node_modules", "pkg"), { recursive: true });
    writeFileSync(join(base, "node_modules", "pkg", "index.js"), "x");
    mkdirSync(join(base, ".git"));
    writeFileSync(join(base, ".git", "HEAD"), "x");
    writeFileSync(join(base, "kept"), "1");
    expect(await createStorage({ driver: fsDriver({ base }) }).getKeys()).toEqual(["kept"]);
    const custom = createStorage({ driver: fsDriver({ base, ignore: ["**/node_modules/**", "**/.git/**", "kept"] }) });
    expect(await custom.getKeys()).toEqual([]);
    await createStorage({ driver: fsDriver({ base }) }).clear();
    expect(readdirSync(base).sort()).toEqual([".git", "node_modules"]);
  });

  it("keys its ignore rules hide are E_INVALID_KEY on every operation: nothing is stored that getKeys and clear would not see", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    const hidden = ["node_modules:x", "node_modules", "a:node_modules:b", "a/node_modules"];
    for (const key of hidden) {
      for (const action of [
        () => storage.setItem(key, 1),
        () => storage.setItemRaw(key, new Uint8Array([1])),
        () => storage.getItem(key),
        () => storage.hasItem(key),
        () => storage.getMeta(key),
        () => storage.removeItem(key),
      ]) {
        expect(await codeOf(action), key).toBe("E_INVALID_KEY");
      }
    }
    const error = await storage.setItem("node_modules:x", 1).catch((caught: unknown) => caught);
    expect(String(error)).toContain("node_modules/ is left out of listings by the ignore option");
    expect(readdirSync(base)).toEqual([]);
    // What other tools put there stays out of reach, as the listing shows it.
    mkdirSync(join(base, "node_modules", "pkg"), { recursive: true });
    writeFileSync(join(base, "node_modules", "pkg", "index.js"), "x");
    expect(await storage.getKeys()).toEqual([]);
    expect(await codeOf(() => storage.getItem("node_modules:pkg:index.js"))).toBe("E_INVALID_KEY");
    // Custom globs, a directory-only one included: the walk never enters cache/, so cache:x is refused too.
    const custom = createStorage({ driver: fsDriver({ base, ignore: ["cache/", "**/*.log"] }) });
    for (const key of ["cache:x", "debug.log", "a:b.log"]) expect(await codeOf(() => custom.setItem(key, 1)), key).toBe("E_INVALID_KEY");
    for (const key of ["my_node_modules:x", "node_modulesx", "cached:x", "log"]) await storage.setItem(key, 1);
    expect((await storage.getKeys()).sort()).toEqual(["cached:x", "log", "my_node_modules:x", "node_modulesx"]);
    await storage.clear();
    expect(readdirSync(base)).toEqual(["node_modules"]);
  });

  it("readOnly refuses writes, noClear refuses clear", async () => {
    const base = tempDir();
    writeFileSync(join(base, "a"), '"x"');
    const readOnly = createStorage({ driver: fsDriver({ base, readOnly: true }) });
    expect(await readOnly.getItem("a")).toBe("x");
    expect(await codeOf(() => readOnly.setItem("a", 1))).toBe("E_READONLY");
    expect(await codeOf(() => readOnly.removeItem("a"))).toBe("E_READONLY");
    expect(await codeOf(() => readOnly.clear())).toBe("E_READONLY");
    const noClear = createStorage({ driver: fsDriver({ base, noClear: true }) });
    await noClear.setItem("b", 1);
    expect(await codeOf(() => noClear.clear())).toBe("E_READONLY");
    expect(await noClear.getKeys()).toHaveLength(2);
  });

  it("refuses keys that resolve outside base through a symlink", async () => {
    const outside = tempDir("outside");
    writeFileSync(join(outside, "secret"), '"top secret"');
    const base = tempDir();
    symlinkSync(outside, join(base, "link"));
    symlinkSync(join(outside, "secret"), join(base, "file-link"));
    const storage = createStorage({ driver: fsDriver({ base }) });
    expect(await codeOf(() => storage.getItem("link:secret"))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => storage.getItem("file-link"))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => storage.setItem("link:new", 1))).toBe("E_INVALID_KEY");
    expect(await storage.getKeys()).toEqual([]);
    expect(readdirSync(outside)).toEqual(["secret"]);
  });

  it("keys reach the driver confined: absolute paths land inside base, dot segments are refused", async () => {
    const base = tempDir();
    const driver = fsDriver({ base });
    await driver.setItem!("/abs/path", "1", {});
    expect(readFileSync(join(base, "abs", "path"), "utf8")).toBe("1");
    for (const key of ["a/../../escape", "..", "a:.:b", "nul\0byte"]) {
      let code: string | undefined;
      try {
        await driver.setItem!(key, "x", {});
      } catch (error) {
        code = isStorageError(error) ? error.code : String(error);
      }
      expect(code).toBe("E_INVALID_KEY");
    }
    expect(readdirSync(base)).toEqual(["abs"]);
  });

  it("a reader in another process never sees a half-written value", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    const size = 2 * 1024 * 1024;
    const [a, b] = ["a", "b"].map((char) => char.repeat(size));
    await storage.setItemRaw("big", Buffer.from(a!));
    // The child reads the file as fast as it can and reports any read that is not one whole value.
    const reader = spawn(process.execPath, [
      "-e",
      `const fs = require("fs"); const file = process.argv[1]; let torn = 0, reads = 0;
       const stop = Date.now() + 1500;
       while (Date.now() < stop) { const text = fs.readFileSync(file, "latin1"); reads++;
         if (text.length !== ${size} || (text !== "a".repeat(${size}) && text !== "b".repeat(${size}))) torn++; }
       process.stdout.write(JSON.stringify({ torn, reads }));`,
      join(base, "big"),
    ]);
    let output = "";
    reader.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const done = new Promise((resolve) => reader.on("exit", resolve));
    let writes = 0;
    const until = Date.now() + 1200;
    while (Date.now() < until) {
      storage.setItemRawSync("big", Buffer.from(writes % 2 ? a! : b!));
      writes++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    await done;
    const { torn, reads } = JSON.parse(output) as { torn: number; reads: number };
    expect(writes).toBeGreaterThan(5);
    expect(reads).toBeGreaterThan(5);
    expect(torn).toBe(0);
  });

  it("getMeta reports the file's times and size", async () => {
    const storage = createStorage({ driver: fsDriver({ base: tempDir() }) });
    await storage.setItem("m", "12345");
    const meta = await storage.getMeta("m");
    for (const field of ["atime", "mtime", "ctime", "birthtime"]) expect(meta[field]).toBeInstanceOf(Date);
    expect(meta.size).toBe(7);
  });

  it("getKeys walks only the base's directory", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    await storage.setItems([
      { key: "a:1", value: 1 },
      { key: "b:1", value: 1 },
    ]);
    const driver = storage.getMount("").driver;
    expect(await driver.getKeys("a:", {})).toEqual(["a:1"]);
  });

  it("watch reports changes made by another process", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    const events: string[] = [];
    const unwatch = await storage.watch((event, key) => events.push(`${event} ${key}`));
    mkdirSync(join(base, "ext"));
    writeFileSync(join(base, "ext", "file"), "1");
    await expect.poll(() => events, { timeout: 5000 }).toContain("update ext:file");
    await unwatch();
  });
});
