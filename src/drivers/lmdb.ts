import { closeSync, constants, fstatSync, openSync, readSync, statSync, writeSync as writeAt, type Stats } from "node:fs";
import { dirname } from "node:path";
import { openAsClass, type Database, type RootDatabase, type RootDatabaseOptionsWithPath } from "lmdb";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError } from "../core/errors.js";
import { guardOf } from "../core/guards.js";
import { checkOptions } from "../core/options.js";
import { describeExpiry } from "../core/ttl.js";
import { filterKeyByDepth } from "../core/keys.js";
import { prefixEnd } from "./support/keyRange.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type RemoveOptions, type SetOptions, type StorageMeta } from "../core/types.js";
import { makeDirectories } from "../core/directories.js";
import { optionNames } from "./support/optionNames.js";

export interface LmdbOptions {
  /** The database file, created (with its directory and a `-lock` file beside it) when missing; an existing file must be an LMDB database. Required. */
  path: string;
  /**
   * Name of the LMDB database inside the environment that holds the keys.
   * @default "stowage"
   */
  name?: string;
  /**
   * Skip flushing entirely (LMDB `noSync`): fastest, but a machine crash can lose or corrupt recent writes.
   * @default false
   */
  noSync?: boolean;
  /** Maximum size of the memory map in bytes (LMDB grows it by itself when unset). */
  mapSize?: number;
  /**
   * How often expired keys are deleted, in ms.
   * @default 60_000
   */
  purgeInterval?: number;
  /** Open read-only: writes fail with `E_READONLY`. @default false */
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
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<LmdbOptions>({ path: true, name: true, noSync: true, mapSize: true, purgeInterval: true, readOnly: true });
/**
 * The longest key, in UTF-8 bytes, that every write takes (measured with lmdb-js 3.5.6): LMDB holds
 * 1978 bytes; lmdb-js's ordered-binary encoding adds a byte to a key whose first character is below
 * U+001C (1977 left), and an expiring key is also part of its expiry index key [expiresAt, key],
 * whose time takes 10 more (1967 left). One limit for all keys, so any stored key can take a ttl.
 */
export const MAX_KEY_BYTES = 1967;
// A write transaction found starting from an older snapshot than the newest commit goes again this often (see WriteBase).
const STALE_BASE_ATTEMPTS = 5;

/** A new etag per write: random, so a key deleted and written again never reuses one. */
function newVersion(): number {
  return Math.floor(Math.random() * 2 ** 52) + 1;
}

/** Refuses a key LMDB cannot hold before it reaches lmdb-js (whose own refusal comes midway through a batch, or as a plain Error). */
function checkKey(key: string): string {
  // Only long keys pay for the byte count.
  if (key.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new StorageError("E_INVALID_KEY", `Key too long: ${Buffer.byteLength(key)} bytes, lmdb keys hold at most ${MAX_KEY_BYTES}`, { driver: DRIVER_NAME, key });
  }
  return key;
}

// lmdb-js's key encoding (ordered-binary) reads U+0001-U+0004 in a key of more than 63 bytes as the
// separators of a compound key: getKeys then returned arrays and Buffers for such keys (lmdb-js 3.5.6).
// eslint-disable-next-line no-control-regex -- these control characters are what the check looks for
const MISREAD_CHARACTERS = /[\u0001-\u0004]/;

/** Refuses a key that lmdb-js would store but could not list back as it was (reads and removals of older ones still work). */
function checkWrittenKey(key: string): string {
  if (MISREAD_CHARACTERS.test(checkKey(key))) {
    throw new StorageError("E_INVALID_KEY", "lmdb keys cannot hold the characters U+0001 to U+0004", { driver: DRIVER_NAME, key });
  }
  return key;
}

/** Checked before anything is queued or written: a throw midway would leave part of a batch behind. */
function checkKeys(operations: CommitOperation[]): void {
  for (const op of operations) {
    if (op.type === "set" || op.type === "setRaw") checkWrittenKey(op.key);
    else checkKey(op.key);
  }
}

/** lmdb-js failures as StorageErrors; conflicts and size errors pass through. */
function ioError(error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  return new StorageError("E_IO", `LMDB write failed: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
}

/** The conflict a failed guard reports: the key held a live value it should not, or another version. */
const conflictOn = ({ key, etag }: { key: string; etag: string | null }): StorageError =>
  conflictError(DRIVER_NAME, key, etag === null ? "Key already exists" : "Stored version differs");

const payloadOf = (stored: StoredValue): Payload => (Array.isArray(stored) ? stored[0] : stored);
const expiresOf = (stored: StoredValue): number | undefined => (Array.isArray(stored) ? stored[1] : undefined);
const isAlive = (stored: StoredValue, now: number): boolean => !Array.isArray(stored) || stored[1] > now;

// LMDB's data file, format 2 (what lmdb-js 3.5.6 writes), in the machine's byte order: it starts with
// two meta pages, each a 24-byte page header whose flags (offset 18) hold P_META, then the meta:
// magic (24), format version (28), ..., the page size (48).
const META_LAYOUT = { flags: 18, magic: 24, version: 28, pageSize: 48, length: 52 } as const;
const P_META = 0x08;
const LMDB_MAGIC = 0xbeefc0de;
const LMDB_DATA_VERSION = 2;
// The meta's transaction id, at byte 152 of each meta page. The `-lock` file starts with LMDB's magic and lock
// format (lmdb-js 3.5.6 on 64-bit Linux: 0x2c2f6002), then the id of the last commit (mti_txnid) at byte 8.
const META_TXNID_OFFSET = 152;
const LOCK_STAMP = (0x2c2f6002n << 32n) | BigInt(LMDB_MAGIC);
const LOCK_TXNID_OFFSET = 8;

function fileError(code: "E_IO" | "E_CORRUPT" | "E_INVALID_OPTION", path: string, message: string, cause?: unknown): StorageError {
  return new StorageError(code, `${path} ${message}`, { driver: DRIVER_NAME, cause });
}

const kindOf = (stats: Stats): string =>
  stats.isDirectory() ? "a directory" : stats.isFIFO() ? "a FIFO" : stats.isSocket() ? "a socket" : stats.isCharacterDevice() || stats.isBlockDevice() ? "a device" : "not a regular file";

/** `length` bytes of an open file from `offset` (fewer at its end). */
function readAt(fd: number, offset: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  return bytes.subarray(0, readSync(fd, bytes, 0, length, offset));
}

/** Why the bytes read where a meta page must start are not one this lmdb-js opens, or undefined when they are. */
function metaProblem(meta: Buffer, offset: number): string | undefined {
  if (meta.length < META_LAYOUT.length || meta.readUInt32LE(META_LAYOUT.magic) !== LMDB_MAGIC || !(meta.readUInt16LE(META_LAYOUT.flags) & P_META)) {
    return `no LMDB meta page at byte ${offset}`;
  }
  const version = meta.readUInt32LE(META_LAYOUT.version) & 0xffff;
  return version === LMDB_DATA_VERSION ? undefined : `LMDB data format ${version}, and lmdb-js reads format ${LMDB_DATA_VERSION}`;
}

/** Checks an open regular file's two meta pages. An empty file is a new database to LMDB (and what a process creating one shows for a moment). */
function checkMetaPages(fd: number, path: string): void {
  const size = fstatSync(fd).size;
  if (size === 0) return;
  const first = readAt(fd, 0, META_LAYOUT.length);
  const problem = metaProblem(first, 0);
  if (problem) throw fileError("E_CORRUPT", path, `is not an LMDB database lmdb-js can open: ${problem}`);
  const pageSize = first.readUInt32LE(META_LAYOUT.pageSize);
  const validSize = pageSize >= 256 && pageSize <= 0x10000 && (pageSize & (pageSize - 1)) === 0;
  if (!validSize || size < 2 * pageSize) throw fileError("E_CORRUPT", path, `is a damaged LMDB database: page size ${pageSize}, ${size} bytes`);
  const second = metaProblem(readAt(fd, pageSize, META_LAYOUT.length), pageSize);
  if (second) throw fileError("E_CORRUPT", path, `is a damaged LMDB database: ${second}`);
}

const notAFile = (path: string, stats: Stats): StorageError =>
  fileError("E_INVALID_OPTION", path, `is ${kindOf(stats)}: the lmdb driver's path names its database file`);

/** What is at `path`: nothing (undefined), or a regular file's stats; anything else is refused. */
function statPath(path: string): Stats | undefined {
  let stats: Stats | undefined;
  try {
    stats = statSync(path, { throwIfNoEntry: false });
  } catch (error) {
    throw fileError("E_IO", path, `cannot be opened: ${(error as Error).message}`, error);
  }
  if (stats && !stats.isFile()) throw notAFile(path, stats);
  return stats;
}

/**
 * Checks what `path` holds before lmdb-js sees it, creating nothing: lmdb-js
 * 3.5.6 ends the process (SIGSEGV) on a file whose meta pages are not LMDB's,
 * and first creates `<path>-lock` beside it. Returns whether the file exists.
 */
function checkDataFile(path: string): boolean {
  if (!statPath(path)) return false;
  let fd: number;
  try {
    // Non-blocking: a FIFO put in the file's place since the stat must not hang the open.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    throw fileError("E_IO", path, `cannot be read: ${(error as Error).message}`, error);
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw notAFile(path, stats);
    checkMetaPages(fd, path);
    return true;
  } catch (error) {
    if (error instanceof StorageError) throw error;
    throw fileError("E_IO", path, `cannot be read: ${(error as Error).message}`, error);
  } finally {
    closeSync(fd);
  }
}

/** A write transaction that started from an older snapshot than the newest commit: aborted, and tried again. */
class StaleBase extends Error {}

/**
 * One descriptor per `-lock` file in this process, shared by the drivers open on it and closed with
 * the last of them: closing any descriptor of a file drops every POSIX lock the process holds on it,
 * and LMDB's locks on the `-lock` file say which processes are alive (a process that lost them can
 * see another re-initialise the lock file under it).
 */
const lockFiles = new Map<string, { fd: number; users: number }>();

function useLockFile(path: string): number {
  const shared = lockFiles.get(path) ?? { fd: openSync(`${path}-lock`, "r+"), users: 0 };
  shared.users++;
  lockFiles.set(path, shared);
  return shared.fd;
}

// LMDB's three process-shared robust mutexes in the `-lock` file (reader table, writer, sync) at bytes 24, 64
// and 104, each a glibc pthread_mutex_t (40 bytes) whose kind (offset 16) is ROBUST_NORMAL | PSHARED once
// initialised, and -1 once pthread_mutex_destroy has run on it (which leaves the rest as an unlocked mutex).
const LOCK_MUTEX_OFFSETS = [24, 64, 104] as const;
const MUTEX_KIND_OFFSET = 16;
const MUTEX_KIND_READY = 0x90;
const MUTEX_KIND_DESTROYED = 0xffffffff;

/**
 * Re-initialises LMDB's lock-file mutexes when another process destroyed them. A process that closes the
 * environment as its last user (it gets LMDB's exclusive lock on the lock file) destroys them, and one
 * opening at that moment waits for a shared lock, gets it once the closer is gone and keeps the destroyed
 * mutexes: every transaction then fails with EINVAL (lmdb-js 3.5.6 reports it from open() as "Invalid
 * argument: No transaction to renew"), in that process and in every one opening after it. Safe only
 * while this process holds the environment open: its shared lock keeps any other process from being
 * exclusive (re-initialising or destroying them), and a destroyed mutex is held by no one. Only the
 * kind word is written: the rest of a destroyed mutex reads as an unlocked one, and a process whose
 * repair lands after another's, which may already have locked the mutex, leaves its lock word alone.
 */
function repairLockMutexes(path: string, lockFd: number): boolean {
  const kindOfMutex = LOCK_MUTEX_OFFSETS.map((offset) => {
    const bytes = readAt(lockFd, offset + MUTEX_KIND_OFFSET, 4);
    return bytes.length === 4 ? bytes.readUInt32LE(0) : undefined;
  });
  if (kindOfMutex.some((kind) => kind !== MUTEX_KIND_READY && kind !== MUTEX_KIND_DESTROYED)) {
    warnUnrepaired(path, `its mutexes are of another layout (kinds ${kindOfMutex.join(", ")}; this driver knows glibc's)`);
    return false;
  }
  const ready = Buffer.alloc(4);
  ready.writeUInt32LE(MUTEX_KIND_READY);
  for (const [i, offset] of LOCK_MUTEX_OFFSETS.entries()) {
    if (kindOfMutex[i] === MUTEX_KIND_DESTROYED) writeAt(lockFd, ready, 0, 4, offset + MUTEX_KIND_OFFSET);
  }
  return true;
}

const warnedPaths = new Set<string>();

/**
 * Another platform's or LMDB build's lock file: the driver opens it as lmdb-js does, without its repairs
 * (they would write into something else), so several processes writing at once are not protected from
 * LMDB's open races there. Said once per path, as a process warning, rather than refusing the store.
 */
function warnUnrepaired(path: string, why: string): void {
  if (warnedPaths.has(path)) return;
  warnedPaths.add(path);
  process.emitWarning(`stowage lmdb: ${path}-lock is not the layout this driver repairs (${why}): opened without its cross-process repairs (see docs/lmdb.md)`, { code: "STOWAGE_LMDB_LOCK_LAYOUT" });
}

/** Called once the environment is closed: the last user closes the descriptor. */
function releaseLockFile(path: string): void {
  const shared = lockFiles.get(path)!;
  if (--shared.users > 0) return;
  lockFiles.delete(path);
  closeSync(shared.fd);
}

/**
 * Keeps write transactions on the newest commit. LMDB in lmdb-js 3.5.6 sets
 * the lock file's last-commit id to the id of the meta page it read while
 * *opening* the environment (mdb_env_open2), in any process and without the
 * writer lock: a commit another process makes while one opens is then ahead
 * of that id, and the next write transaction, which starts from the id, builds
 * on the older snapshot and overwrites that commit (the lost CAS increment; the
 * freed pages it reuses gave MDB_PROBLEM). Inside each write transaction (under
 * LMDB's writer lock) `check` compares the transaction's base with the two meta
 * pages on disk; when a commit is ahead it writes that id back to the lock file
 * and throws StaleBase, so the transaction is aborted before it writes anything.
 */
function writeBase(path: string, root: RootDatabase, lockFd: number): { check(): void; close(): void } {
  const word = Buffer.alloc(8);
  const read = (fd: number, offset: number): number => {
    if (readSync(fd, word, 0, 8, offset) !== 8) throw fileError("E_CORRUPT", path, `is shorter than LMDB's layout: nothing at byte ${offset}`);
    return Number(word.readBigUInt64LE(0));
  };
  const dataFd = openSync(path, "r");
  let pageSize: number;
  try {
    // The page size is the meta's first 32 bits there; the 32 after them hold flags.
    pageSize = read(dataFd, META_LAYOUT.pageSize) & 0xffffffff;
  } catch (error) {
    closeSync(dataFd);
    throw error;
  }
  const close = () => closeSync(dataFd);
  const newestCommit = () => Math.max(read(dataFd, META_TXNID_OFFSET), read(dataFd, pageSize + META_TXNID_OFFSET));
  return {
    check() {
      const base = root.getWriteTxnId() - 1;
      const newest = newestCommit();
      if (newest <= base) return;
      word.writeBigUInt64LE(BigInt(newest));
      writeAt(lockFd, word, 0, 8, LOCK_TXNID_OFFSET);
      throw new StaleBase(`write transaction started from commit ${base}, the newest is ${newest}`);
    },
    close,
  };
}

/**
 * Whether the lock file has the layout whose last-commit id and mutexes this
 * driver repairs (elsewhere a repair would write into something else): LMDB
 * stamps its magic and a lock format signature (version, features, field layout) first.
 */
function knownLockLayout(path: string, lockFd: number): boolean {
  const head = readAt(lockFd, 0, 8);
  const stamp = head.length === 8 ? head.readBigUInt64LE(0) : 0n;
  if (stamp === LOCK_STAMP) return true;
  warnUnrepaired(path, `lock format 0x${stamp.toString(16)}; this driver knows 0x${LOCK_STAMP.toString(16)}, lmdb-js 3.5.6 on 64-bit Linux`);
  return false;
}

/**
 * This process's descriptor of the `-lock` file (see lockFiles). A read-only environment that cannot
 * open it for writing runs without a lock file (LMDB does so on EACCES and EROFS): undefined.
 */
function openLockFile(path: string, readOnly: boolean): number | undefined {
  try {
    return useLockFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (readOnly && (code === "EACCES" || code === "EROFS")) return undefined;
    throw fileError("E_IO", `${path}-lock`, `cannot be opened: ${(error as Error).message}`, error);
  }
}

/** The lmdb-js root class of an environment that is open (its lock file set up) and has run no transaction yet. */
type RootClass = new (name: null, options: EnvironmentOptions & { isRoot: true }) => RootDatabase;
type EnvironmentOptions = RootDatabaseOptionsWithPath & { path: string };

/**
 * Opens the environment and checks its lock file before lmdb-js's first transaction in it (the one
 * making the root database), so that mutexes another process destroyed are repaired first (see
 * repairLockMutexes): lmdb-js's open() runs that transaction before it returns, hence its class form.
 */
function openEnvironment(options: EnvironmentOptions): { root: RootDatabase; lockFd: number | undefined; repairable: boolean } {
  const path = options.path;
  let Root: RootClass;
  try {
    Root = openAsClass(options) as unknown as RootClass;
  } catch (error) {
    throw new StorageError("E_IO", `Cannot open ${path}: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
  }
  let lockFd: number | undefined;
  let repairable = false;
  let problem: unknown;
  try {
    lockFd = openLockFile(path, options.readOnly === true);
    // Repairs only where the layout is the one they are written for (the descriptor stays open either way: see lockFiles).
    repairable = lockFd !== undefined && knownLockLayout(path, lockFd) && repairLockMutexes(path, lockFd);
  } catch (error) {
    problem = error;
  }
  let root: RootDatabase;
  try {
    root = new Root(null, { ...options, isRoot: true });
  } catch (error) {
    // lmdb-js leaves the environment open when its root cannot be made, so the lock file's descriptor stays open too (see lockFiles).
    throw problem ?? new StorageError("E_IO", `Cannot open ${path}: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
  }
  if (problem) {
    // The environment is closed before the lock file's descriptor (see lockFiles); the check's error is the one to report.
    void root.close().then(() => lockFd !== undefined && releaseLockFile(path));
    throw problem;
  }
  return { root, lockFd, repairable };
}

/**
 * Makes the database file's directory, or fails at once: lmdb-js makes it with
 * Node's recursive mkdir, which never returns under `/proc` (see makeDirectories).
 */
function prepareDirectory(path: string, readOnly: boolean): void {
  if (readOnly) throw fileError("E_IO", path, "does not exist (readOnly opens an existing database)");
  try {
    makeDirectories(dirname(path));
  } catch (error) {
    throw fileError("E_IO", path, `cannot be created: ${(error as Error).message}`, error);
  }
}

/**
 * Keys in an LMDB environment through lmdb-js: reads are synchronous and
 * the full sync API works; the async API's writes of one event turn commit
 * together in one write transaction when the turn ends. Every entry carries an
 * LMDB version, which is the etag; CAS and transactions check versions inside
 * the committing transaction, which starts from the newest commit (see
 * writeBase), so they hold across processes sharing the file.
 *
 * @throws StorageError `E_INVALID_OPTION` (no path, an unknown option, a path that is not a file),
 * `E_CORRUPT` (not an LMDB database), `E_IO` (cannot be read, created or opened).
 * A `-lock` file of another LMDB lock format or mutex layout (another platform or
 * lmdb-js build) opens without the cross-process repairs, with a process warning
 * (`STOWAGE_LMDB_LOCK_LAYOUT`).
 */
export default defineDriver<LmdbOptions, LmdbDatabase>((options: LmdbOptions) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  if (!options?.path) throw new StorageError("E_INVALID_OPTION", "The lmdb driver needs a path", { driver: DRIVER_NAME });
  const name = options.name ?? "stowage";
  if (!checkDataFile(options.path)) prepareDirectory(options.path, options.readOnly === true);
  const { root, lockFd, repairable } = openEnvironment({
    path: options.path,
    noSubdir: true,
    noSync: options.noSync === true,
    // lmdb-js's default on Linux, overlappingSync, lost a committed write now and then when
    // several processes wrote one file (lmdb-js 3.5.6; docs/lmdb.md has the figures).
    overlappingSync: false,
    mapSize: options.mapSize,
    readOnly: options.readOnly === true,
  });
  /** Closes the environment, then the lock file's descriptor (see lockFiles). */
  const closeEnvironment = async (): Promise<void> => {
    await root.close();
    if (lockFd !== undefined) releaseLockFile(options.path);
  };
  let db: LmdbDatabase;
  let expiry: Database<true, ExpiryKey>;
  let baseCheck: ReturnType<typeof writeBase> | undefined;
  try {
    db = root.openDB<StoredValue, string>({ name, useVersions: true });
    // Expiring keys by time, so a purge reads only what is due.
    expiry = root.openDB<true, ExpiryKey>({ name: `${name}:expiry` });
    baseCheck = options.readOnly || lockFd === undefined || !repairable ? undefined : writeBase(options.path, root, lockFd);
  } catch (error) {
    void closeEnvironment();
    throw error instanceof StorageError ? error : new StorageError("E_IO", `Cannot open ${options.path}: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
  }

  /** The entry stored under a key, expired or not. */
  const entryOf = (key: string): { value: StoredValue; version: number; alive: boolean } | null => {
    const entry = db.getEntry(checkKey(key));
    return entry === undefined ? null : { value: entry.value, version: entry.version ?? 0, alive: isAlive(entry.value, Date.now()) };
  };
  const read = (key: string): { value: StoredValue; version: number } | null => {
    const entry = entryOf(key);
    return entry?.alive ? entry : null;
  };
  const valueOf = (key: string): Payload | null => {
    const stored = db.get(checkKey(key));
    return stored === undefined || !isAlive(stored, Date.now()) ? null : payloadOf(stored);
  };

  /** What to store for a write, and when it expires (for the expiry index). */
  const record = (value: Payload, opts: SetOptions | undefined): { stored: StoredValue; expires?: number } => {
    if (opts?.ttl === undefined) return { stored: value };
    const expires = Date.now() + opts.ttl;
    return { stored: [value, expires], expires };
  };

  /** The etags a batch's checks and guards expect, in order: a string, or null for "no live value". */
  function* expectations(operations: CommitOperation[]): Generator<{ key: string; etag: string | null }> {
    for (const op of operations) {
      if (op.type === "check") {
        yield { key: op.key, etag: op.etag };
        continue;
      }
      const guard = guardOf(op.options, DRIVER_NAME, op.key);
      if (guard.kind !== "none") yield { key: op.key, etag: guard.kind === "match" ? guard.etag : null };
    }
  }

  /**
   * Checks a batch's guards against what is stored, inside the write
   * transaction that will apply it: the conflict, or null. An expired entry
   * that is still stored counts as no live value.
   */
  const guardFailure = (operations: CommitOperation[]): StorageError | null => {
    for (const { key, etag } of expectations(operations)) {
      const entry = entryOf(key);
      const live = entry?.alive ? String(entry.version) : null;
      if (live !== etag) return conflictOn({ key, etag });
    }
    return null;
  };

  /** Applies a batch's writes; called inside a write transaction. */
  const writeAll = (operations: CommitOperation[]): void => {
    for (const op of operations) {
      if (op.type === "check") continue;
      if (op.type === "remove") {
        db.removeSync(op.key);
        continue;
      }
      const { stored, expires } = record(op.value, op.options);
      db.putSync(op.key, stored, newVersion());
      if (expires !== undefined) expiry.putSync([expires, op.key], true);
    }
  };

  /** A batch's guards, then its writes when they hold: the conflict, or null. Inside a write transaction. */
  const applyGuarded = (operations: CommitOperation[]): StorageError | null => {
    const failure = guardFailure(operations);
    if (failure === null) writeAll(operations);
    return failure;
  };

  /**
   * Runs `write` in a synchronous LMDB write transaction that starts from the
   * newest commit (see writeBase): one that did not is aborted and run again.
   */
  function writeTransaction<T>(write: () => T): T {
    if (!baseCheck) throw new StorageError("E_READONLY", `${options.path} is open read-only`, { driver: DRIVER_NAME });
    for (let attempt = 1; ; attempt++) {
      try {
        return root.transactionSync(() => {
          baseCheck.check();
          return write();
        });
      } catch (error) {
        if (!(error instanceof StaleBase) || attempt === STALE_BASE_ATTEMPTS) throw ioError(error);
      }
    }
  }

  /** Applies a batch in one write transaction, where the guards read what the commit will replace: all of it, or nothing. */
  const commitSync = (operations: CommitOperation[]): void => {
    checkKeys(operations);
    const failure = writeTransaction(() => applyGuarded(operations));
    if (failure) throw failure;
  };

  /**
   * The async API's writes of one event turn, committed together in one write
   * transaction once the turn ends. Each batch keeps its own guards: a failed
   * one rejects only its batch, and the batches after it see what the earlier
   * ones wrote.
   */
  let queued: { operations: CommitOperation[]; resolve: () => void; reject: (error: unknown) => void }[] = [];
  const flushQueued = (): void => {
    const batches = queued;
    queued = [];
    if (batches.length === 0) return;
    let failures: (StorageError | null)[];
    try {
      failures = writeTransaction(() => batches.map(({ operations }) => applyGuarded(operations)));
    } catch (error) {
      for (const { reject } of batches) reject(error);
      return;
    }
    batches.forEach(({ resolve, reject }, i) => (failures[i] ? reject(failures[i]) : resolve()));
  };
  const commitAsync = (operations: CommitOperation[]): Promise<void> =>
    new Promise((resolve, reject) => {
      checkKeys(operations);
      if (queued.length === 0) setImmediate(flushQueued);
      queued.push({ operations, resolve, reject });
    });

  const setOperation = (key: string, value: Payload, options: SetOptions | undefined): CommitOperation =>
    typeof value === "string" ? { type: "set", key, value, options: options ?? {} } : { type: "setRaw", key, value, options: options ?? {} };

  const removeOperation = (key: string, options: RemoveOptions | undefined): CommitOperation => ({ type: "remove", key, options: options ?? {} });

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
    writeTransaction(() => {
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
      writeTransaction(() => {
        db.clearSync();
        expiry.clearSync();
      });
      return;
    }
    writeTransaction(() => {
      // Listed before removing: the removals move the cursor's pages.
      for (const key of Array.from(db.getKeys(range(base)))) db.removeSync(key);
    });
    purge();
  };

  return {
    name: DRIVER_NAME,
    // One byte short of what the driver takes, for the core's meta sidecar `key$`.
    keyLimits: { bytes: MAX_KEY_BYTES - 1, segments: DEFAULT_KEY_LIMITS.segments },
    options,
    flags: { maxDepth: true, ttl: true, sync: true, cas: true, etag: "version", transactions: true, clearBase: true, nestedKeys: true },
    getInstance: () => db,
    hasItem: (key: string) => valueOf(key) !== null,
    getItem: valueOf,
    getItemRaw: valueOf,
    getItems: (items: { key: string }[]) => items.map(({ key }) => ({ key, value: valueOf(key) })),
    setItem: (key: string, value: string, opts: SetOptions) => commitSync([setOperation(key, value, opts)]),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => commitSync([setOperation(key, value, opts)]),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
      commitSync(items.map((item) => setOperation(item.key, item.value, item.options ?? common))),
    removeItem: (key: string, opts: RemoveOptions) => commitSync([removeOperation(key, opts)]),
    getMeta: (key: string): StorageMeta | null => {
      const found = read(key);
      if (found === null) return null;
      const payload = payloadOf(found.value);
      const meta: StorageMeta = { etag: String(found.version), size: typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength };
      return describeExpiry(meta, expiresOf(found.value));
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
      setItem: (key: string, value: string, opts: SetOptions) => commitAsync([setOperation(key, value, opts)]),
      setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => commitAsync([setOperation(key, value, opts)]),
      setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
        commitAsync(items.map((item) => setOperation(item.key, item.value, item.options ?? common))),
      removeItem: (key: string, opts: RemoveOptions) => commitAsync([removeOperation(key, opts)]),
      commit: commitAsync,
    },
    dispose: async () => {
      if (purger) clearInterval(purger);
      if (!isOpen) return;
      // Writes queued in this event turn commit before the environment closes.
      flushQueued();
      isOpen = false;
      baseCheck?.close();
      await closeEnvironment();
    },
  };
});
