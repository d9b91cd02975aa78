import { readdirSync, readFileSync, rmdirSync, statSync, type BigIntStats } from "node:fs";
import { dirname, join } from "node:path";
import { corrupt, gitError, ioError, isErrno } from "../errors.js";
import { pruneEmptyDirs, removeQuietly } from "../fileUtil.js";
import { stableStamp } from "../fileStamp.js";
import { LRUCache } from "lru-cache";
import { commitLock, rollbackLock, tryLock, writeLock, type LockFile } from "../lockFile.js";
import { isObjectId, ZERO_ID, type ObjectId } from "../objects/objectId.js";
import { PackedRefsCache, removeFromPackedRefs, type PackedRef } from "./packedRefs.js";
import { appendReflog, readReflog, type ReflogEntry } from "./reflog.js";
import { refNameProblem } from "./refName.js";
import { signatureNow, type Identity } from "../objects/signature.js";

/** What a ref file holds: an object id, or (HEAD and the like) the name of another ref. */
export type RefValue = { id: ObjectId; symbolic?: undefined } | { symbolic: string; id?: undefined };

/** Options of the ref store. */
export interface RefStoreOptions {
  /**
   * Identity in reflog lines.
   * @default "stowage <stowage@localhost>"
   */
  identity?: Identity;
  /**
   * fsync ref files before they are renamed into place (as Git).
   * @default false
   */
  fsync?: boolean;
  /**
   * How long an update waits for a lock another writer holds, in ms, before
   * failing with `E_UNAVAILABLE` (Git's core.filesRefLockTimeout is 100).
   * @default 1000
   */
  lockTimeout?: number;
}

/** Options of one ref update or deletion. */
export interface RefUpdateOptions {
  /**
   * The value the ref must hold for the change to happen: an id, `null` (or
   * the zero id) for "must not exist"; absent for no check. A mismatch is `E_CONFLICT`.
   */
  expected?: ObjectId | null;
  /** Reflog message. */
  message?: string;
  /** Overrides the store's identity for this reflog line. */
  identity?: Identity;
}

/** A ref and its id, as listed. */
export interface RefEntry {
  name: string;
  id: ObjectId;
  /** For an annotated tag in packed-refs: the object it peels to, when Git recorded it. */
  peeled?: ObjectId;
}

const DEFAULT_IDENTITY: Identity = { name: "stowage", email: "stowage@localhost" };
const MAX_SYMREF_DEPTH = 5;
const HELD = Symbol("held");
type Attempt<T> = T | typeof HELD;

/**
 * Loose refs and `packed-refs` of one repository, with Git's lock protocol
 * for every change: `<ref>.lock` created with O_EXCL, the current value
 * (loose, else packed) compared with the expected one, the new value written
 * to the lock, a reflog line appended, the lock renamed over the ref.
 *
 * A lock held by another writer is retried with backoff for `lockTimeout`
 * ms, then `E_UNAVAILABLE` (the lock may be stale: its path is in the
 * message). A ref whose value differs from `expected` is `E_CONFLICT`.
 */
export class RefStore {
  private readonly packed: PackedRefsCache;
  private readonly loose = new LRUCache<string, { stamp: string; value: RefValue }>({ max: 10_000 });
  private readonly identity: Identity;
  private readonly lockTimeout: number;

  constructor(
    /** The repository's git dir (HEAD and per-worktree refs). */
    readonly gitDir: string,
    /** The directory shared by all worktrees (refs, packed-refs, logs); the git dir itself outside linked worktrees. */
    readonly commonDir: string = gitDir,
    private readonly options: RefStoreOptions = {},
  ) {
    this.packed = new PackedRefsCache(join(commonDir, "packed-refs"));
    this.identity = options.identity ?? DEFAULT_IDENTITY;
    this.lockTimeout = options.lockTimeout ?? 1000;
  }

  /** The file of a ref: per-worktree names in the git dir, the rest in the common dir. */
  refPath(name: string): string {
    return join(this.dirFor(name), name);
  }

  /** The reflog file of a ref. */
  logPath(name: string): string {
    return join(this.dirFor(name), "logs", name);
  }

  /** What the ref holds, without following a symbolic ref; `undefined` when it does not exist. */
  read(name: string): RefValue | undefined {
    checkName(name);
    return this.readLoose(name) ?? this.readPacked(name);
  }

  /** The id a ref resolves to, following symbolic refs; `undefined` when it (or its target) does not exist. */
  resolve(name: string): ObjectId | undefined {
    let current = name;
    for (let depth = 0; depth <= MAX_SYMREF_DEPTH; depth++) {
      const value = this.read(current);
      if (value === undefined) return undefined;
      if (value.symbolic === undefined) return value.id;
      current = value.symbolic;
    }
    throw corrupt(`Symbolic ref ${name} nests too deep`);
  }

  /** The packed refs, as Git last wrote them (loose refs may override them). */
  packedRefs(): ReadonlyMap<string, PackedRef> {
    return this.packed.read();
  }

  /** All refs under `prefix` (e.g. `refs/stowage/`) that hold an id, loose and packed merged, sorted by name. */
  list(prefix = "refs/"): RefEntry[] {
    const found = new Map<string, RefEntry>();
    for (const [name, ref] of this.packed.read()) {
      if (name.startsWith(prefix)) found.set(name, ref.peeled === undefined ? { name, id: ref.id } : { name, id: ref.id, peeled: ref.peeled });
    }
    const root = join(this.commonDir, "refs");
    for (const name of this.looseNames(root, "refs/")) {
      if (!name.startsWith(prefix)) continue;
      const value = this.readLoose(name);
      if (value?.id !== undefined) found.set(name, { name, id: value.id });
    }
    return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The ref's reflog, oldest first. */
  reflog(name: string): ReflogEntry[] {
    checkName(name);
    return readReflog(this.logPath(name));
  }

  /**
   * Sets `name` to `id` if it holds `options.expected` (compare-and-swap),
   * following a symbolic ref to its target. Waits (blocking) for a lock held
   * elsewhere; see {@link RefStore} for the error codes.
   */
  update(name: string, id: ObjectId, options: RefUpdateOptions = {}): void {
    checkId(id);
    const target = this.followSymbolic(name);
    this.retrySync(() => this.tryUpdate(target, id, options, name));
  }

  /** {@link update}, waiting for a held lock without blocking the event loop. */
  async updateAsync(name: string, id: ObjectId, options: RefUpdateOptions = {}): Promise<void> {
    checkId(id);
    const target = this.followSymbolic(name);
    await this.retryAsync(() => this.tryUpdate(target, id, options, name));
  }

  /**
   * Deletes `name` (loose file, packed-refs line under `packed-refs.lock`,
   * reflog) if it holds `options.expected`. False when it did not exist.
   */
  delete(name: string, options: RefUpdateOptions = {}): boolean {
    checkName(name);
    return this.retrySync(() => this.tryDelete(name, options));
  }

  /** {@link delete}, waiting for held locks without blocking the event loop. */
  async deleteAsync(name: string, options: RefUpdateOptions = {}): Promise<boolean> {
    checkName(name);
    return this.retryAsync(() => this.tryDelete(name, options));
  }

  /** Points `name` (e.g. HEAD) at another ref, under the ref's lock. */
  setSymbolic(name: string, target: string): void {
    checkName(name);
    checkName(target);
    this.retrySync(() => {
      const lock = tryLock(this.refPath(name));
      if (lock === undefined) return HELD;
      this.commit(lock, `ref: ${target}\n`);
      return undefined;
    });
  }

  /** One attempt at a CAS update; HELD when another writer has the lock. */
  private tryUpdate(name: string, id: ObjectId, options: RefUpdateOptions, via: string): Attempt<void> {
    const lock = tryLock(this.refPath(name));
    if (lock === undefined) return HELD;
    try {
      const current = this.currentId(name);
      checkExpected(name, current, options.expected);
      if (current === undefined) this.checkNoConflict(name);
      writeLock(lock, `${id}\n`, this.options.fsync === true);
      // Git appends the reflog line before the rename that publishes the ref,
      // and logs an update made through a symbolic ref (HEAD) in that ref's log too.
      const line = { old: current ?? ZERO_ID, new: id, who: this.who(options), message: options.message ?? "" };
      appendReflog(this.logPath(name), line);
      if (via !== name) appendReflog(this.logPath(via), line);
    } catch (error) {
      rollbackLock(lock, error);
      throw error;
    }
    commitLock(lock);
  }

  /** One attempt at a CAS deletion. */
  private tryDelete(name: string, options: RefUpdateOptions): Attempt<boolean> {
    const lock = tryLock(this.refPath(name));
    if (lock === undefined) return HELD;
    try {
      const loose = this.readLoose(name, true);
      const packed = this.packed.read().get(name);
      const current = loose?.id ?? (loose === undefined ? packed?.id : undefined);
      if (loose?.symbolic === undefined) checkExpected(name, current, options.expected);
      if (loose === undefined && packed === undefined) {
        rollbackLock(lock);
        return false;
      }
      if (packed !== undefined && this.dropPacked(name) === HELD) {
        rollbackLock(lock);
        return HELD;
      }
      this.removeLooseAndLog(name);
    } catch (error) {
      rollbackLock(lock, error);
      throw error;
    }
    rollbackLock(lock);
    this.pruneAfterDelete(name);
    return true;
  }

  /** Rewrites packed-refs without `name`, under `packed-refs.lock`. */
  private dropPacked(name: string): Attempt<void> {
    const lock = tryLock(join(this.commonDir, "packed-refs"));
    if (lock === undefined) return HELD;
    try {
      writeLock(lock, removeFromPackedRefs(this.packed.readText(), name), this.options.fsync === true);
    } catch (error) {
      rollbackLock(lock, error);
      throw ioError("Cannot rewrite packed-refs", error);
    }
    commitLock(lock);
  }

  private removeLooseAndLog(name: string): void {
    removeQuietly(this.refPath(name), undefined);
    removeQuietly(this.logPath(name), undefined);
  }

  /** Removes the directories a deletion left empty, below `refs/<x>/` and `logs/refs/<x>/` (as Git does). */
  private pruneAfterDelete(name: string): void {
    const top = name.split("/").slice(0, 2).join("/");
    const base = this.dirFor(name);
    pruneEmptyDirs(dirname(join(base, name)), join(base, top));
    pruneEmptyDirs(dirname(join(base, "logs", name)), join(base, "logs", top));
  }

  private commit(lock: LockFile, content: string): void {
    try {
      writeLock(lock, content, this.options.fsync === true);
    } catch (error) {
      rollbackLock(lock, error);
      throw ioError(`Cannot write ${lock.lockPath}`, error);
    }
    commitLock(lock);
  }

  /** The id the ref holds now (loose first, then packed), read under its lock: never from a cache. A symbolic ref here is a conflict. */
  private currentId(name: string): ObjectId | undefined {
    const value = this.readLoose(name, true) ?? this.readPacked(name);
    if (value?.symbolic !== undefined) throw gitError("E_CONFLICT", `${name} became a symbolic ref during the update`);
    return value?.id;
  }

  /** Refuses to create `a/b` while `a` exists, or `a` while `a/…` exists (Git's D/F rule; loose `a` blocks `a/b` at the lock). */
  private checkNoConflict(name: string): void {
    if (isDirectory(this.refPath(name)) && !removeIfEmpty(this.refPath(name))) {
      throw gitError("E_CONFLICT", `Cannot create ${name}: refs exist under ${name}/`);
    }
    const under = `${name}/`;
    for (const packedName of this.packed.read().keys()) {
      if (packedName.startsWith(under) || name.startsWith(`${packedName}/`)) {
        throw gitError("E_CONFLICT", `Cannot create ${name}: ${packedName} exists`);
      }
    }
  }

  private followSymbolic(name: string): string {
    let current = name;
    for (let depth = 0; depth <= MAX_SYMREF_DEPTH; depth++) {
      const value = this.read(current);
      if (value?.symbolic === undefined) return current;
      current = value.symbolic;
    }
    throw corrupt(`Symbolic ref ${name} nests too deep`);
  }

  /**
   * A loose ref's value. A stat decides whether the file changed since it was
   * last parsed (Git replaces ref files by rename, so the inode or ctime
   * changes), unless the file is racy (see {@link stableStamp}) or the
   * caller holds the ref's lock (`fresh`: a compare-and-swap reads the
   * file itself). A missing file costs no exception (refs packed by `git gc`).
   */
  private readLoose(name: string, fresh = false): RefValue | undefined {
    const path = this.refPath(name);
    const stat = statIfPresent(path);
    if (stat === undefined || stat.isDirectory()) return undefined;
    const stamp = stableStamp(stat);
    const cached = this.loose.get(name);
    if (!fresh && stamp !== undefined && cached !== undefined && cached.stamp === stamp) return cached.value;
    const value = parseRefFile(name, readIfPresent(path));
    if (value !== undefined && stamp !== undefined) this.loose.set(name, { stamp, value });
    else this.loose.delete(name);
    return value;
  }


  private readPacked(name: string): RefValue | undefined {
    const packed = this.packed.read().get(name);
    return packed === undefined ? undefined : { id: packed.id };
  }

  /** Names of loose ref files under `dir`, skipping `.lock` files (and `.lock`-named leftovers). */
  private looseNames(dir: string, prefix: string): string[] {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR")) return [];
      throw ioError(`Cannot list ${dir}`, error);
    }
    const names: string[] = [];
    for (const entry of entries) {
      if (entry.name.endsWith(".lock")) continue;
      if (entry.isDirectory()) names.push(...this.looseNames(join(dir, entry.name), `${prefix}${entry.name}/`));
      else if (entry.isFile()) names.push(`${prefix}${entry.name}`);
    }
    return names;
  }

  private dirFor(name: string): string {
    const perWorktree = !name.startsWith("refs/") || name.startsWith("refs/worktree/") || name.startsWith("refs/bisect/") || name.startsWith("refs/rewritten/");
    return perWorktree ? this.gitDir : this.commonDir;
  }

  private who(options: RefUpdateOptions) {
    const identity = options.identity ?? this.identity;
    return signatureNow(identity.name, identity.email);
  }

  /** Runs an attempt until it gets its locks, sleeping (blocking) with backoff; E_UNAVAILABLE after lockTimeout. */
  private retrySync<T>(attempt: () => Attempt<T>): T {
    const deadline = Date.now() + this.lockTimeout;
    for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
      const result = attempt();
      if (result !== HELD) return result;
      if (Date.now() >= deadline) throw this.lockTimedOut();
      Atomics.wait(SLEEPER, 0, 0, wait);
    }
  }

  private async retryAsync<T>(attempt: () => Attempt<T>): Promise<T> {
    const deadline = Date.now() + this.lockTimeout;
    for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
      const result = attempt();
      if (result !== HELD) return result;
      if (Date.now() >= deadline) throw this.lockTimedOut();
      await new Promise((resolve) => setTimeout(resolve, wait * (0.5 + Math.random())));
    }
  }

  private lockTimedOut() {
    return gitError("E_UNAVAILABLE", `A ref lock stayed held for ${this.lockTimeout} ms (another writer, or a stale .lock file left by a crash)`);
  }
}

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

function statIfPresent(path: string): BigIntStats | undefined {
  try {
    return statSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR")) return undefined;
    throw ioError(`Cannot stat ${path}`, error);
  }
}

/** A ref file's text; `undefined` when it vanished (deleted or replaced between stat and read). */
function readIfPresent(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR", "EISDIR")) return undefined;
    throw ioError(`Cannot read ${path}`, error);
  }
}

/** `<id>` or `ref: <name>`, with trailing whitespace; anything else is `E_CORRUPT`. */
function parseRefFile(name: string, text: string | undefined): RefValue | undefined {
  if (text === undefined) return undefined;
  const value = text.trimEnd();
  if (value.startsWith("ref: ")) return { symbolic: value.slice(5).trim() };
  if (isObjectId(value)) return { id: value };
  throw corrupt(`Ref ${name} holds neither an id nor a symbolic ref`);
}

/** Removes an empty directory (a leftover of deleted refs); false when it holds something. */
function removeIfEmpty(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return true;
    if (isErrno(error, "ENOTEMPTY", "EEXIST")) return false;
    throw ioError(`Cannot remove ${dir}`, error);
  }
}

function isDirectory(path: string): boolean {
  return statIfPresent(path)?.isDirectory() === true;
}

function checkName(name: string): void {
  if (name === "HEAD") return;
  const problem = refNameProblem(name) ?? (name.startsWith("refs/") ? undefined : `Ref names must start with refs/ (or be HEAD): ${name}`);
  if (problem !== undefined) throw gitError("E_INVALID_KEY", problem);
}

function checkId(id: ObjectId): void {
  if (!isObjectId(id) || id === ZERO_ID) throw gitError("E_INVALID_VALUE", `Not an object id: ${JSON.stringify(id)}`);
}

function checkExpected(name: string, current: ObjectId | undefined, expected: ObjectId | null | undefined): void {
  if (expected === undefined) return;
  const wanted = expected === null || expected === ZERO_ID ? undefined : expected;
  if (current !== wanted) {
    throw gitError("E_CONFLICT", `Ref ${name} is ${current ?? "absent"}, expected ${wanted ?? "absent"}`);
  }
}

