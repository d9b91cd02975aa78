import { expect } from "vitest";
import type { Storage } from "../../src/index.js";
import { git } from "../git/gitCli.js";
import { codeOf } from "./checks.js";

/**
 * `ifMatch` and `ifNoneMatch` together on a git driver's store in `dir`:
 * E_CONFLICT on setItem (async and sync), setItemRaw, setItems and a
 * transaction, even with the key's current etag (where `ifMatch` alone would
 * pass); nothing written (no ref moves), and `git fsck --strict` is clean.
 */
export async function bothGuardsConflict(storage: Storage, dir: string): Promise<void> {
  await storage.setItem("guards:held", "first");
  const { etag } = await storage.getMeta("guards:held");
  expect(typeof etag).toBe("string");
  const both = { ifMatch: etag, ifNoneMatch: "*" as const };
  const refs = () => git(dir, ["for-each-ref", "--format=%(objectname) %(refname)"]);
  const before = refs();
  expect(await codeOf(() => storage.setItem("guards:held", "second", both))).toBe("E_CONFLICT");
  expect(await codeOf(() => storage.setItem("guards:absent", "second", both))).toBe("E_CONFLICT");
  expect(await codeOf(() => storage.setItemSync("guards:held", "second", both))).toBe("E_CONFLICT");
  expect(await codeOf(() => storage.setItemRaw("guards:held", new Uint8Array([2]), both))).toBe("E_CONFLICT");
  expect(await codeOf(() => storage.setItems([{ key: "guards:other", value: "second" }, { key: "guards:held", value: "second", options: both }]))).toBe("E_CONFLICT");
  expect(
    await codeOf(() =>
      storage.transaction(async (tx) => {
        await tx.setItem("guards:other", "second");
        await tx.setItem("guards:held", "second", both);
      }),
    ),
  ).toBe("E_CONFLICT");
  expect(refs()).toBe(before);
  expect(await storage.getItem("guards:held")).toBe("first");
  expect(await storage.getItem("guards:absent")).toBeNull();
  expect(await storage.getItem("guards:other")).toBeNull();
  expect((await storage.getMeta("guards:held")).etag).toBe(etag);
  git(dir, ["fsck", "--strict", "--no-progress"]);
}
