import { isStorageError, type StorageErrorCode } from "../errors.js";
import { guardChecks, hasGuard, withoutGuards } from "../guards.js";
import { isMetaKey, metaKeyOf, normalizeKey } from "../keys.js";
import { all, chain, isPromise, type MaybePromise } from "../maybePromise.js";
import type { Serializer } from "../serializer.js";
import {
  applySidecarChange,
  describeExpiry,
  expiresOf,
  expiryChange,
  isExpired,
  mergeSidecar,
  parseSidecar,
  readSidecar,
  sidecarOperations,
  withExpiry,
  type Sidecar,
  type SidecarChange,
} from "../ttl.js";
import type {
  AsyncWrites,
  Clock,
  CommitOperation,
  Driver,
  GetKeysOptions,
  GetOptions,
  IterateKeysOptions,
  ItemStream,
  RemoveOptions,
  SetOptions,
  StorageMeta,
  TransactionOptions,
} from "../types.js";
import { commitsAtomically } from "../mounts.js";
import { wrapDriver } from "../wrapDriver.js";
import { NO_OPTIONS, valuesByKey, type Payload } from "./context.js";

/*
 * The TTL layer: expiry for a driver that has none of its own, kept in each
 * key's meta sidecar (`key$`, where unstorage keeps meta, beside any meta
 * the user set). The mount table puts it in front of such a driver
 * (`Mount.store`), built with wrapDriver, so the storage's operations talk
 * to one driver that honours `ttl` whatever is mounted and never ask
 * whether TTL is native. `getMount(key).driver` stays the user's driver.
 * The layer owns every sidecar access:
 * - a write changes value and sidecar in one atomic step where the driver
 *   can (one commit on drivers with commit; one setItems elsewhere), with a
 *   guard (ifMatch / ifNoneMatch) on the value only;
 * - a read gets value and sidecar in one driver call where the driver has
 *   getItems, and purges an expired key guarded by the versions it read;
 * - listings leave out expired keys; getMeta adds `ttl` / `expires` and the
 *   user's meta from the sidecar;
 * - time comes from the storage's clock.
 * Sidecar keys reach it from the core only as the user's meta: a write of
 * `key$` (setMeta) keeps the expiry in it, a removal (removeMeta) keeps
 * only the expiry, and a read of `key$` is null (getMeta has it already).
 * The public API never hands one on as a user key: locate() refuses them.
 */

/** What the layer takes from its storage. */
export interface ExpiryEnv {
  readonly serializer: Serializer;
  /** Where expiry reads the time. */
  readonly clock: Clock;
  /** Told of a key purged for its expiry (the storage sends the watch event). */
  purged(rel: string): void;
}

/** The layer's view: its environment and the driver under it. */
interface Scope {
  readonly env: ExpiryEnv;
  readonly inner: Driver;
}

/** getMeta's own option: native meta and the expiry, without the user's meta. */
type MetaOptions = TransactionOptions & { nativeOnly?: boolean };

/**
 * The TTL layer over `inner` (a driver not flagged `ttl`); see the top of
 * this module. Its writes take `ttl` in their options, as a driver with
 * native TTL does; `asyncWrites` of `inner` get the same layer.
 */
export function expiryLayer(inner: Driver, env: ExpiryEnv): Driver {
  const scope: Scope = { env, inner };
  return wrapDriver(inner, {
    name: inner.name ?? "custom",
    flags: { ttl: true },
    hasItem: (key, opts) => hasItem(scope, key, opts),
    getItem: (key, opts = NO_OPTIONS) => getItem(scope, key, opts, false),
    getItemRaw: inner.getItemRaw && ((key, opts) => getItem(scope, key, opts, true)),
    getItems: inner.getItems && ((items, common = NO_OPTIONS) => getItems(scope, items, common)),
    getMeta: (key, opts) => getMeta(scope, key, opts),
    getKeys: (base, opts) => getKeys(scope, base, opts),
    iterateKeys: inner.iterateKeys && ((base, opts) => iterateKeys(scope, base, opts)),
    getItemStream: inner.getItemStream && ((key, opts) => getItemStream(scope, key, opts)),
    setItemStream: inner.setItemStream && ((key, body, opts) => setItemStream(scope, key, body, opts)),
    ...writesVia(scope, inner),
    asyncWrites: inner.asyncWrites && asyncWritesOf(scope, inner.asyncWrites),
  });
}

/** The layer's writes, with values going through `writer` (the driver, or its asyncWrites) and lone sidecar changes through the driver. */
function writesVia(scope: Scope, writer: Driver): AsyncWrites {
  const commits = commitsAtomically(scope.inner, writer);
  return {
    setItem: writer.setItem && ((key, value, opts) => setItem(scope, writer, key, value, opts)),
    setItemRaw: writer.setItemRaw && ((key, value, opts) => setItem(scope, writer, key, value, opts)),
    setItems: (writer.setItems || commits || undefined) && ((items, common) => setItems(scope, writer, items, common ?? NO_OPTIONS)),
    removeItem: writer.removeItem && ((key, opts) => removeItem(scope, writer, key, opts)),
    commit: writer.commit && ((operations, opts) => commit(scope, writer, operations, opts)),
  };
}

/** The layer's asyncWrites: the writes `inner` offers async, each through the layer. */
function asyncWritesOf(scope: Scope, asyncWrites: AsyncWrites): AsyncWrites {
  const writes = writesVia(scope, { ...scope.inner, ...asyncWrites });
  return Object.fromEntries(Object.keys(asyncWrites).map((member) => [member, writes[member as keyof AsyncWrites]]));
}

/** Options as the driver under the layer takes them: without ttl. */
function withoutTtl<T extends SetOptions>(opts: T): T {
  if (opts.ttl === undefined) return opts;
  const stripped = { ...opts };
  delete stripped.ttl;
  return stripped;
}

// --- reads -------------------------------------------------------------------

function hasItem(scope: Scope, rel: string, opts: TransactionOptions): MaybePromise<boolean> {
  return chain(scope.inner.hasItem(rel, opts), (has) => (has ? chain(unlessExpired(scope, rel, true, opts), (alive) => alive === true) : false));
}

/**
 * A read of one key: value and sidecar in one driver call where the driver
 * has getItems (a raw read goes to getItemRaw: getItems would hand back
 * text); null when absent or expired. A past version (`history`) has no
 * expiry to check; a sidecar key reads as null (getMeta has its meta).
 */
function getItem(scope: Scope, rel: string, opts: GetOptions, raw: boolean): MaybePromise<unknown> {
  const inner = scope.inner;
  if (opts.version !== undefined) return raw ? inner.getItemRaw!(rel, opts) : inner.getItem(rel, opts);
  if (isMetaKey(rel)) return null;
  if (inner.getItems && !raw) return chain(readGroup(scope, [{ key: rel, options: opts }], opts), (values) => values[0]);
  const stored = raw ? inner.getItemRaw!(rel, opts) : inner.getItem(rel, opts);
  return chain(stored, (value) => unlessExpired(scope, rel, value, opts));
}

function getItems(scope: Scope, items: { key: string; options?: TransactionOptions }[], common: TransactionOptions): MaybePromise<{ key: string; value: unknown }[]> {
  return chain(readGroup(scope, items, common), (values) => items.map(({ key }, index) => ({ key, value: values[index] })));
}

/** Reads keys with their sidecars in one driver getItems; expired ones are purged and read as null. */
function readGroup(scope: Scope, group: { key: string; options?: TransactionOptions }[], common: TransactionOptions): MaybePromise<unknown[]> {
  const request = [...group];
  for (const { key, options } of group) request.push({ key: metaKeyOf(key), options });
  return chain(scope.inner.getItems!(request, common), (results) => {
    const byKey = valuesByKey(results);
    const now = scope.env.clock.now();
    // Keys come from the storage normalized, as valuesByKey makes the driver's answer.
    const values = group.map(({ key }) => byKey.get(key) ?? null);
    const expired = group.filter(({ key }, index) => values[index] !== null && isExpired(parseSidecar(byKey.get(metaKeyOf(key)), scope.env.serializer), now));
    if (expired.length === 0) return values;
    const gone = new Set(expired.map(({ key }) => key));
    return chain(all(expired.map(({ key, options }) => purge(scope, key, options ?? common))), () => group.map(({ key }, index) => (gone.has(key) ? null : values[index])));
  });
}

/** Passes a stored value on unless the sidecar's expiry says it is gone. */
function unlessExpired<T>(scope: Scope, rel: string, stored: T, opts: TransactionOptions): MaybePromise<T | null> {
  if (stored === null || stored === undefined) return null;
  return chain(liveSidecar(scope, rel, opts), (found) => (found.expired ? null : stored));
}

/** The sidecar of a key, or `expired` once the key is purged for it. */
function liveSidecar(scope: Scope, rel: string, opts: TransactionOptions): MaybePromise<{ expired: boolean; sidecar: Sidecar | null }> {
  const { inner, env } = scope;
  return chain(readSidecar(inner, rel, env.serializer, opts), (sidecar) =>
    isExpired(sidecar, env.clock.now()) ? chain(purge(scope, rel, opts), () => ({ expired: true, sidecar: null })) : { expired: false, sidecar },
  );
}

/**
 * The driver's meta with `ttl` / `expires` from the sidecar and, unless
 * `nativeOnly`, the user's meta kept there; an expired key is purged, and has none.
 */
function getMeta(scope: Scope, rel: string, opts: MetaOptions): MaybePromise<StorageMeta> {
  const inner = scope.inner;
  const native = inner.getMeta ? inner.getMeta(rel, opts) : null;
  return chain(native, (found) =>
    chain(liveSidecar(scope, rel, opts), ({ expired, sidecar }) => {
      if (expired) return {};
      const meta: StorageMeta = { ...found };
      if (sidecar && !opts.nativeOnly) mergeSidecar(meta, sidecar);
      return describeExpiry(meta, expiresOf(sidecar), scope.env.clock.now());
    }),
  );
}

/** getItemStream after the expiry: an expired key is purged and absent; the stream's meta carries the expiry. */
function getItemStream(scope: Scope, rel: string, opts: TransactionOptions): MaybePromise<ItemStream | null> {
  return chain(liveSidecar(scope, rel, opts), ({ expired, sidecar }) => {
    if (expired) return null;
    return chain(scope.inner.getItemStream!(rel, opts), (opened) =>
      opened === null ? null : { ...opened, meta: describeExpiry({ ...opened.meta }, expiresOf(sidecar), scope.env.clock.now()) },
    );
  });
}

// --- listings ----------------------------------------------------------------

function getKeys(scope: Scope, base: string, opts: GetKeysOptions): MaybePromise<string[]> {
  return chain(scope.inner.getKeys(base, opts), (keys) => dropExpired(scope, keys, opts));
}

/**
 * Leaves expired keys (and their sidecars) out of a listing, given the
 * sidecars it holds; other sidecars stay for the storage to hide.
 */
function dropExpired(scope: Scope, rawKeys: string[], opts: TransactionOptions): MaybePromise<string[]> {
  // Most listings hold no sidecar: they pass without normalizing every key (the storage does that once).
  if (!rawKeys.some((key) => key.includes("$"))) return rawKeys;
  const keys = rawKeys.map(normalizeKey);
  const sidecars = new Set(keys.filter(isMetaKey));
  if (sidecars.size === 0) return rawKeys;
  const checks = keys.map((key) => (isMetaKey(key) || !sidecars.has(metaKeyOf(key)) ? true : listedAlive(scope, key, opts)));
  return chain(all(checks), (alive) => {
    const gone = new Set(keys.filter((_, index) => !alive[index]).map(metaKeyOf));
    return rawKeys.filter((_, index) => alive[index] && !gone.has(keys[index]!));
  });
}

/**
 * Whether a listed key is alive by its sidecar. A sidecar that cannot be
 * read (E_CORRUPT) leaves the key listed: a listing decodes no values, so
 * one bad sidecar does not fail the listing of every key; reads of the key report it.
 */
function listedAlive(scope: Scope, rel: string, opts: TransactionOptions): MaybePromise<boolean> {
  return recovering(() => chain(unlessExpired(scope, rel, true, opts), (alive) => alive === true), "E_CORRUPT", () => true);
}

/**
 * Pages of the driver's iterateKeys without expired keys. A page may hand
 * a key and its sidecar out in different pages, so keys whose sidecar was
 * not in the page have it looked up.
 */
async function* iterateKeys(scope: Scope, base: string, opts: IterateKeysOptions): AsyncIterable<string[]> {
  for await (const page of scope.inner.iterateKeys!(base, opts)) {
    const listed = await dropExpired(scope, page, opts);
    const seen = new Set(page.map(normalizeKey));
    const unseen = listed.filter((key) => !isMetaKey(normalizeKey(key)) && !seen.has(metaKeyOf(normalizeKey(key))));
    if (unseen.length === 0) {
      yield listed;
      continue;
    }
    const alive = await Promise.all(unseen.map((key) => listedAlive(scope, normalizeKey(key), opts)));
    const gone = new Set(unseen.filter((_, index) => !alive[index]));
    yield gone.size === 0 ? listed : listed.filter((key) => !gone.has(key));
  }
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
function purge(scope: Scope, rel: string, opts: TransactionOptions): MaybePromise<void> {
  const { inner, env } = scope;
  if (!inner.removeItem) return;
  const options = withoutGuards(opts as RemoveOptions);
  if (!inner.flags?.cas || !inner.getMeta) {
    return chain(inner.removeItem(rel, options), () => chain(inner.removeItem!(metaKeyOf(rel), options), () => env.purged(rel)));
  }
  // Versions first, then the expiry once more: a rewrite of either after its version was read fails its guard.
  return chain(inner.getMeta(rel, options), (meta) =>
    chain(inner.getMeta!(metaKeyOf(rel), options), (sidecarMeta) =>
      chain(readSidecar(inner, rel, env.serializer, options), (sidecar) => {
        if (!meta?.etag || !sidecarMeta?.etag || !isExpired(sidecar, env.clock.now())) return;
        const versions = { value: meta.etag, sidecar: sidecarMeta.etag };
        return unlessConflict(() => removeExpired(scope, rel, versions, options));
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
function removeExpired(scope: Scope, rel: string, versions: { value: string; sidecar: string }, options: RemoveOptions): MaybePromise<void> {
  const { inner, env } = scope;
  const sidecarKey = metaKeyOf(rel);
  const done = () => env.purged(rel);
  if (commitsAtomically(inner, inner)) {
    const operations: CommitOperation[] = [
      { type: "check", key: rel, etag: versions.value },
      { type: "check", key: sidecarKey, etag: versions.sidecar },
      { type: "remove", key: rel, options },
      { type: "remove", key: sidecarKey, options },
    ];
    return chain(inner.commit!(operations, options), done);
  }
  return chain(inner.removeItem!(sidecarKey, { ...options, ifMatch: versions.sidecar }), () => chain(inner.removeItem!(rel, { ...options, ifMatch: versions.value }), done));
}

/** Runs a guarded step; E_CONFLICT (another writer got there first) ends it without effect, any other failure is thrown. */
function unlessConflict(step: () => MaybePromise<void>): MaybePromise<void> {
  return recovering(step, "E_CONFLICT", () => undefined);
}

/** Runs `step`; a StorageError with `code`, thrown or rejected, gives `fallback()` instead, and any other failure is thrown. */
function recovering<T>(step: () => MaybePromise<T>, code: StorageErrorCode, fallback: () => MaybePromise<T>): MaybePromise<T> {
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

/** A key to be written (`ttl`: its new expiry) or removed (`dropMeta`: with its whole sidecar). */
type Planned = { rel: string; ttl?: number | undefined; dropMeta?: boolean };

/**
 * Reads the sidecars of keys (one getItems where the driver has it) and
 * plans the change that records each key's new expiry, counted from once
 * the sidecars are read: the write follows at once.
 */
function planChanges(scope: Scope, entries: Planned[]): MaybePromise<SidecarChange[]> {
  const { env } = scope;
  return chain(readSidecars(scope.inner, entries.map(({ rel }) => metaKeyOf(rel))), (stored) => {
    const now = env.clock.now();
    return entries.map(({ ttl, dropMeta }, index): SidecarChange => {
      if (dropMeta) return stored[index] === null ? null : { type: "remove" };
      const expires = ttl === undefined ? undefined : now + ttl;
      // A write replaces a sidecar it cannot read: with its expiry, or none (else every read of the key would fail on it).
      if (stored[index] === UNREADABLE) return expires === undefined ? { type: "remove" } : expiryChange(null, expires, env.serializer);
      return expiryChange(parseSidecar(stored[index], env.serializer), expires, env.serializer);
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

/** Hands a value to `writer`: text to setItem, bytes to setItemRaw (the layer has setItemRaw only where the driver has it). */
function put(writer: Driver, rel: string, payload: Payload, opts: SetOptions): MaybePromise<void> {
  return typeof payload === "string" ? writer.setItem!(rel, payload, opts) : writer.setItemRaw!(rel, payload, opts);
}

/** The commit operations of a value write: its guard as a check, then the value. */
function valueOperations(rel: string, payload: Payload, opts: SetOptions): CommitOperation[] {
  const options = withoutGuards(opts);
  const set: CommitOperation = typeof payload === "string" ? { type: "set", key: rel, value: payload, options } : { type: "setRaw", key: rel, value: payload, options };
  return [...guardChecks(rel, opts), set];
}

/** setItem / setItemRaw: a sidecar key is the user's meta; any other key's value goes with the sidecar that records its `ttl`. */
function setItem(scope: Scope, writer: Driver, rel: string, payload: Payload, opts: SetOptions): MaybePromise<void> {
  if (isMetaKey(rel) && typeof payload === "string") return setUserMeta(scope, rel, payload, opts);
  return chain(planChanges(scope, [{ rel, ttl: opts.ttl }]), ([change]) => writeBoth(scope, writer, rel, payload, withoutTtl(opts), change!));
}

/**
 * Value and sidecar change in the most atomic step the driver has: one
 * commit; else, unguarded text, one setItems; else two calls. Of two calls,
 * a guarded write goes value first (a failed guard leaves the sidecar as
 * it was), an unguarded one sidecar first (a purge reading in between sees
 * the new expiry, never an old one over the new value).
 */
function writeBoth(scope: Scope, writer: Driver, rel: string, payload: Payload, opts: SetOptions, change: SidecarChange): MaybePromise<void> {
  if (change === null) return put(writer, rel, payload, opts);
  if (commitsAtomically(scope.inner, writer)) return writer.commit!([...valueOperations(rel, payload, opts), ...sidecarOperations(rel, change)], withoutGuards(opts));
  const guarded = hasGuard(opts);
  if (!guarded && change.type === "set" && typeof payload === "string" && writer.setItems) {
    return writer.setItems([{ key: rel, value: payload, options: opts }, { key: metaKeyOf(rel), value: change.value }], opts);
  }
  const sidecar = () => applySidecarChange(scope.inner, rel, change, NO_OPTIONS);
  return guarded ? chain(put(writer, rel, payload, opts), sidecar) : chain(sidecar(), () => put(writer, rel, payload, opts));
}

type SetEntry = { key: string; value: string; options?: SetOptions };

/**
 * setItems with the expiries: the sidecars read in one call, then values
 * and sidecar changes in one commit where the driver has commits; else the
 * unguarded values and sidecars in one setItems, and each guarded write
 * with its own sidecar. Only a key's last entry is written. A batch that
 * changes no sidecar goes to the driver's setItems as it is (so a driver's
 * own setItems keeps its own commit message).
 */
function setItems(scope: Scope, writer: Driver, items: SetEntry[], common: SetOptions): MaybePromise<void> {
  const last = new Map<string, SetEntry>();
  for (const item of items) last.set(item.key, item);
  const entries = [...last.values()];
  return chain(planChanges(scope, entries.map(({ key, options }) => ({ rel: key, ttl: (options ?? common).ttl }))), (changes) => {
    if (writer.setItems && changes.every((change) => change === null)) {
      return writer.setItems(items.map((item) => ({ ...item, options: item.options && withoutTtl(item.options) })), withoutTtl(common));
    }
    return commitsAtomically(scope.inner, writer) ? commitEntries(writer, items, entries, changes) : writeEntries(scope, writer, entries, changes);
  });
}

function commitEntries(writer: Driver, items: SetEntry[], entries: SetEntry[], changes: SidecarChange[]): MaybePromise<void> {
  // Every entry's guard is checked, a key named twice included; then each key's last write and its sidecar.
  const operations = items.flatMap(({ key, options }) => guardChecks(key, options ?? NO_OPTIONS));
  entries.forEach(({ key, value, options }, index) => {
    operations.push({ type: "set", key, value, options: withoutGuards(withoutTtl(options ?? NO_OPTIONS)) });
    operations.push(...sidecarOperations(key, changes[index]!));
  });
  return writer.commit!(operations, NO_OPTIONS);
}

function writeEntries(scope: Scope, writer: Driver, entries: SetEntry[], changes: SidecarChange[]): MaybePromise<void> {
  const batch: SetEntry[] = [];
  const sidecarRemovals: (() => MaybePromise<void>)[] = [];
  const steps: (() => MaybePromise<void>)[] = [];
  entries.forEach(({ key, value, options = NO_OPTIONS }, index) => {
    const change = changes[index]!;
    const driverOpts = withoutTtl(options);
    if (writer.setItems && !hasGuard(options)) {
      batch.push({ key, value, options: driverOpts });
      if (change?.type === "set") batch.push({ key: metaKeyOf(key), value: change.value });
      else if (change) sidecarRemovals.push(() => applySidecarChange(scope.inner, key, change, NO_OPTIONS));
    } else steps.push(() => writeBoth(scope, writer, key, value, driverOpts, change));
  });
  // Expiries to drop go before the batch: see writeBoth on the order of two calls.
  return chain(all(sidecarRemovals.map((remove) => remove())), () =>
    chain(batch.length > 0 ? writer.setItems!(batch, NO_OPTIONS) : undefined, () => chain(all(steps.map((step) => step())), () => undefined)),
  );
}

/**
 * removeItem: a sidecar key is the user's meta; any other key goes with
 * its sidecar's change (the expiry dropped, or the whole sidecar with
 * `removeMeta`), the value's guard on the value only (a sidecar's version
 * never matches it): one commit where the driver has commits; otherwise the
 * value first, guarded, and the sidecar once it has gone.
 */
function removeItem(scope: Scope, writer: Driver, rel: string, opts: RemoveOptions): MaybePromise<void> {
  if (isMetaKey(rel)) return removeUserMeta(scope, rel, opts);
  return chain(planChanges(scope, [{ rel, dropMeta: opts.removeMeta === true }]), ([change]) => {
    const unguarded = withoutGuards(opts);
    if (change !== null && commitsAtomically(scope.inner, writer)) {
      return writer.commit!([...guardChecks(rel, opts), { type: "remove", key: rel, options: unguarded }, ...sidecarOperations(rel, change!)], unguarded);
    }
    return chain(writer.removeItem!(rel, opts), () => applySidecarChange(scope.inner, rel, change!, unguarded));
  });
}

/**
 * commit: each written or removed key's sidecar changes in the same commit
 * (its `ttl` recorded, or the expiry dropped; `removeMeta`: the sidecar
 * removed). A key whose sidecar the operations name themselves (a removal
 * with its meta) is left to them.
 */
function commit(scope: Scope, writer: Driver, operations: CommitOperation[], opts: TransactionOptions): MaybePromise<void> {
  const named = new Set(operations.filter(({ key }) => isMetaKey(key)).map(({ key }) => key));
  const last = new Map<string, Exclude<CommitOperation, { type: "check" }>>();
  for (const operation of operations) {
    if (operation.type !== "check" && !isMetaKey(operation.key) && !named.has(metaKeyOf(operation.key))) last.set(operation.key, operation);
  }
  const writes = [...last.values()];
  const planned = writes.map((operation): Planned => (operation.type === "remove" ? { rel: operation.key, dropMeta: operation.options.removeMeta === true } : { rel: operation.key, ttl: operation.options.ttl }));
  const stripped = operations.map((operation) => (operation.type === "set" || operation.type === "setRaw" ? { ...operation, options: withoutTtl(operation.options) } : operation));
  if (planned.length === 0) return writer.commit!(stripped, opts);
  return chain(planChanges(scope, planned), (changes) => {
    // Each sidecar change right after its key's last operation.
    const after = new Map<CommitOperation, CommitOperation[]>(writes.map((operation, index) => [operation, sidecarOperations(operation.key, changes[index]!)]));
    return writer.commit!(stripped.flatMap((operation, index) => [operation, ...(after.get(operations[index]!) ?? [])]), opts);
  });
}

/** After a value streamed to the driver: its sidecar keeps (or drops) the expiry (a stream cannot share a commit with it). */
function setItemStream(scope: Scope, rel: string, body: AsyncIterable<Uint8Array>, opts: SetOptions): Promise<void> {
  return scope.inner.setItemStream!(rel, body, withoutTtl(opts)).then(() =>
    chain(planChanges(scope, [{ rel, ttl: opts.ttl }]), ([change]) => applySidecarChange(scope.inner, rel, change!, NO_OPTIONS)),
  );
}

// --- the user's meta ----------------------------------------------------------

/** setMeta: the user's meta replaces the sidecar's, and the expiry in it stays. */
function setUserMeta(scope: Scope, sidecarKey: string, text: string, opts: TransactionOptions): MaybePromise<void> {
  const { inner, env } = scope;
  const value = env.serializer.deserialize(text) as Sidecar;
  return chain(inner.getItem(sidecarKey, opts), (stored) => {
    const next = withExpiry(value, expiresOf(parseSidecar(stored, env.serializer))) ?? {};
    return inner.setItem!(sidecarKey, env.serializer.serialize(next), opts);
  });
}

/** removeMeta: the sidecar keeps only the expiry, or goes. */
function removeUserMeta(scope: Scope, sidecarKey: string, opts: TransactionOptions): MaybePromise<void> {
  const { inner, env } = scope;
  return chain(inner.getItem(sidecarKey, opts), (stored) => {
    const keep = withExpiry(null, expiresOf(parseSidecar(stored, env.serializer)));
    return keep ? inner.setItem!(sidecarKey, env.serializer.serialize(keep), opts) : inner.removeItem!(sidecarKey, opts);
  });
}
