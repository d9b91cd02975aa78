import { readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { gitError, ioError, isErrno, isStorageError, type StorageError } from "../errors.js";
import { pruneEmptyDirs, removeQuietly } from "../fileUtil.js";
import { commitLock, rollbackLock, tryLock, writeLock, type LockFile } from "../lockFile.js";
import { isObjectId, ZERO_ID, type ObjectId } from "../objects/objectId.js";
import { appendReflog } from "./reflog.js";
import { refNameProblem } from "./refName.js";
import type { RefStore } from "./refs.js";
import { signatureNow, type Identity } from "../objects/signature.js";

/** One change of a {@link commitRefs} transaction. */
export interface RefChange {
  /** Full ref name (`refs/…`). */
  name: string;
  /** The new value; `null` deletes the ref; absent only checks `expected` under the lock (`update-ref`'s verify). */
  id?: ObjectId | null;
  /** The value the ref must hold (`null`: must not exist); absent: no check. A mismatch is `E_CONFLICT`. */
  expected?: ObjectId | null;
}

/** Options of {@link commitRefs}. */
export interface RefTransactionOptions {
  /** fsync each new ref file before its rename (default false, as Git). */
  fsync?: boolean;
  /** How long to wait for locks other writers hold, in ms (default 1000), before `E_UNAVAILABLE`. */
  lockTimeout?: number;
  /** Append a reflog line per updated ref with this message (default: no reflog, as Git for refs outside heads/notes/remotes). */
  reflogMessage?: string;
  /** Identity of reflog lines (default `stowage <stowage@localhost>`). */
  identity?: Identity;
}

const SLEEPER = new Int32Array(new SharedArrayBuffer(4));
const byName = (a: RefChange, b: RefChange) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * Applies several ref changes all-or-nothing, as `git update-ref --stdin`
 * transactions do: every `<ref>.lock` is taken first (in name order; when
 * one is held elsewhere all are released and the whole set is retried with
 * backoff), then every expected value is checked, and only when all hold
 * are the new values written: deletions of packed refs rewrite
 * `packed-refs` once under `packed-refs.lock`, then the locks of updated
 * refs are renamed over them and deleted refs' loose files removed. Any
 * failure before that point releases every lock and changes nothing.
 *
 * Blocks the thread while waiting for locks (the git drivers are synchronous).
 */
export function commitRefs(refs: RefStore, changes: readonly RefChange[], options: RefTransactionOptions = {}): void {
  run(refs, changes, options, false);
}

/**
 * Like {@link commitRefs}, but each change stands on its own condition: a
 * change whose expected value (or Git's D/F rule) does not hold is left out
 * and reported, the others are applied together. Returns the failures by
 * ref name. Lock timeouts and I/O failures still fail the whole set. Used to
 * commit writes of independent callers in one go (group commit).
 */
export function commitRefsEach(refs: RefStore, changes: readonly RefChange[], options: RefTransactionOptions = {}): Map<string, StorageError> {
  return run(refs, changes, options, true);
}

function run(refs: RefStore, changes: readonly RefChange[], options: RefTransactionOptions, isolate: boolean): Map<string, StorageError> {
  const failures = new Map<string, StorageError>();
  if (changes.length === 0) return failures;
  const sorted = [...changes].sort(byName);
  for (let i = 0; i < sorted.length; i++) {
    checkChange(sorted[i] as RefChange);
    if (i > 0 && (sorted[i - 1] as RefChange).name === (sorted[i] as RefChange).name) {
      throw gitError("E_INVALID_OPTION", `A ref transaction names ${(sorted[i] as RefChange).name} twice`);
    }
  }
  // Locks still ours: a released or published one leaves this set at once, so a failure never removes another writer's new lock.
  const held = new Set(acquireAll(refs, sorted, options.lockTimeout ?? 1000));
  const locks = [...held];
  let published = false;
  try {
    const kept: { change: RefChange; lock: LockFile; current: ObjectId | undefined }[] = [];
    sorted.forEach((change, index) => {
      const lock = locks[index] as LockFile;
      try {
        kept.push({ change, lock, current: checkCurrent(refs, change) });
      } catch (error) {
        if (!isolate || !isStorageError(error, "E_CONFLICT")) throw error;
        failures.set(change.name, error);
        held.delete(lock);
        rollbackLock(lock);
      }
    });
    writeUpdates(refs, kept, options);
    dropPacked(refs, kept.map((entry) => entry.change), options);
    published = true;
    publish(refs, kept, held);
  } catch (error) {
    for (const lock of held) rollbackLock(lock, error);
    if (published) throw ioError("A ref transaction failed while publishing (some refs may have changed)", error);
    throw error;
  }
  return failures;
}

function checkChange(change: RefChange): void {
  const problem = refNameProblem(change.name) ?? (change.name.startsWith("refs/") ? undefined : `Not under refs/: ${change.name}`);
  if (problem !== undefined) throw gitError("E_INVALID_KEY", problem);
  if (typeof change.id === "string" && (!isObjectId(change.id) || change.id === ZERO_ID)) throw gitError("E_INVALID_VALUE", `Not an object id: ${change.id}`);
}

/** Takes every lock, or none: a held lock releases the ones taken and the set is retried until the timeout. */
function acquireAll(refs: RefStore, changes: readonly RefChange[], timeout: number): LockFile[] {
  const deadline = Date.now() + timeout;
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    const locks: LockFile[] = [];
    let held = false;
    try {
      for (const change of changes) {
        const lock = tryLock(refs.refPath(change.name));
        if (lock === undefined) {
          held = true;
          break;
        }
        locks.push(lock);
      }
    } catch (error) {
      for (const lock of locks) rollbackLock(lock, error);
      throw error;
    }
    if (!held) return locks;
    for (const lock of locks) rollbackLock(lock);
    if (Date.now() >= deadline) {
      throw gitError("E_UNAVAILABLE", `A ref lock stayed held for ${timeout} ms (another writer, or a stale .lock file left by a crash)`);
    }
    Atomics.wait(SLEEPER, 0, 0, wait * (0.5 + Math.random()));
  }
}

/** The ref's id under its lock, after checking the change's expectation and Git's D/F rule. */
function checkCurrent(refs: RefStore, change: RefChange): ObjectId | undefined {
  const value = refs.read(change.name);
  if (value?.symbolic !== undefined) throw gitError("E_CONFLICT", `${change.name} is a symbolic ref`);
  const current = value?.id;
  if (change.expected !== undefined) {
    const wanted = change.expected === null || change.expected === ZERO_ID ? undefined : change.expected;
    if (current !== wanted) throw gitError("E_CONFLICT", `Ref ${change.name} is ${current ?? "absent"}, expected ${wanted ?? "absent"}`);
  }
  if (current === undefined && typeof change.id === "string") checkNoDirectoryClash(refs, change.name);
  return current;
}

/** A new ref may not be a directory of loose refs, nor a prefix or extension of a packed one. */
function checkNoDirectoryClash(refs: RefStore, name: string): void {
  let isDir = false;
  try {
    isDir = statSync(refs.refPath(name)).isDirectory();
  } catch (error) {
    if (!isErrno(error, "ENOENT", "ENOTDIR")) throw ioError(`Cannot stat ${name}`, error);
  }
  if (isDir) throw gitError("E_CONFLICT", `Cannot create ${name}: refs exist under ${name}/`);
  const packed = refs.packedRefs();
  if (packed.size === 0) return;
  for (let at = name.indexOf("/"); at > 0; at = name.indexOf("/", at + 1)) {
    if (packed.has(name.slice(0, at))) throw gitError("E_CONFLICT", `Cannot create ${name}: ${name.slice(0, at)} exists`);
  }
  const under = `${name}/`;
  for (const other of packed.keys()) if (other.startsWith(under)) throw gitError("E_CONFLICT", `Cannot create ${name}: ${other} exists`);
}

type Entry = { change: RefChange; lock: LockFile; current: ObjectId | undefined };

function writeUpdates(refs: RefStore, entries: readonly Entry[], options: RefTransactionOptions): void {
  const who = options.reflogMessage === undefined ? undefined : signatureNow(options.identity?.name ?? "stowage", options.identity?.email ?? "stowage@localhost");
  for (const { change, lock, current } of entries) {
    if (typeof change.id !== "string") continue;
    writeLock(lock, `${change.id}\n`, options.fsync === true);
    if (who !== undefined) appendReflog(refs.logPath(change.name), { old: current ?? ZERO_ID, new: change.id, who, message: options.reflogMessage ?? "" });
  }
}

/** Rewrites packed-refs without the deleted refs it holds, under `packed-refs.lock`. */
function dropPacked(refs: RefStore, changes: readonly RefChange[], options: RefTransactionOptions): void {
  const packed = refs.packedRefs();
  const gone = new Set(changes.filter((change) => change.id === null && packed.has(change.name)).map((change) => change.name));
  if (gone.size === 0) return;
  const path = join(refs.commonDir, "packed-refs");
  const lock = lockPacked(path, options.lockTimeout ?? 1000);
  try {
    writeLock(lock, withoutRefs(readText(path), gone), options.fsync === true);
  } catch (error) {
    rollbackLock(lock, error);
    throw ioError("Cannot rewrite packed-refs", error);
  }
  commitLock(lock);
}

function lockPacked(path: string, timeout: number): LockFile {
  const deadline = Date.now() + timeout;
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    const lock = tryLock(path);
    if (lock !== undefined) return lock;
    if (Date.now() >= deadline) throw gitError("E_UNAVAILABLE", `packed-refs.lock stayed held for ${timeout} ms`);
    Atomics.wait(SLEEPER, 0, 0, wait);
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT")) return "";
    throw ioError(`Cannot read ${path}`, error);
  }
}

/** packed-refs text without the named refs (and their peeled lines); everything else verbatim. */
export function withoutRefs(text: string, names: ReadonlySet<string>): string {
  const kept: string[] = [];
  let dropping = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("^") && dropping) continue;
    dropping = !line.startsWith("#") && line.length > 41 && names.has(line.slice(41).trimEnd());
    if (!dropping) kept.push(line);
  }
  return kept.join("\n");
}

/** Renames updated refs' locks into place; removes deleted refs' loose files, reflogs, locks and empty directories. */
function publish(refs: RefStore, entries: readonly Entry[], held: Set<LockFile>): void {
  for (const { change, lock } of entries) {
    held.delete(lock);
    if (typeof change.id === "string") {
      commitLock(lock);
      continue;
    }
    if (change.id === null) {
      removeQuietly(refs.refPath(change.name), undefined);
      removeQuietly(refs.logPath(change.name), undefined);
    }
    rollbackLock(lock);
    pruneEmptyDirs(dirname(refs.refPath(change.name)), join(refs.commonDir, "refs"));
    pruneEmptyDirs(dirname(refs.logPath(change.name)), join(refs.commonDir, "logs", "refs"));
  }
}

/**
 * Holds `<name>.lock` while `compute` derives the ref's next value from its
 * current one, then publishes it: other writers (stowage or git) wait on the
 * lock instead of building work a compare-and-swap would throw away. `id`
 * undefined leaves the ref as it is. Returns `compute`'s result.
 */
export function updateRefWith<T>(
  refs: RefStore,
  name: string,
  compute: (current: ObjectId | undefined) => { id?: ObjectId; result: T },
  options: RefTransactionOptions = {},
): T {
  checkChange({ name });
  const [lock] = acquireAll(refs, [{ name }], options.lockTimeout ?? 1000) as [LockFile];
  let outcome: { id?: ObjectId; result: T };
  let entry: Entry;
  try {
    const current = checkCurrent(refs, { name });
    outcome = compute(current);
    entry = { change: { name, id: outcome.id }, lock, current };
    if (outcome.id !== undefined) writeUpdates(refs, [entry], options);
  } catch (error) {
    rollbackLock(lock, error);
    throw error;
  }
  if (outcome.id === undefined) rollbackLock(lock);
  else publish(refs, [entry], new Set([lock]));
  return outcome.result;
}
