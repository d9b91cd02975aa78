import { expect } from "vitest";
import type { StorageErrorCode } from "../core/errors.js";
import { expectCode, expectEachCode, needsFlag, type Kit, type Needs } from "./context.js";

const etagKind = (kind: "version" | "content"): Needs => ({
  when: (flags) => flags.cas === true && flags.etag === kind,
  note: `the driver's etags are not flagged "${kind}"`,
});

/** Compare-and-swap: etags, ifMatch / ifNoneMatch guards, update(), and the declared etag kind. */
export function casTests(kit: Kit): void {
  guardTests(kit);
  raceTests(kit);
  etagTests(kit);
}

function guardTests({ context, test }: Kit): void {
  test(
    "CAS: etags, ifMatch, ifNoneMatch",
    async () => {
      const storage = context.storage;
      await storage.setItem("cas:a", 1);
      const { etag } = await storage.getMeta("cas:a");
      expect(typeof etag).toBe("string");
      await storage.setItem("cas:a", 2, { ifMatch: etag });
      await expectCode(() => storage.setItem("cas:a", 3, { ifMatch: etag }), "E_CONFLICT");
      await expectCode(() => storage.setItem("cas:a", 3, { ifNoneMatch: "*" }), "E_CONFLICT");
      await expectCode(() => storage.removeItem("cas:a", { ifMatch: etag }), "E_CONFLICT");
      expect(await storage.getItem("cas:a")).toBe(2);
      await storage.setItem("cas:new", 1, { ifNoneMatch: "*" });
      expect(await storage.getItem("cas:new")).toBe(1);
    },
    needsFlag("cas"),
  );

  test(
    "CAS: E_UNSUPPORTED without the cas flag",
    async () => {
      const storage = context.storage;
      await storage.setItem("cas:a", 1);
      await expectCode(() => storage.setItem("cas:a", 2, { ifMatch: "x" }), "E_UNSUPPORTED");
      await expectCode(() => storage.setItem("cas:a", 2, { ifNoneMatch: "*" }), "E_UNSUPPORTED");
      await expectCode(() => storage.update("cas:a", () => 2), "E_UNSUPPORTED");
      expect(await storage.getItem("cas:a")).toBe(1);
    },
    needsFlag("cas", false),
  );

  test("CAS: a guard present with an undefined value is never ignored", async () => {
    const storage = context.storage;
    const cas = context.driver.flags?.cas === true;
    await storage.setItem("cas:guard", "theirs");
    // What `{ ifMatch: (await getMeta(key)).etag }` passes when the key was absent, or on a driver without etags.
    const code: StorageErrorCode = cas ? "E_INVALID_OPTION" : "E_UNSUPPORTED";
    await expectCode(() => storage.setItem("cas:guard", "mine", { ifMatch: undefined }), code);
    await expectCode(() => storage.setItem("cas:guard", "mine", { ifNoneMatch: undefined }), code);
    await expectCode(() => storage.setItems([{ key: "cas:guard", value: "mine", options: { ifMatch: undefined } }]), code);
    await expectCode(() => storage.removeItem("cas:guard", { ifMatch: undefined }), code);
    if (!cas) await expectCode(() => storage.removeItem("cas:guard", { ifMatch: "x", removeMeta: true }), "E_UNSUPPORTED");
    expect(await storage.getItem("cas:guard")).toBe("theirs");
  });

  test(
    "CAS: guarded removeItem, with and without removeMeta and with a ttl",
    async () => {
      const storage = context.storage;
      const cases: { name: string; ttl?: number; removeMeta?: boolean }[] = [
        { name: "plain" },
        { name: "meta", removeMeta: true },
        { name: "ttl", ttl: 600_000 },
        { name: "ttl-meta", ttl: 600_000, removeMeta: true },
      ];
      for (const { name, ttl: itemTtl, removeMeta } of cases) {
        const key = `cas:release:${name}`;
        // No setMeta: a driver may keep user meta out of reach (a stowage server over http); the core's tests cover it.
        await storage.setItem(key, { owner: "a" }, itemTtl === undefined ? {} : { ttl: itemTtl });
        const { etag } = await storage.getMeta(key);
        await expectCode(() => storage.removeItem(key, { ifMatch: `${etag}-stale`, removeMeta }), "E_CONFLICT");
        expect(await storage.getItem(key), `${name}: a failed guard removes nothing`).toEqual({ owner: "a" });
        await storage.removeItem(key, { ifMatch: etag, removeMeta });
        expect(await storage.hasItem(key), `${name}: removed`).toBe(false);
        expect((await storage.getMeta(key)).expires, `${name}: no expiry left`).toBeUndefined();
      }
      expect(await storage.getKeys("cas:release")).toEqual([]);
    },
    needsFlag("cas"),
  );

  test("removeItem with ifNoneMatch is E_INVALID_OPTION on every driver, and removes nothing", async () => {
    const storage = context.storage;
    await storage.setItem("rm:guarded", 1);
    const createOnly = { ifNoneMatch: "*" } as never;
    const removals: [string, () => Promise<unknown>][] = [
      ["removeItem", () => storage.removeItem("rm:guarded", createOnly)],
      ["removeItem absent", () => storage.removeItem("rm:absent", createOnly)],
      ["removeItem undefined", () => storage.removeItem("rm:guarded", { ifNoneMatch: undefined } as never)],
      ["removeItem removeMeta", () => storage.removeItem("rm:guarded", { ifNoneMatch: "*", removeMeta: true } as never)],
      ["setItem undefined", () => storage.setItem("rm:guarded", undefined, { ifNoneMatch: "*" })],
      ["setItems undefined", () => storage.setItems([{ key: "rm:guarded", value: undefined, options: { ifNoneMatch: "*" } }])],
    ];
    if (context.driver.flags?.transactions) {
      removals.push(["transaction removeItem", () => storage.transaction((tx) => tx.removeItem("rm:guarded", createOnly))]);
    }
    await expectEachCode(removals, "E_INVALID_OPTION");
    expect(await storage.getItem("rm:guarded")).toBe(1);
  });
}

function raceTests({ context, test }: Kit): void {
  test(
    "CAS: exactly one of many concurrent writers wins an etag",
    async () => {
      const storage = context.storage;
      await storage.setItem("cas:race", 0);
      const { etag } = await storage.getMeta("cas:race");
      const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => storage.setItem("cas:race", i + 1, { ifMatch: etag })));
      const won = results.filter((result) => result.status === "fulfilled");
      expect(won).toHaveLength(1);
      for (const result of results) {
        if (result.status === "rejected") expect((result.reason as { code: string }).code).toBe("E_CONFLICT");
      }
    },
    needsFlag("cas"),
  );

  test(
    "CAS: concurrent update() calls lose no increment",
    async () => {
      const storage = context.storage;
      const writers = 5;
      const rounds = 10;
      await Promise.all(
        Array.from({ length: writers }, async () => {
          for (let i = 0; i < rounds; i++) await storage.update<number>("cas:counter", (n) => (n ?? 0) + 1, { retries: 1000 });
        }),
      );
      expect(await storage.getItem("cas:counter")).toBe(writers * rounds);
    },
    needsFlag("cas"),
  );
}

/** Writes `values` to `key` in turn and returns the etag after each write, failing unless each is a string. */
async function etagsAfter({ context }: Kit, key: string, values: unknown[]): Promise<string[]> {
  const etags: string[] = [];
  for (const value of values) {
    await context.storage.setItem(key, value);
    const { etag } = await context.storage.getMeta(key);
    expect(typeof etag, `an etag for ${key}`).toBe("string");
    etags.push(etag as string);
  }
  return etags;
}

function etagTests(kit: Kit): void {
  const { context, test } = kit;

  test("CAS: a driver flagged cas declares its etag kind, as the storage's mount shows it", async () => {
    const flags = context.driver.flags ?? {};
    if (flags.cas) expect(["version", "content"], 'flags.etag must be "version" or "content"').toContain(flags.etag);
    else expect(flags.etag, "flags.etag without cas").toBeUndefined();
    expect(context.storage.getMount().driver.flags?.etag).toBe(flags.etag);
  });

  test(
    "CAS: another value changes the etag, and a guard on the old etag then conflicts",
    async () => {
      const storage = context.storage;
      const [first, second] = await etagsAfter(kit, "etag:any", [{ n: 1 }, { n: 2 }]);
      expect(second).not.toBe(first);
      await expectCode(() => storage.setItem("etag:any", { n: 3 }, { ifMatch: first }), "E_CONFLICT");
      await expectCode(() => storage.removeItem("etag:any", { ifMatch: first }), "E_CONFLICT");
      expect(await storage.getItem("etag:any")).toEqual({ n: 2 });
    },
    needsFlag("cas"),
  );

  test(
    'CAS etag "content": the same value again keeps its etag, another value gets another',
    async () => {
      const [first, again, other] = await etagsAfter(kit, "etag:content", ["same", "same", "other"]);
      expect(again).toBe(first);
      expect(other).not.toBe(first);
      // Not asked: that a value written back gets its first etag again (a hash does; a counter of changes would not).
    },
    etagKind("content"),
  );

  test(
    'CAS etag "version": every write gives a new etag, the same value too',
    async () => {
      const storage = context.storage;
      const [first, second] = await etagsAfter(kit, "etag:version", ["same", "same"]);
      expect(second).not.toBe(first);
      await expectCode(() => storage.setItem("etag:version", "same", { ifMatch: first }), "E_CONFLICT");
      await storage.setItem("etag:version", "same", { ifMatch: second });
      expect((await storage.getMeta("etag:version")).etag).not.toBe(second);
    },
    etagKind("version"),
  );
}
