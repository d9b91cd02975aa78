import { createHash } from "node:crypto";
import { LruCache } from "./lruCache.js";
import { decodeKeyName, isBucketName, VALUE_ENTRY } from "./keyPath.js";
import { hashObject, type GitObject, type ObjectId } from "./objectId.js";
import type { Repository } from "./repository.js";
import { encodeTree, isTreeMode, TreeMode, type TreeEntry } from "./tree.js";

/**
 * The `git` driver's tree layout (docs/git.md): a key's segments are nested
 * trees, its value a blob; a key that also has keys below it keeps its value
 * in the entry {@link VALUE_ENTRY} of its tree; a directory holding more than
 * `fanout` entries is split into 256 buckets named `%xx` after the first two
 * hex digits of the SHA-1 of each entry name (the next two at the next
 * level, when a bucket grows past `fanout` too).
 */

/** A change to one key: its new value's blob id, or null to remove it. */
export interface KeyEdit {
  /** The key's encoded entry names (see keyToNames). */
  names: string[];
  value: ObjectId | null;
}

/** What a directory edit applies below one entry name. */
type DirEdit = { names: string[]; value: ObjectId | null } | { names: string[]; replace: TreeEntry | null };

/** A parsed tree with a name index, built once per tree id. */
interface TreeIndex {
  entries: readonly TreeEntry[];
  map: Map<string, TreeEntry>;
  fanned: boolean;
}

/** A tree made by an edit, waiting to be written. */
export interface NewTree {
  id: ObjectId;
  body: Buffer;
  entries: TreeEntry[];
}

export const EMPTY_TREE: ObjectId = hashObject("tree", Buffer.alloc(0));

const MAX_LEVEL = 19;
const EMPTY_INDEX: TreeIndex = { entries: [], map: new Map(), fanned: false };

function nameHash(name: string): string {
  return createHash("sha1").update(name, "utf8").digest("hex");
}

const isValue = (entry: TreeEntry): boolean => !isTreeMode(entry.mode) && entry.mode !== TreeMode.submodule;
const blobEntry = (name: string, id: ObjectId): TreeEntry => ({ mode: TreeMode.file, name, id });
const treeEntry = (name: string, id: ObjectId): TreeEntry => ({ mode: TreeMode.tree, name, id });
const sameEntry = (a: TreeEntry | undefined, b: TreeEntry | undefined): boolean => a?.id === b?.id && a?.mode === b?.mode;

/** Reads, edits, lists and diffs key trees of one repository, with a bounded cache of indexed trees. */
export class KeyTree {
  private readonly index: LruCache<ObjectId, TreeIndex>;

  constructor(
    private readonly repo: Repository,
    /** A directory fans out once it holds more entries than this. */
    private readonly fanout = 1024,
    cacheTrees = 4000,
  ) {
    this.index = new LruCache({ maxEntries: cacheTrees, maxWeight: 4_000_000 });
  }

  /** A tree's entries with a name index (cached). The empty tree needs no object: a ref without commits reads as it. */
  tree(id: ObjectId): TreeIndex {
    if (id === EMPTY_TREE) return EMPTY_INDEX;
    const cached = this.index.get(id);
    if (cached !== undefined) return cached;
    return this.remember(id, this.repo.readTree(id));
  }

  /** Caches a tree this process made (or read). */
  remember(id: ObjectId, entries: readonly TreeEntry[]): TreeIndex {
    const map = new Map<string, TreeEntry>();
    let fanned = false;
    for (const entry of entries) {
      map.set(entry.name, entry);
      if (isBucketName(entry.name) && isTreeMode(entry.mode)) fanned = true;
    }
    const indexed = { entries, map, fanned };
    this.index.set(id, indexed, entries.length + 1);
    return indexed;
  }

  /** The entry `name` of a directory, looked up through its fan-out buckets. */
  lookup(dir: ObjectId, name: string): TreeEntry | undefined {
    let node = this.tree(dir);
    if (!node.fanned || name === VALUE_ENTRY) return node.map.get(name);
    const hash = nameHash(name);
    for (let level = 0; node.fanned; level++) {
      const bucket = node.map.get(`%${hash.slice(level * 2, level * 2 + 2)}`);
      if (bucket === undefined || !isTreeMode(bucket.mode)) return undefined;
      node = this.tree(bucket.id);
    }
    return node.map.get(name);
  }

  /**
   * The blob id of the key's value in a root tree, or undefined. With a
   * `memo` shared across calls (a history walk), a directory already
   * resolved at the same depth answers at once: commits that did not touch
   * the key's path share its subtrees.
   */
  valueAt(root: ObjectId, names: string[], memo?: Map<string, ObjectId | undefined>): ObjectId | undefined {
    const visited: string[] = [];
    let dir = root;
    let result: ObjectId | undefined;
    for (let i = 0; i < names.length; i++) {
      if (memo !== undefined) {
        const memoKey = `${i}:${dir}`;
        if (memo.has(memoKey)) {
          result = memo.get(memoKey);
          break;
        }
        visited.push(memoKey);
      }
      const entry = this.lookup(dir, names[i]!);
      if (entry === undefined) break;
      if (i === names.length - 1) result = this.valueOfEntry(entry);
      else if (isTreeMode(entry.mode)) dir = entry.id;
      else break;
    }
    for (const memoKey of visited) memo!.set(memoKey, result);
    return result;
  }

  /** The directory tree at `names` (the root for none), or undefined. */
  dirAt(root: ObjectId, names: string[]): ObjectId | undefined {
    let dir = root;
    for (const name of names) {
      const entry = this.lookup(dir, name);
      if (entry === undefined || !isTreeMode(entry.mode)) return undefined;
      dir = entry.id;
    }
    return dir;
  }

  /** The value an entry holds: a blob's id, or a tree's VALUE_ENTRY. */
  valueOfEntry(entry: TreeEntry): ObjectId | undefined {
    if (isValue(entry)) return entry.id;
    if (!isTreeMode(entry.mode)) return undefined;
    const own = this.tree(entry.id).map.get(VALUE_ENTRY);
    return own !== undefined && isValue(own) ? own.id : undefined;
  }

  /** Every entry of a directory, its buckets flattened (VALUE_ENTRY excluded). */
  *children(dir: ObjectId): Generator<TreeEntry> {
    const node = this.tree(dir);
    for (const entry of node.entries) {
      if (entry.name === VALUE_ENTRY) continue;
      if (node.fanned && isBucketName(entry.name)) {
        if (isTreeMode(entry.mode)) yield* this.children(entry.id);
      } else {
        yield entry;
      }
    }
  }

  /** Keys below a directory, as `prefix + key`; `maxDepth` counts separators in the returned key. */
  listKeys(dir: ObjectId, prefix: string, maxDepth: number | undefined, out: string[]): void {
    const depth = prefix === "" ? 0 : prefix.split(":").length - 1;
    if (maxDepth !== undefined && depth > maxDepth) return;
    for (const entry of this.children(dir)) {
      const key = prefix + decodeKeyName(entry.name);
      if (isValue(entry)) out.push(key);
      else if (isTreeMode(entry.mode)) {
        if (this.tree(entry.id).map.has(VALUE_ENTRY)) out.push(key);
        this.listKeys(entry.id, `${key}:`, maxDepth, out);
      }
    }
  }

  /**
   * Applies key edits to a root tree; returns the new root (the empty tree
   * when nothing is left) and the trees to write, children before parents.
   */
  apply(root: ObjectId | undefined, edits: Iterable<KeyEdit>, made: NewTree[]): ObjectId {
    const dirEdits: DirEdit[] = [];
    for (const edit of edits) dirEdits.push({ names: edit.names, value: edit.value });
    return this.applyRoot(root, dirEdits, made);
  }

  /** Removes every key below `names` (the key `names` itself keeps its value). */
  clear(root: ObjectId | undefined, names: string[], made: NewTree[]): ObjectId {
    if (names.length === 0 || root === undefined) return this.emptyRoot(made);
    const dir = this.dirAt(root, names.slice(0, -1));
    const current = dir === undefined ? undefined : this.lookup(dir, names[names.length - 1]!);
    if (current === undefined || !isTreeMode(current.mode)) return root;
    const value = this.valueOfEntry(current);
    const name = names[names.length - 1]!;
    return this.applyRoot(root, [{ names, replace: value === undefined ? null : blobEntry(name, value) }], made);
  }

  private applyRoot(root: ObjectId | undefined, edits: DirEdit[], made: NewTree[]): ObjectId {
    const entries = this.applyDir(root, edits, made);
    if (entries === undefined) return root ?? this.emptyRoot(made);
    return entries.length === 0 ? this.emptyRoot(made) : this.emit(entries, made);
  }

  private emptyRoot(made: NewTree[]): ObjectId {
    made.push({ id: EMPTY_TREE, body: Buffer.alloc(0), entries: [] });
    return EMPTY_TREE;
  }

  /** The new top-level entries of a directory after edits (not yet written); undefined when nothing changed. */
  private applyDir(dir: ObjectId | undefined, edits: DirEdit[], made: NewTree[]): TreeEntry[] | undefined {
    const groups = new Map<string, DirEdit[]>();
    for (const edit of edits) {
      const name = edit.names[0]!;
      const group = groups.get(name);
      if (group === undefined) groups.set(name, [edit]);
      else group.push(edit);
    }
    const changes = new Map<string, TreeEntry | null>();
    for (const [name, group] of groups) {
      const current = dir === undefined ? undefined : this.lookup(dir, name);
      const next = this.applyChild(name, current, group, made);
      if (next !== undefined && !sameEntry(next ?? undefined, current)) changes.set(name, next);
    }
    if (changes.size === 0) return undefined;
    return this.editTable(dir, 0, changes, made);
  }

  /** The new entry for `name` (null: gone; undefined: unchanged). */
  private applyChild(name: string, current: TreeEntry | undefined, group: DirEdit[], made: NewTree[]): TreeEntry | null | undefined {
    let replaced: TreeEntry | null | undefined;
    let own: { value: ObjectId | null } | undefined;
    const nested: DirEdit[] = [];
    for (const edit of group) {
      if (edit.names.length > 1) nested.push({ ...edit, names: edit.names.slice(1) });
      else if ("replace" in edit) replaced = edit.replace;
      else own = { value: edit.value };
    }
    if (replaced !== undefined) return replaced;
    const isDir = current !== undefined && isTreeMode(current.mode);
    if (nested.length === 0) {
      if (own === undefined) return undefined;
      if (!isDir) return own.value === null ? null : blobEntry(name, own.value);
    }
    if (own !== undefined) nested.push({ names: [VALUE_ENTRY], replace: own.value === null ? null : blobEntry(VALUE_ENTRY, own.value) });
    else if (current !== undefined && !isDir && isValue(current)) nested.push({ names: [VALUE_ENTRY], replace: blobEntry(VALUE_ENTRY, current.id) });
    const entries = this.applyDir(isDir ? current.id : undefined, nested, made);
    if (entries === undefined) return undefined;
    if (entries.length === 0) return null;
    const only = entries.length === 1 ? entries[0]! : undefined;
    if (only?.name === VALUE_ENTRY && isValue(only)) return blobEntry(name, only.id);
    return treeEntry(name, this.emit(entries, made));
  }

  /** A name table (one directory, or a bucket of one at `level`) after changes; its entries, not yet written. */
  private editTable(table: ObjectId | undefined, level: number, changes: Map<string, TreeEntry | null>, made: NewTree[]): TreeEntry[] {
    const node = table === undefined ? undefined : this.tree(table);
    if (node?.fanned) return this.editFanned(node, level, changes, made);
    const map = new Map(node?.map);
    for (const [name, entry] of changes) {
      if (entry === null) map.delete(name);
      else map.set(name, entry);
    }
    const count = map.size - (map.has(VALUE_ENTRY) ? 1 : 0);
    if (count <= this.fanout || level >= MAX_LEVEL) return [...map.values()];
    return this.editFanned(EMPTY_INDEX, level, map, made);
  }

  /**
   * Applies changes to a fanned table: each bucket edited (or made) on its
   * own; VALUE_ENTRY stays at the top. From an empty table, this fans out.
   */
  private editFanned(node: TreeIndex, level: number, changes: Map<string, TreeEntry | null>, made: NewTree[]): TreeEntry[] {
    const map = new Map(node.map);
    const byBucket = new Map<string, Map<string, TreeEntry | null>>();
    for (const [name, entry] of changes) {
      if (name === VALUE_ENTRY) {
        if (entry === null) map.delete(name);
        else map.set(name, entry);
        continue;
      }
      const bucket = `%${nameHash(name).slice(level * 2, level * 2 + 2)}`;
      const members = byBucket.get(bucket);
      if (members === undefined) byBucket.set(bucket, new Map([[name, entry]]));
      else members.set(name, entry);
    }
    for (const [bucket, members] of byBucket) {
      const current = map.get(bucket);
      const entries = this.editTable(current !== undefined && isTreeMode(current.mode) ? current.id : undefined, level + 1, members, made);
      if (entries.length === 0) map.delete(bucket);
      else map.set(bucket, treeEntry(bucket, this.emit(entries, made)));
    }
    return [...map.values()];
  }

  /** Encodes a tree to be written; returns its id. */
  private emit(entries: TreeEntry[], made: NewTree[]): ObjectId {
    const body = encodeTree(entries);
    const id = hashObject("tree", body);
    made.push({ id, body, entries });
    return id;
  }

  /**
   * Calls `report(key, before, after)` for every key whose value differs
   * between two root trees (blob ids; undefined when absent).
   */
  diff(from: ObjectId | undefined, to: ObjectId | undefined, report: (key: string, before?: ObjectId, after?: ObjectId) => void): void {
    this.diffDir(from, to, "", report);
  }

  private diffDir(from: ObjectId | undefined, to: ObjectId | undefined, prefix: string, report: (key: string, before?: ObjectId, after?: ObjectId) => void): void {
    this.diffTable(from, to, 0, (name, a, b) => {
      const key = prefix + decodeKeyName(name);
      const va = a === undefined ? undefined : this.valueOfEntry(a);
      const vb = b === undefined ? undefined : this.valueOfEntry(b);
      if (va !== vb) report(key, va, vb);
      const da = a !== undefined && isTreeMode(a.mode) ? a.id : undefined;
      const db = b !== undefined && isTreeMode(b.mode) ? b.id : undefined;
      if (da !== db) this.diffDir(da, db, `${key}:`, report);
    });
  }

  /** Visits the names whose entries differ between two tables, comparing bucket by bucket where both are fanned alike. */
  private diffTable(from: ObjectId | undefined, to: ObjectId | undefined, level: number, visit: (name: string, a?: TreeEntry, b?: TreeEntry) => void): void {
    if (from === to) return;
    const a = from === undefined ? undefined : this.tree(from);
    const b = to === undefined ? undefined : this.tree(to);
    if (a?.fanned && b?.fanned) {
      for (const [name, entry] of a.map) {
        if (isBucketName(name)) this.diffTable(entry.id, b.map.get(name)?.id, level + 1, visit);
      }
      for (const [name, entry] of b.map) {
        if (isBucketName(name) && !a.map.has(name)) this.diffTable(undefined, entry.id, level + 1, visit);
      }
      return;
    }
    const before = from === undefined ? new Map<string, TreeEntry>() : this.childMap(from);
    const after = to === undefined ? new Map<string, TreeEntry>() : this.childMap(to);
    for (const [name, entry] of before) if (!sameEntry(entry, after.get(name))) visit(name, entry, after.get(name));
    for (const [name, entry] of after) if (!before.has(name)) visit(name, undefined, entry);
  }

  private childMap(dir: ObjectId): Map<string, TreeEntry> {
    const map = new Map<string, TreeEntry>();
    for (const entry of this.children(dir)) map.set(entry.name, entry);
    return map;
  }
}

/** The objects of new trees, for `repo.writeObjects`. */
export function treeObjects(made: NewTree[]): GitObject[] {
  return made.map((tree) => ({ type: "tree", body: tree.body }));
}
