import { defineDriver } from "../core/defineDriver.js";
import { StorageError, toStorageError } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import type { CommitOperation, Driver, RemoveOptions, SetOptions, StorageMeta, TransactionOptions } from "../core/types.js";
import { isValidRefName } from "../git/refs/refName.js";
import { KeyValueRepo, type WriteUnit } from "../git/store/kvStore.js";
import { oneAtATime } from "../git/remote/fetchCheck.js";
import { syncRef, type SyncOptions, type SyncResult } from "../git/remote/sync.js";
import type { MaintenanceOptions, MaintenanceResult } from "../git/repo/maintenance.js";
import type { CommitGraphWritten } from "../git/packs/commitGraph.js";
import { GIT_KEY_LIMITS } from "../git/store/kvStore.js";
import { checkIdentity } from "../git/objects/signature.js";

export interface GitDriverOptions {
  /** A repository (bare, a `.git` directory or a worktree); a bare repository is created there when there is none. Required. */
  dir: string;
  /**
   * The ref whose commits hold the keys.
   * @default "refs/stowage/default"
   */
  ref?: string;
  /**
   * Author and committer of stowage's commits.
   * @default "stowage <stowage@localhost>"
   */
  author?: { name: string; email: string };
  /**
   * Commit message template: `{op}` is
   * `set`, `remove`, `setItems`, `clear`, `commit` or, for a group commit of
   * different operations, `batch`; `{key}` the key (the first one and
   * `(+N more)` when a commit changes several; the base for a clear, `*` for
   * all); `{count}` the number of keys changed.
   * @default "stowage: {op} {key}"
   */
  message?: string;
  /**
   * fsync objects, packs and the ref before they are renamed into place (as Git).
   * @default false
   */
  fsync?: boolean;
  /**
   * A directory holding more entries than this is split into 256 hash buckets (see docs/git.md).
   * @default 1024
   */
  fanout?: number;
  /**
   * How long a write waits for a ref lock held by another writer, in ms.
   * @default 5000
   */
  lockTimeout?: number;
  /**
   * How often a watch polls the ref besides file-system notifications, in ms.
   * @default 500
   */
  pollInterval?: number;
  /**
   * When this process has more packs open than this after a commit, small packs are merged (0: never).
   * @default 32
   */
  packLimit?: number;
}

/** The git driver: a Driver, plus `maintenance()` and `sync()`. */
export type GitDriver = Driver<GitDriverOptions, KeyValueRepo> & {
  /**
   * Packs loose objects, merges packs, prunes unreachable objects older than
   * `grace`, and writes the commit-graph history walks read (docs/git.md).
   */
  maintenance(options?: MaintenanceOptions): MaintenanceResult & { commitGraph?: CommitGraphWritten };
  /**
   * Syncs the ref with the same ref on `remote` (a configured remote, a URL
   * or a path) through the stock `git` CLI: fetch, per-key merge by
   * `options.policy` (default `latest`), push (docs/git.md, "Sync"). Writes
   * queued before the call are committed first.
   */
  sync(remote: string, options?: SyncOptions): Promise<SyncResult>;
};

const DRIVER_NAME = "git";

function invalid(message: string): StorageError {
  return new StorageError("E_INVALID_OPTION", message, { driver: DRIVER_NAME });
}

const KNOWN_OPTIONS = ["dir", "ref", "author", "message", "fsync", "fanout", "lockTimeout", "pollInterval", "packLimit"] as const;

/** Every option checked before the repository is opened or created. */
function checkGitOptions(options: GitDriverOptions): void {
  checkOptions(DRIVER_NAME, options, [...KNOWN_OPTIONS]);
  if (!options?.dir || typeof options.dir !== "string") throw invalid("The git driver needs a dir");
  const ref = options.ref ?? "refs/stowage/default";
  if (typeof ref !== "string" || !ref.startsWith("refs/") || !isValidRefName(ref)) throw invalid(`Not a valid ref name: ${JSON.stringify(ref)}`);
  if (options.author !== undefined) checkAuthor(options.author);
  if (options.message !== undefined && (typeof options.message !== "string" || options.message.includes("\0"))) {
    // git fsck --strict refuses a commit whose message holds NUL.
    throw invalid("message must be a string without NUL");
  }
  if (options.fsync !== undefined && typeof options.fsync !== "boolean") throw invalid("fsync must be a boolean");
  const fanout = options.fanout ?? 1024;
  if (!Number.isInteger(fanout) || fanout < 16) throw invalid("fanout must be an integer of at least 16");
  checkNumber("lockTimeout", options.lockTimeout, 0);
  // A watch polls every pollInterval ms: 0 would poll without pause.
  checkNumber("pollInterval", options.pollInterval, 1);
  if (options.packLimit !== undefined && !Number.isInteger(options.packLimit)) throw invalid("packLimit must be an integer");
  checkNumber("packLimit", options.packLimit, 0);
}

function checkNumber(name: string, value: unknown, least: number): void {
  if (value !== undefined && (typeof value !== "number" || !Number.isFinite(value) || value < least)) throw invalid(`${name} must be a finite number of at least ${least}`);
}

/** The author goes into every commit and reflog line: one Git cannot read back is refused here, not at the first write. */
function checkAuthor(author: unknown): void {
  try {
    checkIdentity(author, "author");
  } catch (error) {
    throw toStorageError(error, DRIVER_NAME);
  }
}

const setOp = (key: string, value: string | Uint8Array, options: SetOptions | undefined): CommitOperation =>
  typeof value === "string" ? { type: "set", key, value, options: options ?? {} } : { type: "setRaw", key, value, options: options ?? {} };

const versionOf = (opts: TransactionOptions | undefined): string | undefined => {
  const version = opts?.version;
  if (version === undefined) return undefined;
  if (typeof version !== "string") throw invalid("version must be a commit id");
  return version;
};

/** Builds the driver once its options are checked. */
const gitDriver: (options: GitDriverOptions) => GitDriver = (options) => {
  checkGitOptions(options);
  const ref = options.ref ?? "refs/stowage/default";
  const author = options.author ?? { name: "stowage", email: "stowage@localhost" };
  const store = new KeyValueRepo({
    dir: options.dir,
    ref,
    author,
    message: options.message ?? "stowage: {op} {key}",
    fsync: options.fsync === true,
    fanout: options.fanout ?? 1024,
    lockTimeout: options.lockTimeout ?? 5000,
    pollInterval: options.pollInterval ?? 500,
    packLimit: options.packLimit ?? 32,
  });

  const target = { repo: store.repo, keys: store.keys, readCommit: (id: string) => store.commit(id), author, ref, keyLimits: GIT_KEY_LIMITS };
  const oneSync = oneAtATime();

  const units = {
    set: (key: string, value: string | Uint8Array, opts: SetOptions | undefined): WriteUnit => ({ op: "set", ops: [setOp(key, value, opts)] }),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions | undefined): WriteUnit => ({
      op: "setItems",
      ops: items.map((item) => setOp(item.key, item.value, item.options ?? common)),
    }),
    remove: (key: string, opts: RemoveOptions | undefined): WriteUnit => ({ op: "remove", ops: [{ type: "remove", key, options: opts ?? {} }] }),
    commit: (operations: CommitOperation[]): WriteUnit => ({ op: "commit", ops: operations }),
  };
  const now = (unit: WriteUnit): void => store.commitSync([unit]);
  const later = (unit: WriteUnit): Promise<void> => store.enqueue(unit);

  const getMeta = (key: string): StorageMeta | null => {
    const id = store.valueId(key);
    if (id === undefined) return null;
    const time = store.tipTime();
    return { etag: id, size: store.repo.readBlob(id).length, ...(time === undefined ? {} : { mtime: new Date(time) }) };
  };

  return {
    name: DRIVER_NAME,
    options,
    flags: { sync: true, cas: true, etag: "content", transactions: true, history: true, watch: true, maxDepth: true, clearBase: true, nestedKeys: true },
    keyLimits: GIT_KEY_LIMITS,
    getInstance: () => store,
    hasItem: (key: string) => store.valueId(key) !== undefined,
    getItem: (key: string, opts?: TransactionOptions) => store.read(key, versionOf(opts))?.toString("utf8") ?? null,
    getItemRaw: (key: string, opts?: TransactionOptions) => {
      const bytes = store.read(key, versionOf(opts));
      // The blob may be shared with the object cache: hand out a copy.
      return bytes === null ? null : new Uint8Array(bytes);
    },
    getItems: (items: { key: string; options?: TransactionOptions }[]) =>
      items.map(({ key, options: opts }) => ({ key, value: store.read(key, versionOf(opts))?.toString("utf8") ?? null })),
    setItem: (key: string, value: string, opts: SetOptions) => now(units.set(key, value, opts)),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => now(units.set(key, value, opts)),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common?: SetOptions) => now(units.setItems(items, common)),
    removeItem: (key: string, opts: RemoveOptions) => now(units.remove(key, opts)),
    commit: (operations: CommitOperation[]) => now(units.commit(operations)),
    clear: (base: string) => now({ op: "clear", ops: [], clearBase: (base ?? "").replace(/:+$/, "") }),
    getMeta,
    getKeys: (base: string, opts: { maxDepth?: number }) => store.list(base ?? "", opts?.maxDepth),
    getHistory: (key: string, opts: { limit?: number }) => store.history(key, opts?.limit ?? Number.POSITIVE_INFINITY),
    watch: (callback) => store.watch(callback),
    asyncWrites: {
      setItem: (key: string, value: string, opts: SetOptions) => later(units.set(key, value, opts)),
      setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => later(units.set(key, value, opts)),
      setItems: (items: { key: string; value: string; options?: SetOptions }[], common?: SetOptions) => later(units.setItems(items, common)),
      removeItem: (key: string, opts: RemoveOptions) => later(units.remove(key, opts)),
      commit: (operations: CommitOperation[]) => later(units.commit(operations)),
    },
    maintenance: (maintenanceOptions?: MaintenanceOptions) => store.maintenance(maintenanceOptions),
    sync: (remote: string, syncOptions?: SyncOptions) =>
      oneSync(async () => {
        await store.drain();
        return syncRef(target, remote, syncOptions);
      }).catch((error: unknown) => {
        throw toStorageError(error, DRIVER_NAME);
      }),
    dispose: () => store.close(),
  };
};

/**
 * A versioned key-value store in a Git repository: every write is a commit
 * on `ref` whose tree holds one blob per key, so `git log`, `git show` and
 * `git fsck` read it. Synchronous (the engine is); the async API coalesces
 * writes made together into one commit. The etag is the value's blob id.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing `dir`, an unknown option or one of the wrong type or range, a ref name Git refuses, an author Git cannot read back
 */
export default defineDriver<GitDriverOptions, KeyValueRepo>(gitDriver) as (options: GitDriverOptions) => GitDriver;
