import { DEFAULT_KEY_LIMITS, type KeyLimits } from "../../core/types.js";
import { corrupt, gitError } from "../errors.js";
import { decodeKeyName, isBucketName, nameHash, VALUE_ENTRY } from "./keyNames.js";
import type { ObjectId } from "../objects/objectId.js";
import type { Repository } from "../repo/repository.js";
import { isTreeMode, TreeMode, type TreeEntry } from "../objects/tree.js";

/**
 * Checks that a tree is what the `git` driver's layout (keyTree.ts, docs/git.md)
 * writes, before a tree that came from elsewhere (a remote's tip) is merged
 * into a store: every name is a key name exactly as the encoding writes it
 * (or the layout's own `%value` and fan-out buckets, each where the layout
 * puts it), every mode is a plain blob or a tree, no subtree is empty, and
 * keys stay within the key limits.
 */

/** Most tree entries one check of a fetched tree reads (the git driver's, git-notes'); past it the check is `E_TOO_LARGE` (a store of ten million keys). */
export const MAX_CHECKED_ENTRIES = 10_000_000;

/** A subtree a walk opens: its id, the same place in a trusted tree if any, and what the layout needs to know of it. */
export interface WalkedTree {
  id: ObjectId;
  known?: ObjectId | undefined;
}

/**
 * Walks the tree `root` iteratively (no recursion, whatever its depth), at
 * most `limit` entries. For each tree, `open` sees all
 * its entries (checks that span siblings) and returns the check of one
 * entry, which throws at an entry the layout would not have written and
 * returns the subtree to walk next, if any. Entries equal (id and mode) to
 * the same name in `known` (a tree already in the store) are not checked again.
 * @default limit {@link MAX_CHECKED_ENTRIES}
 * @throws StorageError `E_TOO_LARGE` past the bound; what `open` and its checks throw
 */
export function walkNewEntries<T extends WalkedTree>(
  repo: Repository,
  root: T,
  open: (tree: T, entries: readonly TreeEntry[]) => (entry: TreeEntry) => T | undefined,
  limit = MAX_CHECKED_ENTRIES,
): void {
  const stack: T[] = [root];
  let read = 0;
  for (let tree = stack.pop(); tree !== undefined; tree = stack.pop()) {
    const entries = repo.readTree(tree.id);
    read += entries.length;
    if (read > limit) throw gitError("E_TOO_LARGE", `The tree ${root.id} has more than ${limit} entries to check`);
    const knownEntries = tree.known === undefined ? undefined : new Map(repo.readTree(tree.known).map((entry) => [entry.name, entry]));
    const check = open(tree, entries);
    for (const entry of entries) {
      const twin = knownEntries?.get(entry.name);
      if (twin?.id === entry.id && twin.mode === entry.mode) continue;
      const next = check(entry);
      if (next !== undefined) stack.push({ ...next, known: twin !== undefined && isTreeMode(twin.mode) ? twin.id : undefined });
    }
  }
}

/** A table of the layout: a key directory (the root when `depth` is 0) or a fan-out bucket of one. */
interface Table extends WalkedTree {
  /** The key of the directory, segments joined by `:` ("" for the root). */
  key: string;
  /** Segments in `key`. */
  depth: number;
  /** Fan-out level: 0 for the directory itself, n inside a bucket of a bucket… */
  level: number;
  /** The hex digits of name hashes the buckets above fixed ("" at level 0). */
  prefix: string;
}

/** The modes of a value blob (or a note). */
export const VALUE_MODES: ReadonlySet<string> = new Set([TreeMode.file, TreeMode.executable]);
// The separators and what the core strips or refuses in a key: a segment holding one could not be read back by its key.
const NOT_IN_SEGMENT = /[:/\\?\0]/;

/** The key segment an entry name stands for, or undefined when the encoding would not write that name. */
function segmentOf(name: string): string | undefined {
  const segment = decodeKeyName(name);
  if (segment === undefined || segment === "." || segment === ".." || NOT_IN_SEGMENT.test(segment)) return undefined;
  return segment;
}

/**
 * Walks `root` with the sync's bounded walk ({@link walkNewEntries}: at most
 * {@link MAX_CHECKED_ENTRIES} entries, `E_TOO_LARGE` past it) and throws
 * `E_CORRUPT` at the first entry the layout would not have written.
 * Subtrees whose id equals the one at the same place in `known` (a tree
 * already in the store) are not read again.
 */
export function checkKeyTree(repo: Repository, root: ObjectId, known?: ObjectId, limits: KeyLimits = DEFAULT_KEY_LIMITS): void {
  walkNewEntries<Table>(repo, { id: root, known, key: "", depth: 0, level: 0, prefix: "" }, (table, entries) => {
    if (entries.length === 0 && (table.depth > 0 || table.level > 0)) throw bad(table, undefined, "an empty subtree");
    const fanned = entries.some((entry) => isBucketName(entry.name));
    return (entry) => checkEntry(table, entry, fanned, limits);
  });
}

/** Checks one entry of a table; returns the table it opens, if any. */
function checkEntry(table: Table, entry: TreeEntry, fanned: boolean, limits: KeyLimits): Table | undefined {
  if (entry.rawName !== undefined) throw bad(table, entry, "a name that is not UTF-8");
  if (entry.name === VALUE_ENTRY) {
    if (table.depth === 0 || table.level > 0) throw bad(table, entry, "a value entry outside a key's directory");
    if (!VALUE_MODES.has(entry.mode)) throw bad(table, entry, `mode ${entry.mode} for a value`);
    return undefined;
  }
  if (isBucketName(entry.name)) {
    if (!isTreeMode(entry.mode)) throw bad(table, entry, `mode ${entry.mode} for a fan-out bucket`);
    const prefix = table.prefix + entry.name.slice(2);
    if (prefix.length >= 40) throw bad(table, entry, "fan-out deeper than a name hash");
    return { id: entry.id, key: table.key, depth: table.depth, level: table.level + 1, prefix };
  }
  if (fanned) throw bad(table, entry, "a key beside fan-out buckets");
  const segment = segmentOf(entry.name);
  if (segment === undefined) throw bad(table, entry, "a name the key encoding does not write");
  if (!nameHash(entry.name).startsWith(table.prefix)) throw bad(table, entry, "a name in a fan-out bucket its hash does not pick");
  const key = table.key === "" ? segment : `${table.key}:${segment}`;
  if (table.depth + 1 > limits.segments || Buffer.byteLength(key, "utf8") > limits.bytes) throw bad(table, entry, "a key longer or deeper than the key limits");
  if (VALUE_MODES.has(entry.mode)) return undefined;
  if (!isTreeMode(entry.mode)) throw bad(table, entry, `mode ${entry.mode} (neither a value nor a key directory)`);
  return { id: entry.id, key, depth: table.depth + 1, level: 0, prefix: "" };
}

function bad(table: Table, entry: TreeEntry | undefined, what: string): Error {
  const where = table.key === "" ? "the root" : JSON.stringify(table.key);
  const name = entry === undefined ? "" : ` (entry ${JSON.stringify(entry.rawName === undefined ? entry.name : entry.rawName.toString("hex"))})`;
  return corrupt(`Not a stowage key tree: ${where} holds ${what}${name}`);
}
