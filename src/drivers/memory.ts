import { defineDriver } from "../core/defineDriver.js";
import { StorageError, conflictError } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import { resolveClock } from "../core/clock.js";
import { filterKeyByDepth } from "../core/keys.js";
import { describeExpiry } from "../core/ttl.js";
import type { Clock, CommitOperation, SetOptions, StorageMeta, TransactionOptions, WatchCallback, WatchEvent, WatchInfo } from "../core/types.js";

export interface MemoryOptions {
  /**
   * How often expired keys nobody reads are swept out, in ms.
   * @default 30_000
   */
  sweepInterval?: number;
  /**
   * Where expiry reads the time: when a key written with `ttl` expires, and
   * the `ttl` left that getMeta reports. Tests pass a manual clock.
   *
   * @default systemClock (Date.now)
   * @throws StorageError `E_INVALID_OPTION` when it has no `now` function
   */
  clock?: Clock;
}

/** What the driver stores per key: text from setItem or bytes from setItemRaw. */
export type MemoryValue = string | Uint8Array;

// No write time is kept: reading the clock would cost a third of a write (see docs/memory.md).
interface EntryMeta {
  version: number;
  expires: number | undefined;
}

const DRIVER_NAME = "memory";

/**
 * Keys in a Map. Every method answers synchronously (flag `sync`); expiry,
 * etags, atomic commits and change events are native. Raw values are copied
 * in and out, so no caller holds a reference into the store.
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, a `sweepInterval` that is not a positive number, a `clock` without `now()`
 */
export default defineDriver((input: MemoryOptions | void) => {
  checkOptions(DRIVER_NAME, input, ["sweepInterval", "clock"]);
  const options: MemoryOptions = input ?? {};
  const sweepInterval = options.sweepInterval ?? 30_000;
  if (!Number.isFinite(sweepInterval) || sweepInterval <= 0) {
    throw new StorageError("E_INVALID_OPTION", `sweepInterval must be a positive number of ms, got ${String(options.sweepInterval)}`, { driver: DRIVER_NAME });
  }
  const clock = resolveClock(options.clock);
  const data = new Map<string, MemoryValue>();
  const meta = new Map<string, EntryMeta>();
  const listeners = new Set<WatchCallback>();
  let expiring = 0;
  let version = 0;
  let sweeper: NodeJS.Timeout | undefined;

  // A listener never fails the write that it is told of: what it throws becomes a warning.
  // Only this instance writes its maps, so every change is local; an update carries the version it made.
  const emit = (event: WatchEvent, key: string) => {
    if (listeners.size === 0) return;
    const info: WatchInfo = event === "update" ? { origin: "local", etag: String(meta.get(key)!.version) } : { origin: "local" };
    for (const listener of listeners) {
      try {
        listener(event, key, info);
      } catch (error) {
        process.emitWarning(`stowage: a memory watch listener failed on ${event} ${key}: ${String(error)}`);
      }
    }
  };

  const drop = (key: string) => {
    if (meta.get(key)?.expires !== undefined) expiring--;
    data.delete(key);
    meta.delete(key);
  };

  const alive = (key: string, now = clock.now()): boolean => {
    if (expiring === 0) return data.has(key);
    const expires = meta.get(key)?.expires;
    if (expires !== undefined && expires <= now) {
      drop(key);
      emit("remove", key);
      return false;
    }
    return data.has(key);
  };

  const sweep = () => {
    const now = clock.now();
    for (const [key, entry] of meta) {
      if (entry.expires !== undefined && entry.expires <= now) alive(key, now);
    }
    if (expiring === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  };

  const etagOf = (key: string): string | null => (alive(key) ? String(meta.get(key)!.version) : null);

  const checkGuard = (key: string, opts: SetOptions | undefined) => {
    if (opts?.ifNoneMatch === "*" && alive(key)) throw conflictError(DRIVER_NAME, key, "Key already exists");
    if (opts?.ifMatch !== undefined && etagOf(key) !== opts.ifMatch) throw conflictError(DRIVER_NAME, key, "Stored version differs");
  };

  const store = (key: string, value: MemoryValue, opts: SetOptions | undefined) => {
    // An overwrite updates the key's meta in place: writes are the hot path.
    let entry = meta.get(key);
    if (entry === undefined) {
      entry = { version: ++version, expires: undefined };
      meta.set(key, entry);
    } else {
      if (entry.expires !== undefined) expiring--;
      entry.version = ++version;
      entry.expires = undefined;
    }
    if (opts?.ttl !== undefined) {
      entry.expires = clock.now() + opts.ttl;
      expiring++;
      sweeper ??= setInterval(sweep, sweepInterval).unref();
    }
    data.set(key, value);
    emit("update", key);
  };

  const remove = (key: string) => {
    if (!data.has(key)) return;
    drop(key);
    emit("remove", key);
  };

  // One Map lookup for a live key; the expiry check only while some key can expire.
  const read = (key: string): MemoryValue | null => {
    const value = data.get(key);
    if (value === undefined || (expiring > 0 && !alive(key))) return null;
    return typeof value === "string" ? value : value.slice();
  };

  const keysUnder = (base: string, maxDepth: number | undefined): string[] => {
    const keys: string[] = [];
    const now = clock.now();
    for (const key of data.keys()) {
      if (base && !key.startsWith(base)) continue;
      if (maxDepth !== undefined && !filterKeyByDepth(key, maxDepth)) continue;
      if (expiring > 0 && !alive(key, now)) continue;
      keys.push(key);
    }
    return keys;
  };

  // Every guard is checked before anything is written, so a commit lands whole or not at all.
  const applyCommit = (operations: CommitOperation[]) => {
    for (const op of operations) {
      if (op.type === "check") {
        if (etagOf(op.key) !== op.etag) throw conflictError(DRIVER_NAME, op.key, "Stored version differs");
      } else {
        checkGuard(op.key, op.options);
      }
    }
    for (const op of operations) {
      if (op.type === "set") store(op.key, op.value, op.options);
      else if (op.type === "setRaw") store(op.key, op.value.slice(), op.options);
      else if (op.type === "remove") remove(op.key);
    }
  };

  return {
    name: DRIVER_NAME,
    options,
    flags: { maxDepth: true, ttl: true, sync: true, cas: true, etag: "version", transactions: true, watch: true, clearBase: true, nestedKeys: true },
    getInstance: () => data,
    hasItem: (key: string) => alive(key),
    getItem: read,
    getItemRaw: read,
    getItems: (items: { key: string }[]) => items.map(({ key }) => ({ key, value: read(key) })),
    setItem(key: string, value: string, opts: SetOptions) {
      checkGuard(key, opts);
      store(key, value, opts);
    },
    setItemRaw(key: string, value: Uint8Array, opts: SetOptions) {
      checkGuard(key, opts);
      store(key, value.slice(), opts);
    },
    setItems(items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) {
      applyCommit(items.map(({ key, value, options }) => ({ type: "set", key, value, options: options ?? common })));
    },
    removeItem(key: string, opts: TransactionOptions & { ifMatch?: string }) {
      checkGuard(key, opts);
      remove(key);
    },
    getMeta(key: string): StorageMeta | null {
      if (!alive(key)) return null;
      const entry = meta.get(key)!;
      const value = data.get(key)!;
      const result: StorageMeta = {
        etag: String(entry.version),
        size: typeof value === "string" ? Buffer.byteLength(value) : value.byteLength,
      };
      return describeExpiry(result, entry.expires, clock.now());
    },
    getKeys: (base: string, opts: { maxDepth?: number }) => keysUnder(base ?? "", opts?.maxDepth),
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      const size = opts.batchSize ?? 1000;
      let batch: string[] = [];
      // Map iteration tolerates writes between batches, so nothing is copied up front.
      for (const key of data.keys()) {
        if (base && !key.startsWith(base)) continue;
        if (opts.maxDepth !== undefined && !filterKeyByDepth(key, opts.maxDepth)) continue;
        if (!alive(key)) continue;
        batch.push(key);
        if (batch.length >= size) {
          yield batch;
          batch = [];
        }
      }
      if (batch.length > 0) yield batch;
    },
    clear(base: string) {
      for (const key of keysUnder(base ?? "", undefined)) remove(key);
    },
    commit: (operations: CommitOperation[]) => applyCommit(operations),
    watch(callback: WatchCallback) {
      listeners.add(callback);
      return () => {
        listeners.delete(callback);
      };
    },
    dispose() {
      if (sweeper) clearInterval(sweeper);
      sweeper = undefined;
      listeners.clear();
      data.clear();
      meta.clear();
      expiring = 0;
    },
  };
});
