import { LRUCache } from "lru-cache";
import { bucketName, decodeKeyName, isBucketName, MAX_BUCKET_LEVEL, nameHash, VALUE_ENTRY } from "./keyNames.js";
import { hashObject, type GitObject, type ObjectId } from "../objects/objectId.js";
import type { Repository } from "../repo/repository.js";
import { encodeTree, isTreeMode, TreeMode, type TreeEntry } from "../objects/tree.js";

/**
 * The `git` driver's tree layout (docs/git.md): a key's segments are nested
 * trees, its value a blob; a key that also has keys below it keeps its value
 * in the entry {@link VALUE_ENTRY} of its tree; a directory holding more than
 * `fanout` entries is split into 256 buckets named `%xNN` after the first two
 * hex digits of the SHA-1 of each entry name (the next two at the next
 * level, when a bucket grows past `fanout` too).
 */

/** A change to one key: its new value's blob id, or null to remove it. */
export interface KeyEdit {
  /** The key's encoded entry names (see keyToNames). */
  names: string[];
  value: ObjectId | null;
}

/**
 * The edits below one entry name, as a trie over names: `own` is the
 * entry's new value (null: removed) when `hasOwn`; `replace` sets the whole
 * entry (a clear), ignoring everything else at or below it.
 */
interface EditNode {
  name: string;
  children: Map<string, EditNode>;
  hasOwn: boolean;
  own: ObjectId | null;
  replace?: TreeEntry | null;
}

/** A directory being edited: its edited children not yet visited, and the changes of those that were. */
interface DirFrame {
  node: EditNode;
  /** The directory's tree before the edits (undefined: it is new). */
  dir: ObjectId | undefined;
  /** The directory's entry in its parent before the edits. */
  current: TreeEntry | undefined;
  pending: EditNode[];
  changes: Map<string, TreeEntry | null>;
}

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

const EMPTY_INDEX: TreeIndex = { entries: [], map: new Map(), fanned: false };

const isValue = (entry: TreeEntry): boolean => !isTreeMode(entry.mode) && entry.mode !== TreeMode.submodule;
const blobEntry = (name: string, id: ObjectId): TreeEntry => ({ mode: TreeMode.file, name, id });
const treeEntry = (name: string, id: ObjectId): TreeEntry => ({ mode: TreeMode.tree, name, id });
const sameEntry = (a: TreeEntry | undefined, b: TreeEntry | undefined): boolean => a?.id === b?.id && a?.mode === b?.mode;

const newEditNode = (name: string): EditNode => ({ name, children: new Map(), hasOwn: false, own: null });

/** The trie node of `names` below `top`, made on the way (a loop: keys may be deep). */
function editNodeAt(top: EditNode, names: readonly string[]): EditNode {
  let node = top;
  for (const name of names) {
    let child = node.children.get(name);
    if (child === undefined) node.children.set(name, (child = newEditNode(name)));
    node = child;
  }
  return node;
}

/**
 * The edits to apply inside entry `node.name` when it must be (or become) a
 * directory, or undefined when its new entry follows from `node` alone
 * ({@link leafEntry}). A value it keeps or gets moves to its VALUE_ENTRY.
 */
function openDir(node: EditNode, current: TreeEntry | undefined): EditNode[] | undefined {
  if (node.replace !== undefined) return undefined;
  const isDir = current !== undefined && isTreeMode(current.mode);
  if (node.children.size === 0 && (!node.hasOwn || !isDir)) return undefined;
  const pending = [...node.children.values()];
  const value = newEditNode(VALUE_ENTRY);
  if (node.hasOwn) value.replace = node.own === null ? null : blobEntry(VALUE_ENTRY, node.own);
  else if (current !== undefined && !isDir && isValue(current)) value.replace = blobEntry(VALUE_ENTRY, current.id);
  if (value.replace !== undefined) pending.push(value);
  return pending;
}

/** The new entry of a node that needs no directory edit (null: gone; undefined: unchanged). */
function leafEntry(node: EditNode): TreeEntry | null | undefined {
  if (node.replace !== undefined) return node.replace;
  if (!node.hasOwn) return undefined;
  return node.own === null ? null : blobEntry(node.name, node.own);
}

/** Notes a child's new entry in its directory's changes, unless it is unchanged. */
function record(frame: DirFrame, name: string, next: TreeEntry | null | undefined, current: TreeEntry | undefined): void {
  if (next !== undefined && !sameEntry(next ?? undefined, current)) frame.changes.set(name, next);
}

/** Reads, edits, lists and diffs key trees of one repository, with a bounded cache of indexed trees. */
export class KeyTree {
  private readonly index: LRUCache<ObjectId, TreeIndex>;

  constructor(
    private readonly repo: Repository,
    /** A directory fans out once it holds more entries than this. */
    private readonly fanout = 1024,
    cacheTrees = 4000,
  ) {
    this.index = new LRUCache({ max: cacheTrees, maxSize: 4_000_000 });
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
    this.index.set(id, indexed, { size: entries.length + 1 });
    return indexed;
  }

  /** The entry `name` of a directory, looked up through its fan-out buckets. */
  lookup(dir: ObjectId, name: string): TreeEntry | undefined {
    let node = this.tree(dir);
    if (!node.fanned || name === VALUE_ENTRY) return node.map.get(name);
    const hash = nameHash(name);
    for (let level = 0; node.fanned && level < MAX_BUCKET_LEVEL; level++) {
      const bucket = node.map.get(bucketName(hash, level));
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

  /**
   * Every entry of a directory (or of its bucket at `level`), its buckets
   * flattened (VALUE_ENTRY excluded); a stack, not recursion, walks the buckets.
   */
  *children(dir: ObjectId, level = 0): Generator<TreeEntry> {
    const tables = [{ id: dir, level }];
    for (let table = tables.pop(); table !== undefined; table = tables.pop()) {
      const node = this.tree(table.id);
      const fanned = node.fanned && table.level < MAX_BUCKET_LEVEL;
      for (const entry of node.entries) {
        if (entry.name === VALUE_ENTRY) continue;
        if (fanned && isBucketName(entry.name)) {
          if (isTreeMode(entry.mode)) tables.push({ id: entry.id, level: table.level + 1 });
        } else {
          yield entry;
        }
      }
    }
  }

  /**
   * Keys below a directory, as `prefix + key`, depth first in tree order;
   * `maxDepth` counts separators in the returned key. Entries that are no
   * key's name (see decodeKeyName) are skipped with what is below them. A
   * stack of directories, not recursion, so depth costs heap, not stack.
   */
  listKeys(dir: ObjectId, prefix: string, maxDepth: number | undefined, out: string[]): void {
    const depth = prefix === "" ? 0 : prefix.split(":").length - 1;
    if (maxDepth !== undefined && depth > maxDepth) return;
    const stack = [{ entries: this.children(dir), prefix, depth }];
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      const next = frame.entries.next();
      if (next.done === true) {
        stack.pop();
        continue;
      }
      const entry = next.value;
      const segment = decodeKeyName(entry.name);
      if (segment === undefined) continue;
      const key = frame.prefix + segment;
      if (isValue(entry)) out.push(key);
      else if (isTreeMode(entry.mode)) {
        if (this.tree(entry.id).map.has(VALUE_ENTRY)) out.push(key);
        if (maxDepth === undefined || frame.depth < maxDepth) stack.push({ entries: this.children(entry.id), prefix: `${key}:`, depth: frame.depth + 1 });
      }
    }
  }

  /**
   * Applies key edits to a root tree; returns the new root (the empty tree
   * when nothing is left) and the trees to write, children before parents.
   */
  apply(root: ObjectId | undefined, edits: Iterable<KeyEdit>, made: NewTree[]): ObjectId {
    const top = newEditNode("");
    for (const edit of edits) {
      const node = editNodeAt(top, edit.names);
      node.own = edit.value;
      node.hasOwn = true;
    }
    return this.applyRoot(root, top, made);
  }

  /** Removes every key below `names` (the key `names` itself keeps its value). */
  clear(root: ObjectId | undefined, names: string[], made: NewTree[]): ObjectId {
    if (names.length === 0 || root === undefined) return this.emptyRoot(made);
    const dir = this.dirAt(root, names.slice(0, -1));
    const current = dir === undefined ? undefined : this.lookup(dir, names[names.length - 1]!);
    if (current === undefined || !isTreeMode(current.mode)) return root;
    const value = this.valueOfEntry(current);
    const name = names[names.length - 1]!;
    const top = newEditNode("");
    editNodeAt(top, names).replace = value === undefined ? null : blobEntry(name, value);
    return this.applyRoot(root, top, made);
  }

  private applyRoot(root: ObjectId | undefined, top: EditNode, made: NewTree[]): ObjectId {
    const entries = this.applyEdits(root, top, made);
    if (entries === undefined) return root ?? this.emptyRoot(made);
    return entries.length === 0 ? this.emptyRoot(made) : this.emit(entries, made);
  }

  private emptyRoot(made: NewTree[]): ObjectId {
    made.push({ id: EMPTY_TREE, body: Buffer.alloc(0), entries: [] });
    return EMPTY_TREE;
  }

  /**
   * The new top-level entries of the root after the edits below `top` (not
   * yet written); undefined when nothing changed. Directories are edited
   * depth first with an explicit stack (a key's depth costs heap, not call
   * stack): a directory's changes are known once all its edited children are.
   */
  private applyEdits(root: ObjectId | undefined, top: EditNode, made: NewTree[]): TreeEntry[] | undefined {
    const stack: DirFrame[] = [{ node: top, dir: root, current: undefined, pending: [...top.children.values()], changes: new Map() }];
    for (;;) {
      const frame = stack[stack.length - 1]!;
      const child = frame.pending.pop();
      if (child !== undefined) {
        const current = frame.dir === undefined ? undefined : this.lookup(frame.dir, child.name);
        const below = openDir(child, current);
        if (below === undefined) record(frame, child.name, leafEntry(child), current);
        else stack.push({ node: child, dir: isTreeMode(current?.mode ?? "") ? current!.id : undefined, current, pending: below, changes: new Map() });
        continue;
      }
      stack.pop();
      const entries = frame.changes.size === 0 ? undefined : this.editTable(frame.dir, 0, frame.changes, made);
      const parent = stack[stack.length - 1];
      if (parent === undefined) return entries;
      record(parent, frame.node.name, this.dirEntry(frame.node.name, entries, made), frame.current);
    }
  }

  /** The entry of an edited directory `name` from its new entries (null: gone; undefined: unchanged); a lone value folds back into a blob. */
  private dirEntry(name: string, entries: TreeEntry[] | undefined, made: NewTree[]): TreeEntry | null | undefined {
    if (entries === undefined) return undefined;
    if (entries.length === 0) return null;
    const only = entries.length === 1 ? entries[0]! : undefined;
    if (only?.name === VALUE_ENTRY && isValue(only)) return blobEntry(name, only.id);
    return treeEntry(name, this.emit(entries, made));
  }

  /** A name table (one directory, or a bucket of one at `level`) after changes; its entries, not yet written. */
  private editTable(table: ObjectId | undefined, level: number, changes: Map<string, TreeEntry | null>, made: NewTree[]): TreeEntry[] {
    const node = table === undefined ? undefined : this.tree(table);
    if (node?.fanned && level < MAX_BUCKET_LEVEL) return this.editFanned(node, level, changes, made);
    const map = new Map(node?.map);
    for (const [name, entry] of changes) {
      if (entry === null) map.delete(name);
      else map.set(name, entry);
    }
    const count = map.size - (map.has(VALUE_ENTRY) ? 1 : 0);
    if (count <= this.fanout || level >= MAX_BUCKET_LEVEL) return [...map.values()];
    return this.editFanned(EMPTY_INDEX, level, map, made);
  }

  /**
   * Applies changes to a fanned table: each bucket edited (or made) on its
   * own; VALUE_ENTRY stays at the top. From an empty table, this fans out.
   * Recursion with editTable goes one level per bucket level, at most
   * MAX_BUCKET_LEVEL, whatever the tree holds.
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
      const bucket = bucketName(nameHash(name), level);
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
   * between two root trees (blob ids; undefined when absent). Directories
   * that differ are compared from a stack, not by recursion.
   */
  diff(from: ObjectId | undefined, to: ObjectId | undefined, report: (key: string, before?: ObjectId, after?: ObjectId) => void): void {
    const dirs = [{ from, to, prefix: "" }];
    for (let pair = dirs.pop(); pair !== undefined; pair = dirs.pop()) {
      const { prefix } = pair;
      this.diffTable(pair.from, pair.to, (name, a, b) => {
        const segment = decodeKeyName(name);
        if (segment === undefined) return;
        const key = prefix + segment;
        const va = a === undefined ? undefined : this.valueOfEntry(a);
        const vb = b === undefined ? undefined : this.valueOfEntry(b);
        if (va !== vb) report(key, va, vb);
        const da = a !== undefined && isTreeMode(a.mode) ? a.id : undefined;
        const db = b !== undefined && isTreeMode(b.mode) ? b.id : undefined;
        if (da !== db) dirs.push({ from: da, to: db, prefix: `${key}:` });
      });
    }
  }

  /** Visits the names whose entries differ between two directories, comparing bucket by bucket where both are fanned alike. */
  private diffTable(from: ObjectId | undefined, to: ObjectId | undefined, visit: (name: string, a?: TreeEntry, b?: TreeEntry) => void): void {
    const tables = [{ from, to, level: 0 }];
    for (let pair = tables.pop(); pair !== undefined; pair = tables.pop()) {
      if (pair.from === pair.to) continue;
      const a = pair.from === undefined ? undefined : this.tree(pair.from);
      const b = pair.to === undefined ? undefined : this.tree(pair.to);
      const level = pair.level + 1;
      if (a?.fanned && b?.fanned && pair.level < MAX_BUCKET_LEVEL) {
        for (const [name, entry] of a.map) if (isBucketName(name)) tables.push({ from: entry.id, to: b.map.get(name)?.id, level });
        for (const [name, entry] of b.map) if (isBucketName(name) && !a.map.has(name)) tables.push({ from: undefined, to: entry.id, level });
        continue;
      }
      const before = pair.from === undefined ? new Map<string, TreeEntry>() : this.childMap(pair.from, pair.level);
      const after = pair.to === undefined ? new Map<string, TreeEntry>() : this.childMap(pair.to, pair.level);
      for (const [name, entry] of before) if (!sameEntry(entry, after.get(name))) visit(name, entry, after.get(name));
      for (const [name, entry] of after) if (!before.has(name)) visit(name, undefined, entry);
    }
  }

  private childMap(dir: ObjectId, level: number): Map<string, TreeEntry> {
    const map = new Map<string, TreeEntry>();
    for (const entry of this.children(dir, level)) map.set(entry.name, entry);
    return map;
  }
}

/** The objects of new trees, for `repo.writeObjects`. */
export function treeObjects(made: NewTree[]): GitObject[] {
  return made.map((tree) => ({ type: "tree", body: tree.body }));
}
