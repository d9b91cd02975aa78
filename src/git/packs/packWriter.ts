import { createHash, type Hash } from "node:crypto";
import { closeSync, fsyncSync, openSync, readSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { gitError, ioError, isErrno } from "../errors.js";
import { makeDirectories, removeQuietly, writeAll } from "../fileUtil.js";
import { hashObject, type ObjectId, type ObjectType } from "../objects/objectId.js";
import { encodePackIndex, type PackIndexEntry } from "./packIndex.js";
import { PackType, type StoredEntry } from "./packReader.js";
import { tempName } from "../tempName.js";
import { deflateObject } from "../objects/zlib.js";

/** Where a pack is staged before it is installed: in memory, in a temporary file, or memory first then a file. */
export type PackMode = "memory" | "disk" | "auto";

/** Options of a {@link PackWriter}. */
export interface PackWriterOptions {
  /**
   * Staging mode.
   * @default "auto"
   */
  mode?: PackMode;
  /**
   * In `auto` mode, how many objects stay in memory before staging moves to a temporary file.
   * @default 10
   */
  memoryLimit?: number;
  /**
   * zlib level for entries above 1 KiB (as Git's loose objects: bulk writes favour speed); smaller ones are stored.
   * @default 1
   */
  level?: number;
  /**
   * fsync pack and index before they are renamed into place.
   * @default false
   */
  fsync?: boolean;
}

/** A pack installed in `objects/pack`. */
export interface WrittenPack {
  packPath: string;
  idxPath: string;
  /** The pack's SHA-1 (its name). */
  checksum: string;
  /** The ids it holds, in the order they were added. */
  ids: ObjectId[];
}


const HEADER_SIZE = 12;
const FLUSH_BYTES = 1 << 20;
const TYPE_NUMBERS: Record<ObjectType, number> = { commit: PackType.commit, tree: PackType.tree, blob: PackType.blob, tag: PackType.tag };

/** An entry header: type and size in a little-endian base-128 varint whose first byte holds 4 size bits. */
function entryHeader(type: ObjectType, size: number): Buffer {
  const bytes: number[] = [];
  let byte = (TYPE_NUMBERS[type] << 4) | (size & 15);
  let rest = Math.floor(size / 16);
  while (rest > 0) {
    bytes.push(byte | 0x80);
    byte = rest & 0x7f;
    rest = Math.floor(rest / 128);
  }
  bytes.push(byte);
  return Buffer.from(bytes);
}

function packHeader(count: number): Buffer {
  const header = Buffer.alloc(HEADER_SIZE);
  header.write("PACK", 0, "latin1");
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(count, 8);
  return header;
}

/**
 * Writes one packfile (version 2, whole objects, no deltas) and its `.idx`
 * (version 2). Objects are staged per the mode; `finish()` installs pack and
 * index by rename (pack first, so a reader that finds the index finds the
 * pack); temporary files are removed on success and on failure.
 */
export class PackWriter {
  private readonly entries: PackIndexEntry[] = [];
  private readonly seen = new Set<ObjectId>();
  /** Staged bytes not yet in the temporary file (all of them in memory mode). */
  private chunks: Buffer[] = [];
  private pending = 0;
  private size = HEADER_SIZE;
  private tempPack: string | undefined;
  private fd: number | undefined;
  private done = false;
  private readonly mode: PackMode;
  private readonly memoryLimit: number;

  constructor(
    /** The `objects/pack` directory. */
    private readonly packDir: string,
    private readonly options: PackWriterOptions = {},
  ) {
    this.mode = options.mode ?? "auto";
    this.memoryLimit = options.memoryLimit ?? 10;
    if (!["memory", "disk", "auto"].includes(this.mode)) throw gitError("E_INVALID_OPTION", `Unknown pack mode: ${String(this.mode)}`);
    if (this.mode === "disk") this.toDisk();
  }

  /** Objects added so far. */
  get count(): number {
    return this.entries.length;
  }

  /** True while staging in memory. */
  get inMemory(): boolean {
    return this.tempPack === undefined;
  }

  /** Path of the temporary pack file, while there is one. */
  get tempPath(): string | undefined {
    return this.tempPack;
  }

  /** Adds an object (an id already added is skipped); returns its id. */
  add(type: ObjectType, body: Uint8Array): ObjectId {
    if (this.done) throw gitError("E_INVALID_OPTION", "This pack writer has finished");
    const id = hashObject(type, body);
    if (this.seen.has(id)) return id;
    this.appendEntry(id, entryHeader(type, body.length), deflateObject(body, this.options.level));
    return id;
  }

  /** Adds an entry copied from another pack as stored (its zlib stream kept; an id already added is skipped). */
  addStored(entry: StoredEntry): void {
    if (this.done) throw gitError("E_INVALID_OPTION", "This pack writer has finished");
    if (!this.seen.has(entry.id)) this.appendEntry(entry.id, entryHeader(entry.type, entry.size), entry.data);
  }

  private appendEntry(id: ObjectId, header: Buffer, data: Buffer): void {
    this.entries.push({ id, offset: this.size, crc: crc32(data, crc32(header)) });
    this.seen.add(id);
    this.append(header);
    this.append(data);
    if (this.fd === undefined && this.mode === "auto" && this.entries.length > this.memoryLimit) this.toDisk();
  }

  /** Writes the trailer and index and installs both; `undefined` (and nothing written) when no object was added. */
  finish(): WrittenPack | undefined {
    if (this.done) throw gitError("E_INVALID_OPTION", "This pack writer has finished");
    this.done = true;
    if (this.entries.length === 0) {
      this.cleanup(undefined);
      return undefined;
    }
    let tempIdx: string | undefined;
    try {
      const checksum = this.fd === undefined ? this.finishInMemory() : this.finishOnDisk();
      tempIdx = join(this.packDir, tempName("tmp_idx_"));
      writeFile(tempIdx, encodePackIndex(this.entries, checksum), this.options.fsync === true);
      const name = `pack-${checksum.toString("hex")}`;
      const packPath = join(this.packDir, `${name}.pack`);
      const idxPath = join(this.packDir, `${name}.idx`);
      renameSync(this.tempPack as string, packPath);
      this.tempPack = undefined;
      renameSync(tempIdx, idxPath);
      return { packPath, idxPath, checksum: checksum.toString("hex"), ids: this.entries.map((entry) => entry.id) };
    } catch (error) {
      if (tempIdx !== undefined) removeQuietly(tempIdx, error);
      this.cleanup(error);
      throw ioError("Cannot write pack", error);
    }
  }

  /** Drops everything staged and removes the temporary file. */
  abort(): void {
    this.done = true;
    this.cleanup(undefined);
  }

  private append(data: Buffer): void {
    this.chunks.push(data);
    this.pending += data.length;
    this.size += data.length;
    if (this.fd !== undefined && this.pending >= FLUSH_BYTES) this.flush();
  }

  /** Writes the staged chunks to the temporary file in one call (a write per entry costs more than the copy). */
  private flush(): void {
    try {
      writeAll(this.fd as number, this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.pending));
    } catch (error) {
      this.done = true;
      this.cleanup(error);
      throw ioError("Cannot write the temporary pack", error);
    }
    this.chunks = [];
    this.pending = 0;
  }

  /** Moves staging into a temporary file in the pack directory (so the final rename stays on one file system). */
  private toDisk(): void {
    try {
      const tempPack = (this.tempPack = join(this.packDir, tempName("tmp_pack_")));
      this.fd = inPackDir(this.packDir, () => openSync(tempPack, "wx+", 0o444));
    } catch (error) {
      this.done = true;
      this.cleanup(error);
      throw ioError("Cannot create a temporary pack", error);
    }
    this.chunks.unshift(packHeader(0));
    this.pending += HEADER_SIZE;
    this.flush();
  }

  private finishInMemory(): Buffer {
    const chunks = [packHeader(this.entries.length), ...this.chunks];
    const hash = createHash("sha1");
    for (const chunk of chunks) hash.update(chunk);
    const checksum = hash.digest();
    const tempPack = (this.tempPack = join(this.packDir, tempName("tmp_pack_")));
    const data = Buffer.concat([...chunks, checksum]);
    inPackDir(this.packDir, () => writeFile(tempPack, data, this.options.fsync === true));
    this.chunks = [];
    this.pending = 0;
    return checksum;
  }

  /** Patches the object count into the header, hashes the file back from disk and appends the checksum. */
  private finishOnDisk(): Buffer {
    this.flush();
    const fd = this.fd as number;
    writeSync(fd, packHeader(this.entries.length), 0, HEADER_SIZE, 0);
    const hash = createHash("sha1");
    hashFile(fd, this.size, hash);
    const checksum = hash.digest();
    writeSync(fd, checksum, 0, 20, this.size);
    if (this.options.fsync === true) fsyncSync(fd);
    closeSync(fd);
    this.fd = undefined;
    return checksum;
  }

  private cleanup(original: unknown): void {
    this.chunks = [];
    this.pending = 0;
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch (error) {
        if (original instanceof Error) original.message += ` (and closing the temporary pack failed: ${(error as Error).message})`;
      }
      this.fd = undefined;
    }
    if (this.tempPack !== undefined) removeQuietly(this.tempPack, original);
    this.tempPack = undefined;
  }
}

function hashFile(fd: number, size: number, hash: Hash): void {
  const buffer = Buffer.allocUnsafe(1 << 20);
  for (let at = 0; at < size; ) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, size - at), at);
    if (n === 0) throw new Error("temporary pack shrank while hashing");
    hash.update(buffer.subarray(0, n));
    at += n;
  }
}

/** Runs `create` in the pack directory, making the directory only when it is missing (a mkdir per pack costs more than its write). */
function inPackDir<T>(packDir: string, create: () => T): T {
  try {
    return create();
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw error;
    makeDirectories(packDir);
    return create();
  }
}

/** Creates `path` exclusively (read-only, as Git's packs are) with `data`. */
function writeFile(path: string, data: Buffer, fsync: boolean): void {
  const fd = openSync(path, "wx", 0o444);
  try {
    writeAll(fd, data);
    if (fsync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
