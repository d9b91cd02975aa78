import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  opendirSync,
  readFileSync,
  readdirSync,
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
import { isAbsolute, join, resolve, sep } from "node:path";
import { threadId } from "node:worker_threads";
import { StorageError } from "../core/errors.js";
import type { StorageMeta } from "../core/types.js";

/**
 * The file engine under the fs and fs-lite drivers: one file per key, the
 * key's segments as directories, synchronous I/O, atomic writes (temp file
 * and rename), and no path that leaves the base directory.
 */

/** Temp files of in-flight writes start with this; keys may not. */
export const TEMP_PREFIX = ".stowage-tmp-";

export interface FileStoreOptions {
  /** Directory that holds the keys (created on first write). */
  base: string;
  /** Refuse every write with E_READONLY. */
  readOnly?: boolean;
  /** Refuse clear() with E_READONLY (other writes still work). */
  noClear?: boolean;
  /** fsync each file before it is renamed into place (durable across power loss; slower). */
  fsync?: boolean;
  /** Paths (relative to base, `/`-separated) left out of listings and watch events. */
  ignore?: (relativePath: string, absolutePath: string) => boolean;
}

type ErrnoError = NodeJS.ErrnoException;

// Temp names are unique per process and thread, and random across restarts; "wx" refuses any clash.
const TEMP_TAG = `${process.pid}-${threadId}-${randomBytes(3).toString("hex")}-`;
let tempCounter = 0;

/** Writes a whole chunk: a write may take less than it is given. */
async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.byteLength; ) offset += (await handle.write(chunk, offset, chunk.byteLength - offset)).bytesWritten;
}

function metaOfStats(stats: Stats): StorageMeta {
  return { atime: stats.atime, mtime: stats.mtime, ctime: stats.ctime, birthtime: stats.birthtime, size: stats.size };
}

function errnoOf(error: unknown): string | undefined {
  return (error as ErrnoError)?.code;
}

export class FileStore {
  readonly base: string;
  private realBase: string | undefined;

  constructor(
    readonly driverName: string,
    readonly options: FileStoreOptions,
  ) {
    if (!options || typeof options.base !== "string" || options.base === "") {
      throw new StorageError("E_INVALID_OPTION", `The ${driverName} driver needs a base directory`, { driver: driverName });
    }
    this.base = resolve(options.base);
  }

  private fail(code: "E_INVALID_KEY" | "E_IO" | "E_READONLY", message: string, key?: string, cause?: unknown): StorageError {
    return new StorageError(code, message, { driver: this.driverName, key, cause });
  }

  /** The I/O error as a StorageError; path-shaped failures are the key's fault. */
  private ioError(error: unknown, key: string, action: string): StorageError {
    const errno = errnoOf(error);
    if (errno === "ENOTDIR" || errno === "EISDIR" || errno === "EEXIST") {
      return this.fail("E_INVALID_KEY", `Cannot ${action} ${JSON.stringify(key)}: a key cannot hold a value and other keys below it in ${this.driverName}`, key, error);
    }
    if (errno === "ENAMETOOLONG") return this.fail("E_INVALID_KEY", `Key too long for the file system: ${JSON.stringify(key)}`, key, error);
    return this.fail("E_IO", `Cannot ${action} ${JSON.stringify(key)}: ${(error as Error).message}`, key, error);
  }

  /** The real path of base, resolved once it exists (symlinked bases are fine; leaving them is not). */
  private resolvedBase(): string | undefined {
    if (this.realBase === undefined) {
      try {
        this.realBase = realpathSync.native(this.base);
      } catch (error) {
        if (errnoOf(error) === "ENOENT") return undefined;
        throw this.fail("E_IO", `Cannot open ${this.base}: ${(error as Error).message}`, undefined, error);
      }
    }
    return this.realBase;
  }

  /** Segments of a key or base, refusing any that would name something other than a child. */
  segments(key: string): string[] {
    const parts = key.split(/[:/\\]/).filter((part) => part !== "");
    for (const part of parts) {
      if (part === "." || part === ".." || part.includes("\0") || part.startsWith(TEMP_PREFIX)) {
        throw this.fail("E_INVALID_KEY", `Invalid key for ${this.driverName}: ${JSON.stringify(key)}`, key);
      }
    }
    if (isAbsolute(key) && parts.length === 0) throw this.fail("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)}`, key);
    return parts;
  }

  pathOf(key: string): string {
    const parts = this.segments(key);
    if (parts.length === 0) throw this.fail("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)}`, key);
    return join(this.base, ...parts);
  }

  /** Fails unless `realPath` lies inside the real base: a symlink must not lead out. */
  private assertInside(realPath: string, key: string): void {
    const base = this.resolvedBase();
    if (base === undefined || (realPath !== base && !realPath.startsWith(base + sep))) {
      throw this.fail("E_INVALID_KEY", `Key ${JSON.stringify(key)} resolves outside ${this.base}`, key);
    }
  }

  /**
   * The real path and stats of an existing key's file (not a directory), or
   * undefined when there is none. The stat settles a missing key without an
   * exception (every TTL sidecar lookup is one); the real path keeps symlinks
   * from leading out of base.
   */
  private existing(key: string): { real: string; stats: Stats } | undefined {
    const path = this.pathOf(key);
    let stats: Stats | undefined;
    let real: string;
    try {
      stats = statSync(path, { throwIfNoEntry: false });
      if (stats === undefined || !stats.isFile()) return undefined;
      real = realpathSync.native(path);
    } catch (error) {
      const errno = errnoOf(error);
      if (errno === "ENOENT" || errno === "ENOTDIR") return undefined;
      throw this.ioError(error, key, "read");
    }
    this.assertInside(real, key);
    return { real, stats };
  }

  has(key: string): boolean {
    return this.existing(key) !== undefined;
  }

  read(key: string): Buffer | null {
    const found = this.existing(key);
    if (found === undefined) return null;
    try {
      return readFileSync(found.real);
    } catch (error) {
      // Removed since the stat: the key holds nothing now.
      if (errnoOf(error) === "ENOENT") return null;
      throw this.ioError(error, key, "read");
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
      handle = await open(found.real, "r");
    } catch (error) {
      // Removed since the stat: the key holds nothing now.
      if (errnoOf(error) === "ENOENT") return null;
      throw this.ioError(error, key, "read");
    }
    try {
      return { handle, meta: metaOfStats(await handle.stat()) };
    } catch (error) {
      await handle.close();
      throw this.ioError(error, key, "read");
    }
  }

  private assertWritable(key?: string): void {
    if (this.options.readOnly) throw this.fail("E_READONLY", `The ${this.driverName} driver at ${this.base} is read-only`, key);
  }

  /** The real directory a key's file goes in, created if missing and checked to lie inside base. */
  private directoryFor(key: string, parts: string[]): string {
    const dir = join(this.base, ...parts.slice(0, -1));
    let real: string;
    try {
      real = realpathSync.native(dir);
    } catch (error) {
      if (errnoOf(error) !== "ENOENT") throw this.ioError(error, key, "write");
      try {
        mkdirSync(dir, { recursive: true });
        real = realpathSync.native(dir);
      } catch (mkdirError) {
        throw this.ioError(mkdirError, key, "write");
      }
    }
    this.assertInside(real, key);
    return real;
  }

  /** Where a write to `key` goes: the key's file, and a fresh temp file beside it (its directory made if missing). */
  private placeWrite(key: string): { target: string; temp: string } {
    this.assertWritable(key);
    const parts = this.segments(key);
    if (parts.length === 0) throw this.fail("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)}`, key);
    const dir = this.directoryFor(key, parts);
    return { target: join(dir, parts[parts.length - 1]!), temp: join(dir, `${TEMP_PREFIX}${TEMP_TAG}${(tempCounter++).toString(36)}`) };
  }

  /** Writes a file whole or not at all: a temp file in the same directory, renamed over the key. */
  write(key: string, data: string | Uint8Array): void {
    const { target, temp } = this.placeWrite(key);
    let fd: number;
    try {
      fd = openSync(temp, "wx", 0o666);
    } catch (error) {
      throw this.ioError(error, key, "write");
    }
    try {
      try {
        const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
        let offset = 0;
        while (offset < bytes.byteLength) offset += writeSync(fd, bytes, offset, bytes.byteLength - offset);
        if (this.options.fsync) fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, target);
    } catch (error) {
      rmSync(temp, { force: true });
      throw this.ioError(error, key, "write");
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
      } finally {
        await this.io(key, () => handle.close());
      }
      await this.io(key, () => rename(temp, target));
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  /** A fresh temp file for a streamed write; made again once if a clear() pruned its new directory before it opened. */
  private async openTemp(key: string): Promise<{ target: string; temp: string; handle: FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      const { target, temp } = this.placeWrite(key);
      try {
        return { target, temp, handle: await open(temp, "wx", 0o666) };
      } catch (error) {
        if (errnoOf(error) !== "ENOENT" || attempt > 0) throw this.ioError(error, key, "write");
      }
    }
  }

  private async io<T>(key: string, action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (error) {
      throw this.ioError(error, key, "write");
    }
  }

  remove(key: string): void {
    this.assertWritable(key);
    const path = this.pathOf(key);
    try {
      unlinkSync(path);
    } catch (error) {
      const errno = errnoOf(error);
      if (errno === "ENOENT" || errno === "ENOTDIR") return;
      // unlink of a directory: the key holds no value, there is nothing to remove.
      if (errno === "EISDIR" || errno === "EPERM") {
        if (statSync(path, { throwIfNoEntry: false })?.isDirectory()) return;
      }
      throw this.ioError(error, key, "remove");
    }
  }

  /** The directory that holds keys under a base, and the key prefix its files get. */
  private startOf(base: string): { dir: string; prefix: string } | undefined {
    const parts = this.segments(base);
    const realBase = this.resolvedBase();
    if (realBase === undefined) return undefined;
    const dir = join(this.base, ...parts);
    let real: string;
    try {
      real = realpathSync.native(dir);
    } catch (error) {
      const errno = errnoOf(error);
      if (errno === "ENOENT" || errno === "ENOTDIR") return undefined;
      throw this.ioError(error, base, "list");
    }
    this.assertInside(real, base);
    return { dir: real, prefix: parts.length > 0 ? parts.join(":") + ":" : "" };
  }

  private ignored(relativePath: string, absolutePath: string): boolean {
    return this.options.ignore?.(relativePath, absolutePath) ?? false;
  }

  /** Whether a directory entry is a value file (symlinks count only when they stay inside base). */
  private entryKind(entry: Dirent, absolutePath: string): "file" | "dir" | undefined {
    if (entry.isFile()) return "file";
    if (entry.isDirectory()) return "dir";
    if (!entry.isSymbolicLink()) return undefined;
    try {
      const real = realpathSync.native(absolutePath);
      const base = this.resolvedBase()!;
      if (!real.startsWith(base + sep)) return undefined;
      const stats = statSync(real);
      return stats.isFile() ? "file" : stats.isDirectory() ? "dir" : undefined;
    } catch (error) {
      // A dangling link holds no value.
      if (errnoOf(error) === "ENOENT") return undefined;
      throw this.ioError(error, absolutePath, "list");
    }
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
    const startDepth = start.prefix ? start.prefix.split(":").length - 1 : 0;
    const stack: { dir: string; prefix: string; depth: number }[] = [{ dir: start.dir, prefix: start.prefix, depth: startDepth }];
    let batch: string[] = [];
    while (stack.length > 0) {
      const { dir, prefix, depth } = stack.pop()!;
      let handle;
      try {
        handle = opendirSync(dir);
      } catch (error) {
        // A directory removed while we walk holds no keys any more.
        if (errnoOf(error) === "ENOENT") continue;
        throw this.ioError(error, prefix, "list");
      }
      try {
        for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
          if (entry.name.startsWith(TEMP_PREFIX)) continue;
          const absolutePath = join(dir, entry.name);
          const relativePath = (prefix + entry.name).replaceAll(":", "/");
          const kind = this.entryKind(entry, absolutePath);
          if (kind === undefined || this.ignored(kind === "dir" ? relativePath + "/" : relativePath, absolutePath)) continue;
          if (kind === "dir") {
            if (maxDepth === undefined || depth < maxDepth) stack.push({ dir: absolutePath, prefix: prefix + entry.name + ":", depth: depth + 1 });
            continue;
          }
          batch.push(prefix + entry.name);
          if (batch.length >= batchSize) {
            yield batch;
            batch = [];
          }
        }
      } finally {
        handle.closeSync();
      }
    }
    if (batch.length > 0) yield batch;
  }

  /** Removes every key under `base` (ignored files stay), then the directories left empty. */
  clear(base: string): void {
    this.assertWritable();
    if (this.options.noClear) throw this.fail("E_READONLY", `clear is disabled (noClear) for ${this.base}`);
    for (const key of this.keys(base, undefined)) this.remove(key);
    const start = this.startOf(base);
    if (start) this.pruneEmpty(start.dir, start.prefix.replaceAll(":", "/"), start.dir !== this.resolvedBase());
  }

  /** Removes empty directories below `dir` (and `dir` itself when asked); `relative` is its path from base with a trailing `/`. */
  private pruneEmpty(dir: string, relative: string, self: boolean): void {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory() && !this.ignored(relative + entry.name + "/", path)) this.pruneEmpty(path, relative + entry.name + "/", true);
    }
    if (!self) return;
    try {
      rmdirSync(dir);
    } catch (error) {
      // Not empty: ignored files or another writer's new keys keep it.
      const errno = errnoOf(error);
      if (errno !== "ENOTEMPTY" && errno !== "EEXIST" && errno !== "ENOENT") throw this.ioError(error, relative, "clear");
    }
  }

  /** The key a path under base names, or undefined for temp files and paths outside. */
  keyOfPath(absolutePath: string): string | undefined {
    const base = this.resolvedBase() ?? this.base;
    const root = absolutePath.startsWith(base + sep) ? base : absolutePath.startsWith(this.base + sep) ? this.base : undefined;
    if (root === undefined) return undefined;
    const relative = absolutePath.slice(root.length + 1);
    const parts = relative.split(sep);
    if (parts.some((part) => part.startsWith(TEMP_PREFIX))) return undefined;
    if (this.ignored(parts.join("/"), absolutePath)) return undefined;
    return parts.join(":");
  }
}
