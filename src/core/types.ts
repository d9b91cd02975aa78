import type { MaybePromise } from "./maybePromise.js";
import type { Serializer } from "./serializer.js";

/** What `getItem` returns: anything the serializer can carry. */
export type StorageValue = unknown;

export type WatchEvent = "update" | "remove";

/**
 * Who made a change a watch reports:
 * - `"local"`: a write made through this driver instance (so by this
 *   process), whether the core reported it or the driver's own feed did and
 *   could tell it was its own;
 * - `"remote"`: a write the driver knows another client made: another
 *   process, or another driver instance in this one (its own connection);
 * - `"unknown"`: the driver cannot tell (a file watcher, redis keyspace
 *   events and client tracking, mysql's change log, an unstorage driver).
 */
export type WatchOrigin = "local" | "remote" | "unknown";

/** What a driver knows about one change, the third argument of a watch callback. */
export interface WatchInfo {
  /** Who made the change; `"unknown"` where the driver cannot tell. */
  origin: WatchOrigin;
  /**
   * The etag an `"update"` gave the key, as `getMeta(key).etag` gives it and
   * `ifMatch` takes it (a later write may have moved the key on). Present where the change feed carries it
   * (memory, postgres, etcd, NATS KV, git, redis with `watch: "pubsub"`);
   * absent on removals and for writes the core reports
   * (a driver's write does not return its etag, and asking would cost a
   * round trip per write).
   */
  etag?: string;
  /**
   * The history version the change made, as `getHistory` lists it and
   * `getItem(key, { version })` reads it, on drivers flagged `history`
   * where the feed carries it: etcd and NATS KV (the revision, equal to the
   * etag), git (the commit, where the etag is the value's blob).
   */
  version?: string;
}

/** A watch listener. Two-argument listeners are fine: `info` can be ignored. */
export type WatchCallback = (event: WatchEvent, key: string, info: WatchInfo) => unknown;
/**
 * The callback a driver's own `watch` calls. `info` is optional because
 * unstorage's drivers call `callback(event, key)`; the core then reports
 * `{ origin: "unknown" }`.
 */
export type DriverWatchCallback = (event: WatchEvent, key: string, info?: WatchInfo) => unknown;
/** Receives what a watch listener threw or rejected with (the write it was told of has happened). */
export type WatchErrorHandler = (error: unknown, event: WatchEvent, key: string) => void;
export type Unwatch = () => MaybePromise<void>;

/**
 * Metadata of an item. `ttl` is the milliseconds left before it expires and
 * `expires` the moment it does; `etag` identifies the stored version on
 * drivers flagged `cas`.
 */
export interface StorageMeta {
  atime?: Date;
  mtime?: Date;
  ctime?: Date;
  birthtime?: Date;
  size?: number;
  ttl?: number;
  expires?: Date;
  etag?: string;
  [key: string]: unknown;
}

/**
 * A fencing token: a write that carries one (`{ fence }`) lands only if its
 * `token` is at least the highest token already used with the same
 * `fenceId` on that mount, checked and raised in the same atomic step as the
 * write (`E_FENCED` otherwise). A `Lock` from `stowage/coordination` is one.
 */
export interface Fence {
  /** What the token fences (a lock's identity); tokens of different ids are never compared. */
  readonly fenceId: string;
  /** Strictly increasing per `fenceId`: a positive safe integer. */
  readonly token: number;
}

/** Per-call options; drivers may read their own extra fields (unstorage's TransactionOptions). */
export type TransactionOptions = Record<string, unknown>;

export interface SetOptions extends TransactionOptions {
  /**
   * Time to live in milliseconds; `Infinity` means no expiry, whatever the storage's `ttl` option.
   * @default the storage's `ttl` option (none: no expiry)
   */
  ttl?: number;
  /** Write only if the stored etag is this one (`E_CONFLICT` otherwise). */
  ifMatch?: string;
  /** `'*'`: write only if the key holds no value (`E_CONFLICT` otherwise). */
  ifNoneMatch?: "*";
  /** Land only if this fence's token is still the highest used on the mount (`E_FENCED` otherwise); see {@link Fence}. */
  fence?: Fence;
}

export interface RemoveOptions extends TransactionOptions {
  /**
   * Also remove the key's meta (its sidecar), as unstorage's `removeMeta` does.
   * @default false
   */
  removeMeta?: boolean;
  ifMatch?: string;
  /** As {@link SetOptions.fence}. */
  fence?: Fence;
}

export interface GetOptions extends TransactionOptions {
  /** Read the key as of this version (drivers flagged `history`). */
  version?: string;
}

export interface GetKeysOptions extends TransactionOptions {
  maxDepth?: number;
}

export interface IterateKeysOptions extends GetKeysOptions {
  /**
   * Keys per yielded batch.
   * @default 1000
   */
  batchSize?: number;
}

/** What a driver can do; the core uses native support where a flag says so. */
/** Bounds on the keys a driver accepts (see `Driver.keyLimits`). */
export interface KeyLimits {
  /** Most UTF-8 bytes in a normalized key (`a:b` counts 3). */
  bytes: number;
  /** Most segments in a normalized key (`a:b:c` has 3). */
  segments: number;
}

/** The key limits of a driver that declares none: generous, but bounded so that work per key is. */
export const DEFAULT_KEY_LIMITS: Readonly<KeyLimits> = Object.freeze({ bytes: 65_536, segments: 1_024 });

export interface DriverFlags {
  /** `getKeys` honours `maxDepth` itself. */
  maxDepth?: boolean;
  /** Expiry is native; the driver reads `options.ttl` (ms) on writes and reports `ttl`/`expires` in getMeta. */
  ttl?: boolean;
  /** Every method returns its result synchronously (enables the sync API). */
  sync?: boolean;
  /** Writes honour `ifMatch`/`ifNoneMatch` atomically, and getMeta reports `etag`. */
  cas?: boolean;
  /**
   * What an etag is, on a driver flagged `cas` (which must declare it; the kit fails one that does not).
   * `"content"`: it follows the value, so writing the same value again gives the same etag (a hash of
   * the value on redis and the git drivers); `"version"`: it changes on every write, the same value too.
   */
  etag?: "version" | "content";
  /** `commit(ops)` applies a batch all-or-nothing. */
  transactions?: boolean;
  /** `getItem(key, { version })` and `getHistory`. */
  history?: boolean;
  /** `watch` sees changes made by other processes too. */
  watch?: boolean;
  /** `clear(base)` removes only keys under `base` (unstorage's drivers clear everything). */
  clearBase?: boolean;
  /** `false` when a key cannot hold a value while another key lives below it (`a` and `a:b`). */
  nestedKeys?: boolean;
  /**
   * setItem, setItemRaw and removeItem apply `options.fence` ({@link Fence}) themselves, in the same
   * atomic step as the write (the http driver against a stowage server, which fences on its own storage).
   * Drivers flagged `transactions` need not: the core fences their commits.
   */
  fence?: boolean;
}

/** One operation of an atomic {@link Driver.commit}. */
export type CommitOperation =
  | { type: "set"; key: string; value: string; options: SetOptions }
  | { type: "setRaw"; key: string; value: Uint8Array; options: SetOptions }
  | { type: "remove"; key: string; options: RemoveOptions }
  /** Fails the whole commit with E_CONFLICT unless the key's etag is `etag` (`null`: absent). */
  | { type: "check"; key: string; etag: string | null };

/**
 * A value opened for reading in chunks ({@link Storage.getItemStream}).
 * Read `body` once, or call `close()`: an opened value may hold a file
 * open until one of the two.
 */
export interface ItemStream {
  /** The meta of the version opened, taken with it: `size` is the exact byte count of `body` when given. */
  meta: StorageMeta;
  /** The bytes in chunks; breaking off early releases the value. */
  body: AsyncIterable<Uint8Array>;
  /** Releases the value without reading all of it (harmless after reading). */
  close(): Promise<void>;
}

export interface HistoryEntry<T = StorageValue> {
  version: string;
  value: T | null;
  date: Date;
  message?: string;
  author?: string;
}

/**
 * A storage backend. The required part is unstorage's Driver, so drivers move
 * between unstorage and stowage both ways; the rest is optional and declared
 * through {@link DriverFlags}.
 */
export interface Driver<OptionsT = unknown, InstanceT = unknown> {
  name?: string;
  flags?: DriverFlags;
  /**
   * The longest and deepest key the driver stores. The core refuses a key
   * past either bound with `E_INVALID_KEY` before the driver sees it (and so
   * before anything is queued or batched with it), on every operation that
   * takes a key, and the part of a listing's or clear's base inside the
   * driver. The bound applies to the key as the driver gets it (relative to
   * its mount). The core may also store the key's meta sidecar `key$`, one
   * byte longer: a driver declares limits that leave room for it. Absent:
   * the core's defaults, {@link DEFAULT_KEY_LIMITS}.
   * @default {@link DEFAULT_KEY_LIMITS}
   */
  keyLimits?: KeyLimits;
  options?: OptionsT;
  getInstance?: () => InstanceT;
  hasItem: (key: string, opts: TransactionOptions) => MaybePromise<boolean>;
  getItem: (key: string, opts?: TransactionOptions) => MaybePromise<unknown>;
  getItems?: (
    items: { key: string; options?: TransactionOptions }[],
    commonOptions?: TransactionOptions,
  ) => MaybePromise<{ key: string; value: unknown }[]>;
  /** The value's bytes; on a driver flagged `history`, as of `opts.version` when given. */
  getItemRaw?: (key: string, opts: TransactionOptions) => MaybePromise<unknown>;
  setItem?: (key: string, value: string, opts: TransactionOptions) => MaybePromise<void>;
  setItems?: (
    items: { key: string; value: string; options?: TransactionOptions }[],
    commonOptions?: TransactionOptions,
  ) => MaybePromise<void>;
  setItemRaw?: (key: string, value: Uint8Array, opts: TransactionOptions) => MaybePromise<void>;
  removeItem?: (key: string, opts: TransactionOptions) => MaybePromise<void>;
  getMeta?: (key: string, opts: TransactionOptions) => MaybePromise<StorageMeta | null>;
  getKeys: (base: string, opts: GetKeysOptions) => MaybePromise<string[]>;
  clear?: (base: string, opts: TransactionOptions) => MaybePromise<void>;
  dispose?: () => MaybePromise<void>;
  /** Calls `callback(event, key, info)` for changes (see {@link WatchInfo} for what `info` carries). */
  watch?: (callback: DriverWatchCallback) => MaybePromise<Unwatch>;
  /**
   * Opens a value's bytes for reading in chunks, with the meta of the
   * version opened (a write meanwhile does not change what is read); null
   * when absent. Without it the core reads the value whole.
   */
  getItemStream?: (key: string, opts: TransactionOptions) => MaybePromise<ItemStream | null>;
  /**
   * Stores bytes as they arrive: the value is replaced whole once `body`
   * ends, or not at all when it fails. Honours `ifMatch`/`ifNoneMatch` on a
   * driver flagged `cas`. Without it the core gathers the body and writes it whole.
   */
  setItemStream?: (key: string, body: AsyncIterable<Uint8Array>, opts: SetOptions) => Promise<void>;
  /** Pages through keys under `base` without holding them all. */
  iterateKeys?: (base: string, opts: IterateKeysOptions) => AsyncIterable<string[]>;
  /** Applies every operation or none (flag `transactions`). */
  commit?: (operations: CommitOperation[], opts: TransactionOptions) => MaybePromise<void>;
  /** Past versions of a key, newest first (flag `history`). */
  getHistory?: (key: string, opts: { limit?: number }) => MaybePromise<HistoryEntry<unknown>[]>;
  /**
   * Async forms of the writes of a driver flagged `sync`, which the async API
   * prefers: lmdb commits awaited writes of one event turn in one background
   * transaction, where its sync writes commit one by one.
   */
  asyncWrites?: AsyncWrites;
}

/** The writes a driver flagged `sync` may also offer in an async, batched form. */
export type AsyncWrites = Partial<Pick<Driver, "setItem" | "setItemRaw" | "setItems" | "removeItem" | "commit">>;

/** What {@link LockTakingDriver.takeLock} did. `etag` is the record's etag after the write, as getMeta would report it. */
export type LockTake = { outcome: "taken"; token: number; etag: string } | { outcome: "held" } | { outcome: "declined" };

/**
 * An optional driver capability, the fast path of `createLocks` (`stowage/coordination`):
 * a driver that has it takes a lock in one atomic step decided where the data lives (a Redis
 * script; on etcd a read and one transaction), instead of the core's etag read, value read and
 * guarded write. Not part of {@link Driver}, so no wrapper forwards it: a layer that changes bytes
 * would be bypassed. Locks use it only on a driver mounted as is and flagged `watch`.
 */
export interface LockTakingDriver extends Driver {
  /**
   * Takes the lock record at `key` (the driver's key) for `holder` (its JSON text) if the record's
   * holder is null or has `expiresAt <= now`: stores `{"token":<token + 1>,"holder":<holder>}`, the very
   * JSON text `JSON.stringify` gives the record, so that the core's reads, guards and watchers see an
   * ordinary write. `"held"` when a holder's lease has not ended (nothing written); `"declined"` (nothing
   * written) for an absent record, whose first version the storage's serializer writes, and for text
   * that is not a lock record as `JSON.stringify` writes it (a custom serializer's form, a chunked
   * value): the caller then takes the generic path.
   * @throws StorageError the driver's errors (`E_UNAVAILABLE`, …); nothing is written then
   */
  takeLock(key: string, holder: string, now: number): Promise<LockTake>;
  /**
   * Locks' release fast path: writes `released` at `key` only while it holds exactly the text
   * `taken` (the record this driver's takeLock wrote, so same token, holder and lease), in one
   * atomic step reported to watchers as an ordinary write. False, nothing written, when it differs:
   * the caller then reads and judges on the generic path. Optional.
   * @throws StorageError the driver's errors (`E_UNAVAILABLE`, …); nothing is written then
   */
  releaseLock?(key: string, taken: string, released: string): Promise<boolean>;
}

export interface CreateStorageOptions {
  /**
   * Driver mounted at the root.
   * @default memory()
   */
  driver?: Driver;
  /**
   * `'rich'`, `'json'` (unstorage's exact behaviour), or your own.
   * @default "rich"
   */
  serializer?: "rich" | "json" | Serializer;
  /**
   * Time to live in milliseconds of every write that names none.
   * @default none (no expiry)
   */
  ttl?: number;
  /**
   * Called with what a watch listener throws or rejects with; a listener
   * never makes a write fail.
   * @default a process warning
   */
  onWatchError?: WatchErrorHandler;
  /**
   * Where the TTL the core keeps (for drivers without native expiry) reads
   * the time: when a key expires and how much `ttl` is left. Drivers with
   * native TTL take their own `clock` option.
   *
   * @default systemClock (Date.now)
   * @throws StorageError `E_INVALID_OPTION` from createStorage when it has no `now` function
   */
  clock?: Clock;
}

/** A source of the current time in epoch milliseconds; tests pass a manual one instead of sleeping. */
export interface Clock {
  now(): number;
}

export interface MountInfo {
  base: string;
  driver: Driver;
}

/**
 * The handle a transaction callback receives. Writes land at commit, all or none.
 * Its methods throw what {@link Storage}'s do, and `E_UNSUPPORTED` for a key
 * outside the transaction's mount, `E_INVALID_OPTION` once the transaction has ended.
 */
export interface TransactionHandle {
  hasItem(key: string): Promise<boolean>;
  getItem<R = StorageValue>(key: string): Promise<R | null>;
  getItemRaw(key: string): Promise<Uint8Array | null>;
  setItem(key: string, value: unknown, opts?: SetOptions): Promise<void>;
  setItemRaw(key: string, value: Uint8Array, opts?: SetOptions): Promise<void>;
  removeItem(key: string, opts?: RemoveOptions): Promise<void>;
}

export interface UpdateOptions {
  /**
   * How many times to re-run `fn` after a conflicting write.
   * @default 10
   */
  retries?: number;
  ttl?: number;
}

export type GetItemsInput = (string | { key: string; options?: TransactionOptions })[];
export type SetItemsInput = { key: string; value: unknown; options?: SetOptions }[];

/**
 * The storage object: unstorage's Storage plus stowage's additions.
 *
 * Every method fails with a {@link StorageError} (a rejected promise, or a
 * throw from the sync forms), never with another error type. What any of
 * them can throw:
 * - `E_INVALID_KEY`: a key or base that is not a string, that the key rules
 *   refuse, past the driver's {@link KeyLimits}, ending in `$` (a meta
 *   sidecar's name), or holding `?` where it is written, removed or used as a base;
 * - `E_INVALID_OPTION`: options that are not an object, an unknown option
 *   where a method takes a fixed set (`update`, `getHistory`, `getMounts`),
 *   or an option of the wrong type or range (`ttl`, `ifMatch`, `ifNoneMatch`, `maxDepth`, …);
 * - what the driver raised, with the driver's name and the original as
 *   `cause`: its own code where it gave one (`E_UNAVAILABLE`, `E_IO`,
 *   `E_CORRUPT`, `E_TOO_LARGE`, `E_CONFLICT`, …), `E_DRIVER` for anything else.
 *
 * The methods below list the codes they add. The sync forms (`…Sync`) throw
 * what their async form rejects with, and `E_UNSUPPORTED` on a driver not
 * flagged `sync` (`E_DRIVER` when a driver flagged `sync` answers with a promise).
 */
export interface Storage {
  /** Whether `key` holds a value (an expired one does not). */
  hasItem(key: string, opts?: TransactionOptions): Promise<boolean>;
  /**
   * The value of `key`, or null when absent or expired.
   * @throws StorageError `E_UNSUPPORTED` with `version` on a driver not flagged `history`; `E_CORRUPT` for a malformed stored envelope
   */
  getItem<R = StorageValue>(key: string, opts?: GetOptions): Promise<R | null>;
  /**
   * The values of several keys, in one driver call per mount where the driver batches.
   * @throws StorageError `E_INVALID_OPTION` when `items` is not an array
   */
  getItems<R = StorageValue>(items: GetItemsInput, commonOptions?: TransactionOptions): Promise<{ key: string; value: R | null }[]>;
  /**
   * The bytes of `key`, or null when absent; with `version`, the bytes of that past version.
   * @throws StorageError `E_UNSUPPORTED` with `version` on a driver not flagged `history`
   */
  getItemRaw(key: string, opts?: GetOptions): Promise<Uint8Array | null>;
  /**
   * Stores `value` (serialized) under `key`; `value` undefined removes the key.
   * @throws StorageError `E_INVALID_VALUE` for a value the serializer cannot carry; `E_UNSUPPORTED` for `ifMatch`/`ifNoneMatch` on a driver not flagged `cas`; `E_CONFLICT` when the guard fails; `E_READONLY` when the driver takes no writes
   */
  setItem(key: string, value: unknown, opts?: SetOptions): Promise<void>;
  /**
   * Stores several values, in one driver call per mount where the driver batches.
   * @throws StorageError as {@link Storage.setItem}, and `E_INVALID_OPTION` when `items` is not an array
   */
  setItems(items: SetItemsInput, commonOptions?: SetOptions): Promise<void>;
  /**
   * Stores bytes (a string is stored as its UTF-8 bytes).
   * @throws StorageError as {@link Storage.setItem}; `E_INVALID_VALUE` for anything but bytes or a string
   */
  setItemRaw(key: string, value: Uint8Array | ArrayBuffer | ArrayBufferView | string, opts?: SetOptions): Promise<void>;
  /**
   * Removes `key` (and its meta with `removeMeta`).
   * @throws StorageError `E_INVALID_OPTION` for `ifNoneMatch`; `E_UNSUPPORTED` for `ifMatch` on a driver not flagged `cas`; `E_CONFLICT` when `ifMatch` fails; `E_READONLY` when the driver takes no removals
   */
  removeItem(key: string, opts?: RemoveOptions | boolean): Promise<void>;
  /**
   * Opens a value's bytes (as getItemRaw has them) for reading in chunks,
   * with their meta; null when absent. Drivers that stream (fs, fs-lite)
   * never hold the value whole; the others read it whole first.
   */
  getItemStream(key: string, opts?: TransactionOptions): Promise<ItemStream | null>;
  /**
   * Stores the bytes of `body` (a Node.js stream, a web ReadableStream, an
   * async generator: chunks of bytes or strings) as setItemRaw would. The
   * value is replaced once `body` ends, or not at all if it fails. Drivers
   * that stream (fs, fs-lite) never hold it whole; the others gather it first.
   *
   * @throws StorageError as {@link Storage.setItem}; `E_INVALID_VALUE` when `body` is not an async iterable
   */
  setItemStream(key: string, body: AsyncIterable<unknown>, opts?: SetOptions): Promise<void>;
  /**
   * The meta of `key`: the driver's (etag, mtime, size, …), its expiry (`ttl`, `expires`) and the user meta
   * setMeta stored; `nativeOnly` (or `true`) leaves the user meta out.
   */
  getMeta(key: string, opts?: (TransactionOptions & { nativeOnly?: boolean }) | boolean): Promise<StorageMeta>;
  /**
   * Stores user meta beside `key` (in its sidecar).
   * @throws StorageError `E_INVALID_VALUE` when `value` is not an object; `E_INVALID_OPTION` for `ifMatch`/`ifNoneMatch` (meta has no version); `E_READONLY`
   */
  setMeta(key: string, value: Record<string, unknown>, opts?: SetOptions): Promise<void>;
  /**
   * Removes the user meta of `key`.
   * @throws StorageError `E_INVALID_OPTION` for `ifMatch`/`ifNoneMatch`; `E_READONLY`
   */
  removeMeta(key: string, opts?: TransactionOptions): Promise<void>;
  /**
   * Every key under `base`, across mounts.
   * @throws StorageError `E_INVALID_OPTION` for a `maxDepth` that is not a non-negative integer
   */
  getKeys(base?: string, opts?: GetKeysOptions): Promise<string[]>;
  /**
   * The keys under `base` in batches, without holding them all.
   * @throws StorageError `E_INVALID_OPTION` for a bad `maxDepth` or `batchSize`
   */
  iterateKeys(base?: string, opts?: IterateKeysOptions): AsyncIterableIterator<string[]>;
  /**
   * Removes every key under `base` (all keys without one).
   * @throws StorageError `E_READONLY` when a driver takes no removals
   */
  clear(base?: string, opts?: TransactionOptions): Promise<void>;
  /** Stops every watch and disposes every mounted driver. */
  dispose(): Promise<void>;
  /**
   * Calls `callback(event, key, info)` for every change; with `base`, only
   * for the key equal to `base` and keys below it. `info` ({@link WatchInfo})
   * says who made the change and its etag/version where the driver knows
   * them. Resolves to a function that removes this listener. A listener that throws or rejects is reported to
   * `onWatchError`, never to the writer.
   *
   * @throws StorageError `E_INVALID_OPTION` when `callback` is not a function
   */
  watch(callback: WatchCallback): Promise<Unwatch>;
  watch(base: string, callback: WatchCallback): Promise<Unwatch>;
  /** Removes every listener. */
  unwatch(): Promise<void>;
  /**
   * Mounts `driver` at `base`: keys under it go there.
   * @throws StorageError `E_INVALID_OPTION` for a driver without hasItem, getItem and getKeys, or a base already mounted
   */
  mount(base: string, driver: Driver): Storage;
  /**
   * Unmounts the driver at `base` (nothing when none is mounted there) and disposes it unless `dispose` is false.
   * @throws StorageError `E_INVALID_KEY` for a base that is not a string or holds `?`
   */
  unmount(base: string, dispose?: boolean): Promise<void>;
  /** The mount `key` belongs to. */
  getMount(key?: string): MountInfo;
  /**
   * The mounts under `base`; with `parents`, the ones above it too.
   * @throws StorageError `E_INVALID_OPTION` for an unknown option
   */
  getMounts(base?: string, opts?: { parents?: boolean }): MountInfo[];

  /**
   * Read-modify-write on etags: runs `fn` on the current value and writes
   * what it returns (undefined removes), again after a conflicting write.
   * @throws StorageError `E_UNSUPPORTED` on a driver not flagged `cas`; `E_INVALID_OPTION` when `fn` is not a function or `retries` not a non-negative integer; `E_CONFLICT` once `retries` are spent; what `fn` throws, as it threw it
   */
  update<R = StorageValue>(key: string, fn: (current: R | null) => unknown, opts?: UpdateOptions): Promise<R | null>;
  /**
   * Runs `fn` with a handle whose writes land together at the end, or none do.
   * @throws StorageError `E_UNSUPPORTED` on a driver not flagged `transactions` or for a key outside the first key's mount; `E_INVALID_OPTION` when `fn` is not a function or the handle is used after the transaction ended; `E_CONFLICT` when a key it read changed before the commit; what `fn` throws, as it threw it
   */
  transaction<R>(fn: (tx: TransactionHandle) => Promise<R> | R, opts?: TransactionOptions): Promise<R>;
  /**
   * Past versions of `key`, newest first.
   * @throws StorageError `E_UNSUPPORTED` on a driver not flagged `history`; `E_INVALID_OPTION` for a `limit` that is not a positive integer
   */
  getHistory<R = StorageValue>(key: string, opts?: { limit?: number }): Promise<HistoryEntry<R>[]>;

  hasItemSync(key: string, opts?: TransactionOptions): boolean;
  getItemSync<R = StorageValue>(key: string, opts?: GetOptions): R | null;
  getItemsSync<R = StorageValue>(items: GetItemsInput, commonOptions?: TransactionOptions): { key: string; value: R | null }[];
  getItemRawSync(key: string, opts?: GetOptions): Uint8Array | null;
  setItemSync(key: string, value: unknown, opts?: SetOptions): void;
  setItemsSync(items: SetItemsInput, commonOptions?: SetOptions): void;
  setItemRawSync(key: string, value: Uint8Array | ArrayBuffer | ArrayBufferView | string, opts?: SetOptions): void;
  removeItemSync(key: string, opts?: RemoveOptions | boolean): void;
  getMetaSync(key: string, opts?: (TransactionOptions & { nativeOnly?: boolean }) | boolean): StorageMeta;
  getKeysSync(base?: string, opts?: GetKeysOptions): string[];
  clearSync(base?: string, opts?: TransactionOptions): void;

  keys: Storage["getKeys"];
  get: Storage["getItem"];
  set: Storage["setItem"];
  has: Storage["hasItem"];
  del: Storage["removeItem"];
  remove: Storage["removeItem"];
}
