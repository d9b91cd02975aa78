import { describe, expect, it } from "vitest";
import { createStorage, wrapDriver, type CommitOperation, type Driver, type Fence, type TransactionOptions } from "../../src/index.js";
import { fenceRecordKey } from "../../src/core/fence.js";
import memory from "../../src/drivers/memory.js";
import { codeOf } from "../helpers/checks.js";

const fence = (fenceId: string, token: number): Fence => ({ fenceId, token });

async function* chunks(): AsyncIterable<Uint8Array> {
  yield new Uint8Array([1]);
}

/** A memory driver without commits: a driver that cannot fence. */
function plainDriver(): Driver {
  const inner = memory();
  return { name: "plain", hasItem: inner.hasItem, getItem: inner.getItem, getKeys: inner.getKeys, setItem: inner.setItem, removeItem: inner.removeItem, clear: inner.clear };
}

/** memory, whose first commit runs `before` first: another writer getting in between a fenced write's read and its commit. */
function interleaved(inner: Driver, before: () => Promise<void>): Driver {
  let pending: (() => Promise<void>) | undefined = before;
  return wrapDriver(inner, {
    name: "interleaved",
    async commit(operations: CommitOperation[], opts: TransactionOptions) {
      const step = pending;
      pending = undefined;
      if (step) await step();
      return inner.commit!(operations, opts);
    },
  });
}

describe("fenced writes (core)", () => {
  it("keeps its record at a key no user key and no sidecar can be, in one segment", () => {
    const key = fenceRecordKey("locks:a");
    expect(key).toMatch(/^stowage-fence-[0-9a-f]{64}\$\$$/);
    expect(fenceRecordKey("locks:a")).toBe(key);
    expect(fenceRecordKey("locks:b")).not.toBe(key);
  });

  it("has no sync form, and setItemStream takes no fence", async () => {
    const storage = createStorage({ driver: memory() });
    expect(await codeOf(() => storage.setItemSync("a", 1, { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.setItemRawSync("a", new Uint8Array([1]), { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.removeItemSync("a", { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.setItemsSync([{ key: "a", value: 1 }], { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.setItemStream("a", chunks(), { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.getItemStream("a", { fence: fence("l", 1) }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.iterateKeys("", { fence: fence("l", 1) } as never).next())).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => storage.update("a", () => 1, { fence: fence("l", 1) } as never))).toBe("E_INVALID_OPTION");
    expect(await storage.hasItem("a")).toBe(false);
  });

  it("refuses a fence on a driver that cannot commit atomically, never emulating it", async () => {
    const storage = createStorage({ driver: plainDriver() });
    expect(await codeOf(() => storage.setItem("a", 1, { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.removeItem("a", { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await storage.getKeys()).toEqual([]);
  });

  it("keeps tokens per mount; a fenced setItems stays within one mount", async () => {
    const storage = createStorage({ driver: memory() }).mount("other", memory());
    await storage.setItem("a", 1, { fence: fence("l", 5) });
    // The other mount has its own record: token 1 is the first it sees.
    await storage.setItem("other:a", 1, { fence: fence("l", 1) });
    expect(await codeOf(() => storage.setItem("a", 2, { fence: fence("l", 1) }))).toBe("E_FENCED");
    const across = () =>
      storage.setItems(
        [
          { key: "b", value: 1 },
          { key: "other:b", value: 1 },
        ],
        { fence: fence("l", 5) },
      );
    expect(await codeOf(across)).toBe("E_UNSUPPORTED");
    expect(await storage.getItems(["b", "other:b"])).toEqual([
      { key: "b", value: null },
      { key: "other:b", value: null },
    ]);
  });

  it("keeps the record through clear(base); a clear of the whole mount drops it", async () => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("x:a", 1, { fence: fence("l", 3) });
    await storage.clear("x");
    expect(await codeOf(() => storage.setItem("x:a", 2, { fence: fence("l", 2) }))).toBe("E_FENCED");
    await storage.clear();
    await storage.setItem("x:a", 2, { fence: fence("l", 2) });
    expect(await storage.getItem("x:a")).toBe(2);
  });

  it("a higher token landing between the read and the commit fences out the lower write", async () => {
    const shared = memory();
    const other = createStorage({ driver: shared });
    await other.setItem("k", "first", { fence: fence("l", 1) });
    const storage = createStorage({ driver: interleaved(shared, () => other.setItem("k", "later holder", { fence: fence("l", 3) })) });
    expect(await codeOf(() => storage.setItem("k", "late", { fence: fence("l", 2) }))).toBe("E_FENCED");
    expect(await storage.getItem("k")).toBe("later holder");
  });

  it("a lower token landing between the read and the commit makes the higher write try again, and land", async () => {
    const shared = memory();
    const other = createStorage({ driver: shared });
    await other.setItem("k", "first", { fence: fence("l", 1) });
    const storage = createStorage({ driver: interleaved(shared, () => other.setItem("k", "in between", { fence: fence("l", 2) })) });
    await storage.setItem("k", "highest", { fence: fence("l", 3) });
    expect(await storage.getItem("k")).toBe("highest");
    expect(await codeOf(() => other.setItem("k", "late", { fence: fence("l", 2) }))).toBe("E_FENCED");
  });

  it("a conflict of the caller's own guard is E_CONFLICT, not retried", async () => {
    const shared = memory();
    const other = createStorage({ driver: shared });
    await other.setItem("k", "first");
    const { etag } = await other.getMeta("k");
    const storage = createStorage({ driver: interleaved(shared, () => other.setItem("k", "moved")) });
    expect(await codeOf(() => storage.setItem("k", "guarded", { fence: fence("l", 1), ifMatch: etag! }))).toBe("E_CONFLICT");
    expect(await storage.getItem("k")).toBe("moved");
    // Nothing was raised by the failed commit: a token of 1 still passes.
    await storage.setItem("k", "fenced", { fence: fence("l", 1) });
  });

  it("takes a Lock-like object whose fenceId and token are getters", async () => {
    const storage = createStorage({ driver: memory() });
    const lock = new (class {
      get fenceId() {
        return "locks:a";
      }
      get token() {
        return 4;
      }
    })();
    await storage.setItem("a", 1, { fence: lock });
    expect(await codeOf(() => storage.setItem("a", 2, { fence: fence("locks:a", 3) }))).toBe("E_FENCED");
  });

  it("a fenced transaction that writes nothing still checks its fence, and its reads", async () => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("k", "v", { fence: fence("l", 3) });
    const readOnly = (token: number) => storage.transaction(async (tx) => tx.getItem("k"), { fence: fence("l", token) });
    expect(await codeOf(() => readOnly(2))).toBe("E_FENCED");
    expect(await codeOf(() => storage.transaction(() => "nothing touched", { fence: fence("l", 2) }))).toBe("E_FENCED");
    expect(await readOnly(3)).toBe("v");
    // A higher token raises the record, as any fenced write does.
    expect(await storage.transaction(() => "ok", { fence: fence("l", 4) })).toBe("ok");
    expect(await codeOf(() => storage.setItem("k", "late", { fence: fence("l", 3) }))).toBe("E_FENCED");
    // A read that another writer changed before the commit is E_CONFLICT, as in a transaction that writes.
    const shared = memory();
    const other = createStorage({ driver: shared });
    await other.setItem("r", 1);
    const racing = createStorage({ driver: interleaved(shared, () => other.setItem("r", 2)) });
    expect(await codeOf(() => racing.transaction(async (tx) => tx.getItem("r"), { fence: fence("l", 1) }))).toBe("E_CONFLICT");
  });

  it("a fenced transaction or empty setItems on a mount that cannot fence is E_UNSUPPORTED", async () => {
    const storage = createStorage({ driver: plainDriver() });
    expect(await codeOf(() => storage.transaction(() => 1, { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => storage.setItems([], { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => createStorage({ driver: memory() }).setItemsSync([], { fence: fence("l", 1) }))).toBe("E_UNSUPPORTED");
  });

  it("setItems([], { fence }) checks the token (on the root mount)", async () => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("k", "v", { fence: fence("l", 3) });
    expect(await codeOf(() => storage.setItems([], { fence: fence("l", 2) }))).toBe("E_FENCED");
    await storage.setItems([], { fence: fence("l", 5) });
    expect(await codeOf(() => storage.setItem("k", "late", { fence: fence("l", 4) }))).toBe("E_FENCED");
  });
});
