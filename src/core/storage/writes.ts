import { StorageError } from "../errors.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import type { Located, Mount } from "../mounts.js";
import { toBytes } from "../serializer.js";
import { checkRemoveOptions, checkWriteOptions, guardChecks, withoutGuards } from "../guards.js";
import type { CommitOperation, Driver, RemoveOptions, SetItemsInput, SetOptions } from "../types.js";
import { byMount, checkCallOptions, locate, NO_OPTIONS, put, readOnly, type Payload, type StorageContext } from "./context.js";
import { driverOptions, needsCoreTtl, removeWithExpiry, ttlOf, writeGroupWithExpiry, writeWithExpiry, type GroupEntry } from "./expiry.js";

/** One entry of a setItems: `text` undefined removes the key (as setItem(key, undefined) does). */
type SetEntry = GroupEntry;
type ValueEntry = SetEntry & { text: string };

export function writeStep(ctx: StorageContext, loc: Located, payload: Payload, opts: SetOptions): MaybePromise<void> {
  // Options left out carry no guard: the hot path skips the check.
  if (opts !== NO_OPTIONS) checkWriteOptions(loc.mount, opts);
  const ttl = ttlOf(ctx, opts);
  const driverOpts = driverOptions(loc, opts, ttl);
  if (needsCoreTtl(loc)) return writeWithExpiry(ctx, loc, payload, driverOpts, ttl);
  const written = put(loc, payload, driverOpts);
  // The common path, kept free of closures: it runs on every write.
  if (isPromise(written)) return written.then(() => ctx.watchers.report(loc.mount, "update", loc.key));
  ctx.watchers.report(loc.mount, "update", loc.key);
}

export function setItemStep(ctx: StorageContext, sync: boolean, key: string, value: unknown, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  if (value === undefined) return removeItemStep(ctx, sync, key, opts);
  const loc = locate(ctx, key, sync, true);
  return writeStep(ctx, loc, ctx.serializer.serialize(value), opts);
}

export function setItemRawStep(ctx: StorageContext, sync: boolean, key: string, value: unknown, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  if (value === undefined) return removeItemStep(ctx, sync, key, opts);
  const loc = locate(ctx, key, sync, true);
  return writeStep(ctx, loc, toBytes(value), opts);
}

export function setItemsStep(ctx: StorageContext, sync: boolean, items: SetItemsInput, common: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(common);
  if (!Array.isArray(items)) throw new StorageError("E_INVALID_OPTION", "setItems expects an array of { key, value }");
  // Every key and guard is checked before anything is sent.
  const entries = items.map((item): SetEntry => {
    const loc = locate(ctx, item?.key, sync, true);
    if (item.options !== undefined && item.options !== null) checkCallOptions(item.options);
    const options: SetOptions = item.options ? { ...common, ...item.options } : common;
    if (item.value === undefined) checkRemoveOptions(loc.mount, options);
    else checkWriteOptions(loc.mount, options);
    return { loc, text: item.value === undefined ? undefined : ctx.serializer.serialize(item.value), options };
  });
  const groups = byMount(entries);
  return chain(all([...groups].map(([mount, group]) => writeGroup(ctx, mount, sync ? mount.driver : mount.writer, group, common))), () => undefined);
}

/**
 * Writes one mount's share of a setItems. Removals (undefined values) go
 * with the values in one commit where the driver has commits; otherwise
 * the values are written, then the keys removed.
 */
function writeGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
  if (!mount.nativeTtl) return writeGroupWithExpiry(ctx, mount, driver, group, () => writePlainGroup(ctx, mount, driver, group, common));
  return writePlainGroup(ctx, mount, driver, group, common);
}

/** A group whose writes leave every sidecar as it is (so a driver's own setItems keeps its own commit message). */
function writePlainGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
  const values = group.filter((entry): entry is ValueEntry => entry.text !== undefined);
  if (values.length === group.length) return writeValues(ctx, mount, driver, values, common);
  const removals = group.filter((entry) => entry.text === undefined);
  if (driver.commit && mount.driver.flags?.transactions) return commitGroup(ctx, mount, driver, group, common);
  // Values go before removals here, so a key named twice keeps only its last entry, as a commit in order would.
  const last = new Map<string, SetEntry>();
  for (const entry of group) last.set(entry.loc.key, entry);
  const isLast = (entry: SetEntry) => last.get(entry.loc.key) === entry;
  const lastValues = values.filter(isLast);
  return chain(lastValues.length > 0 ? writeValues(ctx, mount, driver, lastValues, common) : undefined, () =>
    chain(all(removals.filter(isLast).map(({ loc, options }) => removeLocated(ctx, loc, driver, options))), () => undefined),
  );
}

/** A setItems group with removals, as one atomic commit (a driver with native TTL: the expiries go with the values). */
function commitGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
  const operations: CommitOperation[] = [];
  for (const { loc, text, options } of group) {
    operations.push(...guardChecks(loc.rel, options));
    if (text === undefined) operations.push({ type: "remove", key: loc.rel, options });
    else operations.push({ type: "set", key: loc.rel, value: text, options: driverOptions(loc, options, ttlOf(ctx, options)) });
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
  const request = group.map(({ loc, text, options }) => ({ key: loc.rel, value: text, options: driverOptions(loc, options, ttlOf(ctx, options)) }));
  const commonOptions = driverOptions(group[0]!.loc, common, ttlOf(ctx, common));
  return chain(driver.setItems(request, commonOptions), () => {
    for (const { loc } of group) ctx.watchers.report(mount, "update", loc.key);
  });
}

export function removeItemStep(ctx: StorageContext, sync: boolean, key: string, opts: RemoveOptions | boolean = NO_OPTIONS): MaybePromise<void> {
  const options: RemoveOptions = typeof opts === "boolean" ? { removeMeta: opts } : opts;
  checkCallOptions(options);
  const loc = locate(ctx, key, sync, true);
  checkRemoveOptions(loc.mount, options);
  return removeLocated(ctx, loc, loc.writer, options);
}

/** Removes a located key (guard checked), and its sidecar's expiry (or, with `removeMeta`, the whole sidecar). */
function removeLocated(ctx: StorageContext, loc: Located, driver: Driver, options: RemoveOptions): MaybePromise<void> {
  if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
  if (needsCoreTtl(loc) || options.removeMeta) return removeWithExpiry(ctx, loc, driver, options);
  return chain(driver.removeItem(loc.rel, options), () => ctx.watchers.report(loc.mount, "remove", loc.key));
}
