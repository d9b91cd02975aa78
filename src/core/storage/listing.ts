import { StorageError } from "../errors.js";
import { filterKeyByDepth, isMetaKey, metaKeyOf, normalizeItemBase, normalizeKey } from "../keys.js";
import { all, chain, type MaybePromise } from "../maybePromise.js";
import type { Located, Mount, MountSlice } from "../mounts.js";
import type { GetKeysOptions, IterateKeysOptions, TransactionOptions } from "../types.js";
import { checkCallOptions, NO_OPTIONS, readOnly, slicesOf, type StorageContext } from "./context.js";
import { recovering, unlessExpired } from "./expiry.js";

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

/** Drops expired keys (core-kept TTL) from a mount's listing, given which sidecars it holds. */
export function dropExpired(ctx: StorageContext, mount: Mount, relKeys: string[], sidecars: Set<string>, opts: TransactionOptions): MaybePromise<string[]> {
  if (mount.nativeTtl || sidecars.size === 0) return relKeys;
  const checks = relKeys.map((rel) => {
    if (!sidecars.has(metaKeyOf(rel))) return true;
    return listedAlive(ctx, { mount, key: mount.base + rel, rel, writer: mount.driver }, opts);
  });
  return chain(all(checks), (alive) => relKeys.filter((_, index) => alive[index]));
}

/**
 * Whether a listed key is alive by its sidecar. A sidecar that cannot be
 * read (E_CORRUPT) leaves the key listed: a listing decodes no values, so
 * one bad sidecar does not fail the listing of every key; reads of the key report it.
 */
function listedAlive(ctx: StorageContext, loc: Located, opts: TransactionOptions): MaybePromise<boolean> {
  return recovering(() => chain(unlessExpired(ctx, loc, true, opts), (alive) => alive === true), "E_CORRUPT", () => true);
}

/** Turns one mount's raw listing into visible full keys under `base`. */
function visibleKeys(
  ctx: StorageContext,
  mount: Mount,
  rawKeys: string[],
  base: string,
  maxDepth: number | undefined,
  masked: string[],
  opts: TransactionOptions,
): MaybePromise<string[]> {
  const relKeys: string[] = [];
  const sidecars = new Set<string>();
  const depthFilter = maxDepth !== undefined && !mount.driver.flags?.maxDepth;
  for (const raw of rawKeys) {
    const rel = normalizeKey(raw);
    if (isMetaKey(rel)) {
      sidecars.add(rel);
      continue;
    }
    const full = mount.base + rel;
    if (base && !full.startsWith(base)) continue;
    if (depthFilter && !filterKeyByDepth(full, maxDepth)) continue;
    if (masked.length > 0 && masked.some((prefix) => full.startsWith(prefix))) continue;
    relKeys.push(rel);
  }
  return chain(dropExpired(ctx, mount, relKeys, sidecars, opts), (alive) => (mount.base ? alive.map((rel) => mount.base + rel) : alive));
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
    const listing = mount.driver.getKeys(relativeBase, depth === opts.maxDepth ? opts : { ...opts, maxDepth: depth });
    return chain(listing, (rawKeys) => visibleKeys(ctx, mount, rawKeys, normalizedBase, maxDepth, masked, opts));
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
    const source = mount.driver.iterateKeys
      ? mount.driver.iterateKeys(relativeBase, driverOpts)
      : batches(await mount.driver.getKeys(relativeBase, driverOpts), batchSize);
    for await (const rawBatch of source) {
      const keys = await visibleKeys(ctx, mount, rawBatch, normalizedBase, maxDepth, masked, opts);
      const alive = await dropExpiredUnseen(ctx, mount, keys, rawBatch, opts);
      pending = pending.concat(alive);
      while (pending.length >= batchSize) {
        yield pending.slice(0, batchSize);
        pending = pending.slice(batchSize);
      }
    }
  }
  if (pending.length > 0) yield pending;
}

/**
 * A paged listing may hand a key and its sidecar out in different pages, so
 * keys whose sidecar was not in the page have it looked up.
 */
async function dropExpiredUnseen(ctx: StorageContext, mount: Mount, fullKeys: string[], rawBatch: string[], opts: TransactionOptions): Promise<string[]> {
  if (mount.nativeTtl || fullKeys.length === 0) return fullKeys;
  const seen = new Set(rawBatch.map(normalizeKey));
  const unseen = fullKeys.filter((key) => !seen.has(metaKeyOf(key.slice(mount.base.length))));
  if (unseen.length === 0) return fullKeys;
  const checked = await Promise.all(unseen.map((key) => listedAlive(ctx, { mount, key, rel: key.slice(mount.base.length), writer: mount.driver }, opts)));
  const gone = new Set(unseen.filter((_, index) => !checked[index]));
  return gone.size === 0 ? fullKeys : fullKeys.filter((key) => !gone.has(key));
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
