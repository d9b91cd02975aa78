import { StorageError } from "../errors.js";
import { checkKeyLimits, isMetaKey, normalizeItemKey, normalizeKey, normalizeWriteKey } from "../keys.js";
import type { MaybePromise } from "../maybePromise.js";
import { MountTable, type Located, type Mount, type MountSlice } from "../mounts.js";
import { serializeRaw, type Serializer } from "../serializer.js";
import type { Clock, DriverFlags, SetOptions, TransactionOptions } from "../types.js";
import type { Watchers } from "../watchers.js";

/** The options object drivers get when the caller passed none (unstorage always passes one). */
export const NO_OPTIONS: TransactionOptions = Object.freeze({});

/** A write on its way to a driver: serialized text, or raw bytes from setItemRaw. */
export type Payload = string | Uint8Array;

/**
 * What every part of a storage shares: its mounts, serializer, default ttl
 * and watchers. The operations (reads, writes, listing, direct access) are
 * functions of it, so each lives in its own module.
 */
export interface StorageContext {
  readonly serializer: Serializer;
  /** The ttl a write without its own gets. */
  readonly defaultTtl: number | undefined;
  readonly table: MountTable;
  readonly watchers: Watchers;
  /** Where the TTL the core keeps reads the time. */
  readonly clock: Clock;
}

export function unsupported(mount: Mount, what: string, flag: keyof DriverFlags): StorageError {
  return new StorageError("E_UNSUPPORTED", `${what} needs a driver flagged "${flag}"; ${mount.name} is not`, { driver: mount.name });
}

export function readOnly(mount: Mount, key?: string): StorageError {
  return new StorageError("E_READONLY", `Driver ${mount.name} is read-only`, { driver: mount.name, key });
}

/** Per-call options are an object (or left out): `null` or a string would otherwise fail deep inside as a TypeError. */
export function checkCallOptions(opts: unknown): void {
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
    throw new StorageError("E_INVALID_OPTION", `options must be an object, got ${opts === null ? "null" : Array.isArray(opts) ? "an array" : typeof opts}`);
  }
}

function requireSync(mount: Mount): void {
  if (!mount.store.flags?.sync) throw unsupported(mount, "The sync API", "sync");
}

/**
 * A key ending in `$` names another key's meta sidecar (its TTL and user
 * meta): internal, so no operation reads, writes or removes one as a user
 * key. getMeta / setMeta are the way to its meta.
 *
 * @throws StorageError `E_INVALID_KEY`
 */
function refuseSidecarKey(key: string): void {
  if (isMetaKey(key)) {
    throw new StorageError("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)} ends in "$", which names a key's meta sidecar (use getMeta / setMeta)`, { key });
  }
}

/**
 * Resolves a key to its mount; `write`: the key is written or removed, so it
 * may not hold `?` ({@link normalizeWriteKey}). A sidecar key is refused
 * ({@link refuseSidecarKey}).
 */
export function locate(ctx: StorageContext, key: unknown, sync: boolean, write?: boolean): Located {
  const full = write ? normalizeWriteKey(key) : normalizeItemKey(key);
  refuseSidecarKey(full);
  const mount = ctx.table.resolve(full);
  if (sync) requireSync(mount);
  const rel = mount.base ? full.slice(mount.base.length) : full;
  checkKeyLimits(rel, mount.keyLimits, mount.name);
  return { mount, key: full, rel, writer: sync ? mount.store : mount.writer };
}

/** The mounts a listing or clear of `base` reaches, the part of `base` inside each checked against its key limits. */
export function slicesOf(ctx: StorageContext, base: string, sync: boolean): MountSlice[] {
  const slices = ctx.table.within(base, true);
  for (const { mount, relativeBase } of slices) {
    if (sync) requireSync(mount);
    if (relativeBase) checkKeyLimits(relativeBase.slice(0, -1), mount.keyLimits, mount.name);
  }
  return slices;
}

/** The name of the driver a key goes to, for errors. */
export function driverName(ctx: StorageContext, key: unknown): string | undefined {
  return ctx.table.resolve(typeof key === "string" ? normalizeKey(key) : "").name;
}

/** Groups entries by the mount their key resolved to, in first-seen order. */
export function byMount<E extends { loc: Located }>(entries: E[]): Map<Mount, E[]> {
  const groups = new Map<Mount, E[]>();
  for (const entry of entries) {
    const group = groups.get(entry.loc.mount);
    if (group) group.push(entry);
    else groups.set(entry.loc.mount, [entry]);
  }
  return groups;
}

/** A driver's getItems answer by key (normalized: drivers may answer with the key as they store it). */
export function valuesByKey(results: { key: string; value: unknown }[]): Map<string, unknown> {
  return new Map(results.map((result) => [normalizeKey(result.key), result.value]));
}

/** Hands a value to the key's driver: text to setItem, bytes to setItemRaw (or as tagged text where the driver has none). */
export function put(loc: Located, payload: Payload, opts: SetOptions): MaybePromise<void> {
  const driver = loc.writer;
  if (typeof payload === "string") {
    if (driver.setItem) return driver.setItem(loc.rel, payload, opts);
  } else {
    if (driver.setItemRaw) return driver.setItemRaw(loc.rel, payload, opts);
    if (driver.setItem) return driver.setItem(loc.rel, serializeRaw(payload), opts);
  }
  throw readOnly(loc.mount, loc.key);
}
