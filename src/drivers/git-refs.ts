import { StorageError } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import type { CommitOperation, Driver, KeyLimits, RemoveOptions, SetOptions } from "../core/types.js";
import { AutoMaintenance, looseLimitOption, type Maintainable } from "../git/repo/autoMaintenance.js";
import { isValidRefName } from "../git/refs/refName.js";
import type { MaintenanceOptions } from "../git/repo/maintenance.js";
import type { Repository } from "../git/repo/repository.js";
import { basePath, keyPath, pathKey } from "../git/store/keyNames.js";
import { BLOB_DRIVER_FLAGS, blobReads, checkDriverKey, expectation } from "../git/store/driverSupport.js";
import { GroupCommit, oncePerName } from "../git/store/groupCommit.js";
import { openOrInit } from "../git/store/openStore.js";
import { listRefNames } from "../git/refs/refList.js";
import { commitRefs, commitRefsEach, type RefChange } from "../git/refs/refTransaction.js";

export interface GitRefsOptions {
  /** An existing repository or worktree, or where a new bare repository is created. Required. */
  dir: string;
  /**
   * Ref prefix the keys live under (must end in `/`).
   * @default "refs/stowage/kv/"
   */
  prefix?: string;
  /**
   * fsync blobs and ref files before they are renamed into place (as Git).
   * @default false
   */
  fsync?: boolean;
  /**
   * How long a write waits for ref locks other writers hold, in ms, before `E_UNAVAILABLE`.
   * @default 5000
   */
  lockTimeout?: number;
  /**
   * Keep a reflog per key ref (`logs/refs/stowage/kv/…`), which Git keeps only for heads, remotes and notes.
   * @default false
   */
  reflog?: boolean;
  /**
   * Past about this many loose objects, a write packs them and prunes old garbage, as `git gc --auto` (git's `gc.auto`; 0: never).
   * @default 6700
   */
  looseLimit?: number;
}

/** The git-refs driver, with `maintenance()`. */
export type GitRefsDriver = Driver<GitRefsOptions, Repository> & Maintainable;

const DRIVER_NAME = "git-refs";
const DEFAULT_PREFIX = "refs/stowage/kv/";

/**
 * A key is a ref, so a file path: each segment a directory or file name
 * (MAX_COMPONENT_BYTES encoded, else E_INVALID_KEY), the whole within
 * PATH_MAX. A key byte encodes to 3 bytes at most (`%` → `%25`), so 1024
 * bytes stay under 3.1 KB of ref name; 256 segments bound the directories a
 * write creates and a removal prunes.
 */
export const GIT_REFS_KEY_LIMITS: Readonly<KeyLimits> = Object.freeze({ bytes: 1024, segments: 256 });

/** Linux's PATH_MAX less its NUL: the longest file path a ref's lock, file or reflog may have. */
const MAX_PATH_BYTES = 4095;
/** The longest file name (NAME_MAX). */
const MAX_NAME_BYTES = 255;

function invalidOption(message: string): StorageError {
  return new StorageError("E_INVALID_OPTION", message, { driver: DRIVER_NAME });
}

/**
 * One ref per key under a prefix (`user:1` → `refs/stowage/kv/user/1%`),
 * pointing at a blob that holds the value: every write is a compare-and-swap
 * with Git's own lock protocol, so stowage processes and stock `git
 * update-ref` serialize; the etag is the blob id. `setItems`, `clear` and
 * transactions take every ref's lock first and change all refs or none.
 * See docs/git-refs.md for the key encoding.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing `dir`, an unknown option, a bad `prefix`, `lockTimeout` or `looseLimit`, a `dir` that is a file, or a directory neither empty nor a Git repository
 */
export default function gitRefs(options: GitRefsOptions): GitRefsDriver {
  checkOptions(DRIVER_NAME, options, ["dir", "prefix", "fsync", "lockTimeout", "reflog", "looseLimit"]);
  if (!options?.dir) throw invalidOption("The git-refs driver needs a dir");
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== "string" || !prefix.startsWith("refs/") || !prefix.endsWith("/") || !isValidRefName(`${prefix}x`)) {
    throw invalidOption(`Invalid ref prefix: ${JSON.stringify(prefix)} (a valid ref name prefix under refs/, ending in /)`);
  }
  const lockTimeout = options.lockTimeout ?? 5000;
  if (typeof lockTimeout !== "number" || !Number.isFinite(lockTimeout) || lockTimeout < 0) throw invalidOption(`lockTimeout must be a finite number of at least 0, got ${String(lockTimeout)}`);
  const repo = openOrInit(options.dir, { fsync: options.fsync === true });
  const maintenance = new AutoMaintenance(repo, looseLimitOption(options.looseLimit, DRIVER_NAME));
  const transaction = {
    fsync: options.fsync === true,
    lockTimeout,
    reflogMessage: options.reflog === true ? "stowage: git-refs" : undefined,
  };

  /** The longest file path a ref takes: its lock file or its reflog. */
  const longestPath = (name: string): number => Math.max(Buffer.byteLength(repo.refs.refPath(name)) + ".lock".length, Buffer.byteLength(repo.refs.logPath(name)));

  /** The ref of a key, refused (E_INVALID_KEY) when its lock or reflog file would not fit in a path. */
  const refOf = (key: string): string => {
    checkDriverKey(key, GIT_REFS_KEY_LIMITS, DRIVER_NAME);
    const name = prefix + keyPath(key);
    const longest = longestPath(name);
    if (longest > MAX_PATH_BYTES) {
      throw new StorageError("E_INVALID_KEY", `Key too long for git-refs in this repository: its ref file path would be ${longest} bytes, at most ${MAX_PATH_BYTES}`, {
        driver: DRIVER_NAME,
        key: key.slice(0, 200),
      });
    }
    return name;
  };
  const idOf = (key: string): string | undefined => repo.refs.read(refOf(key))?.id;

  /** Adds a condition to a ref's change; two different conditions on one key can never both hold. */
  const require = (change: RefChange, wanted: string | null | undefined, key: string): void => {
    if (wanted === undefined) return;
    if (change.expected !== undefined && change.expected !== wanted) {
      throw new StorageError("E_CONFLICT", `Conflicting conditions on one key: ${key}`, { driver: DRIVER_NAME, key });
    }
    change.expected = wanted;
  };

  /** All operations as one ref transaction; the new blobs are written first (as one pack when many). */
  const commit = (operations: CommitOperation[]): void => {
    const changes = new Map<string, RefChange>();
    const bodies = new Map<string, Buffer>();
    for (const op of operations) {
      const name = refOf(op.key);
      const change = changes.get(name) ?? { name };
      changes.set(name, change);
      require(change, op.type === "check" ? op.etag : expectation(op.options, DRIVER_NAME, op.key), op.key);
      if (op.type === "set" || op.type === "setRaw") {
        bodies.set(name, Buffer.from(op.value));
      } else if (op.type === "remove") {
        bodies.delete(name);
        change.id = null;
      }
    }
    const names = [...bodies.keys()];
    const ids = repo.writeObjects(names.map((name) => ({ type: "blob" as const, body: bodies.get(name) as Buffer })));
    names.forEach((name, index) => ((changes.get(name) as RefChange).id = ids[index] as string));
    commitRefs(repo.refs, [...changes.values()], transaction);
    maintenance.wrote();
  };

  const write = (key: string, value: string | Uint8Array, opts: SetOptions | undefined): void => {
    // The ref name and the guard first: a key or guards refused leave no blob behind.
    const name = refOf(key);
    const expected = expectation(opts, DRIVER_NAME, key);
    const change: RefChange = { name, id: repo.writeBlob(typeof value === "string" ? Buffer.from(value, "utf8") : value) };
    if (expected !== undefined) change.expected = expected;
    commitRefs(repo.refs, [change], transaction);
    maintenance.wrote();
  };

  const remove = (key: string, opts: RemoveOptions | undefined): void => {
    const name = refOf(key);
    const expected = expectation(opts, DRIVER_NAME, key);
    // Removing what is not there needs no lock (and no directories made for one).
    if (expected === undefined && repo.refs.read(name) === undefined) return;
    commitRefs(repo.refs, [expected === undefined ? { name, id: null } : { name, id: null, expected }], transaction);
  };

  /** A write waiting for the next group commit; `body` undefined removes the key. */
  type Pending = { name: string; body?: Buffer; expected?: string | null };

  /** One batch as one pack of blobs and one ref transaction, each write on its own condition. */
  const commitBatch = (batch: readonly Pending[]): Map<Pending, StorageError> => {
    const writes = batch.filter((entry) => entry.body !== undefined);
    const ids = repo.writeObjects(writes.map((entry) => ({ type: "blob" as const, body: entry.body as Buffer })));
    const idOf = new Map(writes.map((entry, index) => [entry, ids[index] as string]));
    const changes = batch.map((entry): RefChange => {
      const change: RefChange = { name: entry.name, id: idOf.get(entry) ?? null };
      if (entry.expected !== undefined) change.expected = entry.expected;
      return change;
    });
    const failures = commitRefsEach(repo.refs, changes, transaction);
    maintenance.wrote();
    return new Map(batch.flatMap((entry) => (failures.has(entry.name) ? [[entry, failures.get(entry.name) as StorageError]] : [])));
  };

  /**
   * Group commit for the async API: writes issued in the same event-loop
   * turn (a setItems, concurrent callers) share one pack of blobs and one
   * ref transaction, each write on its own condition; a batch holds each ref
   * once (a later write to a ref waits for the next); each promise settles
   * once its ref is published.
   */
  const batches = new GroupCommit<Pending>({ commit: commitBatch, split: oncePerName((entry) => entry.name) });
  const enqueue = (key: string, body: Buffer | undefined, opts: SetOptions | RemoveOptions | undefined): Promise<void> => {
    const entry: Pending = { name: refOf(key) };
    if (body !== undefined) entry.body = body;
    const expected = expectation(opts, DRIVER_NAME, key);
    if (expected !== undefined) entry.expected = expected;
    return batches.enqueue(entry);
  };

  /** The refs of the keys under `base`, by key: names as found, so a clear removes even a ref written past the limits by someone else. */
  const refsUnder = (base: string): Map<string, string> => {
    const refs = new Map<string, string>();
    const dir = prefix + basePath(base);
    // No ref lives below a directory no file path can name: nothing to list (reading it would be ENAMETOOLONG).
    if (longestPath(dir) > MAX_PATH_BYTES || dir.split("/").some((part) => Buffer.byteLength(part) > MAX_NAME_BYTES)) return refs;
    for (const name of listRefNames(repo.refs, dir)) {
      const key = pathKey(name.slice(prefix.length));
      if (key !== undefined && key.startsWith(base)) refs.set(key, name);
    }
    return refs;
  };
  const keysUnder = (base: string): string[] => [...refsUnder(base).keys()];

  return {
    name: DRIVER_NAME,
    options,
    flags: BLOB_DRIVER_FLAGS,
    keyLimits: GIT_REFS_KEY_LIMITS,
    getInstance: () => repo,
    maintenance: (opts?: MaintenanceOptions) => maintenance.run(opts),
    ...blobReads(repo, idOf, keysUnder),
    setItem: (key: string, value: string, opts: SetOptions) => write(key, value, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => write(key, value, opts),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
      commit(items.map((item) => ({ type: "set", key: item.key, value: item.value, options: item.options ?? common }))),
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    clear: (base: string) => {
      const names = [...refsUnder(base ?? "").values()];
      commitRefs(repo.refs, names.map((name) => ({ name, id: null })), transaction);
    },
    commit,
    asyncWrites: {
      setItem: (key: string, value: string, opts: SetOptions) => enqueue(key, Buffer.from(value, "utf8"), opts),
      // A copy: the caller may change its bytes before the group commit runs.
      setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => enqueue(key, Buffer.from(value), opts),
      removeItem: (key: string, opts: RemoveOptions) => enqueue(key, undefined, opts),
    },
    dispose: async () => {
      await batches.drain();
      repo.close();
    },
  };
}
