import { normalizeBaseKey, normalizeItemBase, normalizeItemKey } from "./keys.js";
import type { GetItemsInput, SetItemsInput, Storage, WatchCallback } from "./types.js";
import { watchArguments } from "./watchers.js";

// Methods whose first argument is a key: the prefixed view prepends its base.
const ITEM_METHODS = [
  "hasItem", "getItem", "getItemRaw", "setItem", "setItemRaw", "getItemStream", "setItemStream", "removeItem", "getMeta", "setMeta", "removeMeta",
  "update", "getHistory",
  "hasItemSync", "getItemSync", "getItemRawSync", "setItemSync", "setItemRawSync", "removeItemSync", "getMetaSync",
  "has", "get", "set", "del", "remove",
] as const;
// Methods whose first argument is a base.
const BASE_METHODS = ["clear", "mount", "unmount", "clearSync"] as const;
// Methods that answer synchronously: a refused key is thrown, not a rejected promise.
const SYNC_METHODS = new Set<string>(["mount", ...[...ITEM_METHODS, ...BASE_METHODS].filter((method) => method.endsWith("Sync"))]);

type KeyMethod = (key: string, ...rest: unknown[]) => unknown;

/**
 * A view of `storage` under `base`: keys are relative to it, listings strip
 * it, and watch reports only keys below it. A relative key is checked before
 * the base is prepended, so no key (`""`, `":"`, `"?x"`) reaches the base
 * itself or beyond it. The view's methods throw what {@link Storage}'s do.
 */
export function prefixStorage(storage: Storage, base: string): Storage {
  const prefix = normalizeBaseKey(base);
  if (!prefix) return storage;
  const view = { ...storage } as Storage;
  const target = view as unknown as Record<string, KeyMethod>;
  const source = storage as unknown as Record<string, KeyMethod>;
  const scoped = (key: unknown) => prefix + normalizeItemKey(key);
  const scopedBase = (key: unknown) => prefix + normalizeItemBase(key);
  const forward = (method: string, scope: (key: unknown) => string) => {
    target[method] = (key, ...rest) => {
      let full: string;
      try {
        full = scope(key);
      } catch (error) {
        if (SYNC_METHODS.has(method)) throw error;
        return Promise.reject(error);
      }
      return source[method]!(full, ...rest);
    };
  };
  for (const method of ITEM_METHODS) forward(method, scoped);
  for (const method of BASE_METHODS) forward(method, scopedBase);
  const strip = (keys: string[]) => keys.map((key) => key.slice(prefix.length));
  // Anything but an array goes on as it is, for the storage to refuse.
  const prefixItems = (items: GetItemsInput) => (!Array.isArray(items) ? items : items.map((item) => (typeof item === "string" ? scoped(item) : { ...item, key: scoped(item?.key) })));
  const prefixEntries = (items: SetItemsInput) => (!Array.isArray(items) ? items : items.map((item) => ({ ...item, key: scoped(item?.key) })));

  view.getKeys = async (key, opts) => strip(await storage.getKeys(scopedBase(key), opts));
  view.getKeysSync = (key, opts) => strip(storage.getKeysSync(scopedBase(key), opts));
  view.keys = view.getKeys;
  view.iterateKeys = async function* (key, opts) {
    for await (const batch of storage.iterateKeys(scopedBase(key), opts)) yield strip(batch);
  };
  view.getItems = async (items, common) =>
    (await storage.getItems(prefixItems(items), common)).map(({ key, value }) => ({ key: key.slice(prefix.length), value })) as never;
  view.getItemsSync = (items, common) =>
    storage.getItemsSync(prefixItems(items), common).map(({ key, value }) => ({ key: key.slice(prefix.length), value })) as never;
  view.setItems = async (items, common) => storage.setItems(prefixEntries(items), common);
  view.setItemsSync = (items, common) => storage.setItemsSync(prefixEntries(items), common);
  view.watch = (async (first: string | WatchCallback, second?: WatchCallback) => {
    // Checked here: the view's own listener would otherwise hide one that is not a function.
    const { base, callback } = watchArguments(first, second);
    // The key equal to the view's prefix lies outside the view.
    return storage.watch(prefix + base, (event, key, info) => (key.startsWith(prefix) ? callback(event, key.slice(prefix.length), info) : undefined));
  }) as Storage["watch"];
  view.transaction = (fn, opts) =>
    storage.transaction(
      (tx) =>
        fn({
          hasItem: async (key) => tx.hasItem(scoped(key)),
          getItem: async (key) => tx.getItem(scoped(key)),
          getItemRaw: async (key) => tx.getItemRaw(scoped(key)),
          setItem: async (key, value, o) => tx.setItem(scoped(key), value, o),
          setItemRaw: async (key, value, o) => tx.setItemRaw(scoped(key), value, o),
          removeItem: async (key, o) => tx.removeItem(scoped(key), o),
        }),
      opts,
    );
  return view;
}
