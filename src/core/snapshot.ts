import { normalizeBaseKey } from "./keys.js";
import type { Storage } from "./types.js";

/** Keys (relative to the base) and their values. */
export type Snapshot<T = unknown> = Record<string, T>;

/**
 * Reads every item under `base` into a plain object (unstorage's snapshot).
 * @throws StorageError what {@link Storage.getKeys} and {@link Storage.getItems} throw
 */
export async function snapshot(storage: Storage, base: string): Promise<Snapshot> {
  const prefix = normalizeBaseKey(base);
  const keys = await storage.getKeys(prefix);
  const values = await storage.getItems(keys);
  const result: Snapshot = {};
  for (const { key, value } of values) result[key.slice(prefix.length)] = value;
  return result;
}

/**
 * Writes a snapshot back under `base`, in one setItems.
 * @throws StorageError what {@link Storage.setItems} throws
 */
export async function restoreSnapshot(storage: Storage, data: Snapshot, base = ""): Promise<void> {
  const prefix = normalizeBaseKey(base);
  await storage.setItems(Object.entries(data).map(([key, value]) => ({ key: prefix + key, value })));
}
