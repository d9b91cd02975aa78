import { describe, expect, it } from "vitest";
import fsLite from "../../src/drivers/fs-lite.js";
import memory from "../../src/drivers/memory.js";
import { createStorage, type CommitOperation, type Driver } from "../../src/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { codeOf } from "../helpers/checks.js";

/** memory whose expiry the core keeps (as on git): ttl not native, the rest (cas, commit) as memory has it. */
function coreTtlMemory(withCommit: boolean) {
  const inner = memory();
  const commits: CommitOperation[][] = [];
  const driver: Driver = {
    ...inner,
    name: "memory-core-ttl",
    flags: { ...inner.flags, ttl: false, transactions: withCommit },
    commit: withCommit
      ? (operations, opts) => {
          commits.push(operations);
          return inner.commit!(operations, opts);
        }
      : undefined,
  };
  return { driver, inner, commits };
}

describe("a guard present with an undefined value", () => {
  it("is E_UNSUPPORTED on a driver not flagged cas, and writes nothing", async () => {
    const storage = createStorage({ driver: fsLite({ base: tempDir("guards-fs") }) });
    await storage.setItem("k", "theirs");
    for (const opts of [{ ifMatch: undefined }, { ifNoneMatch: undefined }, { ifMatch: "x" }, { ifNoneMatch: "*" as const }]) {
      expect(await codeOf(() => storage.setItem("k", "mine", opts))).toBe("E_UNSUPPORTED");
      expect(await codeOf(() => storage.setItems([{ key: "k", value: "mine", options: opts }]))).toBe("E_UNSUPPORTED");
      expect(await codeOf(() => storage.setItemRaw("k", new Uint8Array([1]), opts))).toBe("E_UNSUPPORTED");
      // A removal guarded by ifNoneMatch is refused as meaningless on every driver, before CAS is looked at.
      expect(await codeOf(() => storage.removeItem("k", opts))).toBe("ifNoneMatch" in opts ? "E_INVALID_OPTION" : "E_UNSUPPORTED");
    }
    expect(await storage.getItem("k")).toBe("theirs");
  });

  it("is E_INVALID_OPTION on a cas driver (no silent unguarded write); ifNoneMatch takes only '*'", async () => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("k", "theirs");
    expect(await codeOf(() => storage.setItem("k", "mine", { ifMatch: undefined }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.removeItem("k", { ifMatch: undefined }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.setItem("k", "mine", { ifMatch: 12 as never }))).toBe("E_INVALID_OPTION");
    for (const value of [undefined, "x", "", "**", true]) {
      expect(await codeOf(() => storage.setItem("k", "mine", { ifNoneMatch: value as never }))).toBe("E_INVALID_OPTION");
    }
    expect(await codeOf(() => storage.transaction((tx) => tx.setItem("k", "mine", { ifMatch: undefined })))).toBe("E_INVALID_OPTION");
    expect(await storage.getItem("k")).toBe("theirs");
  });
});

describe("guarded removal", () => {
  it.each([true, false])("removeItem(key, { ifMatch, removeMeta }) removes value and meta, guard on the value only (commit: %s)", async (withCommit) => {
    const { driver, commits } = coreTtlMemory(withCommit);
    const storage = createStorage({ driver });
    await storage.setItem("lock", { owner: "a" }, { ttl: 60_000 });
    await storage.setMeta("lock", { note: "x" });
    const { etag } = await storage.getMeta("lock");
    expect(await codeOf(() => storage.removeItem("lock", { ifMatch: "stale", removeMeta: true }))).toBe("E_CONFLICT");
    expect(await storage.getItem("lock")).toEqual({ owner: "a" });
    await storage.removeItem("lock", { ifMatch: etag, removeMeta: true });
    expect(await storage.hasItem("lock")).toBe(false);
    expect(await storage.getMeta("lock")).toEqual({});
    expect(await driver.getItem("lock$", {})).toBe(null);
    if (withCommit) expect(commits.at(-1)?.map((op) => `${op.type} ${op.key}`)).toEqual(["check lock", "remove lock", "remove lock$"]);
  });

  it.each([true, false])("removeItem(key, { ifMatch }) on a key whose ttl the core keeps drops the expiry, keeps user meta (commit: %s)", async (withCommit) => {
    const { driver } = coreTtlMemory(withCommit);
    const storage = createStorage({ driver });
    await storage.setItem("lock", 1, { ttl: 60_000 });
    await storage.setMeta("lock", { note: "x" });
    const { etag } = await storage.getMeta("lock");
    expect(await codeOf(() => storage.removeItem("lock", { ifMatch: "stale" }))).toBe("E_CONFLICT");
    expect(await storage.getItem("lock")).toBe(1);
    await storage.removeItem("lock", { ifMatch: etag });
    expect(await storage.hasItem("lock")).toBe(false);
    const sidecar = JSON.parse(String(await driver.getItem("lock$", {})));
    expect(sidecar).toEqual({ note: "x" });
  });

  it("the purge of an expired key is guarded: a value rewritten meanwhile survives", async () => {
    let now = 1_000_000;
    const realNow = Date.now;
    Date.now = () => now;
    try {
      const { driver, inner } = coreTtlMemory(true);
      let rewrite: (() => void) | undefined;
      // The other writer gets in just as the purge reads the version it will guard with.
      const racing: Driver = {
        ...driver,
        getMeta: (key, opts) => {
          const run = rewrite;
          rewrite = undefined;
          run?.();
          return inner.getMeta!(key, opts);
        },
      };
      const storage = createStorage({ driver: racing });
      await storage.setItem("k", "old", { ttl: 1000 });
      now += 2000;
      rewrite = () => {
        inner.setItem!("k", JSON.stringify("new"), {});
        inner.setItem!("k$", JSON.stringify({ expires: now + 60_000 }), {});
      };
      expect(await storage.getItem("k")).toBe(null);
      expect(await storage.getItem("k")).toBe("new");
      // Without a rewrite the purge removes value and sidecar.
      await storage.setItem("j", "old", { ttl: 1000 });
      now += 2000;
      expect(await storage.getItem("j")).toBe(null);
      expect(inner.getItem("j", {})).toBe(null);
      expect(inner.getItem("j$", {})).toBe(null);
    } finally {
      Date.now = realNow;
    }
  });
});

describe("guards on meta", () => {
  it("setMeta and removeMeta refuse ifMatch / ifNoneMatch: meta has no version of its own", async () => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("k", 1);
    const { etag } = await storage.getMeta("k");
    expect(await codeOf(() => storage.setMeta("k", { a: 1 }, { ifMatch: etag }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.setMeta("k", { a: 1 }, { ifNoneMatch: "*" }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.removeMeta("k", { ifMatch: etag }))).toBe("E_INVALID_OPTION");
    expect((await storage.getMeta("k")).a).toBeUndefined();
  });
});
