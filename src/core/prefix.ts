import { normalizeBaseKey } from "./keys.js";
import type { GetItemsInput, SetItemsInput, Storage } from "./types.js";

// Methods whose first argument is a key or base: the prefixed view prepends its base.
const KEY_METHODS = [
  "hasItem", "getItem", "getItemRaw", "setItem", "setItemRaw", "getItemStream", "setItemStream", "removeItem", "getMeta", "setMeta", "removeMeta",
  "clear", "mount", "unmount", "update", "getHistory",
  "hasItemSync", "getItemSync", "getItemRawSync", "setItemSync", "setItemRawSync", "removeItemSync", "getMetaSync", "clearSync",
  "has", "get", "set", "del", "remove",
] as const;

type KeyMethod = (key: string, ...rest: unknown[]) => unknown;

/**
 * A view of `storage` under `base`: keys are relative to it, listings strip
 * it, and watch reports only keys below it.
 */
export function prefixStorage(storage: Storage, base: string): Storage {
  const prefix = normalizeBaseKey(base);
  if (!prefix) return storage;
  const view = { ...storage } as Storage;
  const target = view as unknown as Record<string, KeyMethod>;
  const source = storage as unknown as Record<string, KeyMethod>;
  for (const method of KEY_METHODS) {
    target[method] = (key = "", ...rest) => source[method]!(prefix + key, ...rest);
  }
  const strip = (keys: string[]) => keys.map((key) => key.slice(prefix.length));
  const prefixItems = (items: GetItemsInput) => items.map((item) => (typeof item === "string" ? prefix + item : { ...item, key: prefix + item.key }));
  const prefixEntries = (items: SetItemsInput) => items.map((item) => ({ ...item, key: prefix + item.key }));

  view.getKeys = (key = "", opts) => storage.getKeys(prefix + key, opts).then(strip);
  view.getKeysSync = (key = "", opts) => strip(storage.getKeysSync(prefix + key, opts));
  view.keys = view.getKeys;
  view.iterateKeys = async function* (key = "", opts) {
    for await (const batch of storage.iterateKeys(prefix + key, opts)) yield strip(batch);
  };
  view.getItems = async (items, common) =>
    (await storage.getItems(prefixItems(items), common)).map(({ key, value }) => ({ key: key.slice(prefix.length), value })) as never;
  view.getItemsSync = (items, common) =>
    storage.getItemsSync(prefixItems(items), common).map(({ key, value }) => ({ key: key.slice(prefix.length), value })) as never;
  view.setItems = (items, common) => storage.setItems(prefixEntries(items), common);
  view.setItemsSync = (items, common) => storage.setItemsSync(prefixEntries(items), common);
  view.watch = (callback) =>
    storage.watch((event, key) => {
      if (key.startsWith(prefix)) callback(event, key.slice(prefix.length));
    });
  view.transaction = (fn, opts) =>
    storage.transaction(
      (tx) =>
        fn({
          hasItem: (key) => tx.hasItem(prefix + key),
          getItem: (key) => tx.getItem(prefix + key),
          getItemRaw: (key) => tx.getItemRaw(prefix + key),
          setItem: (key, value, o) => tx.setItem(prefix + key, value, o),
          setItemRaw: (key, value, o) => tx.setItemRaw(prefix + key, value, o),
          removeItem: (key, o) => tx.removeItem(prefix + key, o),
        }),
      opts,
    );
  return view;
}
