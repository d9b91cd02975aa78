import { encodeCommit, type Commit } from "../objects/commit.js";
import { gitError } from "../errors.js";
import { keyToNames } from "../store/keyNames.js";
import { EMPTY_TREE, type KeyEdit, type KeyTree, type NewTree } from "../store/keyTree.js";
import { hashObject, type ObjectId } from "../objects/objectId.js";
import type { Identity } from "../objects/signature.js";
import type { Repository } from "../repo/repository.js";
import { signatureNow } from "../objects/signature.js";

/**
 * Per-key three-way merges of the `git` driver's commits (docs/git.md, "Sync"):
 * the merge base, the keys each side changed since it, a policy for the keys
 * both changed differently, and a merge commit with both parents.
 */

/**
 * Decides a key both sides changed differently. Values are the stored text
 * (the JSON the core serialized; null: absent). Returns the merged value:
 * text or bytes to store, null to remove the key.
 */
export type MergeResolver = (
  key: string,
  base: string | null,
  ours: string | null,
  theirs: string | null,
) => string | Uint8Array | null | Promise<string | Uint8Array | null>;

/**
 * `latest`: the side whose newest change of the key is newer wins; `ours`,
 * `theirs`: that side wins every conflict; a function decides each one.
 */
export type MergePolicy = "latest" | "ours" | "theirs" | MergeResolver;

/** What a merge needs of the store. */
export interface MergeContext {
  repo: Repository;
  keys: KeyTree;
  /** A parsed commit (cached by the caller). */
  readCommit: (id: ObjectId) => Commit;
  /** Author and committer of the merge commit. */
  author: Identity;
}

/** A key both sides changed to different values (blob ids; undefined: removed or absent). */
export interface Conflict {
  key: string;
  base: ObjectId | undefined;
  ours: ObjectId | undefined;
  theirs: ObjectId | undefined;
}

/** A merged tree, before its commit is written. */
interface MergedTree {
  tree: ObjectId;
  made: NewTree[];
  blobs: Buffer[];
  conflicts: string[];
}

const PARENT1 = 1;
const PARENT2 = 2;
const STALE = 4;
const BOTH = PARENT1 | PARENT2;
/** How far a `latest` decision walks back a side's first parents looking for the key's last change. */
const MAX_WALK = 100_000;

/** Commits by committer time, newest out first (a sorted array: the frontier of a walk is narrow). */
class CommitQueue {
  private readonly items: { id: ObjectId; time: number }[] = [];

  constructor(private readonly readCommit: (id: ObjectId) => Commit) {}

  push(id: ObjectId): void {
    const time = this.readCommit(id).committer.timestamp;
    let low = 0;
    let high = this.items.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.items[mid]!.time <= time) low = mid + 1;
      else high = mid;
    }
    this.items.splice(low, 0, { id, time });
  }

  pop(): ObjectId | undefined {
    return this.items.pop()?.id;
  }

  /** True while some queued commit is not yet known to be below a common ancestor. */
  hasLive(flags: Map<ObjectId, number>): boolean {
    return this.items.some((item) => ((flags.get(item.id) ?? 0) & STALE) === 0);
  }
}

/**
 * The merge base of two commits, as `git merge-base` finds it: both sides'
 * ancestors are painted newest first until every commit left in the walk
 * lies below a common ancestor. When there are several best common
 * ancestors (a criss-cross merge), the newest by committer time is taken;
 * undefined when the histories share no commit.
 * @throws StorageError what `readCommit` throws
 */
export function mergeBase(readCommit: (id: ObjectId) => Commit, one: ObjectId, two: ObjectId): ObjectId | undefined {
  if (one === two) return one;
  const flags = new Map<ObjectId, number>([
    [one, PARENT1],
    [two, PARENT2],
  ]);
  const queue = new CommitQueue(readCommit);
  queue.push(one);
  queue.push(two);
  const found: ObjectId[] = [];
  while (queue.hasLive(flags)) {
    const id = queue.pop()!;
    let mark = flags.get(id)! & (BOTH | STALE);
    if (mark === BOTH) {
      found.push(id);
      mark |= STALE;
    }
    for (const parent of readCommit(id).parents) {
      const had = flags.get(parent) ?? 0;
      if ((had & mark) === mark) continue;
      flags.set(parent, had | mark);
      queue.push(parent);
    }
  }
  const newest = (a: ObjectId, b: ObjectId) => (readCommit(b).committer.timestamp > readCommit(a).committer.timestamp ? b : a);
  return found.length === 0 ? undefined : found.reduce(newest);
}

/** Each key `from` → `to` changed, with its value in `to` (undefined: removed). */
function changes(keys: KeyTree, from: ObjectId, to: ObjectId): Map<string, ObjectId | undefined> {
  const out = new Map<string, ObjectId | undefined>();
  keys.diff(from, to, (key, _before, after) => out.set(key, after));
  return out;
}

/**
 * Theirs' changes since the base that ours lacks, as edits of ours' tree, and
 * the keys both changed to different values. Subtrees equal by id are skipped.
 */
export function threeWay(keys: KeyTree, base: ObjectId, ours: ObjectId, theirs: ObjectId): { edits: KeyEdit[]; conflicts: Conflict[] } {
  const mine = changes(keys, base, ours);
  const edits: KeyEdit[] = [];
  const conflicts: Conflict[] = [];
  keys.diff(base, theirs, (key, before, after) => {
    if (!mine.has(key)) edits.push({ names: keyToNames(key), value: after ?? null });
    else if (mine.get(key) !== after) conflicts.push({ key, base: before, ours: mine.get(key), theirs: after });
  });
  return { edits, conflicts };
}

/** When a side last changed a key: the newest commit of its first-parent chain whose value differs from its parent's. */
function lastChange(context: MergeContext, tip: ObjectId, names: string[], memo: Map<string, ObjectId | undefined>): { time: number; id: ObjectId } {
  let id = tip;
  let commit = context.readCommit(id);
  const value = context.keys.valueAt(commit.tree, names, memo);
  for (let step = 0; step < MAX_WALK; step++) {
    const parentId = commit.parents[0];
    if (parentId === undefined) break;
    const parent = context.readCommit(parentId);
    if (context.keys.valueAt(parent.tree, names, memo) !== value) break;
    id = parentId;
    commit = parent;
  }
  return { time: commit.committer.timestamp, id };
}

/** `latest`: the newer last change wins; on a tie the higher commit id, so every clone decides alike. */
function theirsIsLater(context: MergeContext, conflict: Conflict, ours: ObjectId, theirs: ObjectId): boolean {
  const names = keyToNames(conflict.key);
  const memo = new Map<string, ObjectId | undefined>();
  const mine = lastChange(context, ours, names, memo);
  const other = lastChange(context, theirs, names, memo);
  return other.time !== mine.time ? other.time > mine.time : other.id > mine.id;
}

const textOf = (repo: Repository, id: ObjectId | undefined): string | null => (id === undefined ? null : repo.readBlob(id).toString("utf8"));

/** The value a policy gives a conflicting key: a blob id, or null to remove it; new blobs go to `blobs`. */
async function decide(context: MergeContext, policy: MergePolicy, conflict: Conflict, tips: { ours: ObjectId; theirs: ObjectId }, blobs: Buffer[]): Promise<ObjectId | null> {
  let pick: ObjectId | undefined;
  if (policy === "ours") pick = conflict.ours;
  else if (policy === "theirs") pick = conflict.theirs;
  else if (policy === "latest") pick = theirsIsLater(context, conflict, tips.ours, tips.theirs) ? conflict.theirs : conflict.ours;
  else {
    const { repo } = context;
    const value = await policy(conflict.key, textOf(repo, conflict.base), textOf(repo, conflict.ours), textOf(repo, conflict.theirs));
    if (value === null) return null;
    if (typeof value !== "string" && !(value instanceof Uint8Array)) {
      throw gitError("E_INVALID_VALUE", `The merge resolver returned neither text, bytes nor null for ${JSON.stringify(conflict.key)}`);
    }
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    blobs.push(bytes);
    return hashObject("blob", bytes);
  }
  return pick ?? null;
}

/** The merged tree of two commits on their base: theirs' changes applied to ours', conflicts decided by the policy. */
async function mergeTrees(context: MergeContext, policy: MergePolicy, base: ObjectId | undefined, ours: ObjectId, theirs: ObjectId): Promise<MergedTree> {
  const trees = { base: base === undefined ? EMPTY_TREE : context.readCommit(base).tree, ours: context.readCommit(ours).tree, theirs: context.readCommit(theirs).tree };
  const { edits, conflicts } = threeWay(context.keys, trees.base, trees.ours, trees.theirs);
  const blobs: Buffer[] = [];
  for (const conflict of conflicts) {
    edits.push({ names: keyToNames(conflict.key), value: await decide(context, policy, conflict, { ours, theirs }, blobs) });
  }
  const made: NewTree[] = [];
  const tree = edits.length === 0 ? trees.ours : context.keys.apply(trees.ours, edits, made);
  return { tree, made, blobs, conflicts: conflicts.map((conflict) => conflict.key) };
}

/** Writes the merge commit (parents: ours, theirs) and its new blobs and trees as one pack. */
function writeMerge(context: MergeContext, merged: MergedTree, parents: [ObjectId, ObjectId], message: string): ObjectId {
  const who = signatureNow(context.author.name, context.author.email);
  const pack = context.repo.packWriter({ mode: "memory" });
  try {
    for (const blob of merged.blobs) pack.add("blob", blob);
    for (const tree of merged.made) pack.add("tree", tree.body);
    const id = pack.add("commit", encodeCommit({ tree: merged.tree, parents, author: who, committer: who, extraHeaders: [], message: `${message}\n` }));
    context.repo.installPack(pack.finish());
    for (const tree of merged.made) context.keys.remember(tree.id, tree.entries);
    return id;
  } catch (error) {
    pack.abort();
    throw error;
  }
}

/** How two commits were brought together. */
export interface MergeOutcome {
  /** The commit that holds both: ours (already has theirs), theirs (fast-forward) or a new merge commit. */
  id: ObjectId;
  kind: "up-to-date" | "fast-forward" | "merge";
  /** Keys both sides changed to different values (decided by the policy). */
  conflicts: string[];
}

/**
 * Brings `theirs` into `ours`: nothing to do when ours already contains it,
 * theirs when it contains ours, else a merge commit (parents ours, theirs)
 * whose tree is ours plus theirs' changes since the merge base, per key.
 * Histories without a common commit merge against the empty tree.
 * @throws StorageError `E_INVALID_VALUE` when a resolver policy returns neither text, bytes nor null; what the policy throws; what reading and writing the repository throws (`E_NOT_FOUND`, `E_CORRUPT`, `E_IO`)
 */
export async function mergeCommits(context: MergeContext, policy: MergePolicy, ours: ObjectId, theirs: ObjectId, message: string): Promise<MergeOutcome> {
  const base = mergeBase(context.readCommit, ours, theirs);
  if (base === theirs) return { id: ours, kind: "up-to-date", conflicts: [] };
  if (base === ours) return { id: theirs, kind: "fast-forward", conflicts: [] };
  const merged = await mergeTrees(context, policy, base, ours, theirs);
  return { id: writeMerge(context, merged, [ours, theirs], message), kind: "merge", conflicts: merged.conflicts };
}
