import { StorageError } from "../errors.js";
import { isMetaKey } from "../keys.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import type { Located, Mount } from "../mounts.js";
import { serializeRaw, toBytes } from "../serializer.js";
import { checkTtl, planExpiry } from "../ttl.js";
import { checkRemoveOptions, checkWriteOptions, hasGuard, withoutGuards } from "../guards.js";
import type { CommitOperation, Driver, RemoveOptions, SetItemsInput, SetOptions } from "../types.js";
import { byMount, checkCallOptions, locate, NO_OPTIONS, readOnly, type Payload, type StorageContext } from "./context.js";
import { driverOptions, keepExpiries, keepExpiry, needsCoreTtl, removeWithSidecar, ttlOf } from "./expiry.js";

/** One entry of a setItems: `text` undefined removes the key (as setItem(key, undefined) does). */
type SetEntry = { loc: Located; text: string | undefined; options: SetOptions };
type ValueEntry = SetEntry & { text: string };

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

export function writeStep(ctx: StorageContext, loc: Located, payload: Payload, opts: SetOptions): MaybePromise<void> {
  // Options left out carry no guard: the hot path skips the check.
  if (opts !== NO_OPTIONS) checkWriteOptions(loc.mount, opts);
  const ttl = ttlOf(ctx, loc, opts);
  return afterWrite(ctx, loc, put(loc, payload, driverOptions(loc, opts, ttl)), ttl);
}

/** Once a value reached its driver: the expiry the core keeps for it, then the change event. */
export function afterWrite(ctx: StorageContext, loc: Located, written: MaybePromise<void>, ttl: number | undefined): MaybePromise<void> {
  if (!needsCoreTtl(loc)) {
    // The common path, kept free of closures: it runs on every write.
    if (isPromise(written)) return written.then(() => ctx.watchers.report(loc.mount, "update", loc.key));
    ctx.watchers.report(loc.mount, "update", loc.key);
    return;
  }
  return chain(written, () => keepExpiry(ctx, loc, ttl));
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
export function writeGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
  const values = group.filter((entry): entry is ValueEntry => entry.text !== undefined);
  if (values.length === group.length) return writeValues(ctx, mount, driver, values, common);
  const removals = group.filter((entry) => entry.text === undefined);
  if (driver.commit && mount.driver.flags?.transactions) return commitGroup(ctx, mount, driver, group, values, removals, common);
  // Values go before removals here, so a key named twice keeps only its last entry, as a commit in order would.
  const last = new Map<string, SetEntry>();
  for (const entry of group) last.set(entry.loc.key, entry);
  const isLast = (entry: SetEntry) => last.get(entry.loc.key) === entry;
  const lastValues = values.filter(isLast);
  return chain(lastValues.length > 0 ? writeValues(ctx, mount, driver, lastValues, common) : undefined, () =>
    chain(all(removals.filter(isLast).map(({ loc, options }) => removeLocated(ctx, loc, driver, options))), () => undefined),
  );
}

/** A setItems group with removals, as one atomic commit; the expiries the core keeps follow it. */
export function commitGroup(ctx: StorageContext, mount: Mount, driver: Driver, group: SetEntry[], values: ValueEntry[], removals: SetEntry[], common: SetOptions): MaybePromise<void> {
  const operations: CommitOperation[] = [];
  const ttls = new Map<Located, number | undefined>();
  for (const { loc, text, options } of group) {
    if (hasGuard(options)) operations.push({ type: "check", key: loc.rel, etag: options.ifMatch ?? null });
    if (text === undefined) {
      operations.push({ type: "remove", key: loc.rel, options });
      continue;
    }
    const ttl = ttlOf(ctx, loc, options);
    ttls.set(loc, ttl);
    operations.push({ type: "set", key: loc.rel, value: text, options: driverOptions(loc, options, ttl) });
  }
  const { ttl: _ttl, ...shared } = withoutGuards(common);
  return chain(driver.commit!(operations, shared), () => {
    // Expiries the core keeps follow (sidecars themselves have none); the rest is reported now.
    const expiring = (entry: SetEntry) => !mount.nativeTtl && !isMetaKey(entry.loc.rel);
    for (const { loc, text } of group.filter((entry) => !expiring(entry))) ctx.watchers.report(mount, text === undefined ? "remove" : "update", loc.key);
    return chain(keepExpiries(ctx, mount, values.filter(expiring).map(({ loc }) => ({ loc, ttl: ttls.get(loc) })), "update"), () =>
      keepExpiries(ctx, mount, removals.filter(expiring).map(({ loc }) => ({ loc, ttl: undefined })), "remove"),
    );
  });
}

/** Writes values of one mount: one driver call when the driver has setItems. */
export function writeValues(ctx: StorageContext, mount: Mount, driver: Driver, group: ValueEntry[], common: SetOptions): MaybePromise<void> {
  if (!driver.setItems) {
    return chain(all(group.map(({ loc, text, options }) => writeStep(ctx, loc, text, options))), () => undefined);
  }
  // One driver call for the values (one commit on git); expiries the core keeps follow per key.
  const ttls = group.map(({ loc, options }) => ttlOf(ctx, loc, options));
  const request = group.map(({ loc, text, options }, index) => ({ key: loc.rel, value: text, options: driverOptions(loc, options, ttls[index]) }));
  const commonTtl = checkTtl(common.ttl) ?? ctx.defaultTtl;
  const commonOptions = mount.nativeTtl ? (commonTtl === common.ttl ? common : { ...common, ttl: commonTtl }) : driverOptions(group[0]!.loc, common, undefined);
  return chain(driver.setItems(request, commonOptions), () => {
    if (mount.nativeTtl) {
      for (const { loc } of group) ctx.watchers.report(mount, "update", loc.key);
      return;
    }
    const expiring: { loc: Located; ttl: number | undefined }[] = [];
    group.forEach(({ loc }, index) => {
      if (isMetaKey(loc.rel)) ctx.watchers.report(mount, "update", loc.key);
      else expiring.push({ loc, ttl: ttls[index] });
    });
    return keepExpiries(ctx, mount, expiring, "update");
  });
}

export function removeItemStep(ctx: StorageContext, sync: boolean, key: string, opts: RemoveOptions | boolean = NO_OPTIONS): MaybePromise<void> {
  const options: RemoveOptions = typeof opts === "boolean" ? { removeMeta: opts } : opts;
  checkCallOptions(options);
  const loc = locate(ctx, key, sync, true);
  checkRemoveOptions(loc.mount, options);
  return removeLocated(ctx, loc, loc.writer, options);
}

/** Removes a located key (guard checked): with its sidecar when asked, else dropping the expiry the core kept. */
export function removeLocated(ctx: StorageContext, loc: Located, driver: Driver, options: RemoveOptions): MaybePromise<void> {
  if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
  if (options.removeMeta) return removeWithSidecar(ctx, loc, driver, options, { type: "remove" });
  if (!needsCoreTtl(loc)) return chain(driver.removeItem(loc.rel, options), () => ctx.watchers.report(loc.mount, "remove", loc.key));
  // The expiry the core kept goes with the value; meta the user set stays.
  return chain(planExpiry(loc.mount, loc.rel, undefined, ctx.serializer, withoutGuards(options)), (change) => removeWithSidecar(ctx, loc, driver, options, change));
}
