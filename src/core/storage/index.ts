import { StorageError, toStorageError } from "../errors.js";
import { normalizeBaseKey, normalizeItemBase, normalizeKey } from "../keys.js";
import { chain } from "../maybePromise.js";
import { checkOptions } from "../options.js";
import { runTransaction, runUpdate } from "../transaction.js";
import type { CreateStorageOptions, Driver, IterateKeysOptions, Storage, WatchCallback } from "../types.js";
import { watchArguments } from "../watchers.js";
import { checkCallOptions, driverName, locate, NO_OPTIONS, unsupported, type StorageContext } from "./context.js";
import { getItemStream, readEntryStep, setDirectAccess, setItemStream, writeTextStep } from "./direct.js";
import { asyncApi, directApi, syncApi, toPromise } from "./forms.js";
import { clearStep, getKeysStep, iterateKeys } from "./listing.js";
import { removeMetaStep, setMetaStep } from "./meta.js";
import { getItemRawStep, getItemStep, getItemsStep, getMetaStep, hasItemStep } from "./reads.js";
import { removeItemStep, setItemRawStep, setItemStep, setItemsStep } from "./writes.js";
import { refuseFence } from "../fence.js";
import { refusingFence, transactionContextOf } from "./fenced.js";
import { createContext } from "./setup.js";

export { getDirectAccess, type DirectAccess, type StoredEntry } from "./direct.js";

/** The steps of the methods that take no fence, refusing one (./fenced.ts). */
const noFence = {
  hasItem: refusingFence("hasItem", hasItemStep),
  getItem: refusingFence("getItem", getItemStep),
  getItems: refusingFence("getItems", getItemsStep),
  getItemRaw: refusingFence("getItemRaw", getItemRawStep),
  getMeta: refusingFence("getMeta", getMetaStep),
  setMeta: refusingFence("setMeta", setMetaStep, 2),
  removeMeta: refusingFence("removeMeta", removeMetaStep),
  getKeys: refusingFence("getKeys", getKeysStep),
  clear: refusingFence("clear", clearStep),
};

export interface CoreStorageOptions extends CreateStorageOptions {
  driver: Driver;
}

/**
 * Creates a storage over `options.driver`: the context every operation
 * shares, and the storage object whose methods are the async, sync and
 * direct forms of the operations' steps (see ./forms.ts).
 */
export function createCoreStorage(options: CoreStorageOptions): Storage {
  checkOptions("createStorage", options, ["driver", "serializer", "ttl", "onWatchError", "clock"]);
  if (options.onWatchError !== undefined && typeof options.onWatchError !== "function") {
    throw new StorageError("E_INVALID_OPTION", "onWatchError must be a function");
  }
  const ctx: StorageContext = createContext(options);

  // --- the storage object ---------------------------------------------------

  const storage: Storage = {
    hasItem: asyncApi(ctx, noFence.hasItem),
    getItem: asyncApi(ctx, noFence.getItem) as Storage["getItem"],
    getItems: asyncApi(ctx, noFence.getItems) as Storage["getItems"],
    getItemRaw: asyncApi(ctx, noFence.getItemRaw),
    setItem: asyncApi(ctx, setItemStep),
    setItems: asyncApi(ctx, setItemsStep),
    setItemRaw: asyncApi(ctx, setItemRawStep),
    getItemStream: (key, opts) => getItemStream(ctx, key, opts),
    setItemStream: (key, body, opts) => setItemStream(ctx, key, body, opts),
    removeItem: asyncApi(ctx, removeItemStep),
    getMeta: asyncApi(ctx, noFence.getMeta),
    setMeta: asyncApi(ctx, noFence.setMeta),
    removeMeta: asyncApi(ctx, noFence.removeMeta),
    getKeys: asyncApi(ctx, noFence.getKeys),
    iterateKeys: (base, opts = NO_OPTIONS) => iterateKeysSafely(base, opts),
    clear: asyncApi(ctx, noFence.clear),

    hasItemSync: syncApi(ctx, noFence.hasItem),
    getItemSync: syncApi(ctx, noFence.getItem) as Storage["getItemSync"],
    getItemsSync: syncApi(ctx, noFence.getItems) as Storage["getItemsSync"],
    getItemRawSync: syncApi(ctx, noFence.getItemRaw),
    setItemSync: syncApi(ctx, setItemStep),
    setItemsSync: syncApi(ctx, setItemsStep),
    setItemRawSync: syncApi(ctx, setItemRawStep),
    removeItemSync: syncApi(ctx, removeItemStep),
    getMetaSync: syncApi(ctx, noFence.getMeta),
    getKeysSync: syncApi(ctx, noFence.getKeys),
    clearSync: syncApi(ctx, noFence.clear),

    update: (key, fn, opts = {}) =>
      toPromise(ctx, key, () => {
        checkOptions("update", opts, ["retries", "ttl"]);
        return runUpdate(storage, locate(ctx, key, false, true).mount, key, fn, opts ?? {});
      }),
    transaction: (fn, opts = NO_OPTIONS) =>
      toPromise(ctx, undefined, () => {
        checkCallOptions(opts);
        return runTransaction(storage, transactionContext, fn, opts);
      }),
    getHistory: (key, opts = {}) =>
      toPromise(ctx, key, () => {
        checkOptions("getHistory", opts, ["limit"]);
        const limit = opts?.limit;
        if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
          throw new StorageError("E_INVALID_OPTION", `limit must be a positive integer, got ${String(limit)}`);
        }
        const loc = locate(ctx, key, false);
        const driver = loc.mount.driver;
        if (!driver.flags?.history || !driver.getHistory) throw unsupported(loc.mount, "getHistory", "history");
        return chain(driver.getHistory(loc.rel, opts ?? {}), (entries) =>
          entries.map((entry) => ({ ...entry, value: entry.value === null ? null : ctx.serializer.deserialize(entry.value) })),
        ) as never;
      }),

    async dispose() {
      await ctx.watchers.stop();
      await Promise.all(ctx.table.list().map((mount) => mount.driver.dispose?.()));
    },
    watch: (first: string | WatchCallback, second?: WatchCallback) =>
      toPromise(ctx, undefined, () => {
        const { base, callback } = watchArguments(first, second);
        return ctx.watchers.add(base, callback, ctx.table.list());
      }),
    unwatch: () => ctx.watchers.stop(),
    mount(base, driver) {
      const mount = ctx.table.add(normalizeItemBase(base), driver);
      if (ctx.watchers.watching) {
        ctx.watchers.start(mount).catch((error: unknown) => process.emitWarning(`stowage: watching ${mount.base} failed: ${String(error)}`));
      }
      return storage;
    },
    async unmount(base, dispose = true) {
      const mount = ctx.table.remove(normalizeItemBase(base));
      if (!mount) return;
      await ctx.watchers.stopMount(mount);
      if (dispose) await mount.driver.dispose?.();
    },
    getMount(key = "") {
      const mount = ctx.table.resolve(normalizeKey(key) + ":");
      return { base: mount.base, driver: mount.driver };
    },
    getMounts(base = "", opts = {}) {
      checkOptions("getMounts", opts, ["parents"]);
      return ctx.table.within(normalizeBaseKey(base), opts?.parents === true).map(({ mount }) => ({ base: mount.base, driver: mount.driver }));
    },

    keys: (base, opts) => storage.getKeys(base, opts),
    get: (key, opts) => storage.getItem(key, opts),
    set: (key, value, opts) => storage.setItem(key, value, opts),
    has: (key, opts) => storage.hasItem(key, opts),
    del: (key, opts) => storage.removeItem(key, opts),
    remove: (key, opts) => storage.removeItem(key, opts),
  };

  async function* iterateKeysSafely(base: string | undefined, opts: IterateKeysOptions): AsyncIterableIterator<string[]> {
    try {
      refuseFence(opts, "iterateKeys");
      yield* iterateKeys(ctx, base, opts);
    } catch (error) {
      throw toStorageError(error, driverName(ctx, base));
    }
  }

  setDirectAccess(storage, {
    serializer: ctx.serializer,
    read: directApi(ctx, readEntryStep),
    writeText: directApi(ctx, writeTextStep),
  });

  const transactionContext = transactionContextOf(ctx);

  return storage;
}
