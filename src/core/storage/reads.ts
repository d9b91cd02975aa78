import { StorageError } from "../errors.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import type { Located, Mount } from "../mounts.js";
import { deserializeRaw } from "../serializer.js";
import { mergeSidecar, readSidecar } from "../ttl.js";
import type { GetItemsInput, GetOptions, StorageMeta, TransactionOptions } from "../types.js";
import { byMount, checkCallOptions, locate, NO_OPTIONS, unsupported, valuesByKey, type StorageContext } from "./context.js";

export function hasItemStep(ctx: StorageContext, sync: boolean, key: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<boolean> {
  checkCallOptions(opts);
  const loc = locate(ctx, key, sync);
  return loc.mount.store.hasItem(loc.rel, opts);
}

/** A read of one key from its mount's store (which keeps the expiry where the driver does not); null when absent. */
export function readStep(ctx: StorageContext, loc: Located, opts: TransactionOptions, raw: boolean): MaybePromise<unknown> {
  const driver = loc.mount.store;
  const stored = raw && driver.getItemRaw ? driver.getItemRaw(loc.rel, opts) : driver.getItem(loc.rel, opts);
  // Reads are the hottest path: no closure unless the driver is async.
  return isPromise(stored) ? stored.then(orNull) : (stored ?? null);
}

function orNull(stored: unknown): unknown {
  return stored ?? null;
}

/** A stored value deserialized; null (or a driver's undefined) is no value. */
function deserializeStored(ctx: StorageContext, stored: unknown): unknown {
  return stored === null || stored === undefined ? null : ctx.serializer.deserialize(stored);
}

export function getItemStep(ctx: StorageContext, sync: boolean, key: string, opts: GetOptions = NO_OPTIONS): MaybePromise<unknown> {
  checkCallOptions(opts);
  const loc = locate(ctx, key, sync);
  if (opts.version !== undefined) return getVersion(ctx, loc, opts);
  const stored = readStep(ctx, loc, opts, false);
  return isPromise(stored) ? stored.then((found) => deserializeStored(ctx, found)) : deserializeStored(ctx, stored);
}

export function getItemRawStep(ctx: StorageContext, sync: boolean, key: string, opts: GetOptions = NO_OPTIONS): MaybePromise<Uint8Array | null> {
  checkCallOptions(opts);
  const loc = locate(ctx, key, sync);
  if (opts.version !== undefined) return getRawVersion(loc, opts);
  return chain(readStep(ctx, loc, opts, true), deserializeRaw);
}

/** A past version's bytes: the drivers flagged `history` read `version` in getItemRaw too (the kit checks it). */
function getRawVersion(loc: Located, opts: GetOptions): MaybePromise<Uint8Array | null> {
  const driver = loc.mount.store;
  if (!driver.flags?.history) throw unsupported(loc.mount, "getItemRaw with a version", "history");
  if (driver.getItemRaw) return chain(driver.getItemRaw(loc.rel, opts), deserializeRaw);
  return chain(driver.getItem(loc.rel, opts), deserializeRaw);
}

function getVersion(ctx: StorageContext, loc: Located, opts: GetOptions): MaybePromise<unknown> {
  const driver = loc.mount.store;
  if (!driver.flags?.history || typeof driver.getItem !== "function") throw unsupported(loc.mount, "getItem with a version", "history");
  return chain(driver.getItem(loc.rel, opts), (stored) => deserializeStored(ctx, stored));
}

function normalizeGetItems(ctx: StorageContext, items: GetItemsInput, common: TransactionOptions, sync: boolean) {
  if (!Array.isArray(items)) throw new StorageError("E_INVALID_OPTION", "getItems expects an array of keys");
  return items.map((item) => {
    const isString = typeof item === "string";
    const loc = locate(ctx, isString ? item : item?.key, sync);
    const itemOptions = isString ? undefined : item.options;
    // null is no options, as unstorage's spread has it.
    if (itemOptions !== undefined && itemOptions !== null) checkCallOptions(itemOptions);
    return { loc, options: itemOptions ? { ...common, ...itemOptions } : common };
  });
}

export function getItemsStep(ctx: StorageContext, sync: boolean, items: GetItemsInput, common: TransactionOptions = NO_OPTIONS) {
  checkCallOptions(common);
  const entries = normalizeGetItems(ctx, items, common, sync);
  const groups = byMount(entries);
  const found = new Map<string, unknown>();
  const reads = [...groups].map(([mount, group]) => chain(readGroup(ctx, mount, group, common), (values) => {
    group.forEach((entry, index) => found.set(entry.loc.key, values[index]));
  }));
  return chain(all(reads), () =>
    entries.map(({ loc }) => ({ key: loc.key, value: deserializeStored(ctx, found.get(loc.key)) })),
  );
}

/** Reads one mount's share of a getItems, in one driver call when the driver has getItems. */
function readGroup(ctx: StorageContext, mount: Mount, group: { loc: Located; options: TransactionOptions }[], common: TransactionOptions): MaybePromise<unknown[]> {
  const driver = mount.store;
  if (!driver.getItems) return all(group.map(({ loc, options }) => readStep(ctx, loc, options, false)));
  return chain(driver.getItems(group.map(({ loc, options }) => ({ key: loc.rel, options })), common), (results) => {
    const byKey = valuesByKey(results);
    return group.map(({ loc }) => byKey.get(loc.rel) ?? null);
  });
}

export function getMetaStep(ctx: StorageContext, sync: boolean, key: string, opts: (TransactionOptions & { nativeOnly?: boolean }) | boolean = NO_OPTIONS): MaybePromise<StorageMeta> {
  const options = typeof opts === "boolean" ? { nativeOnly: opts } : opts;
  checkCallOptions(options);
  return metaOf(ctx, locate(ctx, key, sync), options);
}

export function metaOf(ctx: StorageContext, loc: Located, options: TransactionOptions & { nativeOnly?: boolean }): MaybePromise<StorageMeta> {
  const driver = loc.mount.store;
  const native = driver.getMeta ? driver.getMeta(loc.rel, options) : null;
  // Sync drivers answer without a closure: the server reads meta on every GET.
  return isPromise(native) ? native.then((found) => completeMeta(ctx, loc, found, options)) : completeMeta(ctx, loc, native, options);
}

/**
 * The store's meta (with the expiry, native or kept by the TTL layer) plus,
 * unless `nativeOnly`, the user's meta from the sidecar. The TTL layer adds
 * that itself, from the read it made for the expiry, and reads a sidecar
 * key as null, so no sidecar is read twice.
 */
function completeMeta(ctx: StorageContext, loc: Located, native: StorageMeta | null | undefined, options: TransactionOptions & { nativeOnly?: boolean }): MaybePromise<StorageMeta> {
  const meta: StorageMeta = native ? { ...native } : {};
  if (options.nativeOnly) return meta;
  return chain(readSidecar(loc.mount.store, loc.rel, ctx.serializer, options), (sidecar) => (sidecar ? mergeSidecar(meta, sidecar) : meta));
}
