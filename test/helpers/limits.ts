import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import type { Storage } from "../../src/index.js";
import { codeOf } from "./checks.js";

/**
 * Keys of exactly `bytes` UTF-8 bytes, each a worst case for some driver: random text (nothing for an
 * index to compress), a character every escaping driver must escape, and two-byte characters. All
 * start below U+001C, where lmdb-js's key encoding adds a byte (U+0005: lmdb refuses U+0001-U+0004).
 */
export function keysOfBytes(bytes: number): string[] {
  const rest = bytes - 1;
  return [
    `\u0005${randomBytes(rest).toString("base64url").slice(0, rest)}`,
    `\u0005${"~".repeat(rest)}`,
    `\u0005${"é".repeat(Math.floor(rest / 2))}${"e".repeat(rest % 2)}`,
  ];
}

/**
 * The driver's declared key limit holds, through the storage: keys of exactly
 * `keyLimits.bytes` store (with a ttl and user meta), read back and go; one byte more is
 * E_INVALID_KEY for setItem and setItems and leaves nothing behind. `storage`
 * must see nothing but what this writes; it is disposed at the end.
 */
export async function checkKeyLimit(storage: Storage): Promise<void> {
  try {
    const { bytes } = storage.getMount().driver.keyLimits!;
    const longest = keysOfBytes(bytes);
    for (const key of longest) {
      await storage.setItem(key, "v", { ttl: 600_000 });
      expect(await storage.getItem(key)).toBe("v");
      // The meta sidecar, `key$`, is a byte longer: declared limits leave room for it.
      await storage.setMeta(key, { note: "n" });
      expect(await storage.getMeta(key)).toMatchObject({ note: "n" });
    }
    for (const key of keysOfBytes(bytes + 1)) {
      expect(await codeOf(() => storage.setItem(key, "v"))).toBe("E_INVALID_KEY");
      expect(await codeOf(() => storage.setItems([{ key, value: "v" }]))).toBe("E_INVALID_KEY");
    }
    expect((await storage.getKeys()).sort()).toEqual([...longest].sort());
    for (const key of longest) await storage.removeItem(key, { removeMeta: true });
    expect(await storage.getKeys()).toEqual([]);
  } finally {
    await storage.dispose();
  }
}

/** A driver factory refuses an option it does not know with E_INVALID_OPTION naming it and the known ones (`valid`'s among them). */
export function checkUnknownOption(make: (options: never) => unknown, valid: Record<string, unknown>): void {
  let error: unknown;
  try {
    make({ ...valid, colour: "blue" } as never);
  } catch (caught) {
    error = caught;
  }
  expect(error).toMatchObject({ code: "E_INVALID_OPTION", message: expect.stringContaining("colour") });
  for (const name of Object.keys(valid)) expect((error as Error).message).toContain(name);
}

/**
 * Writes awaited together, whatever the driver groups them into (a batch, a
 * queue, concurrent publishes): the one whose guard fails fails alone, the
 * others land. `storage` must see nothing but what this writes; it is disposed at the end.
 */
export async function checkFailsAlone(storage: Storage): Promise<void> {
  try {
    await storage.setItem("taken", 1);
    const results = await Promise.allSettled([
      storage.setItem("a", 1),
      storage.setItem("taken", 2, { ifNoneMatch: "*" }),
      storage.setItem("b", 2),
      storage.setItems([{ key: "c", value: 3 }]),
    ]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: "E_CONFLICT" });
    expect(await storage.getItems(["a", "taken", "b", "c"])).toEqual([
      { key: "a", value: 1 },
      { key: "taken", value: 1 },
      { key: "b", value: 2 },
      { key: "c", value: 3 },
    ]);
  } finally {
    await storage.dispose();
  }
}
