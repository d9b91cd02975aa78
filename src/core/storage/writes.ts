import { StorageError } from "../errors.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import { commitsAtomically, type Located, type Mount } from "../mounts.js";
import { toBytes } from "../serializer.js";
import { checkRemoveOptions, checkWriteOptions, guardChecks, withoutGuards } from "../guards.js";
import type { CommitOperation, Driver, Fence, RemoveOptions, SetItemsInput, SetOptions } from "../types.js";
import { byMount, checkCallOptions, locate, NO_OPTIONS, put, readOnly, type Payload, type StorageContext } from "./context.js";
import { metaKeyOf } from "../keys.js";
import { ttlOfWrite } from "../ttl.js";
import { fenceRoute, hasFence, refuseFence } from "../fence.js";
import { writeFenced, writeItemsFenced, writeOneFenced } from "./fenced.js";

/** One entry of a setItems: `text` undefined removes the key (as setItem(key, undefined) does). */
type SetEntry = { loc: Located; text: string | undefined; options: SetOptions };
type ValueEntry = SetEntry & { text: string };

/** The fence of a one-key write when the core commits it (undefined: no fence, or the driver applies it from the options). */
function committedFence(loc: Located, sync: boolean, opts: SetOptions | RemoveOptions): Fence | undefined {
  if (!hasFence(opts)) return undefined;
  const { route, fence } = fenceRoute(loc.mount, sync, opts, true);
  return route === "commit" ? fence : undefined;
}

export function writeStep(ctx: StorageContext, loc: Located, payload: Payload, opts: SetOptions, sync = false): MaybePromise<void> {
  // Options left out carry no guard: the hot path skips the check.
  if (opts !== NO_OPTIONS) {
    checkWriteOptions(loc.mount, opts);
    // A fenced write goes as one fenced commit, or to a driver that fences it itself (with options.fence, below).
    const fence = committedFence(loc, sync, opts);
    if (fence) return writeOneFenced(ctx, fence, loc, payload, opts);
  }
  const written = put(loc, payload, withTtl(ctx, opts));
  // The common path, kept free of closures: it runs on every write.
  if (isPromise(written)) return written.then(() => ctx.watchers.report(loc.mount, "update", loc.key));
  ctx.watchers.report(loc.mount, "update", loc.key);
}

export function setItemStep(ctx: StorageContext, sync: boolean, key: string, value: unknown, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  if (value === undefined) return removeItemStep(ctx, sync, key, opts);
  const loc = locate(ctx, key, sync, true);
  return writeStep(ctx, loc, ctx.serializer.serialize(value), opts, sync);
}

export function setItemRawStep(ctx: StorageContext, sync: boolean, key: string, value: unknown, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  if (value === undefined) return removeItemStep(ctx, sync, key, opts);
  const loc = locate(ctx, key, sync, true);
  return writeStep(ctx, loc, toBytes(value), opts, sync);
}

export function setItemsStep(ctx: StorageContext, sync: boolean, items: SetItemsInput, common: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(common);
  if (!Array.isArray(items)) throw new StorageError("E_INVALID_OPTION", "setItems expects an array of { key, value }");
  // Every key and guard is checked before anything is sent.
  const entries = items.map((item): SetEntry => {
    const loc = locate(ctx, item?.key, sync, true);
    if (item.options !== undefined && item.options !== null) {
      checkCallOptions(item.options);
      refuseFence(item.options, "A setItems entry (a fence is one of its common options)");
    }
    const options: SetOptions = item.options ? { ...common, ...item.options } : common;
    if (item.value === undefined) checkRemoveOptions(loc.mount, options);
    else checkWriteOptions(loc.mount, options);
    return { loc, text: item.value === undefined ? undefined : ctx.serializer.serialize(item.value), options };
  });
  if (hasFence(common)) return writeItemsFenced(ctx, sync, entries, common);
  const groups = byMount(entries);
  return chain(all([...groups].map(([mount, group]) => writeGroup(ctx, mount, sync ? mount.store : mount.writer, group, common))), () => undefined);
}

/** The ttl a write carries: its own, else the storage's default. */
function ttlOf(ctx: StorageContext, opts: SetOptions): number | undefined {
  return ttlOfWrite(opts.ttl, ctx.defaultTtl);
}

/** Options as the mount's store takes them: with the ttl the write gets (the store keeps it, natively or in the sidecar). */
export function withTtl(ctx: StorageContext, opts: SetOptions): SetOptions {
  const ttl = ttlOf(ctx, opts);
  return ttl === opts.ttl ? opts : { ...opts, ttl };
}

/**
 * Writes one mount's share of a setItems. Removals (undefined values) go
 * with the values in one commit where the driver has commits; otherwise
 * the values are written, then the keys removed.
 */
function writeGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
  const values = group.filter((entry): entry is ValueEntry => entry.text !== undefined);
  if (values.length === group.length) return writeValues(ctx, mount, driver, values, common);
  const removals = group.filter((entry) => entry.text === undefined);
  if (commitsAtomically(mount.store, driver)) return commitGroup(ctx, mount, driver, group, common);
  // Values go before removals here, so a key named twice keeps only its last entry, as a commit in order would.
  const last = new Map<string, SetEntry>();
  for (const entry of group) last.set(entry.loc.key, entry);
  const isLast = (entry: SetEntry) => last.get(entry.loc.key) === entry;
  const lastValues = values.filter(isLast);
  return chain(lastValues.length > 0 ? writeValues(ctx, mount, driver, lastValues, common) : undefined, () =>
    chain(all(removals.filter(isLast).map(({ loc, options }) => removeLocated(ctx, loc, driver, options))), () => undefined),
  );
}

/** A setItems group with removals, as one atomic commit (the expiries go with the values). */
function commitGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
  const operations: CommitOperation[] = [];
  for (const { loc, text, options } of group) {
    operations.push(...guardChecks(loc.rel, options));
    if (text === undefined) operations.push({ type: "remove", key: loc.rel, options });
    else operations.push({ type: "set", key: loc.rel, value: text, options: withTtl(ctx, options) });
  }
  const { ttl: _ttl, ...shared } = withoutGuards(common);
  return chain(driver.commit!(operations, shared), () => {
    for (const { loc, text } of group) ctx.watchers.report(mount, text === undefined ? "remove" : "update", loc.key);
  });
}

/** Writes values of one mount: one driver call when the driver has setItems. */
function writeValues(ctx: StorageContext, mount: Mount, driver: Driver, group: ValueEntry[], common: SetOptions): MaybePromise<void> {
  if (!driver.setItems) {
    return chain(all(group.map(({ loc, text, options }) => writeStep(ctx, loc, text, options))), () => undefined);
  }
  const request = group.map(({ loc, text, options }) => ({ key: loc.rel, value: text, options: withTtl(ctx, options) }));
  const commonOptions = withTtl(ctx, common);
  return chain(driver.setItems(request, commonOptions), () => {
    for (const { loc } of group) ctx.watchers.report(mount, "update", loc.key);
  });
}

export function removeItemStep(ctx: StorageContext, sync: boolean, key: string, opts: RemoveOptions | boolean = NO_OPTIONS): MaybePromise<void> {
  const options: RemoveOptions = typeof opts === "boolean" ? { removeMeta: opts } : opts;
  checkCallOptions(options);
  const loc = locate(ctx, key, sync, true);
  checkRemoveOptions(loc.mount, options);
  const fence = committedFence(loc, sync, options);
  if (fence) return writeFenced(ctx, fence, [{ loc, type: "remove", options }], options);
  return removeLocated(ctx, loc, loc.writer, options);
}

/** Removes a located key (guard checked), with `removeMeta` its sidecar too (the store drops an expiry it keeps there). */
function removeLocated(ctx: StorageContext, loc: Located, driver: Driver, options: RemoveOptions): MaybePromise<void> {
  if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
  const removed = options.removeMeta ? removeWithMeta(loc, driver, options) : driver.removeItem(loc.rel, options);
  return chain(removed, () => ctx.watchers.report(loc.mount, "remove", loc.key));
}

/**
 * A removal with its sidecar (`removeMeta`), the guard on the value only (a
 * sidecar's version never matches it): one commit where the driver has
 * commits; otherwise the value first, guarded, and the sidecar once it has gone.
 */
function removeWithMeta(loc: Located, driver: Driver, options: RemoveOptions): MaybePromise<void> {
  const unguarded = withoutGuards(options);
  const sidecar: CommitOperation = { type: "remove", key: metaKeyOf(loc.rel), options: unguarded };
  if (commitsAtomically(loc.mount.store, driver)) {
    return driver.commit!([...guardChecks(loc.rel, options), { type: "remove", key: loc.rel, options: unguarded }, sidecar], unguarded);
  }
  return chain(driver.removeItem!(loc.rel, options), () => driver.removeItem!(sidecar.key, unguarded));
}
