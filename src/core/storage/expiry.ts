import { isStorageError } from "../errors.js";
import { isMetaKey, metaKeyOf, normalizeKey } from "../keys.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import type { Located, Mount } from "../mounts.js";
import { hasGuard, withoutGuards } from "../guards.js";
import {
  applySidecarChange,
  checkTtl,
  expiryChange,
  isExpired,
  parseSidecar,
  planExpiry,
  readSidecar,
  type SidecarChange,
} from "../ttl.js";
import type { CommitOperation, Driver, RemoveOptions, SetOptions, TransactionOptions, WatchEvent } from "../types.js";
import { NO_OPTIONS, readOnly, type StorageContext } from "./context.js";

// TTL kept by the core for drivers without native expiry: the sidecar's expiry, its purge and its upkeep on writes.

export function needsCoreTtl(loc: Located): boolean {
  return !loc.mount.nativeTtl && !isMetaKey(loc.rel);
}

/**
 * Removes an expired key and its sidecar; the key then reads as absent.
 * On a driver flagged `cas` the removal is guarded by the versions of both
 * the value and the sidecar, each read before the expiry is confirmed, so
 * a key another writer has just put back is not deleted: a conflict means
 * the key lives again, and is left. The sidecar's guard matters where
 * etags are content hashes (git, git-refs): a value written again with the
 * same content keeps its etag, and only its new sidecar shows the rewrite.
 * Without CAS no guard is possible, and the purge is a plain removal.
 */
export function purge(ctx: StorageContext, loc: Located, opts: TransactionOptions): MaybePromise<void> {
  const driver = loc.mount.driver;
  if (!driver.removeItem) return;
  const options = withoutGuards(opts as RemoveOptions);
  if (!driver.flags?.cas || !driver.getMeta) {
    return chain(driver.removeItem(loc.rel, options), () =>
      chain(driver.removeItem!(metaKeyOf(loc.rel), options), () => ctx.watchers.report(loc.mount, "remove", loc.key)),
    );
  }
  // Versions first, then the expiry once more: a rewrite of either after its version was read fails its guard.
  return chain(driver.getMeta(loc.rel, options), (meta) =>
    chain(driver.getMeta!(metaKeyOf(loc.rel), options), (sidecarMeta) =>
      chain(readSidecar(loc.mount, loc.rel, ctx.serializer, options), (sidecar) => {
        if (!meta?.etag || !sidecarMeta?.etag || !isExpired(sidecar)) return;
        const versions = { value: meta.etag, sidecar: sidecarMeta.etag };
        return unlessConflict(() => removeExpired(ctx, loc, versions, options));
      }),
    ),
  );
}

/**
 * The guarded removal of an expired key, given the versions its value and
 * sidecar had when the expiry was read. Where the driver has atomic
 * commits: one commit checking both versions. Otherwise the sidecar goes
 * first, guarded by its version (a rewrite of the key rewrites it), then
 * the value, guarded by its own. Gap left there (content-hash etags only):
 * a writer that puts the same content back between the two removals
 * matches the value's guard, and loses its write. See docs/core.md.
 */
export function removeExpired(ctx: StorageContext, loc: Located, versions: { value: string; sidecar: string }, options: RemoveOptions): MaybePromise<void> {
  const driver = loc.mount.driver;
  const sidecarKey = metaKeyOf(loc.rel);
  const done = () => ctx.watchers.report(loc.mount, "remove", loc.key);
  if (driver.commit && driver.flags?.transactions) {
    const operations: CommitOperation[] = [
      { type: "check", key: loc.rel, etag: versions.value },
      { type: "check", key: sidecarKey, etag: versions.sidecar },
      { type: "remove", key: loc.rel, options },
      { type: "remove", key: sidecarKey, options },
    ];
    return chain(driver.commit(operations, options), done);
  }
  return chain(driver.removeItem!(sidecarKey, { ...options, ifMatch: versions.sidecar }), () =>
    chain(driver.removeItem!(loc.rel, { ...options, ifMatch: versions.value }), done),
  );
}

/** Runs a guarded step; E_CONFLICT (another writer got there first) ends it without effect, any other failure is thrown. */
export function unlessConflict(step: () => MaybePromise<void>): MaybePromise<void> {
  const isConflict = (error: unknown) => isStorageError(error, "E_CONFLICT");
  try {
    const result = step();
    return isPromise(result) ? result.catch((error: unknown) => (isConflict(error) ? undefined : Promise.reject(error))) : result;
  } catch (error) {
    if (isConflict(error)) return;
    throw error;
  }
}

/**
 * Removes a value and applies its sidecar's change, with the value's guard
 * on the value only (a sidecar's version never matches it). Where the
 * driver has atomic commits, both go in one; otherwise the value goes
 * first, guarded, and the sidecar follows unguarded only once it has.
 */
export function removeWithSidecar(ctx: StorageContext, loc: Located, driver: Driver, options: RemoveOptions, change: SidecarChange): MaybePromise<void> {
  const unguarded = withoutGuards(options);
  const done = () => ctx.watchers.report(loc.mount, "remove", loc.key);
  if (hasGuard(options) && driver.commit && loc.mount.driver.flags?.transactions) {
    const operations: CommitOperation[] = [
      { type: "check", key: loc.rel, etag: options.ifMatch ?? null },
      { type: "remove", key: loc.rel, options: unguarded },
    ];
    if (change?.type === "remove") operations.push({ type: "remove", key: metaKeyOf(loc.rel), options: unguarded });
    if (change?.type === "set") operations.push({ type: "set", key: metaKeyOf(loc.rel), value: change.value, options: unguarded });
    return chain(driver.commit(operations, unguarded), done);
  }
  return chain(driver.removeItem!(loc.rel, options), () => chain(applySidecarChange(loc.mount, loc.rel, change, unguarded), done));
}

/** Passes a stored value on unless the core-kept expiry says it is gone. */
export function unlessExpired<T>(ctx: StorageContext, loc: Located, stored: T, opts: TransactionOptions): MaybePromise<T | null> {
  if (stored === null || stored === undefined) return null;
  if (!needsCoreTtl(loc)) return stored;
  return chain(readSidecar(loc.mount, loc.rel, ctx.serializer, opts), (sidecar) =>
    isExpired(sidecar) ? chain(purge(ctx, loc, opts), () => null) : stored,
  );
}

/** Options as the driver gets them: ttl only for drivers that expire keys themselves. */
export function driverOptions(loc: Located, opts: SetOptions, ttl: number | undefined): SetOptions {
  if (loc.mount.nativeTtl) return ttl === opts.ttl ? opts : { ...opts, ttl };
  if (opts.ttl === undefined) return opts;
  const stripped = { ...opts };
  delete stripped.ttl;
  return stripped;
}

/** The ttl a write carries: its own, else the storage's default (never for meta sidecars). */
export function ttlOf(ctx: StorageContext, loc: Located, opts: SetOptions): number | undefined {
  return isMetaKey(loc.rel) ? checkTtl(opts.ttl) : (checkTtl(opts.ttl) ?? ctx.defaultTtl);
}

/** After a value is written to a driver without native expiry: its sidecar keeps (or drops) the expiry, then the event goes out. */
export function keepExpiry(ctx: StorageContext, loc: Located, ttl: number | undefined, event: WatchEvent = "update"): MaybePromise<void> {
  const expires = ttl === undefined ? undefined : Date.now() + ttl;
  return chain(planExpiry(loc.mount, loc.rel, expires, ctx.serializer, NO_OPTIONS), (change) =>
    chain(applySidecarChange(loc.mount, loc.rel, change, NO_OPTIONS), () => ctx.watchers.report(loc.mount, event, loc.key)),
  );
}

/**
 * keepExpiry for the keys of one setItems: their sidecars read in one
 * driver getItems and rewritten in one setItems (one commit on git), not
 * one call per key.
 */
export function keepExpiries(ctx: StorageContext, mount: Mount, entries: { loc: Located; ttl: number | undefined }[], event: WatchEvent): MaybePromise<void> {
  const driver = mount.driver;
  if (entries.length === 0) return;
  if (!driver.getItems) return chain(all(entries.map(({ loc, ttl }) => keepExpiry(ctx, loc, ttl, event))), () => undefined);
  const now = Date.now();
  return chain(driver.getItems(entries.map(({ loc }) => ({ key: metaKeyOf(loc.rel) })), NO_OPTIONS), (results) => {
    const sidecars = new Map<string, unknown>();
    for (const result of results) sidecars.set(normalizeKey(result.key), result.value);
    const sets: { key: string; value: string }[] = [];
    const removals: MaybePromise<void>[] = [];
    for (const { loc, ttl } of entries) {
      const change = expiryChange(parseSidecar(sidecars.get(metaKeyOf(loc.rel)), ctx.serializer), ttl === undefined ? undefined : now + ttl, ctx.serializer);
      if (change?.type === "set") sets.push({ key: metaKeyOf(loc.rel), value: change.value });
      else if (change) removals.push(applySidecarChange(mount, loc.rel, change, NO_OPTIONS));
    }
    return chain(all([...removals, writeSidecars(ctx, mount, sets)]), () => {
      for (const { loc } of entries) ctx.watchers.report(mount, event, loc.key);
    });
  });
}

/** Writes sidecar texts in one driver call where the driver has setItems. */
export function writeSidecars(ctx: StorageContext, mount: Mount, sets: { key: string; value: string }[]): MaybePromise<void> {
  const driver = mount.driver;
  if (sets.length === 0) return;
  if (driver.setItems) return driver.setItems(sets, NO_OPTIONS);
  if (!driver.setItem) throw readOnly(mount);
  return chain(all(sets.map(({ key, value }) => driver.setItem!(key, value, NO_OPTIONS))), () => undefined);
}
