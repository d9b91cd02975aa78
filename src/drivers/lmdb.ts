import { open, type Database, type RootDatabase } from "lmdb";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError } from "../core/errors.js";
import { filterKeyByDepth, prefixEnd } from "../core/keys.js";
import type { CommitOperation, RemoveOptions, SetOptions, StorageMeta } from "../core/types.js";

export interface LmdbOptions {
  /** Database file (created with its `-lock` file beside it) or, with `noSubdir: false`, a directory. Required. */
  path: string;
  /** Name of the LMDB database inside the environment that holds the keys (default `stowage`). */
  name?: string;
  /**
   * Resolve async writes only once they are flushed to disk (default false:
   * once committed, which survives a crash of the process; see docs/lmdb.md).
   */
  flush?: boolean;
  /** Skip flushing entirely (LMDB `noSync`): fastest, but a machine crash can lose or corrupt recent writes. */
  noSync?: boolean;
  /** Maximum size of the memory map in bytes (LMDB grows it by itself when unset). */
  mapSize?: number;
  /** How often expired keys are deleted, in ms (default 60,000). */
  purgeInterval?: number;
  /** Open read-only. */
  readOnly?: boolean;
}

/** The lmdb-js database holding the keys, which `getInstance()` returns. */
export type LmdbDatabase = Database<StoredValue, string>;

/** Text from setItem, bytes from setItemRaw, or either with its expiry (ms since the epoch). */
type Payload = string | Uint8Array;
type StoredValue = Payload | [Payload, number];

/** An expiry index entry: [expires, key]. */
type ExpiryKey = [number, string];

const DRIVER_NAME = "lmdb";
// LMDB's key limit is 1978 bytes; lmdb-js's ordered-binary encoding adds a type byte.
const MAX_KEY_BYTES = 1977;

/** A new etag per write: random, so a key deleted and written again never reuses one. */
function newVersion(): number {
  return Math.floor(Math.random() * 2 ** 52) + 1;
}

function checkKeySize(key: string): void {
  // Only long keys pay for the byte count.
  if (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new StorageError("E_TOO_LARGE", `Key longer than LMDB's ${MAX_KEY_BYTES} bytes`, { driver: DRIVER_NAME, key });
  }
}

const payloadOf = (stored: StoredValue): Payload => (Array.isArray(stored) ? stored[0] : stored);
const expiresOf = (stored: StoredValue): number | undefined => (Array.isArray(stored) ? stored[1] : undefined);
const isAlive = (stored: StoredValue, now: number): boolean => !Array.isArray(stored) || stored[1] > now;

/**
 * Keys in an LMDB environment through lmdb-js: reads are synchronous and
 * the full sync API works; the async API's writes go through lmdb-js's
 * batching, so writes awaited together commit in one background
 * transaction. Every entry carries an LMDB version, which is the etag; CAS
 * and transactions check versions inside the committing transaction, so they
 * hold across processes sharing the file.
 */
export default defineDriver<LmdbOptions, LmdbDatabase>((options: LmdbOptions) => {
  if (!options?.path) throw new StorageError("E_INVALID_OPTION", "The lmdb driver needs a path", { driver: DRIVER_NAME });
  const name = options.name ?? "stowage";
  let root: RootDatabase;
  let db: LmdbDatabase;
  let expiry: Database<true, ExpiryKey>;
  try {
    root = open({
      path: options.path,
      noSubdir: true,
      noSync: options.noSync === true,
      mapSize: options.mapSize,
      readOnly: options.readOnly === true,
    });
    db = root.openDB<StoredValue, string>({ name, useVersions: true });
    // Expiring keys by time, so a purge reads only what is due.
    expiry = root.openDB<true, ExpiryKey>({ name: `${name}:expiry` });
  } catch (error) {
    throw new StorageError("E_IO", `Cannot open ${options.path}: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
  }

  const read = (key: string): { value: StoredValue; version: number } | null => {
    const entry = db.getEntry(key);
    return entry === undefined || !isAlive(entry.value, Date.now()) ? null : { value: entry.value, version: entry.version ?? 0 };
  };
  const valueOf = (key: string): Payload | null => {
    const stored = db.get(key);
    return stored === undefined || !isAlive(stored, Date.now()) ? null : payloadOf(stored);
  };

  /** What to store for a write, and the expiry index entry it needs. */
  const record = (value: Payload, opts: SetOptions | undefined): { stored: StoredValue; due?: ExpiryKey } => {
    if (opts?.ttl === undefined) return { stored: value };
    const expires = Date.now() + opts.ttl;
    return { stored: [value, expires], due: [expires, ""] };
  };

  /** Inside a write transaction: the conflict a write's guards find, or null when they hold. */
  const guardFailure = (key: string, opts: SetOptions | RemoveOptions | undefined): StorageError | null => {
    const ifMatch = opts?.ifMatch;
    const ifNoneMatch = (opts as SetOptions | undefined)?.ifNoneMatch;
    if (ifMatch === undefined && ifNoneMatch === undefined) return null;
    const current = read(key);
    if (ifNoneMatch === "*" && current !== null) return conflictError(DRIVER_NAME, key, "Key already exists");
    if (ifMatch !== undefined && (current === null || String(current.version) !== ifMatch)) return conflictError(DRIVER_NAME, key, "Stored version differs");
    return null;
  };

  /** The first failed guard or etag check of a batch, read inside its write transaction. */
  const firstFailure = (operations: CommitOperation[]): StorageError | null => {
    for (const op of operations) {
      if (op.type === "check") {
        const current = read(op.key);
        if ((current === null ? null : String(current.version)) !== op.etag) return conflictError(DRIVER_NAME, op.key, "Stored version differs");
      } else {
        const failure = guardFailure(op.key, op.options);
        if (failure) return failure;
      }
    }
    return null;
  };

  /** Inside a write transaction: stores a value with a new version, indexing its expiry. */
  const putInTxn = (key: string, value: Payload, opts: SetOptions | undefined): void => {
    const { stored, due } = record(value, opts);
    db.putSync(key, stored, newVersion());
    if (due) expiry.putSync([due[0], key], true);
  };

  /**
   * Applies a batch inside a write transaction when every guard holds, and
   * returns the failure instead of throwing: a throw would abort the other
   * writes lmdb-js batched into the same transaction.
   */
  const applyInTxn = (operations: CommitOperation[]): StorageError | null => {
    const failure = firstFailure(operations);
    if (failure) return failure;
    for (const op of operations) {
      if (op.type === "remove") db.removeSync(op.key);
      else if (op.type !== "check") putInTxn(op.key, op.value, op.options);
    }
    return null;
  };

  /** Applies a batch in one async (batched) transaction; keys are checked first, as nothing may throw inside it. */
  const commitAsync = async (operations: CommitOperation[]): Promise<void> => {
    for (const op of operations) if (op.type === "set" || op.type === "setRaw") checkKeySize(op.key);
    const failure = await settle(root.transaction(() => applyInTxn(operations)));
    if (failure) throw failure;
  };

  const commitSync = (operations: CommitOperation[]): void => {
    for (const op of operations) if (op.type === "set" || op.type === "setRaw") checkKeySize(op.key);
    const failure = root.transactionSync(() => applyInTxn(operations));
    if (failure) throw failure;
  };

  const setOperation = (key: string, value: Payload, options: SetOptions | undefined): CommitOperation =>
    typeof value === "string" ? { type: "set", key, value, options: options ?? {} } : { type: "setRaw", key, value, options: options ?? {} };

  const hasGuards = (opts: SetOptions | RemoveOptions | undefined): boolean =>
    opts?.ifMatch !== undefined || (opts as SetOptions | undefined)?.ifNoneMatch !== undefined;

  /** A guarded or expiring write runs as one transaction; a plain one is a single put. */
  const writeSync = (key: string, value: Payload, opts: SetOptions | undefined): void => {
    if (hasGuards(opts) || opts?.ttl !== undefined) return commitSync([setOperation(key, value, opts)]);
    checkKeySize(key);
    db.putSync(key, value, newVersion());
  };

  /** The async form: lmdb-js commits it with the other writes of the same event turn. */
  const writeAsync = async (key: string, value: Payload, opts: SetOptions | undefined): Promise<void> => {
    if (hasGuards(opts) || opts?.ttl !== undefined) return commitAsync([setOperation(key, value, opts)]);
    checkKeySize(key);
    await settle(db.put(key, value, newVersion()));
  };

  const removeSync = (key: string, opts: RemoveOptions | undefined): void => {
    if (hasGuards(opts)) return commitSync([{ type: "remove", key, options: opts ?? {} }]);
    db.removeSync(key);
  };

  const removeAsync = async (key: string, opts: RemoveOptions | undefined): Promise<void> => {
    if (hasGuards(opts)) return commitAsync([{ type: "remove", key, options: opts ?? {} }]);
    await settle(db.remove(key));
  };

  /** Waits for a write (and its flush with `flush: true`); lmdb-js failures become StorageErrors. */
  async function settle<T>(written: Promise<T>): Promise<T> {
    try {
      const result = await written;
      if (options.flush) await root.flushed;
      return result;
    } catch (error) {
      throw new StorageError("E_IO", `LMDB write failed: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
    }
  }

  const range = (base: string) => (base ? { start: base, end: prefixEnd(base) } : {});
  /** Expiry index entries that are due: [expires, key] with expires <= now. */
  function* dueEntries(now: number): Generator<ExpiryKey> {
    for (const entry of expiry.getKeys({ end: [Math.floor(now) + 1] })) {
      if (entry[0] > now) return;
      yield entry;
    }
  }

  /** Keys whose expiry has passed but which the purge has not removed yet. */
  const expiredKeys = (now: number): Set<string> => {
    const due = new Set<string>();
    for (const [, key] of dueEntries(now)) {
      const stored = db.get(key);
      if (stored !== undefined && !isAlive(stored, now)) due.add(key);
    }
    return due;
  };

  const alive = (keys: string[]): string[] => {
    const expired = expiredKeys(Date.now());
    return expired.size === 0 ? keys : keys.filter((key) => !expired.has(key));
  };

  /** Deletes keys whose expiry passed; an index entry whose key was rewritten since only goes itself. */
  const purge = (): void => {
    const now = Date.now();
    const due = [...dueEntries(now)];
    if (due.length === 0) return;
    root.transactionSync(() => {
      for (const entry of due) {
        const stored = db.get(entry[1]);
        if (stored !== undefined && expiresOf(stored) === entry[0]) db.removeSync(entry[1]);
        expiry.removeSync(entry);
      }
    });
  };
  let isOpen = true;
  const purger = options.readOnly
    ? undefined
    : setInterval(() => {
        try {
          if (isOpen) purge();
        } catch (error) {
          // Expired keys stay hidden until a later purge succeeds; say why this one did not.
          process.emitWarning(`stowage lmdb: purging expired keys failed: ${String(error)}`);
        }
      }, options.purgeInterval ?? 60_000).unref();

  const clear = (base: string): void => {
    if (!base) {
      root.transactionSync(() => {
        db.clearSync();
        expiry.clearSync();
      });
      return;
    }
    const keys = Array.from(db.getKeys(range(base)));
    root.transactionSync(() => {
      for (const key of keys) db.removeSync(key);
    });
    purge();
  };

  return {
    name: DRIVER_NAME,
    options,
    flags: { maxDepth: true, ttl: true, sync: true, cas: true, transactions: true, clearBase: true, nestedKeys: true },
    getInstance: () => db,
    hasItem: (key: string) => valueOf(key) !== null,
    getItem: valueOf,
    getItemRaw: valueOf,
    getItems: (items: { key: string }[]) => items.map(({ key }) => ({ key, value: valueOf(key) })),
    setItem: (key: string, value: string, opts: SetOptions) => writeSync(key, value, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => writeSync(key, value, opts),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
      commitSync(items.map((item) => setOperation(item.key, item.value, item.options ?? common))),
    removeItem: (key: string, opts: RemoveOptions) => removeSync(key, opts),
    getMeta: (key: string): StorageMeta | null => {
      const found = read(key);
      if (found === null) return null;
      const payload = payloadOf(found.value);
      const meta: StorageMeta = { etag: String(found.version), size: typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength };
      const expires = expiresOf(found.value);
      if (expires !== undefined) {
        meta.expires = new Date(expires);
        meta.ttl = Math.max(0, expires - Date.now());
      }
      return meta;
    },
    getKeys: (base: string, opts: { maxDepth?: number }) => {
      const keys = alive(Array.from(db.getKeys(range(base ?? ""))));
      return opts?.maxDepth === undefined ? keys : keys.filter((key) => filterKeyByDepth(key, opts.maxDepth));
    },
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      const limit = opts.batchSize ?? 1000;
      const bounds = range(base ?? "");
      let after: string | undefined;
      for (;;) {
        // Each page is a fresh range read after the last key: no read transaction stays open between pages.
        const page = Array.from(db.getKeys(after === undefined ? { ...bounds, limit } : { ...bounds, start: after, exclusiveStart: true, limit }));
        if (page.length === 0) return;
        after = page[page.length - 1];
        const keys = alive(page);
        yield opts.maxDepth === undefined ? keys : keys.filter((key) => filterKeyByDepth(key, opts.maxDepth));
        if (page.length < limit) return;
      }
    },
    clear: (base: string) => clear(base ?? ""),
    commit: commitSync,
    asyncWrites: {
      setItem: (key: string, value: string, opts: SetOptions) => writeAsync(key, value, opts),
      setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => writeAsync(key, value, opts),
      setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
        commitAsync(items.map((item) => setOperation(item.key, item.value, item.options ?? common))),
      removeItem: (key: string, opts: RemoveOptions) => removeAsync(key, opts),
      commit: commitAsync,
    },
    dispose: async () => {
      if (purger) clearInterval(purger);
      if (!isOpen) return;
      isOpen = false;
      await root.close();
    },
  };
});
