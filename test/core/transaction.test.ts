import { describe, expect, it } from "vitest";
import memory from "../../src/drivers/memory.js";
import { createStorage, prefixStorage, type Driver } from "../../src/index.js";
import { codeOf } from "../helpers/checks.js";

async function thrownBy(action: () => Promise<unknown>): Promise<unknown> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

describe("the caller's own errors", () => {
  const thrown = [new Error("boom"), new TypeError("typed"), "a string", 42, { plain: true }, null];

  it.each(thrown.map((value) => [value]))("transaction(fn) rethrows what fn threw, the same value: %s", async (value) => {
    const storage = createStorage({ driver: memory() });
    const caught = await thrownBy(() =>
      storage.transaction(async (tx) => {
        await tx.setItem("k", 1);
        throw value;
      }),
    );
    expect(caught).toBe(value);
    expect(await storage.hasItem("k")).toBe(false);
  });

  it.each(thrown.map((value) => [value]))("update(key, fn) rethrows what fn threw, the same value: %s", async (value) => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("k", 1);
    const caught = await thrownBy(() =>
      storage.update("k", () => {
        throw value;
      }),
    );
    expect(caught).toBe(value);
    expect(await storage.getItem("k")).toBe(1);
  });

  it("a synchronous throw, nested calls and prefixed views keep the identity too", async () => {
    const storage = createStorage({ driver: memory() });
    const error = new Error("inner");
    expect(
      await thrownBy(() =>
        storage.transaction(() => {
          throw error;
        }),
      ),
    ).toBe(error);
    expect(await thrownBy(() => storage.update("a", () => storage.transaction(() => Promise.reject(error))))).toBe(error);
    const view = prefixStorage(storage, "app");
    expect(
      await thrownBy(() =>
        view.transaction(() => {
          throw error;
        }),
      ),
    ).toBe(error);
  });
});

describe("transactions on a driver whose expiry the core keeps", () => {
  it("a removal drops the key's expiry (and its meta with removeMeta) in the same commit", async () => {
    const inner = memory();
    const commits: string[][] = [];
    const driver: Driver = {
      ...inner,
      flags: { ...inner.flags, ttl: false },
      commit: (operations, opts) => {
        commits.push(operations.map((op) => `${op.type} ${op.key}`));
        return inner.commit!(operations, opts);
      },
    };
    const storage = createStorage({ driver });
    await storage.setItem("a", 1, { ttl: 60_000 });
    await storage.setItem("b", 2, { ttl: 60_000 });
    await storage.setMeta("b", { note: "x" });
    // The writes above are commits too (value and expiry together): only the transaction's is looked at.
    commits.length = 0;
    await storage.transaction(async (tx) => {
      await tx.removeItem("a");
      await tx.removeItem("b", { removeMeta: true });
    });
    expect(commits).toEqual([["remove a", "remove a$", "remove b", "remove b$"]]);
    expect(await storage.getMeta("a")).toEqual({});
    expect(await storage.getMeta("b")).toEqual({});
    expect(inner.getKeys("", {})).toEqual([]);
  });
});

describe("callbacks", () => {
  it("a callback that is not a function is E_INVALID_OPTION, not the TypeError of calling it", async () => {
    const storage = createStorage({ driver: memory() });
    for (const bad of [undefined, null, 1, "fn", {}]) {
      expect(await codeOf(() => storage.transaction(bad as never))).toBe("E_INVALID_OPTION");
      expect(await codeOf(() => storage.update("k", bad as never))).toBe("E_INVALID_OPTION");
    }
  });
});
