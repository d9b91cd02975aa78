import { statSync, watch as watchFs, type FSWatcher } from "node:fs";
import { basename, dirname, join } from "node:path";
import { isStorageError, StorageError, toStorageError } from "../../core/errors.js";
import { guardOf } from "../../core/guards.js";
import type { CommitOperation, HistoryEntry, KeyLimits, WatchInfo, WatchOrigin } from "../../core/types.js";
import { bloomKey, type BloomKey } from "../packs/bloom.js";
import { checkDriverKey } from "./driverSupport.js";
import { encodeCommit, type Commit } from "../objects/commit.js";
import { writeCommitGraph, type CommitGraph, type CommitGraphWritten } from "../packs/commitGraph.js";
import { keyRoute } from "./keyRoute.js";
import { keyToNames } from "./keyNames.js";
import { EMPTY_TREE, KeyTree, type KeyEdit, type NewTree } from "./keyTree.js";
import { LRUCache } from "lru-cache";
import { stableStamp } from "../fileStamp.js";
import { maintain, type MaintenanceOptions, type MaintenanceResult } from "../repo/maintenance.js";
import { isObjectId, type ObjectId } from "../objects/objectId.js";
import type { PackWriter } from "../packs/packWriter.js";
import type { Identity } from "../objects/signature.js";
import { openOrInit } from "./openStore.js";
import type { Repository } from "../repo/repository.js";
import { signatureNow } from "../objects/signature.js";
import { makeDirectories } from "../../core/directories.js";
import { GroupCommit } from "./groupCommit.js";

/** Options of a {@link KeyValueRepo}. */
export interface KeyValueRepoOptions {
  /** Repository (bare, `.git`, or worktree); a bare one is created when none is there. */
  dir: string;
  /** The ref whose commits hold the keys. */
  ref: string;
  /** Author and committer of the commits (and the reflog identity). */
  author: Identity;
  /** Commit message template: `{op}`, `{key}` and `{count}` are replaced. */
  message: string;
  /** fsync objects and the ref. */
  fsync: boolean;
  /** Entries before a directory fans out into buckets. */
  fanout: number;
  /** How long a write waits for a ref lock held elsewhere, in ms. */
  lockTimeout: number;
  /** How often watch polls the ref, in ms, besides file-system notifications. */
  pollInterval: number;
  /** Packs open past which a commit runs a (geometric) pack merge; 0: never. */
  packLimit: number;
}

/** The commit a ref points at, with what reads need of it. */
interface Tip {
  id: ObjectId | undefined;
  tree: ObjectId;
  /** Committer time, ms. */
  time: number;
  /** The ref file's identity when this was read ("" forces a re-read). */
  stamp: string;
}

/** One caller's share of a commit: its operations land together or not at all. */
export interface WriteUnit {
  op: string;
  ops: CommitOperation[];
  /** Set for a clear: every key below this base goes ("" for all). */
  clearBase?: string;
}

/** A commit built on a tip, not yet on the ref. */
interface Prepared {
  tree: ObjectId;
  made: NewTree[];
  failed: Map<WriteUnit, StorageError>;
  changedKeys: string[];
  units: readonly WriteUnit[];
}

/** A commit of a history walk and its first parent. */
interface HistoryStep {
  id: ObjectId;
  tree: ObjectId;
  /** Position in the commit-graph, or -1. */
  at: number;
  parent: ObjectId | undefined;
  /** The parent's position in the commit-graph, or -1 (unknown). */
  parentAt: number;
}

/** A commit written, not yet on the ref. */
interface Written {
  id: ObjectId;
  message: string;
  time: number;
}

type Listener = (event: "update" | "remove", key: string, info: WatchInfo) => void;

/** How many commits a watch walks back from a new tip to the last one seen before it reports the move as one change. */
const WATCH_WALK = 100;
/** How many of its own commits a watching store remembers (they are looked up right after they are made). */
const OWN_COMMITS = 10_000;

/** One step a watch reports: the trees it diffs, and what it knows of the commit that made it. */
interface WatchStep {
  from: ObjectId;
  to: ObjectId;
  origin: WatchOrigin;
  /** The commit, when the step is exactly one commit. */
  version?: ObjectId;
}

const MAX_ATTEMPTS = 10_000;
const MAX_LOOKED = 100_000;
/** Commits outside the commit-graph before a pack merge also rewrites it: a history walk reads each such commit. */
const GRAPH_EVERY = 256;
const NO_TIP: Tip = { id: undefined, tree: EMPTY_TREE, time: 0, stamp: "" };

function conflict(key: string, why: string): StorageError {
  return new StorageError("E_CONFLICT", `${why}: ${key}`, { key });
}

function bytesOf(value: string | Uint8Array): Buffer {
  return typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * A key-value store in one ref of a Git repository: each commit's tree holds
 * the keys (layout in {@link KeyTree}); writes build a new tree and commit on
 * the tip, then move the ref by compare-and-swap, re-applying on the new tip
 * when another writer moved it first.
 */
export class KeyValueRepo {
  readonly repo: Repository;
  readonly keys: KeyTree;
  private tip: Tip = NO_TIP;
  private readonly refFile: string;
  private readonly packedRefsFile: string;
  private readonly commits = new LRUCache<ObjectId, Commit>({ max: 20_000 });
  private readonly batches = new GroupCommit<WriteUnit>({
    commit: (units) => this.commitAsync(units),
    // A clear goes alone, so the writes queued before it stay before it.
    split: (queue) => {
      const clearAt = queue.findIndex((unit) => unit.clearBase !== undefined);
      return Array.from({ length: clearAt === 0 ? 1 : clearAt < 0 ? queue.length : clearAt }, (_, index) => index);
    },
  });
  private readonly listeners = new Set<Listener>();
  private watching: { seen: Tip; stop: () => void } | undefined;
  /** Commits this store made while watched: the watch reports their changes as local. */
  private readonly ownCommits = new Set<ObjectId>();
  private commitsSinceGraph = 0;
  /** Makes each racy stamp unique. */
  private racyReads = 0;
  private looked: { root: ObjectId; ids: Map<string, ObjectId | undefined> } = { root: EMPTY_TREE, ids: new Map() };

  constructor(private readonly options: KeyValueRepoOptions) {
    const repoOptions = { fsync: options.fsync, identity: options.author, lockTimeout: options.lockTimeout };
    this.repo = openOrInit(options.dir, repoOptions);
    this.keys = new KeyTree(this.repo, options.fanout);
    this.refFile = this.repo.refs.refPath(options.ref);
    this.packedRefsFile = join(this.repo.commonDir, "packed-refs");
  }

  // --- the tip ----------------------------------------------------------------

  /**
   * Which file holds the ref now, and its identity: unchanged identity,
   * unchanged ref. A racy file (see {@link stableStamp}) gets a stamp of
   * its own each time, so it is read again.
   */
  private stamp(): string {
    const loose = statSync(this.refFile, { bigint: true, throwIfNoEntry: false });
    if (loose !== undefined) return stableStamp(loose) ?? `racy:${++this.racyReads}`;
    const packed = statSync(this.packedRefsFile, { bigint: true, throwIfNoEntry: false });
    if (packed === undefined) return "none";
    return `p${stableStamp(packed) ?? `racy:${++this.racyReads}`}`;
  }

  /** The tip, re-read only when the ref file changed since the last read. */
  current(): Tip {
    const stamp = this.stamp();
    return stamp === this.tip.stamp ? this.tip : this.load(stamp);
  }

  /** The tip as the ref holds it now. */
  fresh(): Tip {
    return this.load(this.stamp());
  }

  private load(stamp: string): Tip {
    const id = this.repo.refs.resolve(this.options.ref);
    if (id === this.tip.id) this.tip = { ...this.tip, stamp };
    else if (id === undefined) this.tip = { ...NO_TIP, stamp };
    else {
      const commit = this.commit(id);
      this.tip = { id, tree: commit.tree, time: commit.committer.timestamp * 1000, stamp };
    }
    return this.tip;
  }

  /** A parsed commit (cached: commits never change). */
  commit(id: ObjectId): Commit {
    let commit = this.commits.get(id);
    if (commit === undefined) {
      commit = this.repo.readCommit(id);
      this.commits.set(id, commit);
    }
    return commit;
  }

  // --- reads ------------------------------------------------------------------

  /** The root tree of `version` (a commit id), or of the tip. */
  private rootOf(version: string | undefined): ObjectId {
    if (version === undefined) return this.current().tree;
    if (!isObjectId(version)) throw new StorageError("E_INVALID_OPTION", `A version is a commit id (40 hex digits), got ${JSON.stringify(version)}`);
    return this.commit(version).tree;
  }

  /** The blob id of a key's value (its etag), or undefined. */
  valueId(key: string, version?: string): ObjectId | undefined {
    if (version !== undefined) return this.keys.valueAt(this.rootOf(version), namesOf(key));
    const root = this.current().tree;
    // Keys looked up in this root tree: a hot read skips the tree walk.
    if (root !== this.looked.root || this.looked.ids.size > MAX_LOOKED) this.looked = { root, ids: new Map() };
    let id = this.looked.ids.get(key);
    if (id === undefined && !this.looked.ids.has(key)) {
      id = this.keys.valueAt(root, namesOf(key));
      this.looked.ids.set(key, id);
    }
    return id;
  }

  /** A key's bytes (shared with the cache: copy before handing out), or null. */
  read(key: string, version?: string): Buffer | null {
    const id = this.valueId(key, version);
    return id === undefined ? null : this.repo.readBlob(id);
  }

  /** Keys below `base` (a key prefix, with or without its trailing `:`). */
  list(base: string, maxDepth: number | undefined): string[] {
    const trimmed = base.replace(/:+$/, "");
    const root = this.current().tree;
    const dir = trimmed === "" ? root : this.keys.dirAt(root, namesOf(trimmed));
    const out: string[] = [];
    if (dir !== undefined) this.keys.listKeys(dir, trimmed === "" ? "" : `${trimmed}:`, maxDepth, out);
    return out;
  }

  /** The tip's commit time (ms), or undefined without commits. */
  tipTime(): number | undefined {
    const tip = this.current();
    return tip.id === undefined ? undefined : tip.time;
  }

  /**
   * The commits of the first-parent chain that changed `key`, newest first:
   * each commit's value is compared with its parent's, directories the two
   * share being resolved once. Commits in the commit-graph are walked from
   * its records (no commit object read), and one whose changed-path filter
   * proves the key's route untouched costs no tree read either.
   */
  history(key: string, limit: number): HistoryEntry<string>[] {
    const names = namesOf(key);
    const memo = new Map<string, ObjectId | undefined>();
    const out: HistoryEntry<string>[] = [];
    const tip = this.current().id;
    if (tip === undefined || limit <= 0) return out;
    const graph = this.repo.commitGraph();
    let step: HistoryStep | undefined = this.historyStep(graph, tip, -1);
    let value = this.keys.valueAt(step.tree, names, memo);
    let probe = this.routeProbe(graph, step.tree, names);
    while (step !== undefined && out.length < limit) {
      // Commits whose filter proves the key's route untouched hold the same value as their parent: passed by position.
      if (probe !== undefined && step.at >= 0) step = this.historyStep(graph, "", untouchedRun(graph!, step.at, probe));
      const parent: HistoryStep | undefined = step.parent === undefined ? undefined : this.historyStep(graph, step.parent, step.parentAt);
      const before = parent === undefined ? undefined : this.keys.valueAt(parent.tree, names, memo);
      if (parent !== undefined) probe = this.routeProbe(graph, parent.tree, names);
      if (before !== value) out.push(this.historyEntry(step.id, this.commit(step.id), value));
      step = parent;
      value = before;
    }
    return out;
  }

  /** A commit of a history walk, from the commit-graph when it holds it (`at`, or `knownAt`, its position there; else -1). */
  private historyStep(graph: CommitGraph | undefined, id: ObjectId, knownAt: number): HistoryStep {
    const at = knownAt >= 0 ? knownAt : (graph?.position(id) ?? -1);
    if (at >= 0) {
      const parentAt = graph!.firstParentAt(at);
      return { id: graph!.idAt(at), at, tree: graph!.treeAt(at), parent: parentAt < 0 ? undefined : graph!.idAt(parentAt), parentAt };
    }
    const commit = this.commit(id);
    return { id, at, tree: commit.tree, parent: commit.parents[0], parentAt: -1 };
  }

  /** The key's route in a root tree, hashed for the graph's filters; undefined when there are none or no route. */
  private routeProbe(graph: CommitGraph | undefined, root: ObjectId, names: string[]): BloomKey | undefined {
    if (graph?.bloom === undefined) return undefined;
    const route = keyRoute(this.keys, root, names);
    return route === undefined ? undefined : bloomKey(route, graph.bloom);
  }

  private historyEntry(id: ObjectId, commit: Commit, value: ObjectId | undefined): HistoryEntry<string> {
    return {
      version: id,
      value: value === undefined ? null : this.repo.readBlob(value).toString("utf8"),
      date: new Date(commit.committer.timestamp * 1000),
      message: commit.message.trimEnd(),
      author: `${commit.author.name} <${commit.author.email}>`,
    };
  }

  // --- writes -----------------------------------------------------------------

  /** Commits units now, waiting for held locks by blocking; the first unit's failure is thrown. */
  commitSync(units: WriteUnit[]): void {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const base = this.fresh();
      const written = this.build(base, units);
      if (written === undefined) return;
      const failure = written.failed.values().next().value;
      if (failure !== undefined) throw failure;
      try {
        this.repo.refs.update(this.options.ref, written.id, { expected: base.id ?? null, message: written.message });
      } catch (error) {
        if (this.moved(error, base)) continue;
        throw error;
      }
      this.committed(written);
      return;
    }
    throw this.tooBusy();
  }

  /**
   * Queues a unit for the next group commit: units queued in the same event
   * turn land in one commit; the promise settles once that commit is on the ref.
   */
  enqueue(unit: WriteUnit): Promise<void> {
    try {
      checkUnitKeys(unit);
    } catch (error) {
      // A bad key fails before it is queued: the writes it would have shared a commit with never see it.
      return Promise.reject(error);
    }
    // A copy: the batch tells failures by unit.
    return this.batches.enqueue({ ...unit });
  }

  /** Resolves when every queued write has been committed or failed. */
  drain(): Promise<void> {
    return this.batches.drain();
  }

  private async commitAsync(units: readonly WriteUnit[]): Promise<Map<WriteUnit, StorageError>> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const base = this.fresh();
      const written = this.build(base, units);
      if (written === undefined || written.tree === base.tree) return written?.failed ?? new Map();
      try {
        await this.repo.refs.updateAsync(this.options.ref, written.id, { expected: base.id ?? null, message: written.message });
      } catch (error) {
        if (this.moved(error, base)) continue;
        throw error;
      }
      this.committed(written);
      return written.failed;
    }
    throw this.tooBusy();
  }

  /**
   * Builds the commit of units on a tip, written as one pack (two new files
   * instead of one per object: blobs, trees, commit): undefined
   * when no unit changes anything (and none failed); a failed unit is listed.
   */
  private build(base: Tip, units: readonly WriteUnit[]): (Written & { tree: ObjectId; failed: Map<WriteUnit, StorageError> }) | undefined {
    const pack = this.repo.packWriter({ mode: "memory" });
    try {
      const prepared = this.prepare(base, units, pack);
      if (prepared.tree === base.tree) {
        pack.abort();
        return prepared.failed.size === 0 ? undefined : { id: "", message: "", time: 0, tree: base.tree, failed: prepared.failed };
      }
      return { ...this.writeCommit(base, prepared, pack), tree: prepared.tree, failed: prepared.failed };
    } catch (error) {
      pack.abort();
      throw error;
    }
  }

  /** True for a lost compare-and-swap: the ref no longer holds the tip the commit was built on. */
  private moved(error: unknown, base: Tip): boolean {
    return isStorageError(error, "E_CONFLICT") && this.fresh().id !== base.id;
  }

  private tooBusy(): StorageError {
    return new StorageError("E_UNAVAILABLE", `${this.options.ref} kept moving: gave up after ${MAX_ATTEMPTS} attempts`);
  }

  /**
   * Applies units on a tip in order: each unit's guards are checked against
   * the tip plus the units before it; a unit whose guard fails is left out.
   */
  private prepare(base: Tip, units: readonly WriteUnit[], pack: PackWriter): Prepared {
    const overlay = new Map<string, ObjectId | null>();
    const failed = new Map<WriteUnit, StorageError>();
    const accepted: WriteUnit[] = [];
    const made: NewTree[] = [];
    let tree = base.id === undefined ? undefined : base.tree;
    for (const unit of units) {
      if (unit.clearBase !== undefined) {
        tree = this.keys.clear(tree, unit.clearBase === "" ? [] : namesOf(unit.clearBase), made);
        accepted.push(unit);
        continue;
      }
      try {
        checkUnitKeys(unit);
        const failure = this.guardFailure(unit.ops, overlay, tree);
        if (failure !== undefined) {
          failed.set(unit, failure);
          continue;
        }
        // Its blobs first, the overlay after: a unit that fails half-way leaves nothing of it in the commit.
        const values = unit.ops.flatMap((op) => unitValue(op, pack));
        for (const [key, value] of values) overlay.set(key, value);
      } catch (error) {
        // Whatever this unit's own keys or values cause is its failure alone.
        failed.set(unit, toStorageError(error, "git"));
        continue;
      }
      accepted.push(unit);
    }
    const edits: KeyEdit[] = [];
    for (const [key, value] of overlay) edits.push({ names: namesOf(key), value });
    if (edits.length > 0) tree = this.keys.apply(tree, edits, made);
    return { tree: tree ?? EMPTY_TREE, made, failed, changedKeys: [...overlay.keys()], units: accepted };
  }

  /** The first guard of a unit that no longer holds, checked before any of its writes apply. */
  private guardFailure(ops: CommitOperation[], overlay: Map<string, ObjectId | null>, tree: ObjectId | undefined): StorageError | undefined {
    const etagOf = (key: string): ObjectId | undefined => {
      if (overlay.has(key)) return overlay.get(key) ?? undefined;
      return tree === undefined ? undefined : this.keys.valueAt(tree, namesOf(key));
    };
    for (const op of ops) {
      if (op.type === "check") {
        if ((etagOf(op.key) ?? null) !== op.etag) return conflict(op.key, "Stored version differs");
        continue;
      }
      const guard = guardOf(op.options, "git", op.key);
      if (guard.kind === "absent" && etagOf(op.key) !== undefined) return conflict(op.key, "Key already exists");
      if (guard.kind === "match" && etagOf(op.key) !== guard.etag) return conflict(op.key, "Stored version differs");
    }
    return undefined;
  }

  /** Writes a prepared commit's trees and the commit into its pack (blobs are in it already) and installs the pack. */
  private writeCommit(base: Tip, prepared: Prepared, pack: PackWriter): Written {
    const who = signatureNow(this.options.author.name, this.options.author.email);
    const message = this.message(prepared);
    const commit: Commit = { tree: prepared.tree, parents: base.id === undefined ? [] : [base.id], author: who, committer: who, extraHeaders: [], message: `${message}\n` };
    for (const tree of prepared.made) pack.add("tree", tree.body);
    const id = pack.add("commit", encodeCommit(commit));
    // Commits never change: cached now, the next history walk or commit-graph write need not read it back.
    this.commits.set(id, commit);
    this.repo.installPack(pack.finish());
    for (const tree of prepared.made) this.keys.remember(tree.id, tree.entries);
    return { id, message, time: who.timestamp * 1000 };
  }

  /** The commit message from the template: `{op}` (one op, or `batch`), `{key}` (the first key, `(+N more)`), `{count}`. */
  private message(prepared: Prepared): string {
    const ops = new Set(prepared.units.map((unit) => unit.op));
    const op = ops.size === 1 ? (ops.values().next().value as string) : "batch";
    const clear = prepared.units.find((unit) => unit.clearBase !== undefined);
    const keys = prepared.changedKeys;
    const first = clear !== undefined ? clear.clearBase || "*" : (keys[0] ?? "");
    const key = keys.length > 1 ? `${first} (+${keys.length - 1} more)` : first;
    return this.options.message.replaceAll("{op}", op).replaceAll("{key}", key).replaceAll("{count}", String(keys.length));
  }

  private committed(written: Written & { tree: ObjectId }): void {
    // The ref file changed under us: the next read re-checks it (stamp ""), reusing the tree when the id is still ours.
    this.tip = { id: written.id, tree: written.tree, time: written.time, stamp: "" };
    this.commitsSinceGraph++;
    if (this.watching !== undefined) {
      this.ownCommits.add(written.id);
      if (this.ownCommits.size > OWN_COMMITS) this.ownCommits.delete(this.ownCommits.values().next().value!);
      this.check();
    }
    if (this.options.packLimit > 0 && this.repo.packFiles.length > this.options.packLimit) this.autoMaintain();
  }

  /**
   * Merges small packs after a commit, and rewrites the commit-graph once
   * {@link GRAPH_EVERY} commits of this process are outside it; a failure
   * leaves the packs and the graph as they were and the commit done.
   */
  private autoMaintain(): void {
    try {
      maintain(this.repo, { loose: false });
      if (this.commitsSinceGraph >= GRAPH_EVERY || this.repo.commitGraph() === undefined) this.writeGraph();
    } catch (error) {
      process.emitWarning(`stowage git: maintenance after a commit failed (the data is intact, reads may be slower): ${String(error)}`);
    }
  }

  private writeGraph(): CommitGraphWritten | undefined {
    // This store's commits and trees come from its caches: the ones it just wrote are there.
    const written = writeCommitGraph(this.repo, { readCommit: (id) => this.commit(id), readTree: (id) => this.keys.tree(id).entries });
    if (written !== undefined) this.commitsSinceGraph = 0;
    return written;
  }

  /**
   * Packs loose objects, merges packs and prunes unreachable loose objects
   * older than the grace period (see {@link maintain}), then writes the
   * commit-graph (with changed-path filters) that history walks read.
   */
  maintenance(options: MaintenanceOptions = {}): MaintenanceResult & { commitGraph?: CommitGraphWritten } {
    const result = maintain(this.repo, { prune: true, ...options });
    const commitGraph = this.writeGraph();
    return commitGraph === undefined ? result : { ...result, commitGraph };
  }

  // --- watch ------------------------------------------------------------------

  /** Calls `listener` for every key a ref move changes, whoever moved it. */
  watch(listener: Listener): () => void {
    this.listeners.add(listener);
    if (this.watching === undefined) this.startWatching();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  private startWatching(): void {
    const watchers: FSWatcher[] = [];
    const refDir = dirname(this.refFile);
    makeDirectories(refDir);
    const onChange = (file: string) => (_event: string, name: string | Buffer | null) => {
      if (name === null || String(name) === file) this.check();
    };
    const notifyFailed = (error: unknown) => process.emitWarning(`stowage git: watching ${this.options.ref} failed, polling only: ${String(error)}`);
    for (const [dir, file] of [
      [refDir, basename(this.refFile)],
      [dirname(this.packedRefsFile), "packed-refs"],
    ] as const) {
      try {
        watchers.push(watchFs(dir, { persistent: false }, onChange(file)).on("error", notifyFailed));
      } catch (error) {
        // No notifications here (e.g. inotify watches exhausted): the poll below still sees every move.
        notifyFailed(error);
      }
    }
    const poll = setInterval(() => this.check(), this.options.pollInterval).unref();
    this.watching = {
      seen: this.fresh(),
      stop: () => {
        clearInterval(poll);
        for (const watcher of watchers) watcher.close();
      },
    };
  }

  private stopWatching(): void {
    this.watching?.stop();
    this.watching = undefined;
    this.ownCommits.clear();
  }

  /**
   * Emits the keys that changed between the last tip seen and the ref now,
   * commit by commit: each change with the value's blob as etag, its commit
   * as version and whether this store made that commit.
   */
  private check(): void {
    const watching = this.watching;
    if (watching === undefined) return;
    try {
      const tip = this.fresh();
      if (tip.id === watching.seen.id) return;
      const from = watching.seen;
      watching.seen = tip;
      for (const step of this.watchSteps(from, tip)) {
        this.keys.diff(step.from, step.to, (key, _before, after) => {
          const info: WatchInfo = Object.freeze({
            origin: step.origin,
            ...(after === undefined ? {} : { etag: after }),
            ...(step.version === undefined ? {} : { version: step.version }),
          });
          for (const listener of this.listeners) listener(after === undefined ? "remove" : "update", key, info);
        });
      }
    } catch (error) {
      // A failed look (a repack in progress) is retried by the next notification or poll.
      process.emitWarning(`stowage git: reading ${this.options.ref} for watch failed: ${String(error)}`);
    }
  }

  /**
   * The commits from `from` (left out) to `tip` along first parents, oldest
   * first. Where that chain does not lead back to `from` within WATCH_WALK
   * commits (a ref moved elsewhere, a long gap), the move is one step whose
   * origin and commit are unknown.
   */
  private watchSteps(from: Tip, tip: Tip): WatchStep[] {
    const chain: { id: ObjectId; tree: ObjectId }[] = [];
    let id = tip.id;
    while (id !== undefined && id !== from.id && chain.length < WATCH_WALK) {
      const commit = this.commit(id);
      chain.push({ id, tree: commit.tree });
      id = commit.parents[0];
    }
    if (id !== from.id) return [{ from: from.tree, to: tip.tree, origin: "unknown" }];
    return chain.reverse().map((step, index, steps) => ({
      from: index === 0 ? from.tree : steps[index - 1]!.tree,
      to: step.tree,
      origin: this.ownCommits.has(step.id) ? "local" : "remote",
      version: step.id,
    }));
  }

  /** Stops watching, waits for queued writes, closes pack files. */
  async close(): Promise<void> {
    this.listeners.clear();
    this.stopWatching();
    await this.drain();
    this.repo.close();
  }
}

/**
 * From the commit at `at`, the first on its first-parent chain whose filter
 * may hold the probed path (or the root commit): every commit before it
 * left the path, and so the key's value, as its parent had it.
 */
function untouchedRun(graph: CommitGraph, at: number, probe: BloomKey): number {
  for (let parent = graph.firstParentAt(at); parent >= 0 && !graph.mayHaveChanged(at, probe); parent = graph.firstParentAt(at)) at = parent;
  return at;
}

/**
 * The longest and deepest key the git driver stores: a key's segments are
 * nested trees, and Git (2.44 on, `core.maxTreeDepth`, 2048 by default)
 * refuses to walk deeper trees; 512 segments leave room for fan-out buckets
 * between them. Measured: a 512-segment key is written, read, listed and
 * cleared in milliseconds, and stock git's fsck/log read it.
 */
export const GIT_KEY_LIMITS: Readonly<KeyLimits> = Object.freeze({ bytes: 65_536, segments: 512 });

/** A key's entry names; an empty segment cannot be a tree entry, a key past {@link GIT_KEY_LIMITS} is not stored. */
export function namesOf(key: string): string[] {
  if (key === "" || key.startsWith(":") || key.endsWith(":") || key.includes("::")) {
    throw new StorageError("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)}`, { key });
  }
  checkDriverKey(key, GIT_KEY_LIMITS, "git");
  return keyToNames(key);
}

/** Refuses a unit whose keys the store cannot hold, before it is queued. */
function checkUnitKeys(unit: WriteUnit): void {
  if (unit.clearBase !== undefined && unit.clearBase !== "") namesOf(unit.clearBase);
  for (const op of unit.ops) namesOf(op.key);
}

/** The overlay entry a write gives its key: its blob (added to the pack, which hashes it once), or null for a removal. */
function unitValue(op: CommitOperation, pack: PackWriter): [string, ObjectId | null][] {
  if (op.type === "remove") return [[op.key, null]];
  if (op.type === "set" || op.type === "setRaw") return [[op.key, pack.add("blob", bytesOf(op.value))]];
  return [];
}

