import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  existsSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  opendirSync,
  readSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeSync,
  type Dirent,
  type Stats,
} from "node:fs";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import { threadId } from "node:worker_threads";
import { StorageError } from "../../../core/errors.js";
import type { KeyLimits, StorageMeta } from "../../../core/types.js";
import { errnoOf, nothingThere } from "./errno.js";
import { gitDirectoryProblem, plannedRealPath } from "./gitDirs.js";
import { TEMP_PREFIX, fileKeyLimits, isDotGitName, segmentProblem } from "./keyPaths.js";
import { makeDirectories } from "../../../core/directories.js";

/**
 * The file engine under the fs and fs-lite drivers: one file per key, the
 * key's segments as directories, synchronous I/O, atomic writes (temp file
 * and rename), and nothing read, written, made or removed outside the real
 * path of the base directory (docs/fs.md, *Confinement*).
 */

export interface FileStoreOptions {
  /** Directory that holds the keys (created on first write). */
  base: string;
  /** Refuse every write with E_READONLY. */
  readOnly?: boolean;
  /** Refuse clear() with E_READONLY (other writes still work). */
  noClear?: boolean;
  /** fsync each file before it is renamed into place (durable across power loss; slower). */
  fsync?: boolean;
  /** Paths (relative to base, `/`-separated; a directory as `dir/`) left out of listings and watch events; keys there are refused. */
  ignore?: (relativePath: string, absolutePath: string) => boolean;
}

/** A directory of the tree being walked: its real path, the key prefix of its entries, and that prefix's depth and UTF-8 bytes. */
interface WalkDir {
  dir: string;
  prefix: string;
  depth: number;
  bytes: number;
}

/** A value file found by a walk: the real directory it is in (and that directory's lstat when opened), its name and its key. */
interface WalkEntry {
  dir: string;
  dirStats: Stats;
  name: string;
  key: string;
}

// Temp names are unique per process and thread, and random across restarts; O_EXCL refuses any clash.
const TEMP_TAG = `${process.pid}-${threadId}-${randomBytes(3).toString("hex")}-`;
let tempCounter = 0;

// O_NONBLOCK: a FIFO swapped in after the lstat must not hang the open (no effect on regular files).
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
// O_CREAT with O_EXCL never follows a symlink in the last component; O_NOFOLLOW says so twice.
const TEMP_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Where Linux shows the path of an open file: the check after open that no swapped-in link led out. */
const FD_PATHS = process.platform === "linux" && existsSync("/proc/self/fd") ? "/proc/self/fd/" : undefined;

/** Writes a whole chunk: a write may take less than it is given. */
async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.byteLength; ) offset += (await handle.write(chunk, offset, chunk.byteLength - offset)).bytesWritten;
}

/** Reads the `size` bytes a file had when opened (fewer if it was cut short in place since). */
function readAllSync(fd: number, size: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  let offset = 0;
  for (let read = -1; offset < size && read !== 0; offset += read) read = readSync(fd, buffer, offset, size - offset, offset);
  return offset < size ? buffer.subarray(0, offset) : buffer;
}

function metaOfStats(stats: Stats): StorageMeta {
  return { atime: stats.atime, mtime: stats.mtime, ctime: stats.ctime, birthtime: stats.birthtime, size: stats.size };
}

/** Whether `now` is still the directory `before` was: not moved away, not swapped for a link. */
function sameDirectory(before: Stats, now: Stats | undefined): boolean {
  return now !== undefined && now.isDirectory() && now.ino === before.ino && now.dev === before.dev;
}

function tempName(): string {
  return `${TEMP_PREFIX}${TEMP_TAG}${(tempCounter++).toString(36)}`;
}

export class FileStore {
  readonly base: string;
  /** The longest and deepest key whose paths (with its temp file and meta sidecar) fit in PATH_MAX under this base. */
  readonly keyLimits: KeyLimits;
  private realBase: string | undefined;

  constructor(
    readonly driverName: string,
    readonly options: FileStoreOptions,
  ) {
    if (!options || typeof options.base !== "string" || options.base === "") {
      throw new StorageError("E_INVALID_OPTION", `The ${driverName} driver needs a base directory`, { driver: driverName });
    }
    this.base = resolve(options.base);
    const real = this.resolvedBase();
    if (real === undefined) this.assertBasePlace(this.plannedBase());
    if (real !== undefined && !statSync(real).isDirectory()) {
      throw new StorageError("E_INVALID_OPTION", `The ${driverName} driver's base ${this.base} is not a directory`, { driver: driverName });
    }
    this.keyLimits = fileKeyLimits(Math.max(Buffer.byteLength(this.base), real === undefined ? 0 : Buffer.byteLength(real)));
    if (this.keyLimits.bytes < 1) {
      throw new StorageError("E_INVALID_OPTION", `The ${driverName} driver's base path is too long to hold any key within PATH_MAX`, { driver: driverName });
    }
  }

  private fail(code: "E_INVALID_KEY" | "E_IO" | "E_READONLY", message: string, key?: string, cause?: unknown): StorageError {
    return new StorageError(code, message, { driver: this.driverName, key, cause });
  }

  private invalidKey(key: string, why: string, cause?: unknown): StorageError {
    const shown = key.length > 120 ? `${key.slice(0, 120)}…` : key;
    return this.fail("E_INVALID_KEY", `Invalid key for ${this.driverName}: ${JSON.stringify(shown)}: ${why}`, key, cause);
  }

  /** The I/O error as a StorageError; path-shaped failures are the key's fault. */
  private ioError(error: unknown, key: string, action: string): StorageError {
    const errno = errnoOf(error);
    if (errno === "ENOTDIR" || errno === "EISDIR" || errno === "EEXIST") {
      return this.invalidKey(key, `cannot ${action} it: a key cannot hold a value and other keys below it`, error);
    }
    if (errno === "ELOOP") return this.invalidKey(key, `cannot ${action} it: its path runs into a symlink`, error);
    if (errno === "ENAMETOOLONG") return this.invalidKey(key, "too long for the file system", error);
    return this.fail("E_IO", `Cannot ${action} ${JSON.stringify(key)}: ${(error as Error).message}`, key, error);
  }

  /**
   * The real path of base, resolved once it exists (symlinked bases are fine;
   * leaving them is not), and checked to be no Git repository's own files.
   */
  private resolvedBase(): string | undefined {
    if (this.realBase === undefined) {
      let real: string;
      try {
        real = realpathSync.native(this.base);
      } catch (error) {
        if (errnoOf(error) === "ENOENT") return undefined;
        throw this.fail("E_IO", `Cannot open ${this.base}: ${(error as Error).message}`, undefined, error);
      }
      this.assertBasePlace(real);
      this.realBase = real;
    }
    return this.realBase;
  }

  /** The real path base will have once made (it does not exist yet). */
  private plannedBase(): string {
    try {
      return plannedRealPath(this.base);
    } catch (error) {
      throw this.fail("E_IO", `Cannot open ${this.base}: ${(error as Error).message}`, undefined, error);
    }
  }

  /**
   * Refuses a base whose real path is or lies inside a `.git` directory or a
   * Git directory (a bare repository): keys like `config` or
   * `hooks:pre-commit` would rewrite that repository.
   *
   * @throws StorageError `E_INVALID_OPTION`
   */
  private assertBasePlace(realPath: string): void {
    let problem: string | undefined;
    try {
      problem = gitDirectoryProblem(realPath);
    } catch (error) {
      throw this.fail("E_IO", `Cannot check ${this.base} for a Git repository: ${(error as Error).message}`, undefined, error);
    }
    if (problem === undefined) return;
    throw new StorageError("E_INVALID_OPTION", `The ${this.driverName} driver's base ${this.base} cannot hold keys: ${problem}, whose files keys would overwrite`, {
      driver: this.driverName,
    });
  }

  /** The real base, made first when a write needs it (base is configured, not derived from a key), after its planned place passed the check. */
  private madeBase(key: string): string {
    const existing = this.resolvedBase();
    if (existing !== undefined) return existing;
    this.assertBasePlace(this.plannedBase());
    try {
      makeDirectories(this.base);
    } catch (error) {
      throw this.fail("E_IO", `Cannot make the base directory ${this.base}: ${(error as Error).message}`, key, error);
    }
    return this.resolvedBase()!;
  }

  /**
   * The segments of a key (or, with `isBase`, of a listing's base), each
   * checked to be a plain file name of this store, the whole within
   * {@link keyLimits}: all before any path is touched.
   */
  private keyParts(key: string, isBase = false): string[] {
    const parts = key.split(/[:/\\]/).filter((part) => part !== "");
    if (parts.length === 0 && !isBase) throw this.invalidKey(key, "no segments");
    if (parts.length > this.keyLimits.segments) throw this.invalidKey(key, `more than ${this.keyLimits.segments} segments`);
    // A meta sidecar `key$` is one byte longer than its key: the limits keep room for it.
    const bytes = this.keyLimits.bytes + (key.endsWith("$") ? 1 : 0);
    if (Buffer.byteLength(parts.join(":")) > bytes) throw this.invalidKey(key, `longer than ${this.keyLimits.bytes} bytes`);
    parts.forEach((part, index) => {
      const problem = segmentProblem(part, !isBase && index === parts.length - 1);
      if (problem !== undefined) throw this.invalidKey(key, problem);
    });
    const hidden = isBase ? undefined : this.hiddenPath(parts);
    if (hidden !== undefined) {
      throw this.invalidKey(key, `${hidden} is left out of listings by the ignore option (fs's default: node_modules and .git), so the key could be written but never listed or cleared`);
    }
    return parts;
  }

  /**
   * The first of a key's directories (`a/`) or its file (`a/b`) that the
   * ignore rules hide, tested as a walk meets them, or undefined: a listing
   * never enters a hidden directory nor lists a hidden file.
   */
  private hiddenPath(parts: string[]): string | undefined {
    if (this.options.ignore === undefined) return undefined;
    const root = this.resolvedBase() ?? this.base;
    let relative = "";
    for (let index = 0; index < parts.length; index++) {
      relative = index === 0 ? parts[0]! : `${relative}/${parts[index]}`;
      const shown = index === parts.length - 1 ? relative : relative + "/";
      if (this.ignored(shown, join(root, relative))) return shown;
    }
    return undefined;
  }

  /** Fails unless `realPath` lies inside the real base and outside its `.git` directories: a symlink must not lead there. */
  private assertInside(realPath: string, key: string): void {
    const problem = this.placeProblem(realPath);
    if (problem !== undefined) throw this.invalidKey(key, problem);
  }

  private isInside(realPath: string): boolean {
    return this.placeProblem(realPath) === undefined;
  }

  /** Why a real path is no place for this store's files: outside base, or in a `.git` directory below it. */
  private placeProblem(realPath: string): string | undefined {
    const base = this.resolvedBase();
    if (base === undefined) return `it resolves outside ${this.base}`;
    if (realPath === base) return undefined;
    const root = base.endsWith(sep) ? base : base + sep;
    if (!realPath.startsWith(root)) return `it resolves outside ${this.base}`;
    return realPath.slice(root.length).split(sep).some(isDotGitName) ? "it resolves into a .git directory" : undefined;
  }

  /**
   * Checks what an open descriptor really is: a regular file (not a FIFO or
   * device swapped in after the lstat) and, on Linux, inside base (a link
   * swapped in after the path was checked shows in its path).
   */
  private assertOpenedInside(fd: number, key: string, stats: Stats): void {
    if (!stats.isFile()) throw this.invalidKey(key, "it is not a regular file");
    if (FD_PATHS !== undefined) this.assertInside(this.fdPath(fd, key), key);
  }

  /**
   * Checks that an open temp file is where it was made (Linux), when opened
   * and again just before its rename: a directory moved or swapped for a
   * link meanwhile shows in the descriptor's path, and the rename would
   * land elsewhere.
   */
  private assertTempInPlace(fd: number, temp: string, key: string): void {
    if (FD_PATHS === undefined) return;
    const opened = this.fdPath(fd, key);
    this.assertInside(opened, key);
    if (opened !== temp) throw this.fail("E_IO", `Cannot write ${JSON.stringify(key)}: its directory moved while it was written`, key);
  }

  private fdPath(fd: number, key: string): string {
    try {
      return readlinkSync(FD_PATHS + String(fd));
    } catch (error) {
      throw this.ioError(error, key, "check");
    }
  }

  /** lstat (or stat, following links), with undefined for a path that holds nothing. */
  private lstat(path: string, key: string, action: string, follow = false): Stats | undefined {
    try {
      return (follow ? statSync : lstatSync)(path, { throwIfNoEntry: false });
    } catch (error) {
      if (nothingThere(error)) return undefined;
      throw this.ioError(error, key, action);
    }
  }

  /** The real path of a path, or undefined when it holds nothing (missing, below a file, a loop). */
  private realpath(path: string, key: string, action: string): string | undefined {
    try {
      return realpathSync.native(path);
    } catch (error) {
      if (nothingThere(error)) return undefined;
      throw this.ioError(error, key, action);
    }
  }

  /**
   * Where a symlink leads, checked to lie inside base, if it is of the kind
   * wanted; undefined for a dangling link, a loop or another kind.
   */
  private linkTarget(path: string, key: string, want: "file" | "dir"): { real: string; stats: Stats } | undefined {
    const real = this.realpath(path, key, "resolve");
    if (real === undefined) return undefined;
    this.assertInside(real, key);
    const stats = this.lstat(real, key, "resolve", true);
    return stats !== undefined && (want === "file" ? stats.isFile() : stats.isDirectory()) ? { real, stats } : undefined;
  }

  /**
   * The real directory `dirParts` names below the real base `root`, walked
   * one segment at a time with lstat: a directory is entered, a symlink only
   * where its real path is a directory inside base (one that leads out is
   * E_INVALID_KEY, even when nothing exists below it). Reading, a level that
   * is missing or no directory gives undefined. Writing (`create`), a missing
   * level is made (one level, never `mkdir -p`) after its parent passed, any
   * other level is E_INVALID_KEY, and undefined means a level vanished as it
   * was made (a concurrent clear() pruned it). Work: one lstat per segment.
   */
  private walkDirs(key: string, root: string, dirParts: string[], create = false): string | undefined {
    let dir = root;
    let made = false;
    for (const part of dirParts) {
      const path = join(dir, part);
      let stats = this.lstat(path, key, "resolve");
      if (stats === undefined && create) {
        if (!this.makeDir(path, key)) return undefined;
        made = true;
        stats = this.lstat(path, key, "write");
      }
      const next = stats?.isDirectory() ? path : stats?.isSymbolicLink() ? this.linkTarget(path, key, "dir")?.real : undefined;
      if (next === undefined && create) throw this.invalidKey(key, `${JSON.stringify(part)} holds a value or a link that leads nowhere, not keys below it`);
      if (next === undefined) return undefined;
      dir = next;
    }
    if (!made) return dir;
    // A level swapped for a link between its check and the next mkdir shows in the real path.
    const real = this.realpath(dir, key, "write");
    if (real !== undefined) this.assertInside(real, key);
    return real;
  }

  /** Makes one directory; false when its parent vanished first. Another writer making it too is fine. */
  private makeDir(path: string, key: string): boolean {
    try {
      mkdirSync(path);
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return false;
      if (errnoOf(error) !== "EEXIST") throw this.ioError(error, key, "write");
    }
    return true;
  }

  /**
   * The real path and stats of an existing key's file, or undefined when the
   * key holds nothing (missing, a directory, a dangling link, a loop). The
   * lstat settles a missing key without an exception (every TTL sidecar
   * lookup is one); a symlink counts only where it leads inside base.
   */
  private existing(key: string): { real: string; stats: Stats } | undefined {
    const parts = this.keyParts(key);
    const root = this.resolvedBase();
    if (root === undefined) return undefined;
    const dir = this.walkDirs(key, root, parts.slice(0, -1));
    if (dir === undefined) return undefined;
    const path = join(dir, parts[parts.length - 1]!);
    const stats = this.lstat(path, key, "read");
    if (stats?.isFile()) return { real: path, stats };
    return stats?.isSymbolicLink() ? this.linkTarget(path, key, "file") : undefined;
  }

  has(key: string): boolean {
    return this.existing(key) !== undefined;
  }

  read(key: string): Buffer | null {
    const found = this.existing(key);
    if (found === undefined) return null;
    let fd: number;
    try {
      fd = openSync(found.real, READ_FLAGS);
    } catch (error) {
      // Removed since the lstat: the key holds nothing now.
      if (errnoOf(error) === "ENOENT") return null;
      throw this.ioError(error, key, "read");
    }
    try {
      const stats = fstatSync(fd);
      this.assertOpenedInside(fd, key, stats);
      return readAllSync(fd, stats.size);
    } catch (error) {
      throw error instanceof StorageError ? error : this.ioError(error, key, "read");
    } finally {
      closeSync(fd);
    }
  }

  readText(key: string): string | null {
    const bytes = this.read(key);
    return bytes === null ? null : bytes.toString("utf8");
  }

  meta(key: string): StorageMeta | null {
    const stats = this.existing(key)?.stats;
    return stats === undefined ? null : metaOfStats(stats);
  }

  /**
   * Opens a key's file for reading, with the meta of the file opened: a
   * write meanwhile renames a new file into place and leaves this one as it
   * was, so what is read matches the meta. Null when the key holds nothing.
   */
  async openRead(key: string): Promise<{ handle: FileHandle; meta: StorageMeta } | null> {
    const found = this.existing(key);
    if (found === undefined) return null;
    let handle: FileHandle;
    try {
      handle = await open(found.real, READ_FLAGS);
    } catch (error) {
      // Removed since the lstat: the key holds nothing now.
      if (errnoOf(error) === "ENOENT") return null;
      throw this.ioError(error, key, "read");
    }
    try {
      const stats = await handle.stat();
      this.assertOpenedInside(handle.fd, key, stats);
      return { handle, meta: metaOfStats(stats) };
    } catch (error) {
      await handle.close();
      throw error instanceof StorageError ? error : this.ioError(error, key, "read");
    }
  }

  private assertWritable(key?: string): void {
    if (this.options.readOnly) throw this.fail("E_READONLY", `The ${this.driverName} driver at ${this.base} is read-only`, key);
  }

  /** Where a write of `name` in `dir` lands: the file itself, or the file inside base a symlink there leads to. */
  private writeTarget(key: string, dir: string, name: string): string {
    const path = join(dir, name);
    const stats = this.lstat(path, key, "write");
    if (stats === undefined || stats.isFile()) return path;
    if (stats.isDirectory()) throw this.invalidKey(key, "it holds other keys below it, not a value");
    const real = stats.isSymbolicLink() ? this.linkTarget(path, key, "file")?.real : undefined;
    if (real === undefined) throw this.invalidKey(key, "its path is a link that leads nowhere, or not a regular file");
    return real;
  }

  /** Where a write to `key` goes: the key's file, and a fresh temp file name beside it (its directory made if missing). */
  private placeWrite(key: string): { target: string; temp: string } {
    this.assertWritable(key);
    const parts = this.keyParts(key);
    const dirParts = parts.slice(0, -1);
    // A concurrent clear() may prune a directory just made: walk again once.
    const dir = this.walkDirs(key, this.madeBase(key), dirParts, true) ?? this.walkDirs(key, this.madeBase(key), dirParts, true);
    if (dir === undefined) throw this.fail("E_IO", `Cannot write ${JSON.stringify(key)}: its directory vanished twice as it was made`, key);
    const target = this.writeTarget(key, dir, parts[parts.length - 1]!);
    return { target, temp: join(dirname(target), tempName()) };
  }

  /** A fresh temp file for a write, checked once open; placed again once if a clear() pruned its new directory first. */
  private openTempSync(key: string): { target: string; temp: string; fd: number } {
    for (let attempt = 0; ; attempt++) {
      const { target, temp } = this.placeWrite(key);
      let fd: number;
      try {
        fd = openSync(temp, TEMP_FLAGS, 0o666);
      } catch (error) {
        if (errnoOf(error) !== "ENOENT" || attempt > 0) throw this.ioError(error, key, "write");
        continue;
      }
      try {
        this.assertTempInPlace(fd, temp, key);
      } catch (error) {
        closeSync(fd);
        rmSync(temp, { force: true });
        throw error;
      }
      return { target, temp, fd };
    }
  }

  /** The async twin of {@link openTempSync}, for streamed writes. */
  private async openTemp(key: string): Promise<{ target: string; temp: string; handle: FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      const { target, temp } = this.placeWrite(key);
      let handle: FileHandle;
      try {
        handle = await open(temp, TEMP_FLAGS, 0o666);
      } catch (error) {
        if (errnoOf(error) !== "ENOENT" || attempt > 0) throw this.ioError(error, key, "write");
        continue;
      }
      try {
        this.assertTempInPlace(handle.fd, temp, key);
      } catch (error) {
        await handle.close();
        await rm(temp, { force: true });
        throw error;
      }
      return { target, temp, handle };
    }
  }

  /** Writes a file whole or not at all: a temp file in the same directory, renamed over the key. */
  write(key: string, data: string | Uint8Array): void {
    const { target, temp, fd } = this.openTempSync(key);
    try {
      try {
        const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
        let offset = 0;
        while (offset < bytes.byteLength) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
        if (this.options.fsync) fsyncSync(fd);
        this.assertTempInPlace(fd, temp, key);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, target);
    } catch (error) {
      rmSync(temp, { force: true });
      throw error instanceof StorageError ? error : this.ioError(error, key, "write");
    }
  }

  /**
   * Writes a file from chunks as they come, whole or not at all: into a temp
   * file, renamed over the key once `body` ends. A body that fails (its
   * error passes through as it is) or a failed write leaves the key as it was.
   */
  async writeStream(key: string, body: AsyncIterable<Uint8Array>): Promise<void> {
    const { target, temp, handle } = await this.openTemp(key);
    try {
      try {
        // The body's own failures pass on as they are; the file system's are this store's.
        for await (const chunk of body) await this.io(key, () => writeAll(handle, chunk));
        if (this.options.fsync) await this.io(key, () => handle.sync());
        this.assertTempInPlace(handle.fd, temp, key);
      } finally {
        await this.io(key, () => handle.close());
      }
      await this.io(key, () => rename(temp, target));
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  private async io<T>(key: string, action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (error) {
      throw this.ioError(error, key, "write");
    }
  }

  /**
   * Removes a key's file. Its directory is resolved and checked like a
   * read's; a symlink there is removed itself (never what it leads to), and
   * only when it leads to a file inside base. A key that holds nothing (a
   * directory, a dangling link) has nothing to remove.
   */
  remove(key: string): void {
    this.assertWritable(key);
    const parts = this.keyParts(key);
    const root = this.resolvedBase();
    if (root === undefined) return;
    const dir = this.walkDirs(key, root, parts.slice(0, -1));
    if (dir === undefined) return;
    const path = join(dir, parts[parts.length - 1]!);
    const stats = this.lstat(path, key, "remove");
    if (stats === undefined || !(stats.isFile() || (stats.isSymbolicLink() && this.linkTarget(path, key, "file") !== undefined))) return;
    this.unlink(path, key);
  }

  private unlink(path: string, key: string): void {
    try {
      unlinkSync(path);
    } catch (error) {
      // Removed meanwhile: the key holds nothing, as asked.
      if (errnoOf(error) !== "ENOENT") throw this.ioError(error, key, "remove");
    }
  }

  /**
   * The directory that holds keys under a listing's base (real, checked),
   * whether that is the very directory its path names (not a link), and the
   * key prefix its files get.
   */
  private startOf(base: string): (WalkDir & { own: boolean }) | undefined {
    const parts = this.keyParts(base, true);
    const root = this.resolvedBase();
    if (root === undefined) return undefined;
    const dir = this.walkDirs(base, root, parts);
    if (dir === undefined) return undefined;
    const prefix = parts.length > 0 ? parts.join(":") + ":" : "";
    return { dir, prefix, depth: parts.length, bytes: Buffer.byteLength(prefix), own: dir === join(root, ...parts) };
  }

  private ignored(relativePath: string, absolutePath: string): boolean {
    return this.options.ignore?.(relativePath, absolutePath) ?? false;
  }

  /**
   * What a directory entry is to a walk: a value file, a real directory to
   * descend, or nothing. Symlinks count only as files inside base: a walk
   * never descends a link, so it cannot loop or list a key twice, and
   * dangling links, loops and links out of base are skipped.
   */
  private entryKind(entry: Dirent, path: string, key: string): "file" | "dir" | undefined {
    const kind: Dirent | Stats | undefined = entry.isFile() || entry.isDirectory() || entry.isSymbolicLink() ? entry : this.lstat(path, key, "list");
    if (kind === undefined) return undefined;
    if (kind.isFile()) return "file";
    if (kind.isDirectory()) return "dir";
    if (!kind.isSymbolicLink()) return undefined;
    const real = this.realpath(path, key, "list");
    return real !== undefined && this.isInside(real) && this.lstat(real, key, "list", true)?.isFile() ? "file" : undefined;
  }

  /**
   * The value files below `start`, at most `maxDepth` levels below the root
   * of the store and never past the key limits (a tree made by other tools
   * is walked no deeper than a key can reach): one directory handle open at
   * a time, an explicit stack instead of recursion. Names no key can produce
   * (temp files, `.git`, over-long or unreadable names) are skipped before
   * any system call. Each directory walked is added to `dirs` when given,
   * parents before children.
   */
  private *scan(start: WalkDir, maxDepth: number | undefined, dirs?: string[]): Generator<WalkEntry> {
    const stack: WalkDir[] = [start];
    const deepest = Math.min(maxDepth ?? Number.POSITIVE_INFINITY, this.keyLimits.segments - 1);
    while (stack.length > 0) {
      const { dir, prefix, depth, bytes } = stack.pop()!;
      // A directory removed while we walk holds no keys any more; one swapped for a link is not entered.
      const dirStats = this.lstat(dir, prefix, "list");
      if (!dirStats?.isDirectory()) continue;
      let handle;
      try {
        handle = opendirSync(dir);
      } catch (error) {
        if (nothingThere(error)) continue;
        throw this.ioError(error, prefix, "list");
      }
      if (!sameDirectory(dirStats, this.lstat(dir, prefix, "list"))) {
        handle.closeSync();
        continue;
      }
      dirs?.push(dir);
      try {
        for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
          if (segmentProblem(entry.name, false) !== undefined) continue;
          const path = join(dir, entry.name);
          const key = prefix + entry.name;
          const keyBytes = bytes + Buffer.byteLength(entry.name);
          const kind = this.entryKind(entry, path, key);
          if (kind === undefined || (kind === "file" && !this.fitsAsFile(entry.name, keyBytes))) continue;
          const relative = key.replaceAll(":", "/");
          if (this.ignored(kind === "dir" ? relative + "/" : relative, path)) continue;
          if (kind === "file") yield { dir, dirStats, name: entry.name, key };
          else if (depth < deepest && keyBytes + 2 <= this.keyLimits.bytes) stack.push({ dir: path, prefix: key + ":", depth: depth + 1, bytes: keyBytes + 1 });
        }
      } finally {
        handle.closeSync();
      }
    }
  }

  /** Whether a file found by a walk names a key this store can read back: its last segment and whole key within the limits. */
  private fitsAsFile(name: string, keyBytes: number): boolean {
    return segmentProblem(name, true) === undefined && keyBytes <= this.keyLimits.bytes + (name.endsWith("$") ? 1 : 0);
  }

  /**
   * Lists keys under `base`, walking only its directory, at most `maxDepth`
   * levels below the root of the store.
   */
  keys(base: string, maxDepth: number | undefined): string[] {
    const keys: string[] = [];
    for (const batch of this.walk(base, maxDepth, Number.POSITIVE_INFINITY)) keys.push(...batch);
    return keys;
  }

  /** Walks the tree one directory handle at a time, yielding keys in batches. */
  *walk(base: string, maxDepth: number | undefined, batchSize: number): Generator<string[]> {
    const start = this.startOf(base);
    if (!start) return;
    let batch: string[] = [];
    for (const { key } of this.scan(start, maxDepth)) {
      batch.push(key);
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  /**
   * Removes every key under `base` (ignored files stay; links are removed,
   * never what they lead to), then the directories left empty, deepest
   * first. The walk is the listing's, so it never leaves base.
   */
  clear(base: string): void {
    this.assertWritable();
    if (this.options.noClear) throw this.fail("E_READONLY", `clear is disabled (noClear) for ${this.base}`);
    const start = this.startOf(base);
    if (!start) return;
    const dirs: string[] = [];
    for (const { dir, dirStats, name, key } of this.scan(start, undefined, dirs)) {
      // A directory moved or swapped for a link while clear() runs would send the removals to come elsewhere.
      if (!sameDirectory(dirStats, this.lstat(dir, key, "clear"))) {
        throw this.fail("E_IO", `clear stopped: ${JSON.stringify(dir)} was moved or replaced while it was being cleared`, key);
      }
      this.unlink(join(dir, name), key);
    }
    // The root stays, and so does a base reached through a link (its target is not the base's own directory).
    const keepFirst = !start.own || start.dir === this.resolvedBase();
    for (let index = dirs.length - 1; index >= (keepFirst ? 1 : 0); index--) this.removeEmptyDir(dirs[index]!, base);
  }

  private removeEmptyDir(dir: string, base: string): void {
    try {
      rmdirSync(dir);
    } catch (error) {
      // Not empty: ignored files or another writer's new keys keep it.
      const errno = errnoOf(error);
      if (errno !== "ENOTEMPTY" && errno !== "EEXIST" && errno !== "ENOENT") throw this.ioError(error, base, "clear");
    }
  }

  /**
   * The key a path reported by a watcher names, or undefined for paths
   * outside base, names no key can produce, keys past the limits, ignored paths, and (when the
   * path is `present`) links that do not lead to a file inside base.
   */
  keyOfPath(absolutePath: string, present: boolean): string | undefined {
    // A watch started before base existed reports paths under base as configured.
    const root = [this.resolvedBase(), this.base].find((candidate) => candidate !== undefined && absolutePath.startsWith(candidate + sep));
    if (root === undefined) return undefined;
    const parts = absolutePath.slice(root.length + 1).split(sep);
    if (parts.some((part) => segmentProblem(part, false) !== undefined)) return undefined;
    const key = parts.join(":");
    if (parts.length > this.keyLimits.segments || !this.fitsAsFile(parts[parts.length - 1]!, Buffer.byteLength(key))) return undefined;
    if (this.hiddenPath(parts) !== undefined) return undefined;
    if (present && this.lstat(absolutePath, key, "watch")?.isSymbolicLink()) {
      const real = this.realpath(absolutePath, key, "watch");
      if (real === undefined || !this.isInside(real)) return undefined;
    }
    return key;
  }

  /** The directory a watcher should watch: the real base once it exists, so that no link is crossed to reach it. */
  watchRoot(): string {
    return this.resolvedBase() ?? this.base;
  }
}
