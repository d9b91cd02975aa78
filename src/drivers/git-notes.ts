import { StorageError } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type Driver, type RemoveOptions, type SetOptions } from "../core/types.js";
import { AutoMaintenance, looseLimitOption, type Maintainable } from "../git/repo/autoMaintenance.js";
import { hashObject, isObjectId, type ObjectId } from "../git/objects/objectId.js";
import { isValidRefName } from "../git/refs/refName.js";
import type { MaintenanceOptions } from "../git/repo/maintenance.js";
import type { Repository } from "../git/repo/repository.js";
import { NOTES_LAYOUT } from "../git/store/notesLayout.js";
import { oneAtATime } from "../git/remote/fetchCheck.js";
import { KEPT_KEYS_DIR, syncNotes, type NotesSyncOptions, type NotesSyncResult } from "../git/remote/notesSync.js";
import { BLOB_DRIVER_FLAGS, blobReads, checkDriverKey, enqueueChange, expectation, foldOperations } from "../git/store/driverSupport.js";
import { namespacedRef, openOrInit } from "../git/store/openStore.js";
import { TreeRef, type CommitDelta, type NameChange } from "../git/store/treeRef.js";

export interface GitNotesOptions {
  /** An existing repository or worktree, or where a new bare repository is created. Required. */
  dir: string;
  /**
   * The notes ref.
   * @default "refs/notes/stowage"
   */
  ref?: string;
  /** A separate store on `<ref>-<namespace>` (e.g. `refs/notes/stowage-receipts`). */
  namespace?: string;
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

/** The note of one object (a commit, usually): what {@link GitNotesDriver.notesFor} returns. */
export interface ObjectNote {
  /** The annotated object's id. */
  readonly id: ObjectId;
  /** The note's text, or null when the object has none. */
  get(): string | null;
  /** Sets the note (one commit on the notes ref). */
  set(text: string): void;
  /** Removes the note; false when there was none. */
  remove(): boolean;
}

/** The git-notes driver, with the notes of real commits and `maintenance()`. */
export interface GitNotesDriver extends Driver<GitNotesOptions, Repository>, Maintainable {
  /**
   * The note of `commitish`: a full object id, `HEAD`, a branch or tag name
   * (`main`, `v1.0`) or a full ref name. `E_NOT_FOUND` when it names nothing.
   */
  notesFor(commitish: string): ObjectNote;
  /**
   * Syncs the notes ref with the same ref on `remote` (a configured remote, a URL or a path):
   * fetch, check what was fetched, merge per note (notes added on both sides are all kept), push. See docs/git-notes.md, "Sharing notes".
   * @throws StorageError `E_INVALID_OPTION` for an unknown option or a bad `policy`/`retries`/`timeout`/`env`; `E_CORRUPT` (`E_TOO_LARGE` past ten million entries) when the fetched notes tree is not one git-notes or `git notes` writes, and then nothing local changed; `E_CONFLICT` when the remote keeps refusing the push; `E_UNAVAILABLE` when git fails
   */
  sync(remote: string, options?: NotesSyncOptions): Promise<NotesSyncResult>;
}

const DRIVER_NAME = "git-notes";
/** Non-note entries of the notes tree holding each key's blob, so `git gc` keeps the annotated objects. */
const KEYS = `${KEPT_KEYS_DIR}/`;

/**
 * Past this many names touched by own commits since the last listing, the next listing is rebuilt
 * rather than followed: a splice into ~300,000 keys is a copy of the array's tail each, a rebuild one sort.
 */
const MAX_FOLLOWED = 1024;

/** Every key at one notes state, sorted, and the key blob of each (same index). */
interface Listing {
  names: ReadonlyMap<string, ObjectId>;
  keys: string[];
  ids: ObjectId[];
}

/** The first index in sorted `keys` whose key is not below `key`. */
function lowerBound(keys: readonly string[], key: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((keys[mid] as string) < key) low = mid + 1;
    else high = mid;
  }
  return low;
}

function fail(code: "E_INVALID_KEY" | "E_INVALID_OPTION" | "E_NOT_FOUND", message: string, key?: string): StorageError {
  return new StorageError(code, message, { driver: DRIVER_NAME, key });
}

/** True when UTF-8 carries the key exactly (no lone surrogate). */
function isWellFormed(key: string): boolean {
  return !/\p{Surrogate}/u.test(key);
}

/** The bytes of a key's blob; a key past the limits, or one UTF-8 cannot carry exactly (a lone surrogate), is refused. */
function keyBytes(key: string): Buffer {
  checkDriverKey(key, DEFAULT_KEY_LIMITS, DRIVER_NAME);
  if (!isWellFormed(key)) throw fail("E_INVALID_KEY", `A git-notes key must be valid Unicode: ${JSON.stringify(key)}`, key);
  return Buffer.from(key, "utf8");
}

/**
 * Values as Git notes: a key annotates the blob holding the key's bytes,
 * so `git notes --ref=<ref> show $(printf %s "<key>" | git hash-object --stdin)`
 * prints its value. Every write is a commit on the notes ref moved by
 * compare-and-swap and re-applied when another writer (stock git included)
 * moved it first, so concurrent writers never lose a note. See docs/git-notes.md.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing `dir`, an unknown option, a bad `ref`, `namespace` or `looseLimit`, a `dir` that is a file, or a directory neither empty nor a Git repository
 */
export default function gitNotes(options: GitNotesOptions): GitNotesDriver {
  checkOptions(DRIVER_NAME, options, ["dir", "ref", "namespace", "fsync", "looseLimit"]);
  if (!options?.dir) throw fail("E_INVALID_OPTION", "The git-notes driver needs a dir");
  const ref = namespacedRef(options, "refs/notes/stowage", DRIVER_NAME);
  const repo = openOrInit(options.dir, { fsync: options.fsync === true, lockTimeout: 5000 });
  const maintenance = new AutoMaintenance(repo, looseLimitOption(options.looseLimit, DRIVER_NAME));
  const notes = new TreeRef(repo, { ref, layout: NOTES_LAYOUT, message: "Notes added by stowage", maintenance, onCommit: (delta) => recordCommit(delta) });
  const keyCache = new Map<ObjectId, string | null>();
  const oneSync = oneAtATime();

  const idOf = (key: string): ObjectId => hashObject("blob", keyBytes(key));
  const noteOf = (key: string): ObjectId | undefined => (isWellFormed(key) ? notes.get(idOf(key)) : undefined);

  /** The key an annotated object stands for: the text of a blob that hashes back to it; null for anything else. */
  const keyOfObject = (id: ObjectId): string | null => {
    const cached = keyCache.get(id);
    if (cached !== undefined) return cached;
    const object = repo.tryReadObject(id);
    const text = object?.type === "blob" ? object.body.toString("utf8") : null;
    const key = text !== null && !text.includes("\0") && hashObject("blob", Buffer.from(text, "utf8")) === id ? text : null;
    keyCache.set(id, key);
    return key;
  };

  const change = (key: string, value: string | Uint8Array, opts: SetOptions | undefined): NameChange => {
    // The guard first: guards refused leave no blob behind.
    const expected = expectation(opts, DRIVER_NAME, key);
    const keyBlob = repo.writeBlob(keyBytes(key));
    keyCache.set(keyBlob, key);
    const result: NameChange = { name: keyBlob, id: repo.writeBlob(typeof value === "string" ? Buffer.from(value, "utf8") : value), also: [{ name: KEYS + keyBlob, id: keyBlob }] };
    if (expected !== undefined) result.expected = expected;
    return result;
  };
  /** Removes the note of the key blob `id` and the entry that keeps the blob, on the old value `expected` when given. */
  const removalOf = (id: ObjectId, expected?: string | null): NameChange => {
    const result: NameChange = { name: id, id: null, also: [{ name: KEYS + id, id: null }] };
    if (expected !== undefined) result.expected = expected;
    return result;
  };

  const removal = (key: string, opts: RemoveOptions | undefined): NameChange => removalOf(idOf(key), expectation(opts, DRIVER_NAME, key));

  const commit = (operations: CommitOperation[]): void =>
    void notes.apply(foldOperations(operations, idOf, (op) => (op.type === "remove" ? removal(op.key, op.options) : change(op.key, op.value, op.options)), DRIVER_NAME));

  /**
   * Every key at one notes state, sorted, with its key blob: a listing under a base is a binary
   * search and a run of neighbours instead of a pass over every note (receipts list small
   * time buckets among a hundred thousand notes). Keyed to the names map of exactly one tip
   * (TreeRef makes a new map per tip). This driver's own commits are followed by inserting and
   * removing the keys they touched (see `followOwnCommits`); a tip moved by anyone else
   * (another process or instance, stock git, a sync) rebuilds it: a pass over every note and a sort.
   */
  let listing: Listing | undefined;
  /**
   * Own commits published since `listing` was made, each built on the one before: the names map of
   * the last (no older map is kept alive) and the key-blob names they set or removed.
   */
  let followed: { names: ReadonlyMap<string, ObjectId>; touched: Set<string> } | undefined;

  /** Told by TreeRef after each of our commits lands; only records (it must not throw). */
  const recordCommit = (delta: CommitDelta): void => {
    const last = followed?.names ?? listing?.names;
    // A gap (a foreign commit between ours), no listing to follow, or too many changes: the next listing rebuilds.
    if (listing === undefined || last !== delta.base || (followed?.touched.size ?? 0) + delta.touched.length > MAX_FOLLOWED) {
      listing = undefined;
      followed = undefined;
      return;
    }
    const touched = followed?.touched ?? new Set<string>();
    for (const name of delta.touched) if (isObjectId(name)) touched.add(name);
    followed = { names: delta.names, touched };
  };

  const rebuild = (names: ReadonlyMap<string, ObjectId>): Listing => {
    const pairs: [string, ObjectId][] = [];
    for (const name of names.keys()) {
      const key = isObjectId(name) ? keyOfObject(name) : null;
      if (key !== null) pairs.push([key, name]);
    }
    pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    return { names, keys: pairs.map((pair) => pair[0]), ids: pairs.map((pair) => pair[1]) };
  };

  /** Brings `from` to `names` by the names our commits since touched; each is present or absent in `names`. */
  const followOwnCommits = (from: Listing, names: ReadonlyMap<string, ObjectId>, touched: ReadonlySet<string>): Listing => {
    for (const name of touched) {
      // Every listed id's key is in keyCache (listed through keyOfObject or set by change()), so a removed key is found even once its blob is pruned.
      const key = keyOfObject(name);
      if (key === null) continue;
      const at = lowerBound(from.keys, key);
      const listed = from.keys[at] === key;
      if (names.has(name) && !listed) {
        from.keys.splice(at, 0, key);
        from.ids.splice(at, 0, name);
      } else if (!names.has(name) && listed) {
        from.keys.splice(at, 1);
        from.ids.splice(at, 1);
      }
    }
    return { names, keys: from.keys, ids: from.ids };
  };

  const sortedKeys = (): Listing => {
    const names = notes.current();
    if (listing?.names === names) return listing;
    const from = listing;
    const touched = followed?.names === names ? followed.touched : undefined;
    // Cleared first: should reading a key fail, no half-followed listing stays behind.
    listing = undefined;
    followed = undefined;
    const next = from !== undefined && touched !== undefined ? followOwnCommits(from, names, touched) : rebuild(names);
    listing = next;
    return next;
  };

  /** Where the keys under `base` lie in the sorted listing: indices [from, to). */
  const rangeUnder = (keys: readonly string[], base: string): [number, number] => {
    const from = lowerBound(keys, base);
    let to = from;
    while (to < keys.length && (keys[to] as string).startsWith(base)) to++;
    return [from, to];
  };
  /** The key blobs of the keys under `base`, by key: a clear removes them as found, whatever a key's length. */
  const notesUnder = (base: string): Map<string, ObjectId> => {
    const { keys, ids } = sortedKeys();
    const [from, to] = rangeUnder(keys, base);
    const found = new Map<string, ObjectId>();
    for (let i = from; i < to; i++) found.set(keys[i] as string, ids[i] as ObjectId);
    return found;
  };
  const keysUnder = (base: string): string[] => {
    const { keys } = sortedKeys();
    return keys.slice(...rangeUnder(keys, base));
  };

  /** A full id, `HEAD`, or a name resolved as git does: `refs/<name>`, `refs/tags/`, `refs/heads/`, `refs/remotes/`. */
  const resolve = (commitish: string): ObjectId => {
    if (isObjectId(commitish) && repo.hasObject(commitish)) return commitish;
    const candidates = commitish === "HEAD" || commitish.startsWith("refs/") ? [commitish] : [`refs/${commitish}`, `refs/tags/${commitish}`, `refs/heads/${commitish}`, `refs/remotes/${commitish}`];
    for (const name of candidates) {
      if (name !== "HEAD" && !isValidRefName(name)) continue;
      const id = repo.refs.resolve(name);
      if (id !== undefined) return id;
    }
    throw fail("E_NOT_FOUND", `Not a commit or ref: ${JSON.stringify(commitish)}`);
  };

  const notesFor = (commitish: string): ObjectNote => {
    const id = resolve(commitish);
    return {
      id,
      get: () => {
        const note = notes.get(id);
        return note === undefined ? null : repo.readBlob(note).toString("utf8");
      },
      set: (text: string) => void notes.apply([{ name: id, id: repo.writeBlob(Buffer.from(text, "utf8")) }]),
      remove: () => {
        if (notes.get(id) === undefined) return false;
        notes.apply([{ name: id, id: null }]);
        return true;
      },
    };
  };

  return {
    name: DRIVER_NAME,
    options,
    flags: BLOB_DRIVER_FLAGS,
    // A key is a blob's content, not a path: no depth bound of its own, so the core's defaults.
    keyLimits: DEFAULT_KEY_LIMITS,
    getInstance: () => repo,
    notesFor,
    // One sync at a time (as the git driver's): two would fetch into the same tracking ref. Queued writes land first, so the sync carries them.
    sync: (remote: string, opts?: NotesSyncOptions) =>
      oneSync(async () => {
        await notes.drain();
        return syncNotes(repo, ref, remote, opts);
      }),
    maintenance: (opts?: MaintenanceOptions) => maintenance.run(opts),
    ...blobReads(repo, noteOf, keysUnder),
    setItem: (key: string, value: string, opts: SetOptions) => void notes.apply([change(key, value, opts)]),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => void notes.apply([change(key, value, opts)]),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) =>
      void notes.apply(items.map((item) => change(item.key, item.value, item.options ?? common))),
    removeItem: (key: string, opts: RemoveOptions) => void notes.apply([removal(key, opts)]),
    clear: (base: string) => void notes.apply([...notesUnder(base ?? "").values()].map((id) => removalOf(id))),
    commit,
    // Writes of one event-loop turn (a setItems through the core, concurrent callers) share one notes commit.
    asyncWrites: {
      setItem: (key: string, value: string, opts: SetOptions) => enqueueChange(notes, () => change(key, value, opts)),
      setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => enqueueChange(notes, () => change(key, value, opts)),
      removeItem: (key: string, opts: RemoveOptions) => enqueueChange(notes, () => removal(key, opts)),
    },
    dispose: async () => {
      await notes.drain();
      repo.close();
    },
  };
}
