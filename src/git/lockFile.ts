import { closeSync, fsyncSync, openSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { gitError, ioError, isErrno } from "./errors.js";
import { makeDirectories, removeQuietly, writeAll } from "./fileUtil.js";

/** A held `<file>.lock`: created with O_EXCL, committed by rename over `<file>`. */
export interface LockFile {
  path: string;
  lockPath: string;
  fd: number | undefined;
}

/**
 * Takes Git's lock on `path` by creating `path.lock` exclusively; `undefined`
 * when another writer holds it. Parent directories are made as needed; a
 * file where a directory should be (ref `a` blocks ref `a/b`) is E_CONFLICT.
 */
export function tryLock(path: string): LockFile | undefined {
  const lockPath = `${path}.lock`;
  try {
    return { path, lockPath, fd: openExclusive(lockPath) };
  } catch (error) {
    if (isErrno(error, "EEXIST")) return undefined;
    if (isErrno(error, "ENOTDIR")) throw gitError("E_CONFLICT", `Cannot lock ${path}: a file stands where a directory is needed`, error);
    throw ioError(`Cannot lock ${path}`, error);
  }
}

function openExclusive(lockPath: string): number {
  try {
    return openSync(lockPath, "wx", 0o666);
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw error;
    makeDirectories(dirname(lockPath));
    return openSync(lockPath, "wx", 0o666);
  }
}

/** Writes the lock's new content (the lock stays held). */
export function writeLock(lock: LockFile, data: string | Buffer, fsync = false): void {
  const fd = lock.fd;
  if (fd === undefined) throw gitError("E_INVALID_OPTION", `Lock ${lock.lockPath} is closed`);
  writeAll(fd, typeof data === "string" ? Buffer.from(data, "utf8") : data);
  if (fsync) fsyncSync(fd);
  closeSync(fd);
  lock.fd = undefined;
}

/** Renames the lock over its file: the moment the new content becomes visible. */
export function commitLock(lock: LockFile): void {
  try {
    if (lock.fd !== undefined) closeSync(lock.fd);
    lock.fd = undefined;
    renameSync(lock.lockPath, lock.path);
  } catch (error) {
    rollbackLock(lock, error);
    if (isErrno(error, "EISDIR", "ENOTDIR")) throw gitError("E_CONFLICT", `Cannot write ${lock.path}: a directory or file is in the way`, error);
    throw ioError(`Cannot write ${lock.path}`, error);
  }
}

/** Releases the lock without changing the file. */
export function rollbackLock(lock: LockFile, original?: unknown): void {
  if (lock.fd !== undefined) {
    closeSync(lock.fd);
    lock.fd = undefined;
  }
  removeQuietly(lock.lockPath, original);
}
