import type { StorageError } from "../../core/errors.js";
import type { AutoMaintenance } from "../repo/autoMaintenance.js";
import { gitError } from "../errors.js";
import { hashObject, type GitObject, type ObjectId } from "../objects/objectId.js";
import { updateRefWith } from "../refs/refTransaction.js";
import type { Identity } from "../objects/signature.js";
import type { Repository } from "../repo/repository.js";
import { signatureNow } from "../objects/signature.js";
import { encodeTree, isTreeMode, TreeMode, type TreeEntry } from "../objects/tree.js";
import { GroupCommit, oncePerName } from "./groupCommit.js";

/**
 * A ref whose commits hold a tree of blobs, seen as a flat map from names
 * to blob ids, and changed by new commits built while holding the ref's
 * lock (Git's protocol), on top of whatever the tip is then. Shared by the git-objects index and the git-notes
 * drivers; the {@link TreeLayout} says how names map onto tree paths
 * (nested key paths; notes fanned out by hex).
 */

/** How names map onto tree paths. */
export interface TreeLayout {
  /** The name a blob at `path` has; `path` itself for entries the layout does not own (kept as they are). */
  nameOf(path: string): string;
  /** The tree paths of all names (a layout may place a name by the others, as notes' fan-out does). */
  pathsOf(names: ReadonlyMap<string, ObjectId>): Map<string, ObjectId>;
}

/** One change: `id` null removes the name; `expected` (null: absent) is checked against the tip it lands on. */
export interface NameChange {
  name: string;
  id: ObjectId | null;
  expected?: ObjectId | null;
  /** Entries set (or, with id null, removed) together with this change, on its condition alone. */
  also?: { name: string; id: ObjectId | null }[];
}

export interface TreeRefOptions {
  /** The ref (e.g. `refs/stowage/objects`, `refs/notes/stowage`). */
  ref: string;
  layout: TreeLayout;
  /** Commit message of every commit. */
  message: string;
  /** Author and committer (default `stowage <stowage@localhost>`). */
  identity?: Identity;
  /** How long to wait for the ref's lock, in ms (default 5000), before `E_UNAVAILABLE`. */
  lockTimeout?: number;
  /** fsync the ref file before its rename. */
  fsync?: boolean;
  /** Told of every commit, to pack the loose objects commits leave once they pile up. */
  maintenance?: AutoMaintenance;
  /**
   * Told of each commit this TreeRef published (after the ref moved, never for a failed one): a cache
   * derived from the names can follow its own writes instead of being rebuilt. Must not throw.
   */
  onCommit?: (commit: CommitDelta) => void;
}

/** One published commit: the names it was built on, the names it holds, and the names it set or removed. */
export interface CommitDelta {
  base: ReadonlyMap<string, ObjectId>;
  names: ReadonlyMap<string, ObjectId>;
  touched: readonly string[];
}

/** What a tip holds: its names, and the trees it is made of (not written again). */
interface State {
  tip: ObjectId | undefined;
  names: Map<string, ObjectId>;
  trees: Set<ObjectId>;
}

/** The flat view and CAS-committed changes of one tree-holding ref. */
export class TreeRef {
  private state: State = { tip: undefined, names: new Map(), trees: new Set() };
  private readonly batches = new GroupCommit<NameChange>({
    commit: (round) => {
      const failures = this.apply(round, true);
      return new Map([...failures].map(([index, error]) => [round[index] as NameChange, error]));
    },
    // A batch holds each name once: a later change of a name waits for the next one.
    split: oncePerName((change) => change.name),
  });

  constructor(
    private readonly repo: Repository,
    private readonly options: TreeRefOptions,
  ) {}

  /** The names and blob ids at the ref's tip now (re-read when the ref moved). */
  current(): ReadonlyMap<string, ObjectId> {
    return this.load().names;
  }

  /** The blob id a name holds at the tip. */
  get(name: string): ObjectId | undefined {
    return this.load().names.get(name);
  }

  /** The commit the ref points at. */
  tip(): ObjectId | undefined {
    return this.load().tip;
  }

  /**
   * Applies changes as one commit. `isolate` false: all or nothing (a failed
   * expectation is `E_CONFLICT`). `isolate` true: a change whose expectation
   * fails is left out and reported by index. The commit is built on the tip
   * read under the ref's lock, so no concurrent writer (process, or stock
   * git, which honours the lock) is lost.
   */
  apply(changes: readonly NameChange[], isolate = false): Map<number, StorageError> {
    const failures = this.update(changes, isolate);
    this.options.maintenance?.wrote();
    return failures;
  }

  private update(changes: readonly NameChange[], isolate: boolean): Map<number, StorageError> {
    const options = this.options;
    let delta: CommitDelta | undefined;
    const failures = updateRefWith(
      this.repo.refs,
      options.ref,
      () => {
        const state = this.load();
        const failures = new Map<number, StorageError>();
        changes.forEach((change, index) => {
          const failure = checkExpected(change, state.names.get(change.name));
          if (failure === undefined) return;
          if (!isolate) throw failure;
          failures.set(index, failure);
        });
        const names = new Map(state.names);
        const touched: string[] = [];
        changes.forEach((change, index) => {
          if (failures.has(index)) return;
          for (const entry of [change, ...(change.also ?? [])]) {
            touched.push(entry.name);
            if (entry.id === null) names.delete(entry.name);
            else names.set(entry.name, entry.id);
          }
        });
        if (failures.size === changes.length || sameNames(names, state.names)) return { result: failures };
        const id = this.write(state, names);
        delta = { base: state.names, names, touched };
        return { id, result: failures };
      },
      { lockTimeout: options.lockTimeout ?? 5000, fsync: options.fsync === true, reflogMessage: options.message, identity: options.identity },
    );
    // updateRefWith returned: the commit is published.
    if (delta !== undefined) options.onCommit?.(delta);
    return failures;
  }

  /**
   * Queues a change (a distinct object per write) for the next group commit:
   * changes made in the same event-loop turn land in one commit, each on its own expectation.
   */
  enqueue(change: NameChange): Promise<void> {
    return this.batches.enqueue(change);
  }

  /** Resolves when every queued change has been committed or failed (dispose awaits it). */
  drain(): Promise<void> {
    return this.batches.drain();
  }

  /** Writes the tree and commit for `names` on top of `state` (under the ref's lock); returns the commit. */
  private write(state: State, names: Map<string, ObjectId>): ObjectId {
    const objects: GitObject[] = [];
    const trees = new Set<ObjectId>();
    const tree = buildTree(this.options.layout.pathsOf(names), state.trees, objects, trees);
    const who = signatureNow(this.options.identity?.name ?? "stowage", this.options.identity?.email ?? "stowage@localhost");
    this.repo.writeObjects(objects);
    const commit = this.repo.writeCommit({
      tree,
      parents: state.tip === undefined ? [] : [state.tip],
      author: who,
      committer: who,
      extraHeaders: [],
      message: `${this.options.message}\n`,
    });
    // Should publishing fail, the next load sees the ref's real tip differ and reads it again.
    this.state = { tip: commit, names, trees };
    return commit;
  }

  /** The state at the ref's tip, read again only when the ref moved. */
  private load(): State {
    const tip = this.repo.refs.resolve(this.options.ref);
    if (tip === this.state.tip) return this.state;
    const names = new Map<string, ObjectId>();
    const trees = new Set<ObjectId>();
    if (tip !== undefined) walkTree(this.repo, this.repo.readCommit(tip).tree, this.options.layout, names, trees);
    this.state = { tip, names, trees };
    return this.state;
  }
}

/**
 * Adds every blob below `root` to `names` by its name in `layout`, and every tree seen to `trees`
 * (known trees a later {@link buildTree} need not write again); a stack of trees, not recursion,
 * since their depth is the keys'.
 */
export function walkTree(repo: Repository, root: ObjectId, layout: TreeLayout, names: Map<string, ObjectId>, trees: Set<ObjectId>): void {
  const stack = [{ tree: root, prefix: "" }];
  for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
    trees.add(dir.tree);
    for (const entry of repo.readTree(dir.tree)) {
      const path = dir.prefix + entry.name;
      if (isTreeMode(entry.mode)) stack.push({ tree: entry.id, prefix: `${path}/` });
      else names.set(layout.nameOf(path), entry.id);
    }
  }
}

function checkExpected(change: NameChange, current: ObjectId | undefined): StorageError | undefined {
  if (change.expected === undefined) return undefined;
  if ((change.expected ?? undefined) === current) return undefined;
  return gitError("E_CONFLICT", `${change.name} is ${current ?? "absent"}, expected ${change.expected ?? "absent"}`);
}

function sameNames(a: ReadonlyMap<string, ObjectId>, b: ReadonlyMap<string, ObjectId>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, id] of a) if (b.get(name) !== id) return false;
  return true;
}

interface Dir {
  files: TreeEntry[];
  dirs: Map<string, Dir>;
  /** Set once the directory's tree is written. */
  id?: ObjectId;
}

/**
 * Builds the nested trees of `paths` (path → blob id); trees not in `known`
 * are added to `objects` to be written. Returns the root tree's id. Trees
 * are written children first from a stack, not by recursion: a path's depth
 * follows its key's.
 */
export function buildTree(paths: ReadonlyMap<string, ObjectId>, known: ReadonlySet<ObjectId>, objects: GitObject[], made: Set<ObjectId>): ObjectId {
  const root: Dir = { files: [], dirs: new Map() };
  for (const [path, id] of paths) {
    const parts = path.split("/");
    let dir = root;
    for (const part of parts.slice(0, -1)) {
      let next = dir.dirs.get(part);
      if (next === undefined) dir.dirs.set(part, (next = { files: [], dirs: new Map() }));
      dir = next;
    }
    dir.files.push({ mode: TreeMode.file, name: parts[parts.length - 1] as string, id });
  }
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack[stack.length - 1] as Dir;
    const unwritten = [...dir.dirs.values()].filter((sub) => sub.id === undefined);
    if (unwritten.length > 0) {
      stack.push(...unwritten);
      continue;
    }
    stack.pop();
    dir.id = writeDir(dir, known, objects, made);
  }
  return root.id as ObjectId;
}

/** Writes one directory whose subdirectories are written. */
function writeDir(dir: Dir, known: ReadonlySet<ObjectId>, objects: GitObject[], made: Set<ObjectId>): ObjectId {
  const entries = [...dir.files];
  for (const [name, sub] of dir.dirs) entries.push({ mode: TreeMode.tree, name, id: sub.id as ObjectId });
  const body = encodeTree(entries);
  const id = hashObject("tree", body);
  if (!known.has(id) && !made.has(id)) objects.push({ type: "tree", body });
  made.add(id);
  return id;
}
