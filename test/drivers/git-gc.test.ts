import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import git from "../../src/drivers/git.js";
import gitNotes from "../../src/drivers/git-notes.js";
import gitObjects from "../../src/drivers/git-objects.js";
import gitRefs from "../../src/drivers/git-refs.js";
import { createStorage, type Driver, type Storage } from "../../src/index.js";
import { git as gitCli } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";

/*
 * Stock `git gc` over each git driver's store: the one suite that runs it on
 * the drivers' repositories (an aggressive gc takes seconds; the other driver
 * tests check `git fsck` only, and test/git/packs runs gc for the engine's
 * pack reader). After gc every key reads back the same from packs, in the
 * open storage and a reopened one, writes go on, and fsck stays clean.
 */

// This machine's disk takes ~1 ms per file created: repositories go to tmpfs where there is one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const DRIVERS: Record<string, (dir: string) => Driver> = {
  git: (dir) => git({ dir }),
  "git-refs": (dir) => gitRefs({ dir }),
  "git-notes": (dir) => gitNotes({ dir }),
  "git-objects": (dir) => gitObjects({ dir }),
};

const ODD_KEYS = ["space key", "percent%41%", "ünïcode:ключ", "emoji:🙂", "deep:a:b:c:d:e:f"];
const ALL_BYTES = new Uint8Array(256).map((_, i) => i);
const LARGE = new Uint8Array(randomBytes(1024 * 1024));

/** Writes a batch of nested keys, single writes, overwrites, odd keys, raw bytes and a removal: many commits, blobs and trees to pack. */
async function fill(storage: Storage): Promise<void> {
  await storage.setItems(Array.from({ length: 300 }, (_, i) => ({ key: `k:${i % 7}:${i}`, value: { i } })));
  for (let i = 0; i < 20; i++) await storage.setItem(`k:single:${i}`, i);
  for (let i = 0; i < 5; i++) await storage.setItem("k:single:0", { overwritten: i });
  for (const key of ODD_KEYS) await storage.setItem(key, key);
  await storage.setItemRaw("raw:bytes", ALL_BYTES);
  await storage.setItemRaw("raw:large", LARGE);
  await storage.removeItem("k:0:0");
}

/** A SHA-1 of bytes: vitest's deep equality walks a megabyte byte by byte, for seconds. */
const digest = (bytes: Uint8Array | null) => (bytes ? createHash("sha1").update(bytes).digest("hex") : null);

/** Every key and value the store holds, its raw values' digests and the removed key's absence. */
async function contents(storage: Storage) {
  const keys = (await storage.getKeys()).sort();
  return {
    keys,
    values: await storage.getItems(keys.filter((key) => !key.startsWith("raw:"))),
    bytes: digest(await storage.getItemRaw("raw:bytes")),
    large: digest(await storage.getItemRaw("raw:large")),
    removed: await storage.hasItem("k:0:0"),
  };
}

describe("git gc --prune=now --aggressive on each git driver's store", () => {
  for (const [name, open] of Object.entries(DRIVERS)) {
    it(`${name}: every key reads back the same from packs, before and after reopening; writes go on; git fsck --strict is clean`, async () => {
      const dir = tempDir(`${name}-gc`);
      const storage = createStorage({ driver: open(dir) });
      await fill(storage);
      const before = await contents(storage);
      expect(before.keys).toHaveLength(300 - 1 + 20 + ODD_KEYS.length + 2);
      expect(before.bytes).toBe(digest(ALL_BYTES));
      expect(before.large).toBe(digest(LARGE));
      expect(before.removed).toBe(false);

      gitCli(dir, ["gc", "--prune=now", "--aggressive", "--quiet"]);
      expect(gitCli(dir, ["count-objects", "-v"])).toMatch(/^count: 0$/m);
      expect(await contents(storage)).toEqual(before);
      await storage.dispose();

      const reopened = createStorage({ driver: open(dir) });
      expect(await contents(reopened)).toEqual(before);
      await reopened.setItem("after", "gc");
      await reopened.dispose();
      const third = createStorage({ driver: open(dir) });
      expect(await third.getItem("after")).toBe("gc");
      await third.dispose();
      gitCli(dir, ["fsck", "--strict", "--no-progress"]);
    }, 60_000);
  }
});
