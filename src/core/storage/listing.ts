import { StorageError } from "../errors.js";
import { filterKeyByDepth, isMetaKey, normalizeItemBase, normalizeKey } from "../keys.js";
import { all, chain, type MaybePromise } from "../maybePromise.js";
import type { Mount, MountSlice } from "../mounts.js";
import type { GetKeysOptions, IterateKeysOptions, TransactionOptions } from "../types.js";
import { checkCallOptions, NO_OPTIONS, readOnly, slicesOf, type StorageContext } from "./context.js";

function checkMaxDepth(maxDepth: unknown): number | undefined {
  if (maxDepth === undefined) return undefined;
  if (typeof maxDepth !== "number" || !Number.isInteger(maxDepth) || maxDepth < 0) {
    throw new StorageError("E_INVALID_OPTION", `maxDepth must be a non-negative integer, got ${String(maxDepth)}`);
  }
  return maxDepth;
}

/** maxDepth as the mounted driver sees it (its keys are shallower by the mount's depth); -1: none fit. */
function driverDepth(mount: Mount, maxDepth: number | undefined): number | undefined {
  return maxDepth === undefined ? undefined : maxDepth - mount.depth;
}

function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Turns one mount's listing (from its store, which has left expired keys
 * out) into visible full keys under `base`: sidecars hidden.
 */
function visibleKeys(mount: Mount, rawKeys: string[], base: string, maxDepth: number | undefined, masked: string[]): string[] {
  const keys: string[] = [];
  const depthFilter = maxDepth !== undefined && !mount.store.flags?.maxDepth;
  for (const raw of rawKeys) {
    const rel = normalizeKey(raw);
    if (isMetaKey(rel)) continue;
    const full = mount.base + rel;
    if (base && !full.startsWith(base)) continue;
    if (depthFilter && !filterKeyByDepth(full, maxDepth)) continue;
    if (masked.length > 0 && masked.some((prefix) => full.startsWith(prefix))) continue;
    keys.push(full);
  }
  return keys;
}

export function getKeysStep(ctx: StorageContext, sync: boolean, base?: string, opts: GetKeysOptions = NO_OPTIONS): MaybePromise<string[]> {
  checkCallOptions(opts);
  const normalizedBase = normalizeItemBase(base);
  const maxDepth = checkMaxDepth(opts.maxDepth);
  const slices = slicesOf(ctx, normalizedBase, sync);
  const listings = slices.map(({ mount, relativeBase }, index) => {
    const depth = driverDepth(mount, maxDepth);
    if (depth !== undefined && depth < 0) return [];
    // Keys of a mount are hidden where a more specific mount (listed earlier) sits over them.
    const masked = slices.slice(0, index).map((slice) => slice.mount.base);
    const listing = mount.store.getKeys(relativeBase, depth === opts.maxDepth ? opts : { ...opts, maxDepth: depth });
    return chain(listing, (rawKeys) => visibleKeys(mount, rawKeys, normalizedBase, maxDepth, masked));
  });
  return chain(all(listings), (lists) => (lists.length === 1 ? (lists[0] as string[]) : lists.flat()));
}

export async function* iterateKeys(ctx: StorageContext, base: string | undefined, opts: IterateKeysOptions): AsyncIterableIterator<string[]> {
  const normalizedBase = normalizeItemBase(base);
  const maxDepth = checkMaxDepth(opts.maxDepth);
  const batchSize = opts.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new StorageError("E_INVALID_OPTION", `batchSize must be a positive integer, got ${String(opts.batchSize)}`);
  }
  const slices = slicesOf(ctx, normalizedBase, false);
  let pending: string[] = [];
  for (const [index, { mount, relativeBase }] of slices.entries()) {
    const depth = driverDepth(mount, maxDepth);
    if (depth !== undefined && depth < 0) continue;
    const masked = slices.slice(0, index).map((slice) => slice.mount.base);
    const driverOpts = { ...opts, maxDepth: depth, batchSize };
    const store = mount.store;
    const source = store.iterateKeys ? store.iterateKeys(relativeBase, driverOpts) : batches(await store.getKeys(relativeBase, driverOpts), batchSize);
    for await (const rawBatch of source) {
      pending = pending.concat(visibleKeys(mount, rawBatch, normalizedBase, maxDepth, masked));
      while (pending.length >= batchSize) {
        yield pending.slice(0, batchSize);
        pending = pending.slice(batchSize);
      }
    }
  }
  if (pending.length > 0) yield pending;
}

export function clearStep(ctx: StorageContext, sync: boolean, base?: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  const normalizedBase = normalizeItemBase(base);
  const slices = slicesOf(ctx, normalizedBase, sync);
  const cleared = slices.map(({ mount, relativeBase }, index) => {
    // Keys a more specific mount (listed earlier) sits over are not reachable under base: they stay.
    const hidden = hiddenPrefixes(mount, slices.slice(0, index));
    if (hidden.some((prefix) => relativeBase.startsWith(prefix))) return undefined;
    return clearMount(ctx, mount, relativeBase, hidden.filter((prefix) => prefix.startsWith(relativeBase)), opts);
  });
  return chain(all(cleared), () => undefined);
}

/** The bases of the more specific mounts inside `mount`, relative to it. */
function hiddenPrefixes(mount: Mount, above: MountSlice[]): string[] {
  return above.filter((slice) => slice.mount.base.startsWith(mount.base)).map((slice) => slice.mount.base.slice(mount.base.length));
}

/** Empties a mount under `relativeBase` through the user's driver (not its store): every stored key goes, expired ones and sidecars too. */
function clearMount(ctx: StorageContext, mount: Mount, relativeBase: string, hidden: string[], opts: TransactionOptions): MaybePromise<void> {
  const driver = mount.driver;
  const report = ctx.watchers.watching && mount.coreEvents;
  // A driver's clear may ignore its base (unstorage's do); only ones flagged clearBase are trusted with one.
  const wholeClear = hidden.length === 0 && driver.clear && (relativeBase === "" || driver.flags?.clearBase);
  if (wholeClear && !report) return driver.clear!(relativeBase, opts);
  if (!wholeClear && !driver.removeItem) throw readOnly(mount);
  return chain(driver.getKeys(relativeBase, opts), (rawKeys) => {
    const keys = rawKeys.map(normalizeKey).filter((key) => key.startsWith(relativeBase) && !hidden.some((prefix) => key.startsWith(prefix)));
    const removed = wholeClear ? driver.clear!(relativeBase, opts) : all(keys.map((key) => driver.removeItem!(key, opts)));
    return chain(removed, () => {
      for (const key of keys) ctx.watchers.report(mount, "remove", mount.base + key);
    });
  });
}
