import { isStorageError, type StorageErrorCode } from "../errors.js";
import { guardChecks, hasGuard, withoutGuards } from "../guards.js";
import { metaKeyOf } from "../keys.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import type { Located, Mount } from "../mounts.js";
import {
  applySidecarChange,
  checkTtl,
  describeExpiry,
  expiresOf,
  expiryChange,
  isExpired,
  parseSidecar,
  readSidecar,
  sidecarOperations,
  type SidecarChange,
} from "../ttl.js";
import type { CommitOperation, Driver, RemoveOptions, SetOptions, StorageMeta, TransactionOptions } from "../types.js";
import { NO_OPTIONS, put, valuesByKey, type Payload, type StorageContext } from "./context.js";

/*
 * The TTL layer: expiry for mounts whose driver has none of its own, kept in
 * each key's meta sidecar (`key$`, where unstorage keeps meta, beside any
 * meta the user set). It sits between the operations and such a driver, the
 * way a driver decorator would, and owns every sidecar access:
 * - a write changes value and sidecar in one atomic step where the driver
 *   can (one commit on drivers with commit; one setItems elsewhere), with a
 *   guard (ifMatch / ifNoneMatch) on the value only;
 * - a read gets value and sidecar in one driver call where the driver has
 *   getItems, and purges an expired key guarded by the versions it read;
 * - time comes from the storage's clock.
 * Sidecar keys never reach it as user keys: locate() refuses them.
 */

/** The core keeps the expiry of a key when its driver has no native TTL. */
export function needsCoreTtl(loc: Located): boolean {
  return !loc.mount.nativeTtl;
}

/** The ttl a write carries: its own, else the storage's default. */
export function ttlOf(ctx: StorageContext, opts: SetOptions): number | undefined {
  return checkTtl(opts.ttl) ?? ctx.defaultTtl;
}

/** Options as the driver gets them: ttl only for drivers that expire keys themselves. */
export function driverOptions(loc: Located, opts: SetOptions, ttl: number | undefined): SetOptions {
  if (loc.mount.nativeTtl) return ttl === opts.ttl ? opts : { ...opts, ttl };
  if (opts.ttl === undefined) return opts;
  const stripped = { ...opts };
  delete stripped.ttl;
  return stripped;
}

// --- reads -------------------------------------------------------------------

/** A read of one key (value and sidecar in one driver call where the driver can); null when absent or expired. */
export function readWithExpiry(ctx: StorageContext, loc: Located, opts: TransactionOptions, raw: boolean): MaybePromise<unknown> {
  const driver = loc.mount.driver;
  // A raw read goes to getItemRaw where the driver has it: getItems would hand back text.
  if (driver.getItems && !(raw && driver.getItemRaw)) return chain(readGroupWithExpiry(ctx, loc.mount, [{ loc, options: opts }], opts), (values) => values[0]);
  const stored = raw && driver.getItemRaw ? driver.getItemRaw(loc.rel, opts) : driver.getItem(loc.rel, opts);
  return chain(stored, (value) => unlessExpired(ctx, loc, value, opts));
}

/**
 * Reads keys of one mount with their sidecars in one driver getItems;
 * expired ones are purged and read as null.
 */
export function readGroupWithExpiry(ctx: StorageContext, mount: Mount, group: { loc: Located; options: TransactionOptions }[], common: TransactionOptions): MaybePromise<unknown[]> {
  const request = group.map(({ loc, options }) => ({ key: loc.rel, options }));
  for (const { loc, options } of group) request.push({ key: metaKeyOf(loc.rel), options });
  return chain(mount.driver.getItems!(request, common), (results) => {
    const byKey = valuesByKey(results);
    const now = ctx.clock.now();
    const values = group.map(({ loc }) => byKey.get(loc.rel) ?? null);
    const expired = group.filter(({ loc }) => byKey.get(loc.rel) != null && isExpired(parseSidecar(byKey.get(metaKeyOf(loc.rel)), ctx.serializer), now));
    if (expired.length === 0) return values;
    const gone = new Set(expired.map(({ loc }) => loc.rel));
    return chain(all(expired.map(({ loc, options }) => purge(ctx, loc, options))), () =>
      group.map(({ loc }, index) => (gone.has(loc.rel) ? null : values[index])),
    );
  });
}

/** Passes a stored value on unless the core-kept expiry says it is gone. */
export function unlessExpired<T>(ctx: StorageContext, loc: Located, stored: T, opts: TransactionOptions): MaybePromise<T | null> {
  if (stored === null || stored === undefined) return null;
  if (!needsCoreTtl(loc)) return stored;
  return chain(readSidecar(loc.mount, loc.rel, ctx.serializer, opts), (sidecar) =>
    isExpired(sidecar, ctx.clock.now()) ? chain(purge(ctx, loc, opts), () => null) : stored,
  );
}

/** Meta with `ttl` / `expires` from the sidecar the caller read (an expired key is purged, and has none). */
export function metaWithExpiry(ctx: StorageContext, loc: Located, meta: StorageMeta, sidecar: Record<string, unknown> | null, opts: TransactionOptions): MaybePromise<StorageMeta> {
  const now = ctx.clock.now();
  if (isExpired(sidecar, now)) return chain(purge(ctx, loc, opts), () => ({}));
  return describeExpiry(meta, expiresOf(sidecar), now);
}

/** The sidecar of a key, or `expired` once the key is purged for it. Streams read it before opening the value. */
export function liveSidecar(ctx: StorageContext, loc: Located, opts: TransactionOptions): MaybePromise<{ expired: boolean; sidecar: Record<string, unknown> | null }> {
  return chain(readSidecar(loc.mount, loc.rel, ctx.serializer, opts), (sidecar) =>
    isExpired(sidecar, ctx.clock.now()) ? chain(purge(ctx, loc, opts), () => ({ expired: true, sidecar: null })) : { expired: false, sidecar },
  );
}

// --- purge -------------------------------------------------------------------

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
        if (!meta?.etag || !sidecarMeta?.etag || !isExpired(sidecar, ctx.clock.now())) return;
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
function removeExpired(ctx: StorageContext, loc: Located, versions: { value: string; sidecar: string }, options: RemoveOptions): MaybePromise<void> {
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
function unlessConflict(step: () => MaybePromise<void>): MaybePromise<void> {
  return recovering(step, "E_CONFLICT", () => undefined);
}

/** Runs `step`; a StorageError with `code`, thrown or rejected, gives `fallback()` instead, and any other failure is thrown. */
export function recovering<T>(step: () => MaybePromise<T>, code: StorageErrorCode, fallback: () => MaybePromise<T>): MaybePromise<T> {
  const recover = (error: unknown) => {
    if (isStorageError(error, code)) return fallback();
    throw error;
  };
  try {
    const result = step();
    return isPromise(result) ? result.catch(recover) : result;
  } catch (error) {
    return recover(error);
  }
}

// --- writes ------------------------------------------------------------------

/**
 * Reads the sidecars of keys of one mount (one getItems where the driver
 * has it) and plans the change that records each key's new expiry, counted
 * from once the sidecars are read: the write follows at once.
 */
function planChanges(ctx: StorageContext, mount: Mount, entries: { loc: Located; ttl: number | undefined }[]): MaybePromise<SidecarChange[]> {
  return chain(readSidecars(mount.driver, entries.map(({ loc }) => metaKeyOf(loc.rel))), (stored) => {
    const now = ctx.clock.now();
    return entries.map(({ ttl }, index) => {
      const expires = ttl === undefined ? undefined : now + ttl;
      // A write replaces a sidecar it cannot read: with its expiry, or none (else every read of the key would fail on it).
      if (stored[index] === UNREADABLE) return expires === undefined ? { type: "remove" } : expiryChange(null, expires, ctx.serializer);
      return expiryChange(parseSidecar(stored[index], ctx.serializer), expires, ctx.serializer);
    });
  });
}

/** A sidecar whose read failed with E_CORRUPT (written by something other than this storage's driver chain, such as a value transform). */
const UNREADABLE = Symbol("unreadable sidecar");

/** The stored sidecars (one getItems where the driver has it); where that fails on a corrupt one, each alone, an unreadable one as {@link UNREADABLE}. */
function readSidecars(driver: Driver, keys: string[]): MaybePromise<unknown[]> {
  const one = (key: string) => recovering(() => driver.getItem(key, NO_OPTIONS), "E_CORRUPT", () => UNREADABLE);
  if (!driver.getItems) return all(keys.map(one));
  const group = () =>
    chain(driver.getItems!(keys.map((key) => ({ key })), NO_OPTIONS), (results) => {
      const found = valuesByKey(results);
      return keys.map((key) => found.get(key) ?? null);
    });
  return recovering(group, "E_CORRUPT", () => all(keys.map(one)));
}

/** The commit operations of a value write: its guard as a check, then the value. */
function valueOperations(rel: string, payload: Payload, opts: SetOptions): CommitOperation[] {
  const options = withoutGuards(opts);
  const set: CommitOperation = typeof payload === "string" ? { type: "set", key: rel, value: payload, options } : { type: "setRaw", key: rel, value: payload, options };
  return [...guardChecks(rel, opts), set];
}

function commits(loc: Located, driver: Driver): boolean {
  return typeof driver.commit === "function" && loc.mount.driver.flags?.transactions === true;
}

/**
 * Writes a value (options already as the driver takes them: ttl stripped)
 * and the sidecar that records its expiry, then reports the update.
 */
export function writeWithExpiry(ctx: StorageContext, loc: Located, payload: Payload, opts: SetOptions, ttl: number | undefined): MaybePromise<void> {
  return chain(planChanges(ctx, loc.mount, [{ loc, ttl }]), ([change]) =>
    chain(writeBoth(loc, payload, opts, change!), () => ctx.watchers.report(loc.mount, "update", loc.key)),
  );
}

/**
 * Value and sidecar change in the most atomic step the driver has: one
 * commit; else, unguarded text, one setItems; else two calls. Of two calls,
 * a guarded write goes value first (a failed guard leaves the sidecar as
 * it was), an unguarded one sidecar first (a purge reading in between sees
 * the new expiry, never an old one over the new value).
 */
function writeBoth(loc: Located, payload: Payload, opts: SetOptions, change: SidecarChange): MaybePromise<void> {
  if (change === null) return put(loc, payload, opts);
  const driver = loc.writer;
  if (commits(loc, driver)) return driver.commit!([...valueOperations(loc.rel, payload, opts), ...sidecarOperations(loc.rel, change)], withoutGuards(opts));
  const guarded = hasGuard(opts);
  if (!guarded && change.type === "set" && typeof payload === "string" && driver.setItems) {
    return driver.setItems([{ key: loc.rel, value: payload, options: opts }, { key: metaKeyOf(loc.rel), value: change.value }], opts);
  }
  const sidecar = () => applySidecarChange(loc.mount, loc.rel, change, NO_OPTIONS);
  return guarded ? chain(put(loc, payload, opts), sidecar) : chain(sidecar(), () => put(loc, payload, opts));
}

/** One entry of a setItems: `text` undefined removes the key. */
export type GroupEntry = { loc: Located; text: string | undefined; options: SetOptions };

/**
 * One mount's share of a setItems, with the expiries kept in sidecars: the
 * sidecars read in one call, then values, removals and sidecar changes in
 * one commit where the driver has commits; else the unguarded values and
 * sidecars in one setItems, and each guarded write or removal with its own
 * sidecar. Only a key's last entry is written. A group that changes no
 * sidecar is written by `withoutSidecars`, as on a driver without the layer.
 */
export function writeGroupWithExpiry(ctx: StorageContext, mount: Mount, driver: Driver, group: GroupEntry[], withoutSidecars: () => MaybePromise<void>): MaybePromise<void> {
  const last = new Map<string, GroupEntry>();
  for (const entry of group) last.set(entry.loc.key, entry);
  const entries = [...last.values()];
  const planned = entries.map(({ loc, text, options }) => ({ loc, ttl: text === undefined ? undefined : ttlOf(ctx, options) }));
  return chain(planChanges(ctx, mount, planned), (changes) => {
    if (changes.every((change) => change === null)) return withoutSidecars();
    const written = commits(entries[0]!.loc, driver) ? commitEntries(driver, group, entries, changes) : writeEntries(mount, driver, entries, changes);
    return chain(written, () => {
      for (const { loc, text } of entries) ctx.watchers.report(mount, text === undefined ? "remove" : "update", loc.key);
    });
  });
}

function commitEntries(driver: Driver, group: GroupEntry[], entries: GroupEntry[], changes: SidecarChange[]): MaybePromise<void> {
  // Every entry's guard is checked, a key named twice included; then each key's last write and its sidecar.
  const operations = group.flatMap(({ loc, options }) => guardChecks(loc.rel, options));
  entries.forEach(({ loc, text, options }, index) => {
    const unguarded = withoutGuards(driverOptions(loc, options, undefined));
    operations.push(text === undefined ? { type: "remove", key: loc.rel, options: unguarded } : { type: "set", key: loc.rel, value: text, options: unguarded });
    operations.push(...sidecarOperations(loc.rel, changes[index]!));
  });
  return driver.commit!(operations, NO_OPTIONS);
}

function writeEntries(mount: Mount, driver: Driver, entries: GroupEntry[], changes: SidecarChange[]): MaybePromise<void> {
  const batch: { key: string; value: string; options?: SetOptions }[] = [];
  const sidecarRemovals: (() => MaybePromise<void>)[] = [];
  const steps: (() => MaybePromise<void>)[] = [];
  entries.forEach(({ loc, text, options }, index) => {
    const change = changes[index]!;
    const driverOpts = driverOptions(loc, options, undefined);
    if (text === undefined) steps.push(() => removeBoth(loc, driver, driverOpts, change));
    else if (driver.setItems && !hasGuard(options)) {
      batch.push({ key: loc.rel, value: text, options: driverOpts });
      if (change?.type === "set") batch.push({ key: metaKeyOf(loc.rel), value: change.value });
      else if (change) sidecarRemovals.push(() => applySidecarChange(mount, loc.rel, change, NO_OPTIONS));
    } else steps.push(() => writeBoth({ ...loc, writer: driver }, text, driverOpts, change));
  });
  // Expiries to drop go before the batch: see writeBoth on the order of two calls.
  return chain(all(sidecarRemovals.map((remove) => remove())), () =>
    chain(batch.length > 0 ? driver.setItems!(batch, NO_OPTIONS) : undefined, () => chain(all(steps.map((step) => step())), () => undefined)),
  );
}

// --- removals ----------------------------------------------------------------

/**
 * Removes a value and applies its sidecar's change (the expiry dropped, or
 * the whole sidecar with `removeMeta`), then reports the removal.
 */
export function removeWithExpiry(ctx: StorageContext, loc: Located, driver: Driver, options: RemoveOptions): MaybePromise<void> {
  const planned = options.removeMeta ? ({ type: "remove" } as const) : chain(planChanges(ctx, loc.mount, [{ loc, ttl: undefined }]), ([change]) => change!);
  return chain(planned, (change) => chain(removeBoth(loc, driver, options, change), () => ctx.watchers.report(loc.mount, "remove", loc.key)));
}

/**
 * The value's removal and the sidecar change, with the value's guard on the
 * value only (a sidecar's version never matches it): one commit where the
 * driver has commits; otherwise the value first, guarded, and the sidecar
 * once it has gone.
 */
function removeBoth(loc: Located, driver: Driver, options: RemoveOptions, change: SidecarChange): MaybePromise<void> {
  const unguarded = withoutGuards(options);
  if (change !== null && commits(loc, driver)) {
    return driver.commit!([...guardChecks(loc.rel, options), { type: "remove", key: loc.rel, options: unguarded }, ...sidecarOperations(loc.rel, change)], unguarded);
  }
  return chain(driver.removeItem!(loc.rel, options), () => applySidecarChange(loc.mount, loc.rel, change, unguarded));
}

/** After a value streamed to its driver: its sidecar keeps (or drops) the expiry, then the event goes out. */
export function keepExpiry(ctx: StorageContext, loc: Located, ttl: number | undefined): MaybePromise<void> {
  return chain(planChanges(ctx, loc.mount, [{ loc, ttl }]), ([change]) =>
    chain(applySidecarChange(loc.mount, loc.rel, change!, NO_OPTIONS), () => ctx.watchers.report(loc.mount, "update", loc.key)),
  );
}
