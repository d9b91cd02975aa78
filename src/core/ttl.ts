import { StorageError } from "./errors.js";
import { chain, type MaybePromise } from "./maybePromise.js";
import { metaKeyOf } from "./keys.js";
import type { Serializer } from "./serializer.js";
import type { CommitOperation, Driver, StorageMeta, TransactionOptions } from "./types.js";

/**
 * TTL for drivers without native expiry: the moment a key expires is kept in
 * its meta sidecar (`key$`, where unstorage keeps meta), next to any meta the
 * user set. Reads check it; an expired key is purged and reads as absent.
 */

/** Field of the sidecar that holds the expiry, in epoch milliseconds. */
export const EXPIRES_FIELD = "expires";

/**
 * Validates a ttl option: a positive number of milliseconds, or `Infinity`
 * ("no expiry", which {@link ttlOfWrite} turns into none).
 */
export function checkTtl(ttl: unknown): number | undefined {
  if (ttl === undefined || ttl === null) return undefined;
  if (typeof ttl !== "number" || Number.isNaN(ttl) || ttl <= 0) {
    throw new StorageError("E_INVALID_OPTION", `ttl must be a positive number of milliseconds (or Infinity: no expiry), got ${String(ttl)}`);
  }
  return ttl;
}

/**
 * The ttl a write gets: its own, else the storage's default; `Infinity` (on
 * the write or as the default) is no expiry, so a write can opt out of the
 * storage's default. Drivers never see `Infinity`.
 */
export function ttlOfWrite(ttl: unknown, defaultTtl: number | undefined): number | undefined {
  const own = checkTtl(ttl) ?? defaultTtl;
  return own === Infinity ? undefined : own;
}

export type Sidecar = Record<string, unknown>;

/** The sidecar of `key` as `driver` stores it (null: none). */
export function readSidecar(driver: Driver, key: string, serializer: Serializer, opts: TransactionOptions): MaybePromise<Sidecar | null> {
  return chain(driver.getItem(metaKeyOf(key), opts), (stored) => parseSidecar(stored, serializer));
}

/** unstorage's getMeta turns these back into dates when a sidecar stored them as text. */
const DATE_FIELDS = ["atime", "mtime", "ctime", "birthtime"];

/** Adds the fields of a sidecar (the user's meta) to `meta`, its dates revived as unstorage does. */
export function mergeSidecar(meta: StorageMeta, sidecar: Sidecar): StorageMeta {
  for (const field of DATE_FIELDS) {
    if (typeof sidecar[field] === "string") sidecar[field] = new Date(sidecar[field] as string);
  }
  return Object.assign(meta, sidecar);
}

export function parseSidecar(stored: unknown, serializer: Serializer): Sidecar | null {
  if (stored === null || stored === undefined) return null;
  const value = serializer.deserialize(stored);
  return value !== null && typeof value === "object" ? (value as Sidecar) : null;
}

export function expiresOf(sidecar: Sidecar | null): number | undefined {
  const expires = sidecar?.[EXPIRES_FIELD];
  if (typeof expires === "number") return expires;
  if (expires instanceof Date) return expires.getTime();
  return undefined;
}

/** Whether a sidecar's expiry has passed at `now` (the storage's clock). */
export function isExpired(sidecar: Sidecar | null, now: number): boolean {
  const expires = expiresOf(sidecar);
  return expires !== undefined && expires <= now;
}

/** The sidecar `current` should become so it carries `expires` (or no expiry); null: remove it. */
export function withExpiry(current: Sidecar | null, expires: number | undefined): Sidecar | null {
  const next: Sidecar = { ...current };
  if (expires === undefined) delete next[EXPIRES_FIELD];
  else next[EXPIRES_FIELD] = expires;
  return Object.keys(next).length > 0 ? next : null;
}

/** What has to happen to a key's sidecar: write this text, remove it, or nothing. */
export type SidecarChange = { type: "set"; value: string } | { type: "remove" } | null;

/** The change that turns the sidecar `current` into one recording `expires`. */
export function expiryChange(current: Sidecar | null, expires: number | undefined, serializer: Serializer): SidecarChange {
  if (expires === undefined && expiresOf(current) === undefined) return null;
  const next = withExpiry(current, expires);
  if (next === null) return current === null ? null : { type: "remove" };
  return { type: "set", value: serializer.serialize(next) };
}

/** A sidecar change as commit operations, to go in the same commit as its value. */
export function sidecarOperations(key: string, change: SidecarChange): CommitOperation[] {
  if (change?.type === "set") return [{ type: "set", key: metaKeyOf(key), value: change.value, options: {} }];
  if (change?.type === "remove") return [{ type: "remove", key: metaKeyOf(key), options: {} }];
  return [];
}

/** Applies a sidecar change to `driver` on its own (where it cannot share a step with the value). */
export function applySidecarChange(driver: Driver, key: string, change: SidecarChange, opts: TransactionOptions): MaybePromise<void> {
  if (change === null) return;
  if (change.type === "remove") return driver.removeItem?.(metaKeyOf(key), opts);
  const name = driver.name ?? "custom";
  if (!driver.setItem) throw new StorageError("E_READONLY", `Driver ${name} is read-only`, { driver: name, key });
  return driver.setItem(metaKeyOf(key), change.value, opts);
}

/** Adds `ttl` (ms left) and `expires` (a Date) to meta from an expiry moment. */
export function describeExpiry(meta: StorageMeta, expires: number | undefined, now = Date.now()): StorageMeta {
  if (expires === undefined) {
    delete meta[EXPIRES_FIELD];
    return meta;
  }
  meta.expires = new Date(expires);
  meta.ttl = Math.max(0, expires - now);
  return meta;
}
