import { ClassicLevel } from "classic-level";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError } from "../core/errors.js";
import { guardOf, hasGuard } from "../core/guards.js";
import { checkOptions } from "../core/options.js";
import { describeExpiry } from "../core/ttl.js";
import { filterKeyByDepth } from "../core/keys.js";
import { prefixEnd } from "./support/keyRange.js";
import { serializeRaw } from "../core/serializer.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type RemoveOptions, type SetOptions, type StorageMeta } from "../core/types.js";
import { optionNames } from "./support/optionNames.js";

export interface LeveldbOptions {
  /** Directory of the database (created if missing). Required. */
  path: string;
  /**
   * How often expired keys are deleted, in ms.
   * @default 60_000
   */
  purgeInterval?: number;
}

/** The classic-level database `getInstance()` returns. */
export type LeveldbDatabase = ClassicLevel<string, string>;

const DRIVER_NAME = "leveldb";
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<LeveldbOptions>({ path: true, purgeInterval: true });
// Each key's record ("version" or "version,expires") lives under NUL + key: no stowage key can
// hold NUL, so records sort before every key.
const VERSION_PREFIX = "\u0000";
const FIRST_KEY = "\u0001";
// The expiry index, NUL NUL + expiry (fixed width, so text order is time order) + NUL + key:
// a record's key never starts with NUL NUL, since no stowage key holds NUL.
const EXPIRY_PREFIX = "\u0000\u0000";
const expiryEntry = (expires: number, key: string) => `${EXPIRY_PREFIX}${String(expires).padStart(16, "0")}\u0000${key}`;

type Operation = { type: "put"; key: string; value: string } | { type: "del"; key: string };

/** A new etag per write; random, so a key written again never reuses one. */
function newVersion(): string {
  return Math.floor(Math.random() * 2 ** 53).toString(36);
}

/**
 * Keys in a LevelDB database through classic-level: async only, every write
 * a batch that stores the value and its version together. LevelDB lets one
 * process open a database, so writes queue through one in-process lock,
 * which makes etag checks and the writes they guard atomic.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing `path` or an unknown option
 */
export default defineDriver<LeveldbOptions, LeveldbDatabase>((options: LeveldbOptions) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  if (!options?.path) throw new StorageError("E_INVALID_OPTION", "The leveldb driver needs a path", { driver: DRIVER_NAME });
  const db = new ClassicLevel<string, string>(options.path, { valueEncoding: "utf8" });
  let queue: Promise<unknown> = Promise.resolve();
  let pending = 0;
  const settled = (): void => void pending--;

  /**
   * Runs writes one at a time; a failed one fails its caller and does not
   * stop the queue. With none pending a write starts at once, a turn sooner.
   */
  function exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = pending === 0 ? work() : queue.then(work);
    pending++;
    queue = run.then(settled, settled);
    return run;
  }

  /** A key's etag and expiry, read from its record; expired keys have none. */
  const parseRecord = (record: string | undefined, now: number): { version: string; expires?: number } | null => {
    if (record === undefined) return null;
    const comma = record.indexOf(",");
    if (comma === -1) return { version: record };
    const expires = Number(record.slice(comma + 1));
    return expires <= now ? null : { version: record.slice(0, comma), expires };
  };

  /** The value of a key and its record, in one read; null when absent or expired. */
  const read = async (key: string): Promise<{ value: string; version: string; expires?: number } | null> => {
    const [value, record] = await db.getMany([key, VERSION_PREFIX + key]);
    const parsed = parseRecord(record, Date.now());
    return value === undefined || parsed === null ? null : { value, ...parsed };
  };

  const versionOf = async (key: string): Promise<string | null> => (await read(key))?.version ?? null;

  const put = (key: string, value: string, opts: SetOptions | undefined): Operation[] => {
    if (opts?.ttl === undefined) {
      return [
        { type: "put", key, value },
        { type: "put", key: VERSION_PREFIX + key, value: newVersion() },
      ];
    }
    const expires = Math.ceil(Date.now() + opts.ttl);
    return [
      { type: "put", key, value },
      { type: "put", key: VERSION_PREFIX + key, value: `${newVersion()},${expires}` },
      { type: "put", key: expiryEntry(expires, key), value: "" },
    ];
  };

  /** Deletes keys whose expiry passed; an index entry whose key was rewritten since only goes itself. */
  const purge = () =>
    exclusive(async () => {
      const due = await db.keys({ gt: EXPIRY_PREFIX, lt: expiryEntry(Date.now(), "\u0001") }).all();
      if (due.length === 0) return;
      const entries = due.map((entry) => ({
        entry,
        expires: Number(entry.slice(EXPIRY_PREFIX.length, EXPIRY_PREFIX.length + 16)),
        key: entry.slice(EXPIRY_PREFIX.length + 17),
      }));
      const records = await db.getMany(entries.map(({ key }) => VERSION_PREFIX + key));
      const batch: Operation[] = [];
      entries.forEach(({ entry, expires, key }, index) => {
        batch.push({ type: "del", key: entry });
        if (parseRecord(records[index], -Infinity)?.expires === expires) batch.push(...del(key));
      });
      await db.batch(batch);
    });
  let purging: Promise<void> = Promise.resolve();
  const purger = setInterval(() => {
    // Expired keys stay hidden until a later purge succeeds; say why this one did not.
    purging = purge().catch((error: unknown) => process.emitWarning(`stowage leveldb: purging expired keys failed: ${String(error)}`));
  }, options.purgeInterval ?? 60_000).unref();

  /** Keys of a listing that have not expired: their records are read in one call. */
  const unexpired = async (keys: string[]): Promise<string[]> => {
    const records = await db.getMany(keys.map((key) => VERSION_PREFIX + key));
    const now = Date.now();
    return keys.filter((_, index) => records[index] === undefined || parseRecord(records[index], now) !== null);
  };
  const del = (key: string): Operation[] => [
    { type: "del", key },
    { type: "del", key: VERSION_PREFIX + key },
  ];

  /** Throws E_CONFLICT unless the guards of a write hold; runs inside the lock. */
  async function checkGuards(key: string, opts: SetOptions | RemoveOptions | undefined): Promise<void> {
    const guard = guardOf(opts, DRIVER_NAME, key);
    if (guard.kind === "none") return;
    const version = await versionOf(key);
    if (guard.kind === "absent" && version !== null) throw conflictError(DRIVER_NAME, key, "Key already exists");
    if (guard.kind === "match" && version !== guard.etag) throw conflictError(DRIVER_NAME, key, "Stored version differs");
  }

  /** Writes one key's batch once its guards hold; an unguarded write reads nothing first. */
  function guardedWrite(key: string, opts: SetOptions | RemoveOptions | undefined, batch: Operation[]): Promise<void> {
    return hasGuard(opts) ? checkGuards(key, opts).then(() => db.batch(batch)) : db.batch(batch);
  }

  const range = (base: string) => (base ? { gte: base, lt: prefixEnd(base) } : { gte: FIRST_KEY });

  return {
    name: DRIVER_NAME,
    // LevelDB keys have no limit of their own (measured: 70,000 bytes work); the default bounds the work per key.
    keyLimits: DEFAULT_KEY_LIMITS,
    options,
    flags: { maxDepth: true, ttl: true, cas: true, etag: "version", transactions: true, clearBase: true, nestedKeys: true },
    getInstance: () => db,
    hasItem: async (key: string) => (await read(key)) !== null,
    getItem: async (key: string) => (await read(key))?.value ?? null,
    getItems: async (items: { key: string }[]) => {
      const keys = items.map((item) => item.key);
      const found = await db.getMany([...keys, ...keys.map((key) => VERSION_PREFIX + key)]);
      const now = Date.now();
      return keys.map((key, index) => {
        const value = found[index];
        const alive = value !== undefined && parseRecord(found[keys.length + index], now) !== null;
        return { key, value: alive ? value : null };
      });
    },
    setItem: (key: string, value: string, opts: SetOptions) => exclusive(() => guardedWrite(key, opts, put(key, value, opts))),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
      exclusive(async () => {
        for (const item of items) await checkGuards(item.key, item.options ?? common);
        await db.batch(items.flatMap((item) => put(item.key, item.value, item.options ?? common)));
      }),
    removeItem: (key: string, opts: RemoveOptions) => exclusive(() => guardedWrite(key, opts, del(key))),
    getMeta: async (key: string): Promise<StorageMeta | null> => {
      const found = await read(key);
      if (found === null) return null;
      const meta: StorageMeta = { etag: found.version, size: Buffer.byteLength(found.value) };
      return describeExpiry(meta, found.expires);
    },
    getKeys: async (base: string, opts: { maxDepth?: number }) => {
      const all = await db.keys(range(base ?? "")).all();
      const keys = opts?.maxDepth === undefined ? all : all.filter((key) => filterKeyByDepth(key, opts.maxDepth));
      return unexpired(keys);
    },
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      const iterator = db.keys(range(base ?? ""));
      try {
        for (;;) {
          const keys = await iterator.nextv(opts.batchSize ?? 1000);
          if (keys.length === 0) return;
          yield unexpired(opts.maxDepth === undefined ? keys : keys.filter((key) => filterKeyByDepth(key, opts.maxDepth)));
        }
      } finally {
        await iterator.close();
      }
    },
    clear: (base: string) =>
      exclusive(async () => {
        await db.clear(range(base ?? ""));
        await db.clear(base ? { gte: VERSION_PREFIX + base, lt: VERSION_PREFIX + prefixEnd(base) } : { gte: VERSION_PREFIX, lt: FIRST_KEY });
      }),
    commit: (operations: CommitOperation[]) =>
      exclusive(async () => {
        const batch: Operation[] = [];
        for (const op of operations) {
          if (op.type === "check") {
            if ((await versionOf(op.key)) !== op.etag) throw conflictError(DRIVER_NAME, op.key, "Stored version differs");
            continue;
          }
          await checkGuards(op.key, op.options);
          if (op.type === "remove") batch.push(...del(op.key));
          else batch.push(...put(op.key, op.type === "set" ? op.value : serializeRaw(op.value), op.options));
        }
        await db.batch(batch);
      }),
    dispose: async () => {
      clearInterval(purger);
      await purging;
      await queue;
      await db.close();
    },
  };
});
