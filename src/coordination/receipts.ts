import { isDeepStrictEqual } from "node:util";
import { gunzipSync, gzipSync } from "node:zlib";
import { resolveClock } from "../core/clock.js";
import { isStorageError, StorageError, type StorageErrorCode } from "../core/errors.js";
import { normalizeKey } from "../core/keys.js";
import { checkOptions } from "../core/options.js";
import type { Clock, Driver, Storage, TransactionHandle } from "../core/types.js";

/**
 * Execution receipts (the GitVan guide's receipt store, issue #17): what ran,
 * when, for how long, with which exit code and output. Each receipt is one
 * key; a time index, written in the same transaction as the receipt, lets
 * `recent` and time-bounded `find` read only the receipts they return.
 * See docs/coordination.md, "Receipts".
 */

/** One command's execution, as the GitVan guide records it. */
export interface Receipt {
  /** Unique per store; usable as a key segment: letters, digits and `._~+=@-`, at most 200 characters, not starting with `.` or `-`. */
  id: string;
  command: string;
  /** When the command started, epoch milliseconds (UTC). */
  timestamp: number;
  /** How long it ran, in milliseconds. */
  duration: number;
  exitCode: number;
  output: string;
  error?: string;
  /** Any JSON object. */
  metadata: Record<string, unknown>;
}

export interface ReceiptsOptions {
  /**
   * The key prefix receipts and their index live under.
   * @default "receipts"
   */
  prefix?: string;
  /**
   * Store a receipt gzip-compressed when that is smaller. Reads take either form whatever this is.
   * @default true
   */
  compression?: boolean;
  /**
   * Where `cleanup` reads the time (`{ now() }`, epoch ms).
   * @default the system clock
   */
  clock?: Clock;
}

export interface StoreReceiptOptions {
  /**
   * git-notes only: a commit (full id, `HEAD`, branch, tag or ref name) to annotate with the
   * receipt's JSON, so that `git notes --ref=<ref> show <commit>` prints it.
   */
  commit?: string;
}

/** What `find` matches: each given field by equality; `metadata` by deep equality of each key given. */
export type ReceiptFilter = Partial<Receipt>;

export interface FindOptions {
  /** Only receipts with `timestamp >= since` (epoch ms). */
  since?: number;
  /** Only receipts with `timestamp <= until` (epoch ms). */
  until?: number;
  /**
   * At most this many receipts (the newest).
   * @default no limit
   */
  limit?: number;
}

export interface Receipts {
  /**
   * Stores a receipt and its index entry in one transaction, then (with `commit`) the commit's note.
   * Storing a receipt again with the same content is not a conflict: it resolves (writing the note again),
   * so a store whose note failed after the receipt landed can simply be retried.
   * @throws StorageError `E_INVALID_VALUE` for a malformed receipt; `E_TOO_LARGE` when its JSON is over {@link MAX_RECEIPT_BYTES}; `E_INVALID_OPTION` for unknown options or `commit` off git-notes is `E_UNSUPPORTED`; `E_CONFLICT` when the id is already stored with other content; `E_NOT_FOUND` when `commit` names nothing; `E_UNAVAILABLE` when the note could not be written (the receipt is stored: retry)
   */
  store(receipt: Receipt, options?: StoreReceiptOptions): Promise<void>;
  /**
   * Stores many receipts, each with its index entry, in one transaction: all or none (seeding, imports).
   * @throws StorageError `E_INVALID_VALUE` for a malformed receipt or an id given twice; `E_TOO_LARGE` for a receipt over {@link MAX_RECEIPT_BYTES}; `E_CONFLICT` when an id is already stored (whatever its content)
   */
  storeMany(receipts: readonly Receipt[]): Promise<void>;
  /**
   * The receipt `id`, or null.
   * @throws StorageError `E_INVALID_VALUE` for an id that cannot be a receipt id; `E_CORRUPT` for a stored value that is not a receipt of that id; `E_TOO_LARGE` for one over {@link MAX_RECEIPT_BYTES} (inflated no further)
   */
  get(id: string): Promise<Receipt | null>;
  /**
   * Receipts matching `filter`, newest first. Only index buckets within `since`/`until` are listed;
   * `command` and `exitCode` are matched on the index before any receipt is read.
   * An index entry whose receipt is missing (a foreign writer, a sync that decided entry and receipt differently)
   * is skipped, not an error: {@link Receipts.check} counts such entries and `cleanup` removes them. So is a corrupt
   * one (its receipt not a receipt of its id, over {@link MAX_RECEIPT_BYTES}, or with another timestamp than the
   * entry's key): one bad receipt does not fail every query; `check` lists it in `corrupt`.
   * @throws StorageError `E_INVALID_VALUE` for a filter field a receipt does not have; `E_INVALID_OPTION` for bad options; `E_CORRUPT` for a key under the index that is not an entry
   */
  find(filter?: ReceiptFilter, options?: FindOptions): Promise<Receipt[]>;
  /**
   * The newest `limit` receipts, newest first.
   * @default limit 50
   * @throws StorageError `E_INVALID_OPTION` for a limit that is not a positive integer; `E_CORRUPT` as `find`
   */
  recent(limit?: number): Promise<Receipt[]>;
  /**
   * Reads the whole index (keys only) and every receipt, and reports what does not agree. Changes nothing.
   * @throws StorageError `E_CORRUPT` for a key under the index that is not an entry
   */
  check(): Promise<ReceiptsCheck>;
  /**
   * Removes a receipt and its index entry in one transaction; false when there was none. A corrupt receipt is
   * removed too, and its index entries (which it cannot name) are then found by listing the index and removed.
   * @throws StorageError `E_INVALID_VALUE` for a bad id
   */
  remove(id: string): Promise<boolean>;
  /**
   * Removes receipts older than `maxAge` ms (by the clock) with their index entries, and returns how many.
   * Also repairs the index: removes entries whose receipt is missing (dangling) and markers of hours
   * without entries, and puts back a missing marker of an hour that has entries. Lists the whole index
   * and the receipt ids (keys only); reads no receipt. A receipt stored while it runs keeps its marker.
   * @default maxAge 7 days
   * @throws StorageError `E_INVALID_OPTION` for a maxAge that is not a non-negative number; `E_CORRUPT` as `check`; `E_CONFLICT` when a receipt is stored under a dangling entry's id while that entry is being removed (nothing of that transaction lands; run it again)
   */
  cleanup(maxAge?: number): Promise<number>;
}

/** What {@link Receipts.check} found. */
export interface ReceiptsCheck {
  /** Index entries read. */
  entries: number;
  /** Index keys whose receipt is missing: `find` and `recent` skip them; `cleanup` removes them. */
  dangling: string[];
  /** Hours (YYYYMMDDHH) with a marker and no entries: harmless; `cleanup` removes them. */
  emptyHours: string[];
  /** Hours with entries and no marker: `find` and `recent` miss their receipts until `cleanup` puts the marker back. */
  unmarkedHours: string[];
  /**
   * Keys `find` and `recent` skip as corrupt: receipt keys whose value is not a receipt of that id (or is larger
   * than {@link MAX_RECEIPT_BYTES}), and index keys whose timestamp differs from their receipt's. `remove(id)` removes them.
   */
  corrupt: string[];
}

const WHO = "receipts";
const HOUR = 3_600_000;
const WEEK = 7 * 24 * HOUR;
/** 9999-12-31T23:59:59.999Z: the last instant a YYYYMMDDHH bucket can name; its 15 digits make the index width. */
const MAX_TIMESTAMP = 253_402_300_799_999;
const STAMP_WIDTH = String(MAX_TIMESTAMP).length;
const ID_PATTERN = /^[A-Za-z0-9_~+=@][A-Za-z0-9._~+=@-]{0,199}$/;
const FIELDS = ["id", "command", "timestamp", "duration", "exitCode", "output", "error", "metadata"] as const;
const REQUIRED = new Set(["id", "command", "timestamp", "duration", "exitCode", "output", "metadata"]);
/** Fields the index entry carries, so `find` on them reads no receipt. */
const INDEXED = new Set(["id", "timestamp", "command", "exitCode"]);
/** How many removals one cleanup transaction carries. */
const CLEANUP_CHUNK = 500;
/** How many receipts `check` reads at once. */
const CHECK_CHUNK = 100;
const GZIP_MAGIC = [0x1f, 0x8b] as const;
/**
 * The most bytes a receipt's JSON text may have (16 MiB), stored or read: store refuses a larger one, and a
 * stored one (a foreign writer, a notes sync) is never inflated past it, so a gzip bomb cannot exhaust memory.
 */
export const MAX_RECEIPT_BYTES = 16 * 1024 * 1024;
/** What makes a stored receipt unreadable: find/recent skip it, check reports it, get throws it. */
const UNREADABLE: ReadonlySet<StorageErrorCode> = new Set(["E_CORRUPT", "E_TOO_LARGE"]);

/** One time-index entry: a receipt's place in time, parsed from its key. */
interface IndexEntry {
  key: string;
  id: string;
  timestamp: number;
}

/** The small value of an index key: what `find` matches without reading the receipt. */
interface IndexValue {
  c: string;
  x: number;
}

function fail(code: StorageErrorCode, message: string, cause?: unknown): StorageError {
  return new StorageError(code, `[${WHO}] ${message}`, cause === undefined ? {} : { cause });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;
}

function checkId(id: unknown): string {
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw fail("E_INVALID_VALUE", `a receipt id is 1-200 of A-Z a-z 0-9 . _ ~ + = @ - (not starting with . or -), got ${JSON.stringify(id)}`);
  }
  return id;
}

function checkTimestamp(value: unknown, what: string, code: StorageErrorCode): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > MAX_TIMESTAMP) {
    throw fail(code, `${what} is an integer of epoch milliseconds from 0 to ${MAX_TIMESTAMP}, got ${String(value)}`);
  }
  return value;
}

/** The JSON-only check of metadata: what JSON cannot carry would not read back equal. */
function checkMetadata(value: unknown): void {
  if (!isPlainObject(value)) throw fail("E_INVALID_VALUE", "metadata is a plain object");
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(value));
  } catch (error) {
    throw fail("E_INVALID_VALUE", "metadata is not JSON", error);
  }
  if (!isDeepStrictEqual(copy, value)) throw fail("E_INVALID_VALUE", "metadata holds values JSON does not carry (Date, undefined, NaN, a class instance, …)");
}

/** Each field's own check; `undefined` is allowed only for `error`. */
const FIELD_CHECKS: Record<(typeof FIELDS)[number], (value: unknown) => boolean> = {
  id: (value) => checkId(value) === value,
  command: (value) => typeof value === "string" && value.length > 0,
  timestamp: (value) => checkTimestamp(value, "timestamp", "E_INVALID_VALUE") === value,
  duration: (value) => typeof value === "number" && Number.isFinite(value) && value >= 0,
  exitCode: (value) => typeof value === "number" && Number.isInteger(value),
  output: (value) => typeof value === "string",
  error: (value) => value === undefined || typeof value === "string",
  metadata: (value) => (checkMetadata(value), true),
};

const FIELD_RULES: Record<(typeof FIELDS)[number], string> = {
  id: "a receipt id",
  command: "a non-empty string",
  timestamp: "epoch milliseconds",
  duration: "a finite number of ms, at least 0",
  exitCode: "an integer",
  output: "a string",
  error: "a string or absent",
  metadata: "a plain JSON object",
};

function checkFields(value: Record<string, unknown>, required: boolean): void {
  const unknown = Object.keys(value).filter((name) => !(FIELDS as readonly string[]).includes(name));
  if (unknown.length > 0) throw fail("E_INVALID_VALUE", `unknown receipt field${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (known: ${FIELDS.join(", ")})`);
  for (const name of FIELDS) {
    if (!(name in value)) {
      if (required && REQUIRED.has(name)) throw fail("E_INVALID_VALUE", `a receipt needs ${name}`);
      continue;
    }
    if (!FIELD_CHECKS[name](value[name])) throw fail("E_INVALID_VALUE", `${name} is ${FIELD_RULES[name]}, got ${JSON.stringify(value[name])}`);
  }
}

/** A receipt as given, checked field by field. */
function checkReceipt(receipt: unknown): Receipt {
  if (!isPlainObject(receipt)) throw fail("E_INVALID_VALUE", "a receipt is a plain object");
  checkFields(receipt, true);
  return receipt as unknown as Receipt;
}

function checkFilter(filter: unknown): ReceiptFilter {
  if (filter === undefined) return {};
  if (!isPlainObject(filter)) throw fail("E_INVALID_VALUE", "a filter is a plain object of receipt fields");
  checkFields(filter, false);
  return filter as ReceiptFilter;
}

function checkLimit(limit: unknown): number {
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1) throw fail("E_INVALID_OPTION", `limit is a positive integer, got ${String(limit)}`);
  return limit;
}

/** The bytes stored for a receipt: gzip when asked for and smaller, else the JSON text. */
export function encodeReceipt(receipt: Receipt, compression: boolean): Uint8Array {
  const json = Buffer.from(JSON.stringify(receipt), "utf8");
  if (json.length > MAX_RECEIPT_BYTES) throw fail("E_TOO_LARGE", `receipt ${receipt.id} is ${json.length} bytes of JSON, more than ${MAX_RECEIPT_BYTES}`);
  if (!compression) return json;
  const packed = gzipSync(json);
  return packed.length < json.length ? packed : json;
}

/** A stored receipt's JSON text, inflated when gzip'd; never more than MAX_RECEIPT_BYTES (a gzip bomb stops there). */
function receiptText(bytes: Uint8Array, id: string): Buffer {
  const tooLarge = (cause?: unknown) => fail("E_TOO_LARGE", `receipt ${id} holds more than ${MAX_RECEIPT_BYTES} bytes of JSON`, cause);
  if (bytes.length > MAX_RECEIPT_BYTES) throw tooLarge();
  if (bytes[0] !== GZIP_MAGIC[0] || bytes[1] !== GZIP_MAGIC[1]) return Buffer.from(bytes);
  try {
    return gunzipSync(bytes, { maxOutputLength: MAX_RECEIPT_BYTES });
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") throw tooLarge(error);
    throw fail("E_CORRUPT", `receipt ${id} is not valid gzip`, error);
  }
}

/**
 * A stored receipt's bytes back to a receipt: gzip's magic bytes say compressed, anything
 * else is JSON text (JSON never starts with byte 0x1f), so uncompressed receipts still read.
 * The receipt must carry the id it is stored under: one claiming another id would make
 * `remove` and the index act on that other receipt.
 * @throws StorageError `E_TOO_LARGE` past {@link MAX_RECEIPT_BYTES}; `E_CORRUPT` for anything but a receipt of `id`
 */
export function decodeReceipt(bytes: Uint8Array, id: string): Receipt {
  const text = receiptText(bytes, id);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.toString("utf8"));
  } catch (error) {
    throw fail("E_CORRUPT", `receipt ${id} is neither JSON nor gzip-compressed JSON`, error);
  }
  let receipt: Receipt;
  try {
    receipt = checkReceipt(parsed);
  } catch (error) {
    throw fail("E_CORRUPT", `receipt ${id} is not a receipt`, error);
  }
  if (receipt.id !== id) throw fail("E_CORRUPT", `the receipt stored as ${id} claims the id ${JSON.stringify(receipt.id)}`);
  return receipt;
}

/** The receipt, or null when it is unreadable (E_CORRUPT, E_TOO_LARGE): what find/recent skip and check reports. */
function readableReceipt(bytes: Uint8Array, id: string): Receipt | null {
  try {
    return decodeReceipt(bytes, id);
  } catch (error) {
    if (error instanceof StorageError && UNREADABLE.has(error.code)) return null;
    throw error;
  }
}

/** The UTC hour of `timestamp` as YYYYMMDDHH: the index bucket. */
function bucketOf(timestamp: number): string {
  return new Date(timestamp).toISOString().slice(0, 13).replace(/[-T]/g, "");
}

function bucketStart(bucket: string): number {
  return Date.UTC(Number(bucket.slice(0, 4)), Number(bucket.slice(4, 6)) - 1, Number(bucket.slice(6, 8)), Number(bucket.slice(8, 10)));
}

/** Newer sorts first: the index segment holds MAX_TIMESTAMP - timestamp, zero-padded. */
function invertedStamp(timestamp: number): string {
  return String(MAX_TIMESTAMP - timestamp).padStart(STAMP_WIDTH, "0");
}

/** Whether a receipt's fields match the filter: equality, and deep equality per metadata key given. */
export function matchesFilter(receipt: Receipt, filter: ReceiptFilter): boolean {
  for (const [name, wanted] of Object.entries(filter)) {
    if (name === "metadata") {
      const have = receipt.metadata;
      if (!Object.entries(wanted as Record<string, unknown>).every(([key, value]) => Object.hasOwn(have, key) && isDeepStrictEqual(have[key], value))) return false;
    } else if (receipt[name as keyof Receipt] !== wanted) return false;
  }
  return true;
}

/** The storage's driver under `prefix`, which must hold the whole prefix and be flagged `transactions`. */
function transactionalDriver(storage: Storage, prefix: string): Driver {
  const mount = storage.getMount(prefix);
  if (storage.getMounts(prefix).some((other) => other.base.length > mount.base.length)) {
    throw fail("E_UNSUPPORTED", `a driver is mounted below ${prefix}: receipts and their index must share one mount`);
  }
  if (mount.driver.flags?.transactions !== true) {
    throw fail("E_UNSUPPORTED", `the ${mount.driver.name ?? "unnamed"} driver is not flagged transactions: a receipt and its index entry could not be written in one atomic step`);
  }
  return mount.driver;
}

/** The git-notes driver's `notesFor`, when the mount is that driver itself. */
type NotesFor = (commitish: string) => { set(text: string): void };

function notesForOf(driver: Driver): NotesFor {
  const notesFor = (driver as Driver & { notesFor?: unknown }).notesFor;
  if (driver.name !== "git-notes" || typeof notesFor !== "function") {
    throw fail("E_UNSUPPORTED", `store(…, { commit }) annotates commits on the git-notes driver only, not ${driver.name ?? "an unnamed driver"}`);
  }
  return notesFor as NotesFor;
}

/**
 * A receipt store over `storage` (a driver flagged `transactions` under `prefix`).
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, an empty `prefix`, a non-boolean `compression` or a bad `clock`; `E_UNSUPPORTED` when the driver under `prefix` is not flagged `transactions`
 */
export function createReceipts(storage: Storage, options: ReceiptsOptions = {}): Receipts {
  checkOptions(WHO, options, ["prefix", "compression", "clock"]);
  if (options.prefix !== undefined && typeof options.prefix !== "string") throw fail("E_INVALID_OPTION", "prefix is a string");
  const prefix = normalizeKey(options.prefix ?? "receipts");
  if (prefix === "") throw fail("E_INVALID_OPTION", "prefix names no key");
  if (options.compression !== undefined && typeof options.compression !== "boolean") throw fail("E_INVALID_OPTION", "compression is a boolean");
  const compression = options.compression ?? true;
  const clock = resolveClock(options.clock);
  const driver = transactionalDriver(storage, prefix);

  const receiptKey = (id: string) => `${prefix}:r:${id}`;
  const markerBase = `${prefix}:h`;
  const indexBase = `${prefix}:t`;
  /** The hour (YYYYMMDDHH) an index entry's key names. */
  const hourOfEntry = (key: string) => key.slice(indexBase.length + 1, indexBase.length + 11);
  /** The receipt stored at `id`, or null when none is; decoded leniently (null when unreadable) unless `decode` says otherwise. */
  const readStored = async (id: string, decode: (bytes: Uint8Array, id: string) => Receipt | null = readableReceipt): Promise<Receipt | null> => {
    const bytes = await storage.getItemRaw(receiptKey(id));
    return bytes === null ? null : decode(bytes, id);
  };
  const bucketBase = (bucket: string) => `${indexBase}:${bucket}`;
  const indexKey = (receipt: Pick<Receipt, "id" | "timestamp">) => `${bucketBase(bucketOf(receipt.timestamp))}:${invertedStamp(receipt.timestamp)}-${receipt.id}`;

  /** An index key back to its entry; anything else under the index is corruption, not skipped. */
  const parseEntry = (key: string, bucket: string): IndexEntry => {
    const segment = key.slice(bucketBase(bucket).length + 1);
    const inverted = Number(segment.slice(0, STAMP_WIDTH));
    const id = segment.slice(STAMP_WIDTH + 1);
    const timestamp = MAX_TIMESTAMP - inverted;
    if (segment[STAMP_WIDTH] !== "-" || !Number.isInteger(inverted) || !ID_PATTERN.test(id) || bucketOf(timestamp) !== bucket) {
      throw fail("E_CORRUPT", `${key} is not a receipt index entry`);
    }
    return { key, id, timestamp };
  };

  /** Hour buckets holding index entries, newest first (each has a marker key). */
  const buckets = async (): Promise<string[]> => {
    const keys = await storage.getKeys(markerBase);
    return keys.map((key) => key.slice(markerBase.length + 1)).filter((bucket) => /^\d{10}$/.test(bucket)).sort().reverse();
  };

  /** A bucket's entries within [since, until], newest first. */
  const entriesOf = async (bucket: string, since: number, until: number): Promise<IndexEntry[]> => {
    const keys = (await storage.getKeys(bucketBase(bucket))).sort();
    return keys.map((key) => parseEntry(key, bucket)).filter((entry) => entry.timestamp >= since && entry.timestamp <= until);
  };

  /** Index entries within [since, until], one bucket at a time, newest first. */
  async function* entries(since: number, until: number): AsyncGenerator<IndexEntry[]> {
    for (const bucket of await buckets()) {
      const start = bucketStart(bucket);
      if (start > until || start + HOUR <= since) continue;
      const found = await entriesOf(bucket, since, until);
      if (found.length > 0) yield found;
    }
  }

  /**
   * The receipts of index entries; null for a dangling entry (its receipt missing, or removed since the index
   * was listed) and for a corrupt one (its receipt unreadable, or its timestamp not the entry's): skipped, and
   * reported by `check`. The entry's timestamp is trusted only when the receipt carries the same.
   */
  const readReceipts = (found: IndexEntry[]): Promise<(Receipt | null)[]> =>
    Promise.all(
      found.map(async (entry) => {
        const receipt = await readStored(entry.id);
        return receipt?.timestamp === entry.timestamp ? receipt : null;
      }),
    );

  /** Keeps the entries whose index value matches the filter's indexed fields. */
  const matchOnIndex = async (found: IndexEntry[], filter: ReceiptFilter): Promise<IndexEntry[]> => {
    const byId = found.filter((entry) => (filter.id === undefined || entry.id === filter.id) && (filter.timestamp === undefined || entry.timestamp === filter.timestamp));
    if (filter.command === undefined && filter.exitCode === undefined) return byId;
    const values = await storage.getItems<IndexValue>(byId.map((entry) => entry.key));
    return byId.filter((_, i) => {
      const value = values[i]?.value;
      return value != null && (filter.command === undefined || value.c === filter.command) && (filter.exitCode === undefined || value.x === filter.exitCode);
    });
  };

  const find = async (given?: ReceiptFilter, options: FindOptions = {}): Promise<Receipt[]> => {
    const filter = checkFilter(given);
    checkOptions(WHO, options, ["since", "until", "limit"]);
    const since = options.since === undefined ? 0 : checkTimestamp(options.since, "since", "E_INVALID_OPTION");
    const until = options.until === undefined ? MAX_TIMESTAMP : checkTimestamp(options.until, "until", "E_INVALID_OPTION");
    const limit = options.limit === undefined ? Infinity : checkLimit(options.limit);
    const rest = Object.keys(filter).some((name) => !INDEXED.has(name));
    const result: Receipt[] = [];
    for await (const found of entries(since, until)) {
      const candidates = await matchOnIndex(found, filter);
      // Without other fields to match, only as many receipts as still fit are read (more after a dangling entry).
      for (let next = 0; next < candidates.length && result.length < limit; ) {
        const take = rest ? candidates.length : limit - result.length;
        const read = await readReceipts(candidates.slice(next, next + take));
        next += take;
        for (const receipt of read) if (receipt !== null && result.length < limit && matchesFilter(receipt, filter)) result.push(receipt);
      }
      if (result.length >= limit) break;
    }
    return result;
  };

  const writeReceipt = async (tx: TransactionHandle, receipt: Receipt): Promise<void> => {
    await tx.setItemRaw(receiptKey(receipt.id), encodeReceipt(receipt, compression), { ifNoneMatch: "*" });
    await tx.setItem(indexKey(receipt), { c: receipt.command, x: receipt.exitCode } satisfies IndexValue);
    await tx.setItem(`${markerBase}:${bucketOf(receipt.timestamp)}`, 1);
  };

  /** Whether `id` is stored with exactly this receipt's content (as JSON carries it). */
  const storedAlready = async (receipt: Receipt): Promise<boolean> => {
    const stored = await readStored(receipt.id);
    return stored !== null && isDeepStrictEqual(stored, JSON.parse(JSON.stringify(receipt)));
  };

  const store = async (given: Receipt, options: StoreReceiptOptions = {}): Promise<void> => {
    const receipt = checkReceipt(given);
    checkOptions(WHO, options, ["commit"]);
    if (options.commit !== undefined && typeof options.commit !== "string") throw fail("E_INVALID_OPTION", "commit is a string");
    // The commit resolves before anything is written: a commit that names nothing writes no receipt.
    const note = options.commit === undefined ? undefined : notesForOf(driver)(options.commit);
    try {
      await storage.transaction((tx) => writeReceipt(tx, receipt));
    } catch (error) {
      // The same receipt stored already is a retry (of a store whose note failed after its transaction): it resolves, writing the note again.
      if (!(isStorageError(error, "E_CONFLICT") && (await storedAlready(receipt)))) throw error;
    }
    note?.set(JSON.stringify(receipt, null, 2) + "\n");
  };

  const storeMany = async (given: readonly Receipt[]): Promise<void> => {
    if (!Array.isArray(given)) throw fail("E_INVALID_VALUE", "storeMany takes an array of receipts");
    const receipts = given.map(checkReceipt);
    const ids = new Set(receipts.map((receipt) => receipt.id));
    if (ids.size !== receipts.length) throw fail("E_INVALID_VALUE", "storeMany was given an id twice");
    if (receipts.length === 0) return;
    await storage.transaction(async (tx) => {
      for (const receipt of receipts) await writeReceipt(tx, receipt);
    });
  };

  // async: a bad id rejects the promise rather than throwing at the call.
  const get = async (id: string): Promise<Receipt | null> => readStored(checkId(id), decodeReceipt);

  /** Every index entry of `id`, found by listing the whole index (keys only): for a receipt that cannot name its own. */
  const entriesOfId = async (id: string): Promise<IndexEntry[]> => {
    const keys = (await storage.getKeys(indexBase)).filter((key) => key.endsWith(`-${id}`));
    return keys.map((key) => parseEntry(key, hourOfEntry(key))).filter((entry) => entry.id === id);
  };

  /**
   * Removes the receipt at `id`'s key and the index entry its timestamp names, in one transaction. Every
   * entry key removed holds `id` (decodeReceipt refuses a receipt claiming another id), so no other
   * receipt's entry is touched. When the receipt is unreadable, or no entry sits where its timestamp says,
   * the index is listed for `id`'s entries, which go as cleanup's dangling ones do (only while `id` is
   * still not stored again).
   */
  const remove = async (id: string): Promise<boolean> => {
    const key = receiptKey(checkId(id));
    const outcome = await storage.transaction(async (tx) => {
      const bytes = await tx.getItemRaw(key);
      if (bytes === null) return "none";
      const receipt = readableReceipt(bytes, id);
      await tx.removeItem(key);
      if (receipt === null || !(await tx.hasItem(indexKey(receipt)))) return "unnamed";
      await tx.removeItem(indexKey(receipt));
      return "removed";
    });
    if (outcome === "unnamed") await removeEntries([], await entriesOfId(id));
    return outcome !== "none";
  };

  /** What the index holds, listed in this order (keys only): markers, entries by hour, receipt ids. */
  const readIndex = async (): Promise<{ marked: Set<string>; byHour: Map<string, IndexEntry[]>; ids: Set<string> }> => {
    const marked = new Set(await buckets());
    const byHour = new Map<string, IndexEntry[]>();
    for (const key of await storage.getKeys(indexBase)) {
      const hour = hourOfEntry(key);
      const entry = parseEntry(key, hour);
      const hourEntries = byHour.get(hour);
      if (hourEntries === undefined) byHour.set(hour, [entry]);
      else hourEntries.push(entry);
    }
    // Listed after the index: a receipt stored meanwhile has no entry in the listing, so it is never taken for dangling.
    const receiptBase = `${prefix}:r`;
    const ids = new Set((await storage.getKeys(receiptBase)).map((key) => key.slice(receiptBase.length + 1)));
    return { marked, byHour, ids };
  };

  /** Reads every receipt listed (CHECK_CHUNK at a time): its timestamp, or null when it is unreadable or gone since listed. */
  const readTimestamps = async (ids: Set<string>): Promise<Map<string, number | null>> => {
    const stamps = new Map<string, number | null>();
    const all = [...ids];
    for (let start = 0; start < all.length; start += CHECK_CHUNK) {
      await Promise.all(
        all.slice(start, start + CHECK_CHUNK).map(async (id) => {
          const bytes = await storage.getItemRaw(receiptKey(id));
          if (bytes !== null) stamps.set(id, readableReceipt(bytes, id)?.timestamp ?? null);
        }),
      );
    }
    return stamps;
  };

  const check = async (): Promise<ReceiptsCheck> => {
    const { marked, byHour, ids } = await readIndex();
    const all = [...byHour.values()].flat();
    const stamps = await readTimestamps(ids);
    const unreadable = [...stamps].filter(([, stamp]) => stamp === null).map(([id]) => receiptKey(id));
    const mismatched = all.filter((entry) => typeof stamps.get(entry.id) === "number" && stamps.get(entry.id) !== entry.timestamp).map((entry) => entry.key);
    return {
      entries: all.length,
      dangling: all.filter((entry) => !ids.has(entry.id)).map((entry) => entry.key),
      emptyHours: [...marked].filter((hour) => !byHour.has(hour)).sort(),
      unmarkedHours: [...byHour.keys()].filter((hour) => !marked.has(hour)).sort(),
      corrupt: [...unreadable, ...mismatched].sort(),
    };
  };

  /**
   * Removes old entries with their receipts, and dangling entries, in chunks of one transaction each.
   * A dangling entry goes only if its receipt is still missing inside the transaction (the read is
   * checked at commit), so a receipt stored meanwhile under the same id keeps its entry.
   */
  const removeEntries = async (old: IndexEntry[], dangling: IndexEntry[]): Promise<number> => {
    let kept = 0;
    const all = [...old.map((entry) => ({ entry, ifDangling: false })), ...dangling.map((entry) => ({ entry, ifDangling: true }))];
    for (let start = 0; start < all.length; start += CLEANUP_CHUNK) {
      await storage.transaction(async (tx) => {
        for (const { entry, ifDangling } of all.slice(start, start + CLEANUP_CHUNK)) {
          if (ifDangling && (await tx.hasItem(receiptKey(entry.id)))) {
            kept++;
            continue;
          }
          if (!ifDangling) await tx.removeItem(receiptKey(entry.id));
          await tx.removeItem(entry.key);
        }
      });
    }
    return kept;
  };

  /**
   * Cleans one hour: old and dangling entries go; the marker goes when nothing is left (an hour before
   * the cutoff, one listed without entries or with dangling ones only). The marker is
   * removed first and the hour listed after: a store landing later writes the marker again (it is in
   * the store's transaction), one landing earlier is in the listing, and a marker is put back when
   * entries are left, so no store loses its marker whatever the interleaving.
   */
  const cleanHour = async (hour: string, cutoff: number, ids: Set<string>, listed: IndexEntry[] | undefined, marked: boolean): Promise<number> => {
    const marker = `${markerBase}:${hour}`;
    const dropMarker = marked && (listed === undefined || bucketStart(hour) + HOUR <= cutoff || listed.every((entry) => !ids.has(entry.id)));
    if (dropMarker) await storage.removeItem(marker);
    const found = dropMarker || listed === undefined ? await entriesOf(hour, 0, MAX_TIMESTAMP) : listed;
    const old = found.filter((entry) => entry.timestamp < cutoff);
    const dangling = found.filter((entry) => entry.timestamp >= cutoff && !ids.has(entry.id));
    const kept = await removeEntries(old, dangling);
    if (found.length - old.length - dangling.length + kept > 0 && (dropMarker || !marked)) await storage.setItem(marker, 1);
    return old.length;
  };

  const cleanup = async (maxAge: number = WEEK): Promise<number> => {
    if (typeof maxAge !== "number" || !(maxAge >= 0)) throw fail("E_INVALID_OPTION", `maxAge is a number of ms, at least 0, got ${String(maxAge)}`);
    const cutoff = clock.now() - maxAge;
    const { marked, byHour, ids } = await readIndex();
    let removed = 0;
    for (const hour of new Set([...marked, ...byHour.keys()])) {
      const listed = byHour.get(hour);
      const untouched = listed !== undefined && marked.has(hour) && bucketStart(hour) >= cutoff && listed.every((entry) => ids.has(entry.id));
      if (!untouched) removed += await cleanHour(hour, cutoff, ids, listed, marked.has(hour));
    }
    return removed;
  };

  return { store, storeMany, get, find, recent: (limit = 50) => find({}, { limit: checkLimit(limit) }), check, remove, cleanup };
}
