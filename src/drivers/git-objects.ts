import { StorageError } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import type { CommitOperation, Driver, KeyLimits, RemoveOptions, SetOptions } from "../core/types.js";
import { AutoMaintenance, looseLimitOption, type Maintainable } from "../git/repo/autoMaintenance.js";
import { hashObject, isObjectId } from "../git/objects/objectId.js";
import type { MaintenanceOptions } from "../git/repo/maintenance.js";
import type { Repository } from "../git/repo/repository.js";
import { basePath, keyPath, pathKey } from "../git/store/keyNames.js";
import { BLOB_DRIVER_FLAGS, blobReads, checkDriverKey, enqueueChange, expectation, foldOperations } from "../git/store/driverSupport.js";
import { holdIndex, namespacedRef, openOrInit } from "../git/store/openStore.js";
import { TreeRef, type NameChange, type TreeLayout } from "../git/store/treeRef.js";

export interface GitObjectsOptions {
  /** An existing repository or worktree, or where a new bare repository is created. Required. */
  dir: string;
  /**
   * The index ref whose commits hold every stored blob. Given explicitly,
   * several drivers may share it on purpose; see `namespace`.
   * @default "refs/stowage/objects"
   */
  ref?: string;
  /**
   * A separate index on `<ref>-<namespace>` (e.g. `refs/stowage/objects-artifacts`),
   * so several mounts on one repository keep their keys apart. Without `ref`,
   * one process may hold each default index in one driver only: a second
   * driver on it is `E_INVALID_OPTION` until the first is disposed.
   */
  namespace?: string;
  /**
   * `keyed`: any key, its value's blob recorded under `keys/` in the
   * index tree. `content`: keys are the values' own blob ids (`setItem` with
   * another key is `E_INVALID_KEY`), recorded under `blobs/`.
   * @default "keyed"
   */
  mode?: "keyed" | "content";
  /**
   * fsync objects and the ref before they are renamed into place (as Git).
   * @default false
   */
  fsync?: boolean;
  /**
   * Past about this many loose objects, a write packs them and prunes old garbage, as `git gc --auto` (git's `gc.auto`; 0: never).
   * @default 6700
   */
  looseLimit?: number;
}

/** The content-addressed store: what `getInstance()` returns, and {@link gitObjectStore}. */
export interface GitObjectStore {
  repo: Repository;
  /** Stores bytes as a blob recorded in the index; returns its object id (as `git hash-object`). */
  put(bytes: Uint8Array | string): string;
  /** The bytes of a stored blob, checked against its id (`E_CORRUPT` on mismatch); null when the index does not hold it. */
  get(id: string): Uint8Array | null;
  /** True when the index holds the blob. */
  has(id: string): boolean;
  /** Drops the blob from the index (`git gc` may then prune it). False when it was not there. */
  delete(id: string): boolean;
}

const DRIVER_NAME = "git-objects";

/**
 * A keyed-mode key is a path of nested trees in the index (each segment at
 * most MAX_COMPONENT_BYTES encoded, else E_INVALID_KEY); Git 2.44 on refuses
 * to walk trees deeper than 2048 (`core.maxTreeDepth`), so 512 segments, as
 * the git driver. Content-mode keys are 40-hex ids, far inside both bounds.
 */
export const GIT_OBJECTS_KEY_LIMITS: Readonly<KeyLimits> = Object.freeze({ bytes: 65_536, segments: 512 });
const KEYS = "keys/";
const BLOBS = "blobs/";

/** `blobs/<id>` names fan out as `blobs/ab/cdef…` in the tree (as objects/ does); keys are their own paths. */
const LAYOUT: TreeLayout = {
  nameOf: (path) => (/^blobs\/[0-9a-f]{2}\/[0-9a-f]{38}$/.test(path) ? BLOBS + path.slice(6, 8) + path.slice(9) : path),
  pathsOf: (names) => {
    const paths = new Map<string, string>();
    for (const [name, id] of names) paths.set(name.startsWith(BLOBS) && isObjectId(name.slice(6)) ? `${BLOBS}${name.slice(6, 8)}/${name.slice(8)}` : name, id);
    return paths;
  },
};

function fail(code: "E_INVALID_KEY" | "E_INVALID_OPTION", message: string, key?: string): StorageError {
  return new StorageError(code, message, { driver: DRIVER_NAME, key });
}

const STORE_OPTIONS = ["dir", "ref", "namespace", "fsync", "looseLimit"] as const;
const DRIVER_OPTIONS = [...STORE_OPTIONS, "mode"] as const;

/** Checks dir, ref, namespace and looseLimit, then opens (or creates) the repository and its index. */
function open(options: Omit<GitObjectsOptions, "mode">): { repo: Repository; index: TreeRef; maintenance: AutoMaintenance; ref: string } {
  if (!options?.dir || typeof options.dir !== "string") throw fail("E_INVALID_OPTION", "The git-objects driver needs a dir");
  const ref = namespacedRef(options, "refs/stowage/objects", DRIVER_NAME);
  const looseLimit = looseLimitOption(options.looseLimit, DRIVER_NAME);
  const repo = openOrInit(options.dir, { fsync: options.fsync === true, lockTimeout: 5000 });
  const maintenance = new AutoMaintenance(repo, looseLimit);
  return { repo, index: new TreeRef(repo, { ref, layout: LAYOUT, message: "stowage: git-objects", maintenance }), maintenance, ref };
}

function storeOf(repo: Repository, index: TreeRef): GitObjectStore {
  const name = (id: string): string => {
    if (!isObjectId(id)) throw fail("E_INVALID_KEY", `Not an object id: ${JSON.stringify(id)}`, id);
    return BLOBS + id;
  };
  return {
    repo,
    put(bytes) {
      const id = repo.writeBlob(typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes);
      index.apply([{ name: BLOBS + id, id }]);
      return id;
    },
    get: (id) => (index.get(name(id)) === undefined ? null : Buffer.from(repo.readBlob(id))),
    has: (id) => index.get(name(id)) !== undefined,
    delete(id) {
      if (index.get(name(id)) === undefined) return false;
      index.apply([{ name: name(id), id: null }]);
      return true;
    },
  };
}

/** Claims the default index for this driver (see `namespace`); the repository is closed when that is refused. */
function holdOrClose(repo: Repository, ref: string): () => void {
  try {
    return holdIndex(repo, ref, DRIVER_NAME);
  } catch (error) {
    repo.close();
    throw error;
  }
}

/** What {@link gitObjectStore} returns: the object store, and `close()` to release its index and the repository. */
export interface OpenGitObjectStore extends GitObjectStore {
  /** Releases the default index (see `namespace`) and closes the repository; later calls do nothing. */
  close(): void;
}

/**
 * The content-addressed store alone, without a Driver around it. Like the
 * driver, it holds a default index (no `ref` given) alone in this process
 * until it is closed: a driver or store already on it is `E_INVALID_OPTION`.
 */
export function gitObjectStore(options: Omit<GitObjectsOptions, "mode">): OpenGitObjectStore {
  checkOptions(DRIVER_NAME, options, [...STORE_OPTIONS]);
  const { repo, index, ref } = open(options);
  const release = claimDefaultIndex(options, repo, ref);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    release();
    repo.close();
  };
  return { ...storeOf(repo, index), close };
}

/** Claims the index when it is the default one (no `ref` given): two holders left on it would list and clear each other's keys. */
function claimDefaultIndex(options: Omit<GitObjectsOptions, "mode">, repo: Repository, ref: string): () => void {
  return options.ref === undefined ? holdOrClose(repo, ref) : () => undefined;
}

/** The git-objects driver, with `maintenance()`. */
export type GitObjectsDriver = Driver<GitObjectsOptions, GitObjectStore> & Maintainable;

/**
 * Blobs kept reachable by an index ref (default `refs/stowage/objects`)
 * whose commits hold a tree of every stored blob, so `git gc` never prunes
 * them: `keys/<key path>` in keyed mode (any key), `blobs/ab/cdef…` for
 * content-addressed puts. Every write is one commit moved by CAS (writes in
 * the same event-loop turn share one); reads check each object against its
 * id. See docs/git-objects.md.
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option or `mode`, a missing `dir`, a bad `ref`, `namespace` or `looseLimit`, a `dir` that is a file, or a directory neither empty nor a Git repository; a second driver on a default index this process already holds
 */
export default function gitObjects(options: GitObjectsOptions): GitObjectsDriver {
  checkOptions(DRIVER_NAME, options, [...DRIVER_OPTIONS]);
  const content = options.mode === "content";
  if (options.mode !== undefined && options.mode !== "keyed" && !content) throw fail("E_INVALID_OPTION", `Unknown mode: ${String(options.mode)}`);
  const { repo, index, maintenance, ref } = open(options);
  const release = claimDefaultIndex(options, repo, ref);
  const store = storeOf(repo, index);

  /** The index name of a key; in content mode the key must be an object id. */
  const nameOf = (key: string): string => {
    if (!content) {
      checkDriverKey(key, GIT_OBJECTS_KEY_LIMITS, DRIVER_NAME);
      return KEYS + keyPath(key);
    }
    if (!isObjectId(key)) throw fail("E_INVALID_KEY", `Keys of a content-addressed store are blob ids, got ${JSON.stringify(key)}`, key);
    return BLOBS + key;
  };
  const keyOf = (name: string): string | undefined => {
    if (content) return name.startsWith(BLOBS) ? name.slice(BLOBS.length) : undefined;
    return name.startsWith(KEYS) ? pathKey(name.slice(KEYS.length)) : undefined;
  };

  /** The blob id a key holds; in content mode a key that is no object id (the core's `id$` sidecars) holds nothing. */
  const idOf = (key: string): string | undefined => (content && !isObjectId(key) ? undefined : index.get(nameOf(key)));


  /** Writes the value's blob; in content mode it must be the key's content. */
  const change = (key: string, value: string | Uint8Array, opts: SetOptions | undefined): NameChange => {
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    if (content && hashObject("blob", bytes) !== key) throw fail("E_INVALID_KEY", `Key ${key} is not the blob id of its value`, key);
    // The name and the guard first: a key or guards refused leave no blob behind.
    const name = nameOf(key);
    const expected = expectation(opts, DRIVER_NAME, key);
    const result: NameChange = { name, id: repo.writeBlob(bytes) };
    if (expected !== undefined) result.expected = expected;
    return result;
  };
  const removal = (key: string, opts: RemoveOptions | undefined): NameChange => {
    const expected = expectation(opts, DRIVER_NAME, key);
    // Removing a name that cannot exist (a sidecar key in content mode) changes nothing.
    const name = content && !isObjectId(key) ? BLOBS + key : nameOf(key);
    return expected === undefined ? { name, id: null } : { name, id: null, expected };
  };

  const commit = (operations: CommitOperation[]): void =>
    void index.apply(foldOperations(operations, nameOf, (op) => (op.type === "remove" ? removal(op.key, op.options) : change(op.key, op.value, op.options)), DRIVER_NAME));

  /** The index names of the keys under `base`, by key: a clear removes them as found, whatever a key's length. */
  const namesUnder = (base: string): Map<string, string> => {
    const found = new Map<string, string>();
    const start = content ? BLOBS : KEYS + basePath(base);
    for (const name of index.current().keys()) {
      if (!name.startsWith(start)) continue;
      const key = keyOf(name);
      if (key !== undefined && key.startsWith(base)) found.set(key, name);
    }
    return found;
  };
  const keysUnder = (base: string): string[] => [...namesUnder(base).keys()];

  return {
    name: DRIVER_NAME,
    options,
    flags: BLOB_DRIVER_FLAGS,
    keyLimits: GIT_OBJECTS_KEY_LIMITS,
    getInstance: () => store,
    maintenance: (opts?: MaintenanceOptions) => maintenance.run(opts),
    ...blobReads(repo, idOf, keysUnder),
    setItem: (key: string, value: string, opts: SetOptions) => void index.apply([change(key, value, opts)]),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => void index.apply([change(key, value, opts)]),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
      void index.apply(items.map((item) => change(item.key, item.value, item.options ?? common))),
    removeItem: (key: string, opts: RemoveOptions) => void index.apply([removal(key, opts)]),
    clear: (base: string) => void index.apply([...namesUnder(base ?? "").values()].map((name) => ({ name, id: null }))),
    commit,
    // Writes of one event-loop turn (a setItems through the core, concurrent callers) share one commit.
    asyncWrites: {
      setItem: (key: string, value: string, opts: SetOptions) => enqueueChange(index, () => change(key, value, opts)),
      setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => enqueueChange(index, () => change(key, value, opts)),
      removeItem: (key: string, opts: RemoveOptions) => enqueueChange(index, () => removal(key, opts)),
    },
    dispose: async () => {
      release();
      await index.drain();
      repo.close();
    },
  };
}
