/**
 * stowage: one key-value storage API over memory, files, databases and Git.
 * A superset of unstorage's Storage and Driver.
 */
import { createCoreStorage } from "./core/storage.js";
import type { CreateStorageOptions, Storage } from "./core/types.js";
import memory from "./drivers/memory.js";

/**
 * Creates a storage. Without a driver, keys live in memory (as in unstorage),
 * keeping time by the storage's `clock`.
 * @example
 * const storage = createStorage({ driver: fsDriver({ base: "./data" }) });
 * await storage.setItem("user:1", { name: "Ada" });
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, a driver without hasItem, getItem and getKeys, an unknown serializer, a `ttl` that is not a positive number, an `onWatchError` that is not a function, a `clock` without `now()`
 */
export function createStorage(options: CreateStorageOptions = {}): Storage {
  return createCoreStorage({ ...options, driver: options.driver ?? memory({ clock: options.clock }) });
}

export { defineDriver, type DriverFactory } from "./core/defineDriver.js";
export { StorageError, isStorageError, type StorageErrorCode } from "./core/errors.js";
export { checkOptions } from "./core/options.js";
export { DEFAULT_KEY_LIMITS } from "./core/types.js";
export { normalizeKey, normalizeBaseKey, joinKeys, filterKeyByDepth, filterKeyByBase } from "./core/keys.js";
export { prefixStorage } from "./core/prefix.js";
export { wrapDriver, findLayer, innermost, layersOf, isWrapped, type DriverLayer, type WrappedDriver, type ForwardedMember } from "./core/wrapDriver.js";
export { transformValues, type ValueTransform } from "./core/valueTransform.js";
export { snapshot, restoreSnapshot, type Snapshot } from "./core/snapshot.js";
export { systemClock } from "./core/clock.js";
export { richSerializer, jsonSerializer, type Serializer } from "./core/serializer.js";
export type * from "./core/types.js";
