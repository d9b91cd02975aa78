import { StorageError, isStorageError, toStorageError } from "./errors.js";
import { checkKeyLimits, filterKeyByDepth, isMetaKey, metaKeyOf, normalizeBaseKey, normalizeItemBase, normalizeItemKey, normalizeKey, normalizeWriteKey } from "./keys.js";
import { all, chain, isPromise, type MaybePromise } from "./maybePromise.js";
import { MountTable, type Located, type Mount, type MountSlice } from "./mounts.js";
import { deserializeRaw, resolveSerializer, serializeRaw, toBytes, type Serializer } from "./serializer.js";
import {
  applySidecarChange,
  checkTtl,
  describeExpiry,
  expiresOf,
  expiryChange,
  isExpired,
  parseSidecar,
  planExpiry,
  readSidecar,
  withExpiry,
  type SidecarChange,
} from "./ttl.js";
import { bytesOf, gather, wholeStream, withStorageErrors, type Body } from "./streams.js";
import { checkRemoveOptions, checkWriteOptions, hasGuard, withoutGuards } from "./guards.js";
import { CallerError, runTransaction, runUpdate } from "./transaction.js";
import type {
  CommitOperation,
  CreateStorageOptions,
  Driver,
  DriverFlags,
  GetItemsInput,
  GetKeysOptions,
  GetOptions,
  ItemStream,
  IterateKeysOptions,
  RemoveOptions,
  SetItemsInput,
  SetOptions,
  Storage,
  StorageMeta,
  TransactionOptions,
  WatchCallback,
  WatchEvent,
} from "./types.js";
import { checkOptions } from "./options.js";
import { Watchers, watchArguments } from "./watchers.js";

/** One settled promise serves every call that resolves to nothing. */
const RESOLVED: Promise<undefined> = Promise.resolve(undefined);

/** The options object drivers get when the caller passed none (unstorage always passes one). */
const NO_OPTIONS: TransactionOptions = Object.freeze({});

/** A write on its way to a driver: serialized text, or raw bytes from setItemRaw. */
type Payload = string | Uint8Array;

export interface CoreStorageOptions extends CreateStorageOptions {
  driver: Driver;
}

/** A stored entry as {@link DirectAccess.read} finds it. */
export interface StoredEntry {
  /** What the driver stored: text in the storage's serializer format (or a driver's own value), or bytes for a raw read. */
  stored: unknown;
  /** The driver's meta (etag, mtime, size) and the expiry, as `getMeta(key, { nativeOnly: true })` has them. */
  meta: StorageMeta;
}

/**
 * Paths for code that moves stored text without decoding it into values
 * and encoding it again (the HTTP server). Each answers synchronously when
 * the key's driver does, and fails with a StorageError as the public API
 * does. Not part of the Storage API: get it with {@link getDirectAccess}.
 */
export interface DirectAccess {
  /** The serializer the stored text is in. */
  readonly serializer: Serializer;
  /** The meta of `key`, then its stored form (bytes when `raw`), from one key lookup; null when absent. */
  read(key: string, raw: boolean): MaybePromise<StoredEntry | null>;
  /** Stores text that is already in the serializer's format, as setItem stores a value's text. */
  writeText(key: string, text: string, opts: SetOptions): MaybePromise<void>;
}

const directAccess = new WeakMap<Storage, DirectAccess>();

/** The direct paths of a storage made by createCoreStorage; undefined for any other Storage. */
export function getDirectAccess(storage: Storage): DirectAccess | undefined {
  return directAccess.get(storage);
}

/** getMeta for a read that only needs native meta and expiry. */
const NATIVE_ONLY = Object.freeze({ nativeOnly: true });

function unsupported(mount: Mount, what: string, flag: keyof DriverFlags): StorageError {
  return new StorageError("E_UNSUPPORTED", `${what} needs a driver flagged "${flag}"; ${mount.name} is not`, { driver: mount.name });
}

function readOnly(mount: Mount, key?: string): StorageError {
  return new StorageError("E_READONLY", `Driver ${mount.name} is read-only`, { driver: mount.name, key });
}

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

/** Per-call options are an object (or left out): `null` or a string would otherwise fail deep inside as a TypeError. */
function checkCallOptions(opts: unknown): void {
  if (opts === null || typeof opts !== "object" || Array.isArray(opts)) {
    throw new StorageError("E_INVALID_OPTION", `options must be an object, got ${opts === null ? "null" : Array.isArray(opts) ? "an array" : typeof opts}`);
  }
}

/** Meta has no version of its own: a guard on setMeta/removeMeta could only fail or be ignored, so it is refused. */
function refuseMetaGuard(method: string, opts: SetOptions): void {
  if (hasGuard(opts)) throw new StorageError("E_INVALID_OPTION", `${method} takes no ifMatch / ifNoneMatch: meta has no version of its own`);
}

/** unstorage's getMeta turns these back into dates when a sidecar stored them as text. */
function reviveDates(meta: Record<string, unknown>): void {
  for (const field of ["atime", "mtime", "ctime", "birthtime"]) {
    if (typeof meta[field] === "string") meta[field] = new Date(meta[field] as string);
  }
}

function batches<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Creates a storage over `options.driver`. Every operation is written once as
 * a chain of steps that stays synchronous while the driver answers
 * synchronously; the async API wraps it in a promise, the sync API insists
 * that every driver involved is flagged `sync`.
 */
export function createCoreStorage(options: CoreStorageOptions): Storage {
  checkOptions("createStorage", options, ["driver", "serializer", "ttl", "onWatchError"]);
  if (options.onWatchError !== undefined && typeof options.onWatchError !== "function") {
    throw new StorageError("E_INVALID_OPTION", "onWatchError must be a function");
  }
  const serializer = resolveSerializer(options.serializer);
  const defaultTtl = checkTtl(options.ttl);
  const table = new MountTable(options.driver);
  const watchers = new Watchers(options.onWatchError);

  function requireSync(mount: Mount): void {
    if (!mount.driver.flags?.sync) throw unsupported(mount, "The sync API", "sync");
  }

  /** Resolves a key to its mount; `write`: the key is written or removed, so it may not hold `?` ({@link normalizeWriteKey}). */
  function locate(key: unknown, sync: boolean, write?: boolean): Located {
    const full = write ? normalizeWriteKey(key) : normalizeItemKey(key);
    const mount = table.resolve(full);
    if (sync) requireSync(mount);
    const rel = mount.base ? full.slice(mount.base.length) : full;
    checkKeyLimits(rel, mount.keyLimits, mount.name);
    return { mount, key: full, rel, writer: sync ? mount.driver : mount.writer };
  }

  /** The mounts a listing or clear of `base` reaches, the part of `base` inside each checked against its key limits. */
  function slicesOf(base: string, sync: boolean): MountSlice[] {
    const slices = table.within(base, true);
    for (const { mount, relativeBase } of slices) {
      if (sync) requireSync(mount);
      if (relativeBase) checkKeyLimits(relativeBase.slice(0, -1), mount.keyLimits, mount.name);
    }
    return slices;
  }

  function driverName(key: unknown): string | undefined {
    return table.resolve(typeof key === "string" ? normalizeKey(key) : "").name;
  }

  /**
   * The async form of a step: its result or failure (as a StorageError) as a
   * promise. Built once per method, so a call allocates no closure.
   */
  function asyncApi<A, B, C, T>(step: (sync: boolean, a: A, b?: B, c?: C) => MaybePromise<T>): (a: A, b?: B, c?: C) => Promise<T> {
    // Fixed arity rather than rest arguments: no array per call on the hot path.
    return (a, b, c) => {
      try {
        const result = step(false, a, b, c);
        if (isPromise(result)) return result.catch((error: unknown) => Promise.reject(toStorageError(error, driverName(a))));
        return result === undefined ? (RESOLVED as Promise<T>) : Promise.resolve(result);
      } catch (error) {
        return Promise.reject(toStorageError(error, driverName(a)));
      }
    };
  }

  /** The sync form of a step; a driver flagged sync that answers with a promise broke its promise. */
  function syncApi<A, B, C, T>(step: (sync: boolean, a: A, b?: B, c?: C) => MaybePromise<T>): (a: A, b?: B, c?: C) => T {
    return (a, b, c) => {
      let result: MaybePromise<T>;
      try {
        result = step(true, a, b, c);
      } catch (error) {
        throw toStorageError(error, driverName(a));
      }
      if (isPromise(result)) {
        const name = driverName(a);
        result.catch((cause: unknown) => process.emitWarning(`stowage: a sync driver's late failure: ${String(cause)}`));
        throw new StorageError("E_DRIVER", `Driver ${name} is flagged sync but answered with a promise`, { driver: name });
      }
      return result;
    };
  }

  /** The form of a step for direct access: sync where the driver is, failures as StorageError either way. */
  function directApi<A, B, C, T>(step: (sync: boolean, a: A, b: B, c?: C) => MaybePromise<T>): (a: A, b: B, c?: C) => MaybePromise<T> {
    return (a, b, c) => {
      try {
        const result = step(false, a, b, c);
        return isPromise(result) ? result.catch((error: unknown) => Promise.reject(toStorageError(error, driverName(a)))) : result;
      } catch (error) {
        throw toStorageError(error, driverName(a));
      }
    };
  }

  /** For methods that are not plain steps: failures as StorageError promises, the caller's own errors as they were thrown. */
  function toPromise<T>(key: unknown, step: () => MaybePromise<T>): Promise<T> {
    const fail = (error: unknown) => Promise.reject(error instanceof CallerError ? error.error : toStorageError(error, driverName(key)));
    try {
      return Promise.resolve(step()).catch(fail);
    } catch (error) {
      return fail(error);
    }
  }

  // --- TTL kept by the core for drivers without native expiry -------------

  function needsCoreTtl(loc: Located): boolean {
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
  function purge(loc: Located, opts: TransactionOptions): MaybePromise<void> {
    const driver = loc.mount.driver;
    if (!driver.removeItem) return;
    const options = withoutGuards(opts as RemoveOptions);
    if (!driver.flags?.cas || !driver.getMeta) {
      return chain(driver.removeItem(loc.rel, options), () =>
        chain(driver.removeItem!(metaKeyOf(loc.rel), options), () => watchers.report(loc.mount, "remove", loc.key)),
      );
    }
    // Versions first, then the expiry once more: a rewrite of either after its version was read fails its guard.
    return chain(driver.getMeta(loc.rel, options), (meta) =>
      chain(driver.getMeta!(metaKeyOf(loc.rel), options), (sidecarMeta) =>
        chain(readSidecar(loc.mount, loc.rel, serializer, options), (sidecar) => {
          if (!meta?.etag || !sidecarMeta?.etag || !isExpired(sidecar)) return;
          const versions = { value: meta.etag, sidecar: sidecarMeta.etag };
          return unlessConflict(() => removeExpired(loc, versions, options));
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
  function removeExpired(loc: Located, versions: { value: string; sidecar: string }, options: RemoveOptions): MaybePromise<void> {
    const driver = loc.mount.driver;
    const sidecarKey = metaKeyOf(loc.rel);
    const done = () => watchers.report(loc.mount, "remove", loc.key);
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
  function removeWithSidecar(loc: Located, driver: Driver, options: RemoveOptions, change: SidecarChange): MaybePromise<void> {
    const unguarded = withoutGuards(options);
    const done = () => watchers.report(loc.mount, "remove", loc.key);
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
  function unlessExpired<T>(loc: Located, stored: T, opts: TransactionOptions): MaybePromise<T | null> {
    if (stored === null || stored === undefined) return null;
    if (!needsCoreTtl(loc)) return stored;
    return chain(readSidecar(loc.mount, loc.rel, serializer, opts), (sidecar) =>
      isExpired(sidecar) ? chain(purge(loc, opts), () => null) : stored,
    );
  }

  // --- reads ----------------------------------------------------------------

  function hasItemStep(sync: boolean, key: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<boolean> {
    checkCallOptions(opts);
    const loc = locate(key, sync);
    return chain(loc.mount.driver.hasItem(loc.rel, opts), (has) =>
      has ? chain(unlessExpired(loc, true, opts), (alive) => alive === true) : false,
    );
  }

  function readStep(loc: Located, opts: TransactionOptions, raw: boolean): MaybePromise<unknown> {
    const driver = loc.mount.driver;
    const stored = raw && driver.getItemRaw ? driver.getItemRaw(loc.rel, opts) : driver.getItem(loc.rel, opts);
    // Reads are the hottest path: no closure unless the driver is async or the core keeps TTL.
    if (!isPromise(stored) && (stored === null || stored === undefined || !needsCoreTtl(loc))) return stored ?? null;
    return chain(stored, (value) => unlessExpired(loc, value, opts));
  }

  function deserializeStored(stored: unknown): unknown {
    return stored === null ? null : serializer.deserialize(stored);
  }

  function getItemStep(sync: boolean, key: string, opts: GetOptions = NO_OPTIONS): MaybePromise<unknown> {
    checkCallOptions(opts);
    const loc = locate(key, sync);
    if (opts.version !== undefined) return getVersion(loc, opts);
    const stored = readStep(loc, opts, false);
    return isPromise(stored) ? stored.then(deserializeStored) : deserializeStored(stored);
  }

  function getItemRawStep(sync: boolean, key: string, opts: GetOptions = NO_OPTIONS): MaybePromise<Uint8Array | null> {
    checkCallOptions(opts);
    const loc = locate(key, sync);
    if (opts.version !== undefined) throw unsupported(loc.mount, "Reading raw past versions", "history");
    return chain(readStep(loc, opts, true), deserializeRaw);
  }

  function getVersion(loc: Located, opts: GetOptions): MaybePromise<unknown> {
    const driver = loc.mount.driver;
    if (!driver.flags?.history || typeof driver.getItem !== "function") throw unsupported(loc.mount, "getItem with a version", "history");
    return chain(driver.getItem(loc.rel, opts), (stored) => (stored === null || stored === undefined ? null : serializer.deserialize(stored)));
  }

  function normalizeGetItems(items: GetItemsInput, common: TransactionOptions, sync: boolean) {
    if (!Array.isArray(items)) throw new StorageError("E_INVALID_OPTION", "getItems expects an array of keys");
    return items.map((item) => {
      const isString = typeof item === "string";
      const loc = locate(isString ? item : item?.key, sync);
      const itemOptions = isString ? undefined : item.options;
      // null is no options, as unstorage's spread has it.
      if (itemOptions !== undefined && itemOptions !== null) checkCallOptions(itemOptions);
      return { loc, options: itemOptions ? { ...common, ...itemOptions } : common };
    });
  }

  function getItemsStep(sync: boolean, items: GetItemsInput, common: TransactionOptions = NO_OPTIONS) {
    checkCallOptions(common);
    const entries = normalizeGetItems(items, common, sync);
    const groups = new Map<Mount, typeof entries>();
    for (const entry of entries) {
      const group = groups.get(entry.loc.mount);
      if (group) group.push(entry);
      else groups.set(entry.loc.mount, [entry]);
    }
    const found = new Map<string, unknown>();
    const reads = [...groups].map(([mount, group]) => chain(readGroup(mount, group, common), (values) => {
      group.forEach((entry, index) => found.set(entry.loc.key, values[index]));
    }));
    return chain(all(reads), () =>
      entries.map(({ loc }) => {
        const stored = found.get(loc.key);
        return { key: loc.key, value: stored === null || stored === undefined ? null : serializer.deserialize(stored) };
      }),
    );
  }

  /** Reads one mount's share of a getItems, in one driver call when the driver has getItems. */
  function readGroup(mount: Mount, group: { loc: Located; options: TransactionOptions }[], common: TransactionOptions): MaybePromise<unknown[]> {
    const driver = mount.driver;
    if (!driver.getItems) return all(group.map(({ loc, options }) => readStep(loc, options, false)));
    const withTtl = group.filter(({ loc }) => needsCoreTtl(loc));
    const request = group.map(({ loc, options }) => ({ key: loc.rel, options }));
    for (const { loc, options } of withTtl) request.push({ key: metaKeyOf(loc.rel), options });
    return chain(driver.getItems(request, common), (results) => {
      const byKey = new Map<string, unknown>();
      for (const result of results) byKey.set(normalizeKey(result.key), result.value);
      const values = group.map(({ loc }) => byKey.get(loc.rel) ?? null);
      const expired = withTtl.filter(({ loc }) => byKey.get(loc.rel) != null && isExpired(parseSidecar(byKey.get(metaKeyOf(loc.rel)), serializer)));
      if (expired.length === 0) return values;
      const gone = new Set(expired.map(({ loc }) => loc.rel));
      return chain(all(expired.map(({ loc, options }) => purge(loc, options))), () =>
        group.map(({ loc }, index) => (gone.has(loc.rel) ? null : values[index])),
      );
    });
  }

  function getMetaStep(sync: boolean, key: string, opts: (TransactionOptions & { nativeOnly?: boolean }) | boolean = NO_OPTIONS): MaybePromise<StorageMeta> {
    const options = typeof opts === "boolean" ? { nativeOnly: opts } : opts;
    checkCallOptions(options);
    return metaOf(locate(key, sync), options);
  }

  function metaOf(loc: Located, options: TransactionOptions & { nativeOnly?: boolean }): MaybePromise<StorageMeta> {
    const driver = loc.mount.driver;
    const native = driver.getMeta ? driver.getMeta(loc.rel, options) : null;
    // Sync drivers answer without a closure: the server reads meta on every GET.
    return isPromise(native) ? native.then((found) => completeMeta(loc, found, options)) : completeMeta(loc, native, options);
  }

  /** Native meta plus what the sidecar adds: the user's meta, and the expiry the core keeps. */
  function completeMeta(loc: Located, native: StorageMeta | null | undefined, options: TransactionOptions & { nativeOnly?: boolean }): MaybePromise<StorageMeta> {
    const meta: StorageMeta = native ? { ...native } : {};
    if (options.nativeOnly && loc.mount.nativeTtl) return meta;
    return chain(readSidecar(loc.mount, loc.rel, serializer, options), (sidecar) => {
      if (needsCoreTtl(loc) && isExpired(sidecar)) return chain(purge(loc, options), () => ({}));
      if (sidecar && !options.nativeOnly) {
        reviveDates(sidecar);
        Object.assign(meta, sidecar);
      }
      return needsCoreTtl(loc) ? describeExpiry(meta, expiresOf(sidecar)) : meta;
    });
  }

  /** getItemStream: the driver's own stream (after the expiry the core keeps), else the value read whole. */
  function getItemStream(key: string, opts: TransactionOptions = NO_OPTIONS): Promise<ItemStream | null> {
    return toPromise(key, () => {
      checkCallOptions(opts);
      const loc = locate(key, false);
      const driver = loc.mount.driver;
      if (!driver.getItemStream) {
        return chain(readEntryStep(false, key, true), (entry) => (entry === null ? null : wholeStream(entry.stored as Uint8Array, entry.meta)));
      }
      const sidecar = needsCoreTtl(loc) ? readSidecar(loc.mount, loc.rel, serializer, opts) : null;
      return chain(sidecar, (found) => {
        if (isExpired(found)) return chain(purge(loc, opts), () => null);
        return chain(driver.getItemStream!(loc.rel, opts), (opened) => {
          if (opened === null) return null;
          const meta = needsCoreTtl(loc) ? describeExpiry({ ...opened.meta }, expiresOf(found)) : opened.meta;
          return withStorageErrors({ ...opened, meta }, loc.mount.name);
        });
      });
    });
  }

  // --- direct access: stored text in and out, for the server ----------------

  function readEntryStep(sync: boolean, key: string, raw: boolean): MaybePromise<StoredEntry | null> {
    const loc = locate(key, sync);
    // Meta before value: a write in between leaves a stale etag, which fails a later If-Match instead of passing it.
    const meta = metaOf(loc, NATIVE_ONLY);
    return isPromise(meta) ? meta.then((found) => entryOf(loc, found, raw)) : entryOf(loc, meta, raw);
  }

  function entryOf(loc: Located, meta: StorageMeta, raw: boolean): MaybePromise<StoredEntry | null> {
    const stored = readStep(loc, NO_OPTIONS, raw);
    if (isPromise(stored)) return stored.then((found) => toEntry(found, meta, raw));
    return toEntry(stored, meta, raw);
  }

  function toEntry(stored: unknown, meta: StorageMeta, raw: boolean): StoredEntry | null {
    if (stored === null) return null;
    return { stored: raw ? deserializeRaw(stored) : stored, meta };
  }

  function writeTextStep(sync: boolean, key: string, text: string, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(opts);
    return writeStep(locate(key, sync, true), text, opts);
  }

  // --- writes ---------------------------------------------------------------

  /** Options as the driver gets them: ttl only for drivers that expire keys themselves. */
  function driverOptions(loc: Located, opts: SetOptions, ttl: number | undefined): SetOptions {
    if (loc.mount.nativeTtl) return ttl === opts.ttl ? opts : { ...opts, ttl };
    if (opts.ttl === undefined) return opts;
    const stripped = { ...opts };
    delete stripped.ttl;
    return stripped;
  }

  function put(loc: Located, payload: Payload, opts: SetOptions): MaybePromise<void> {
    const driver = loc.writer;
    if (typeof payload === "string") {
      if (driver.setItem) return driver.setItem(loc.rel, payload, opts);
    } else {
      if (driver.setItemRaw) return driver.setItemRaw(loc.rel, payload, opts);
      if (driver.setItem) return driver.setItem(loc.rel, serializeRaw(payload), opts);
    }
    throw readOnly(loc.mount, loc.key);
  }

  function writeStep(loc: Located, payload: Payload, opts: SetOptions): MaybePromise<void> {
    // Options left out carry no guard: the hot path skips the check.
    if (opts !== NO_OPTIONS) checkWriteOptions(loc.mount, opts);
    const ttl = ttlOf(loc, opts);
    return afterWrite(loc, put(loc, payload, driverOptions(loc, opts, ttl)), ttl);
  }

  /** Once a value reached its driver: the expiry the core keeps for it, then the change event. */
  function afterWrite(loc: Located, written: MaybePromise<void>, ttl: number | undefined): MaybePromise<void> {
    if (!needsCoreTtl(loc)) {
      // The common path, kept free of closures: it runs on every write.
      if (isPromise(written)) return written.then(() => watchers.report(loc.mount, "update", loc.key));
      watchers.report(loc.mount, "update", loc.key);
      return;
    }
    return chain(written, () => keepExpiry(loc, ttl));
  }

  /** The ttl a write carries: its own, else the storage's default (never for meta sidecars). */
  function ttlOf(loc: Located, opts: SetOptions): number | undefined {
    return isMetaKey(loc.rel) ? checkTtl(opts.ttl) : (checkTtl(opts.ttl) ?? defaultTtl);
  }

  /** After a value is written to a driver without native expiry: its sidecar keeps (or drops) the expiry, then the event goes out. */
  function keepExpiry(loc: Located, ttl: number | undefined, event: WatchEvent = "update"): MaybePromise<void> {
    const expires = ttl === undefined ? undefined : Date.now() + ttl;
    return chain(planExpiry(loc.mount, loc.rel, expires, serializer, NO_OPTIONS), (change) =>
      chain(applySidecarChange(loc.mount, loc.rel, change, NO_OPTIONS), () => watchers.report(loc.mount, event, loc.key)),
    );
  }

  function setItemStep(sync: boolean, key: string, value: unknown, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(opts);
    if (value === undefined) return removeItemStep(sync, key, opts);
    const loc = locate(key, sync, true);
    return writeStep(loc, serializer.serialize(value), opts);
  }

  function setItemRawStep(sync: boolean, key: string, value: unknown, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(opts);
    if (value === undefined) return removeItemStep(sync, key, opts);
    const loc = locate(key, sync, true);
    return writeStep(loc, toBytes(value), opts);
  }

  /** setItemStream: chunks go to a driver that takes them as they come, else are gathered for setItemRaw. */
  function setItemStream(key: string, body: unknown, opts: SetOptions = NO_OPTIONS): Promise<void> {
    let stream: Body | undefined;
    return toPromise(key, () => {
      stream = bytesOf(body);
      return writeStream(key, stream.chunks, opts);
    }).catch((error: unknown) => {
      // A write that fails before or while reading the body lets go of the caller's stream, without waiting on it.
      stream?.release().catch((releaseError: unknown) => process.emitWarning(`stowage: ending the stream of a failed setItemStream failed: ${String(releaseError)}`));
      // What the caller's own body threw comes back as it was thrown, however the driver reported it.
      const failure = stream?.failure();
      throw failure ? failure.error : error;
    });
  }

  /** Options are checked before a byte is read; a driver that cannot take chunks gets the body gathered. */
  function writeStream(key: string, chunks: AsyncIterable<Uint8Array>, opts: SetOptions): MaybePromise<void> {
    checkCallOptions(opts);
    const loc = locate(key, false, true);
    checkWriteOptions(loc.mount, opts);
    const ttl = ttlOf(loc, opts);
    const options = driverOptions(loc, opts, ttl);
    const driver = loc.mount.driver;
    const written = driver.setItemStream ? driver.setItemStream(loc.rel, chunks, options) : gather(chunks).then((bytes) => put(loc, bytes, options));
    return afterWrite(loc, written, ttl);
  }

  /** One entry of a setItems: `text` undefined removes the key (as setItem(key, undefined) does). */
  type SetEntry = { loc: Located; text: string | undefined; options: SetOptions };
  type ValueEntry = SetEntry & { text: string };

  function setItemsStep(sync: boolean, items: SetItemsInput, common: SetOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(common);
    if (!Array.isArray(items)) throw new StorageError("E_INVALID_OPTION", "setItems expects an array of { key, value }");
    // Every key and guard is checked before anything is sent.
    const entries = items.map((item): SetEntry => {
      const loc = locate(item?.key, sync, true);
      if (item.options !== undefined && item.options !== null) checkCallOptions(item.options);
      const options: SetOptions = item.options ? { ...common, ...item.options } : common;
      if (item.value === undefined) checkRemoveOptions(loc.mount, options);
      else checkWriteOptions(loc.mount, options);
      return { loc, text: item.value === undefined ? undefined : serializer.serialize(item.value), options };
    });
    const groups = new Map<Mount, SetEntry[]>();
    for (const entry of entries) {
      const group = groups.get(entry.loc.mount);
      if (group) group.push(entry);
      else groups.set(entry.loc.mount, [entry]);
    }
    return chain(all([...groups].map(([mount, group]) => writeGroup(mount, sync ? mount.driver : mount.writer, group, common))), () => undefined);
  }

  /**
   * Writes one mount's share of a setItems. Removals (undefined values) go
   * with the values in one commit where the driver has commits; otherwise
   * the values are written, then the keys removed.
   */
  function writeGroup(mount: Mount, driver: Driver, group: SetEntry[], common: SetOptions): MaybePromise<void> {
    const values = group.filter((entry): entry is ValueEntry => entry.text !== undefined);
    if (values.length === group.length) return writeValues(mount, driver, values, common);
    const removals = group.filter((entry) => entry.text === undefined);
    if (driver.commit && mount.driver.flags?.transactions) return commitGroup(mount, driver, group, values, removals, common);
    // Values go before removals here, so a key named twice keeps only its last entry, as a commit in order would.
    const last = new Map<string, SetEntry>();
    for (const entry of group) last.set(entry.loc.key, entry);
    const isLast = (entry: SetEntry) => last.get(entry.loc.key) === entry;
    const lastValues = values.filter(isLast);
    return chain(lastValues.length > 0 ? writeValues(mount, driver, lastValues, common) : undefined, () =>
      chain(all(removals.filter(isLast).map(({ loc, options }) => removeLocated(loc, driver, options))), () => undefined),
    );
  }

  /** A setItems group with removals, as one atomic commit; the expiries the core keeps follow it. */
  function commitGroup(mount: Mount, driver: Driver, group: SetEntry[], values: ValueEntry[], removals: SetEntry[], common: SetOptions): MaybePromise<void> {
    const operations: CommitOperation[] = [];
    const ttls = new Map<Located, number | undefined>();
    for (const { loc, text, options } of group) {
      if (hasGuard(options)) operations.push({ type: "check", key: loc.rel, etag: options.ifMatch ?? null });
      if (text === undefined) {
        operations.push({ type: "remove", key: loc.rel, options });
        continue;
      }
      const ttl = ttlOf(loc, options);
      ttls.set(loc, ttl);
      operations.push({ type: "set", key: loc.rel, value: text, options: driverOptions(loc, options, ttl) });
    }
    const { ttl: _ttl, ...shared } = withoutGuards(common);
    return chain(driver.commit!(operations, shared), () => {
      // Expiries the core keeps follow (sidecars themselves have none); the rest is reported now.
      const expiring = (entry: SetEntry) => !mount.nativeTtl && !isMetaKey(entry.loc.rel);
      for (const { loc, text } of group.filter((entry) => !expiring(entry))) watchers.report(mount, text === undefined ? "remove" : "update", loc.key);
      return chain(keepExpiries(mount, values.filter(expiring).map(({ loc }) => ({ loc, ttl: ttls.get(loc) })), "update"), () =>
        keepExpiries(mount, removals.filter(expiring).map(({ loc }) => ({ loc, ttl: undefined })), "remove"),
      );
    });
  }

  /** Writes values of one mount: one driver call when the driver has setItems. */
  function writeValues(mount: Mount, driver: Driver, group: ValueEntry[], common: SetOptions): MaybePromise<void> {
    if (!driver.setItems) {
      return chain(all(group.map(({ loc, text, options }) => writeStep(loc, text, options))), () => undefined);
    }
    // One driver call for the values (one commit on git); expiries the core keeps follow per key.
    const ttls = group.map(({ loc, options }) => ttlOf(loc, options));
    const request = group.map(({ loc, text, options }, index) => ({ key: loc.rel, value: text, options: driverOptions(loc, options, ttls[index]) }));
    const commonTtl = checkTtl(common.ttl) ?? defaultTtl;
    const commonOptions = mount.nativeTtl ? (commonTtl === common.ttl ? common : { ...common, ttl: commonTtl }) : driverOptions(group[0]!.loc, common, undefined);
    return chain(driver.setItems(request, commonOptions), () => {
      if (mount.nativeTtl) {
        for (const { loc } of group) watchers.report(mount, "update", loc.key);
        return;
      }
      const expiring: { loc: Located; ttl: number | undefined }[] = [];
      group.forEach(({ loc }, index) => {
        if (isMetaKey(loc.rel)) watchers.report(mount, "update", loc.key);
        else expiring.push({ loc, ttl: ttls[index] });
      });
      return keepExpiries(mount, expiring, "update");
    });
  }

  /**
   * keepExpiry for the keys of one setItems: their sidecars read in one
   * driver getItems and rewritten in one setItems (one commit on git), not
   * one call per key.
   */
  function keepExpiries(mount: Mount, entries: { loc: Located; ttl: number | undefined }[], event: WatchEvent): MaybePromise<void> {
    const driver = mount.driver;
    if (entries.length === 0) return;
    if (!driver.getItems) return chain(all(entries.map(({ loc, ttl }) => keepExpiry(loc, ttl, event))), () => undefined);
    const now = Date.now();
    return chain(driver.getItems(entries.map(({ loc }) => ({ key: metaKeyOf(loc.rel) })), NO_OPTIONS), (results) => {
      const sidecars = new Map<string, unknown>();
      for (const result of results) sidecars.set(normalizeKey(result.key), result.value);
      const sets: { key: string; value: string }[] = [];
      const removals: MaybePromise<void>[] = [];
      for (const { loc, ttl } of entries) {
        const change = expiryChange(parseSidecar(sidecars.get(metaKeyOf(loc.rel)), serializer), ttl === undefined ? undefined : now + ttl, serializer);
        if (change?.type === "set") sets.push({ key: metaKeyOf(loc.rel), value: change.value });
        else if (change) removals.push(applySidecarChange(mount, loc.rel, change, NO_OPTIONS));
      }
      return chain(all([...removals, writeSidecars(mount, sets)]), () => {
        for (const { loc } of entries) watchers.report(mount, event, loc.key);
      });
    });
  }

  /** Writes sidecar texts in one driver call where the driver has setItems. */
  function writeSidecars(mount: Mount, sets: { key: string; value: string }[]): MaybePromise<void> {
    const driver = mount.driver;
    if (sets.length === 0) return;
    if (driver.setItems) return driver.setItems(sets, NO_OPTIONS);
    if (!driver.setItem) throw readOnly(mount);
    return chain(all(sets.map(({ key, value }) => driver.setItem!(key, value, NO_OPTIONS))), () => undefined);
  }

  function removeItemStep(sync: boolean, key: string, opts: RemoveOptions | boolean = NO_OPTIONS): MaybePromise<void> {
    const options: RemoveOptions = typeof opts === "boolean" ? { removeMeta: opts } : opts;
    checkCallOptions(options);
    const loc = locate(key, sync, true);
    checkRemoveOptions(loc.mount, options);
    return removeLocated(loc, loc.writer, options);
  }

  /** Removes a located key (guard checked): with its sidecar when asked, else dropping the expiry the core kept. */
  function removeLocated(loc: Located, driver: Driver, options: RemoveOptions): MaybePromise<void> {
    if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
    if (options.removeMeta) return removeWithSidecar(loc, driver, options, { type: "remove" });
    if (!needsCoreTtl(loc)) return chain(driver.removeItem(loc.rel, options), () => watchers.report(loc.mount, "remove", loc.key));
    // The expiry the core kept goes with the value; meta the user set stays.
    return chain(planExpiry(loc.mount, loc.rel, undefined, serializer, withoutGuards(options)), (change) => removeWithSidecar(loc, driver, options, change));
  }

  function setMetaStep(sync: boolean, key: string, value?: Record<string, unknown>, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(opts);
    refuseMetaGuard("setMeta", opts);
    if (value === null || typeof value !== "object") throw new StorageError("E_INVALID_VALUE", "Meta must be an object");
    const loc = locate(key, sync, true);
    const driver = loc.mount.driver;
    if (!driver.setItem) throw readOnly(loc.mount, loc.key);
    const write = (meta: Record<string, unknown>) => driver.setItem!(metaKeyOf(loc.rel), serializer.serialize(meta), opts);
    if (!needsCoreTtl(loc)) return write(value);
    // The core's expiry lives in the same sidecar: keep it.
    return chain(readSidecar(loc.mount, loc.rel, serializer, opts), (current) => write(withExpiry(value, expiresOf(current)) ?? {}));
  }

  function removeMetaStep(sync: boolean, key: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(opts);
    refuseMetaGuard("removeMeta", opts);
    const loc = locate(key, sync, true);
    const driver = loc.mount.driver;
    if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
    if (!needsCoreTtl(loc)) return driver.removeItem(metaKeyOf(loc.rel), opts);
    return chain(readSidecar(loc.mount, loc.rel, serializer, opts), (current) => {
      const keep = withExpiry(null, expiresOf(current));
      return keep ? driver.setItem!(metaKeyOf(loc.rel), serializer.serialize(keep), opts) : driver.removeItem!(metaKeyOf(loc.rel), opts);
    });
  }

  // --- listing ----------------------------------------------------------------

  /** Drops expired keys (core-kept TTL) from a mount's listing, given which sidecars it holds. */
  function dropExpired(mount: Mount, relKeys: string[], sidecars: Set<string>, opts: TransactionOptions): MaybePromise<string[]> {
    if (mount.nativeTtl || sidecars.size === 0) return relKeys;
    const checks = relKeys.map((rel) => {
      if (!sidecars.has(metaKeyOf(rel))) return true;
      const loc: Located = { mount, key: mount.base + rel, rel, writer: mount.driver };
      return chain(unlessExpired(loc, true, opts), (alive) => alive === true);
    });
    return chain(all(checks), (alive) => relKeys.filter((_, index) => alive[index]));
  }

  /** Turns one mount's raw listing into visible full keys under `base`. */
  function visibleKeys(
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
    return chain(dropExpired(mount, relKeys, sidecars, opts), (alive) => (mount.base ? alive.map((rel) => mount.base + rel) : alive));
  }

  function getKeysStep(sync: boolean, base?: string, opts: GetKeysOptions = NO_OPTIONS): MaybePromise<string[]> {
    checkCallOptions(opts);
    const normalizedBase = normalizeItemBase(base);
    const maxDepth = checkMaxDepth(opts.maxDepth);
    const slices = slicesOf(normalizedBase, sync);
    const listings = slices.map(({ mount, relativeBase }, index) => {
      const depth = driverDepth(mount, maxDepth);
      if (depth !== undefined && depth < 0) return [];
      // Keys of a mount are hidden where a more specific mount (listed earlier) sits over them.
      const masked = slices.slice(0, index).map((slice) => slice.mount.base);
      const listing = mount.driver.getKeys(relativeBase, depth === opts.maxDepth ? opts : { ...opts, maxDepth: depth });
      return chain(listing, (rawKeys) => visibleKeys(mount, rawKeys, normalizedBase, maxDepth, masked, opts));
    });
    return chain(all(listings), (lists) => (lists.length === 1 ? (lists[0] as string[]) : lists.flat()));
  }

  async function* iterateKeys(base: string | undefined, opts: IterateKeysOptions): AsyncIterableIterator<string[]> {
    const normalizedBase = normalizeItemBase(base);
    const maxDepth = checkMaxDepth(opts.maxDepth);
    const batchSize = opts.batchSize ?? 1000;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new StorageError("E_INVALID_OPTION", `batchSize must be a positive integer, got ${String(opts.batchSize)}`);
    }
    const slices = slicesOf(normalizedBase, false);
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
        const keys = await visibleKeys(mount, rawBatch, normalizedBase, maxDepth, masked, opts);
        const alive = await dropExpiredUnseen(mount, keys, rawBatch, opts);
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
  async function dropExpiredUnseen(mount: Mount, fullKeys: string[], rawBatch: string[], opts: TransactionOptions): Promise<string[]> {
    if (mount.nativeTtl || fullKeys.length === 0) return fullKeys;
    const seen = new Set(rawBatch.map(normalizeKey));
    const unseen = fullKeys.filter((key) => !seen.has(metaKeyOf(key.slice(mount.base.length))));
    if (unseen.length === 0) return fullKeys;
    const checked = await Promise.all(unseen.map((key) => unlessExpired({ mount, key, rel: key.slice(mount.base.length), writer: mount.driver }, key, opts)));
    const gone = new Set(unseen.filter((_, index) => checked[index] === null));
    return gone.size === 0 ? fullKeys : fullKeys.filter((key) => !gone.has(key));
  }

  function clearStep(sync: boolean, base?: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<void> {
    checkCallOptions(opts);
    const normalizedBase = normalizeItemBase(base);
    const slices = slicesOf(normalizedBase, sync);
    const cleared = slices.map(({ mount, relativeBase }, index) => {
      // Keys a more specific mount (listed earlier) sits over are not reachable under base: they stay.
      const hidden = hiddenPrefixes(mount, slices.slice(0, index));
      if (hidden.some((prefix) => relativeBase.startsWith(prefix))) return undefined;
      return clearMount(mount, relativeBase, hidden.filter((prefix) => prefix.startsWith(relativeBase)), opts);
    });
    return chain(all(cleared), () => undefined);
  }

  /** The bases of the more specific mounts inside `mount`, relative to it. */
  function hiddenPrefixes(mount: Mount, above: MountSlice[]): string[] {
    return above.filter((slice) => slice.mount.base.startsWith(mount.base)).map((slice) => slice.mount.base.slice(mount.base.length));
  }

  function clearMount(mount: Mount, relativeBase: string, hidden: string[], opts: TransactionOptions): MaybePromise<void> {
    const driver = mount.driver;
    const report = watchers.watching && mount.coreEvents;
    // A driver's clear may ignore its base (unstorage's do); only ones flagged clearBase are trusted with one.
    const wholeClear = hidden.length === 0 && driver.clear && (relativeBase === "" || driver.flags?.clearBase);
    if (wholeClear && !report) return driver.clear!(relativeBase, opts);
    if (!wholeClear && !driver.removeItem) throw readOnly(mount);
    return chain(driver.getKeys(relativeBase, opts), (rawKeys) => {
      const keys = rawKeys.map(normalizeKey).filter((key) => key.startsWith(relativeBase) && !hidden.some((prefix) => key.startsWith(prefix)));
      const removed = wholeClear ? driver.clear!(relativeBase, opts) : all(keys.map((key) => driver.removeItem!(key, opts)));
      return chain(removed, () => {
        for (const key of keys) watchers.report(mount, "remove", mount.base + key);
      });
    });
  }

  // --- the storage object ---------------------------------------------------

  const storage: Storage = {
    hasItem: asyncApi(hasItemStep),
    getItem: asyncApi(getItemStep) as Storage["getItem"],
    getItems: asyncApi(getItemsStep) as Storage["getItems"],
    getItemRaw: asyncApi(getItemRawStep),
    setItem: asyncApi(setItemStep),
    setItems: asyncApi(setItemsStep),
    setItemRaw: asyncApi(setItemRawStep),
    getItemStream,
    setItemStream,
    removeItem: asyncApi(removeItemStep),
    getMeta: asyncApi(getMetaStep),
    setMeta: asyncApi(setMetaStep),
    removeMeta: asyncApi(removeMetaStep),
    getKeys: asyncApi(getKeysStep),
    iterateKeys: (base, opts = NO_OPTIONS) => iterateKeysSafely(base, opts),
    clear: asyncApi(clearStep),

    hasItemSync: syncApi(hasItemStep),
    getItemSync: syncApi(getItemStep) as Storage["getItemSync"],
    getItemsSync: syncApi(getItemsStep) as Storage["getItemsSync"],
    getItemRawSync: syncApi(getItemRawStep),
    setItemSync: syncApi(setItemStep),
    setItemsSync: syncApi(setItemsStep),
    setItemRawSync: syncApi(setItemRawStep),
    removeItemSync: syncApi(removeItemStep),
    getMetaSync: syncApi(getMetaStep),
    getKeysSync: syncApi(getKeysStep),
    clearSync: syncApi(clearStep),

    update: (key, fn, opts = {}) =>
      toPromise(key, () => {
        checkOptions("update", opts, ["retries", "ttl"]);
        return runUpdate(storage, locate(key, false, true).mount, key, fn, opts ?? {});
      }),
    transaction: (fn, opts = NO_OPTIONS) =>
      toPromise(undefined, () => {
        checkCallOptions(opts);
        return runTransaction(storage, transactionContext, fn, opts);
      }),
    getHistory: (key, opts = {}) =>
      toPromise(key, () => {
        checkOptions("getHistory", opts, ["limit"]);
        const limit = opts?.limit;
        if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
          throw new StorageError("E_INVALID_OPTION", `limit must be a positive integer, got ${String(limit)}`);
        }
        const loc = locate(key, false);
        const driver = loc.mount.driver;
        if (!driver.flags?.history || !driver.getHistory) throw unsupported(loc.mount, "getHistory", "history");
        return chain(driver.getHistory(loc.rel, opts ?? {}), (entries) =>
          entries.map((entry) => ({ ...entry, value: entry.value === null ? null : serializer.deserialize(entry.value) })),
        ) as never;
      }),

    async dispose() {
      await watchers.stop();
      await Promise.all(table.list().map((mount) => mount.driver.dispose?.()));
    },
    watch: (first: string | WatchCallback, second?: WatchCallback) =>
      toPromise(undefined, () => {
        const { base, callback } = watchArguments(first, second);
        return watchers.add(base, callback, table.list());
      }),
    unwatch: () => watchers.stop(),
    mount(base, driver) {
      const mount = table.add(normalizeItemBase(base), driver);
      if (watchers.watching) {
        watchers.start(mount).catch((error: unknown) => process.emitWarning(`stowage: watching ${mount.base} failed: ${String(error)}`));
      }
      return storage;
    },
    async unmount(base, dispose = true) {
      const mount = table.remove(normalizeItemBase(base));
      if (!mount) return;
      await watchers.stopMount(mount);
      if (dispose) await mount.driver.dispose?.();
    },
    getMount(key = "") {
      const mount = table.resolve(normalizeKey(key) + ":");
      return { base: mount.base, driver: mount.driver };
    },
    getMounts(base = "", opts = {}) {
      checkOptions("getMounts", opts, ["parents"]);
      return table.within(normalizeBaseKey(base), opts?.parents === true).map(({ mount }) => ({ base: mount.base, driver: mount.driver }));
    },

    keys: (base, opts) => storage.getKeys(base, opts),
    get: (key, opts) => storage.getItem(key, opts),
    set: (key, value, opts) => storage.setItem(key, value, opts),
    has: (key, opts) => storage.hasItem(key, opts),
    del: (key, opts) => storage.removeItem(key, opts),
    remove: (key, opts) => storage.removeItem(key, opts),
  };

  async function* iterateKeysSafely(base: string | undefined, opts: IterateKeysOptions): AsyncIterableIterator<string[]> {
    try {
      yield* iterateKeys(base, opts);
    } catch (error) {
      throw toStorageError(error, driverName(base));
    }
  }

  directAccess.set(storage, {
    serializer,
    read: directApi(readEntryStep),
    writeText: directApi(writeTextStep),
  });

  const transactionContext = {
    serializer,
    locate: (key: string, write?: boolean) => locate(key, false, write),
    report: (mount: Mount, event: "update" | "remove", key: string) => watchers.report(mount, event, key),
    checkTtl: (ttl: unknown) => checkTtl(ttl) ?? defaultTtl,
  };

  return storage;
}

