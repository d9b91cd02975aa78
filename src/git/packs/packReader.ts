import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { crc32 } from "node:zlib";
import { applyDelta } from "../objects/delta.js";
import { corrupt, ioError } from "../errors.js";
import { LRUCache } from "lru-cache";
import { hashObject, type GitObject, type ObjectId, type ObjectType } from "../objects/objectId.js";
import { PackIndex } from "./packIndex.js";
import { inflateObject } from "../objects/zlib.js";

/** Finds an object outside this pack: the base of a REF_DELTA in a thin or mixed repository. */
export type ObjectResolver = (id: ObjectId) => GitObject | undefined;

/** Pack entry type numbers. */
export const PackType = { commit: 1, tree: 2, blob: 3, tag: 4, ofsDelta: 6, refDelta: 7 } as const;
const TYPE_NAMES: ReadonlyArray<ObjectType | undefined> = [undefined, "commit", "tree", "blob", "tag"];

interface EntryHeader {
  kind: number;
  size: number;
  /** Where the zlib data starts. */
  dataAt: number;
  /** OFS_DELTA: the base's offset. */
  baseOffset?: number;
  /** REF_DELTA: the base's id. */
  baseId?: ObjectId;
}

/** A whole (not deltified) pack entry as stored: see {@link PackReader.storedEntry}. */
export interface StoredEntry {
  id: ObjectId;
  type: ObjectType;
  /** The inflated size. */
  size: number;
  /** The zlib stream. */
  data: Buffer;
}

/** The first read of an entry: its header and, for most objects, all of its zlib data. */
const PROBE_BYTES = 4096;

/** At least the length of a zlib stream holding `size` bytes, as zlib and Git write them (deflateBound, generously). */
function zlibBound(size: number): number {
  return size + Math.ceil(size / 1024) + 64;
}

/** Packs up to this size are read whole on first use: a scan of one (a merge) then costs one read, not one per entry. */
const WHOLE_PACK_BYTES = 1024 * 1024;

/** An opened pack: its index, descriptor and size. */
interface OpenPack {
  index: PackIndex;
  fd: number;
  size: number;
}

/** Whole small packs' bytes, by open pack, within a budget shared by every reader. */
const packContents = new LRUCache<OpenPack, Buffer>({ max: 4096, maxSize: 32 * 1024 * 1024 });

/** Budget of the per-pack cache of delta bases (Git's core.deltaBaseCacheLimit is 96 MB). */
const BASE_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * Reads objects from one packfile through its `.idx`: entries are read with
 * positioned reads on an open descriptor, inflated, and delta chains
 * (OFS_DELTA and REF_DELTA) resolved iteratively with a cache of bases.
 */
export class PackReader {
  private readonly bases = new LRUCache<number, GitObject>({ max: 4096, maxSize: BASE_CACHE_BYTES });
  private file: OpenPack | undefined;

  private constructor(
    /** Path of the `.pack` file. */
    readonly packPath: string,
  ) {}

  /** Opens `pack-*.pack` and its `.idx`; checks header, object count and that both name the same checksum. */
  static open(packPath: string): PackReader {
    const reader = new PackReader(packPath);
    reader.opened();
    return reader;
  }

  /**
   * A reader that opens the pack (as {@link open}) at its first use: a pack
   * this process just wrote is often merged away before anything reads it.
   */
  static lazy(packPath: string): PackReader {
    return new PackReader(packPath);
  }

  /** The pack's index. */
  get index(): PackIndex {
    return this.opened().index;
  }

  /** True when the pack holds `id`. */
  has(id: ObjectId): boolean {
    return this.index.find(id) >= 0;
  }

  /**
   * Reads `id` from this pack, or `undefined` when it is not here. With
   * `verify`, the result's hash is checked against `id` (`E_CORRUPT`).
   */
  read(id: ObjectId, external: ObjectResolver, verify = true): GitObject | undefined {
    const position = this.index.find(id);
    if (position < 0) return undefined;
    const object = this.readAt(this.index.offsetAt(position), external);
    if (verify && hashObject(object.type, object.body) !== id) throw corrupt(`Packed object ${id} in ${this.packPath} hashes to another id`);
    return object;
  }

  /** Reads the object whose entry starts at `offset`, resolving its delta chain. */
  readAt(offset: number, external: ObjectResolver): GitObject {
    // Walk down the chain to a plain (or cached) base, then apply the deltas back up.
    const deltas: Array<{ data: Buffer; baseOffset: number | undefined }> = [];
    let base: GitObject | undefined;
    for (let at = offset; base === undefined; ) {
      base = this.bases.get(at);
      if (base !== undefined) break;
      const { entry, data } = this.inflateAt(at);
      const type = TYPE_NAMES[entry.kind];
      if (type !== undefined) {
        base = { type, body: data };
        break;
      }
      if (deltas.length >= 10_000) throw corrupt(`Delta chain too long (a cycle?) in ${this.packPath}`);
      const baseOffset = entry.baseOffset ?? this.offsetOf(entry.baseId as ObjectId);
      deltas.push({ data, baseOffset });
      if (baseOffset !== undefined) at = baseOffset;
      else base = external(entry.baseId as ObjectId) ?? missingBase(entry.baseId as ObjectId, this.packPath);
    }
    return this.applyChain(base, deltas);
  }

  /** Applies deltas from the innermost out, caching each base on the way. */
  private applyChain(base: GitObject, deltas: ReadonlyArray<{ data: Buffer; baseOffset: number | undefined }>): GitObject {
    let object = base;
    for (let i = deltas.length - 1; i >= 0; i--) {
      const delta = deltas[i]!;
      if (delta.baseOffset !== undefined) this.bases.set(delta.baseOffset, object, { size: object.body.length + 1 });
      object = { type: object.type, body: applyDelta(object.body, delta.data) };
    }
    return object;
  }

  /**
   * Reads and inflates the entry at `at` with one positioned read, sized
   * from its header (a zlib stream is at most a little longer than what it
   * holds); the entry's exact extent — the next entry's offset, which takes
   * sorting the index's offsets once — only when a stream runs longer.
   */
  private inflateAt(at: number): { entry: EntryHeader; data: Buffer } {
    const size = this.opened().size;
    const limit = size - 20;
    if (at < 12 || at >= limit) throw corrupt(`Entry offset ${at} out of range in ${this.packPath}`);
    let raw = this.readBytes(at, Math.min(PROBE_BYTES, limit - at));
    const entry = this.parseHeader(raw, at);
    const wanted = Math.min(limit - at, entry.dataAt - at + zlibBound(entry.size));
    if (wanted > raw.length) raw = this.readBytes(at, wanted);
    try {
      return { entry, data: this.inflateEntry(raw, at, entry) };
    } catch (error) {
      const end = this.index.entryEnd(at, size);
      // Everything up to the next entry was read already: the entry itself is damaged.
      if (end - at <= raw.length || end > limit) throw error;
      return { entry, data: this.inflateEntry(this.readBytes(at, end - at), at, entry) };
    }
  }

  /**
   * The entry at an index position as it is stored — its type, size and
   * zlib stream, checked against the index's CRC — so a merge copies it
   * without inflating and deflating; `undefined` for a delta (whose base
   * may not be in the new pack).
   */
  storedEntry(position: number): StoredEntry | undefined {
    const file = this.opened();
    const offset = file.index.offsetAt(position);
    const raw = this.readBytes(offset, file.index.entryEnd(offset, file.size) - offset);
    const entry = this.parseHeader(raw, offset);
    const type = TYPE_NAMES[entry.kind];
    if (type === undefined) return undefined;
    if (crc32(raw) !== file.index.crcAt(position)) throw corrupt(`Entry at ${offset} in ${this.packPath} does not match its CRC`);
    return { id: file.index.idAt(position), type, size: entry.size, data: raw.subarray(entry.dataAt - offset) };
  }

  private offsetOf(id: ObjectId): number | undefined {
    const position = this.index.find(id);
    return position < 0 ? undefined : this.index.offsetAt(position);
  }

  /** Closes the pack's descriptor (a later use opens it again). */
  close(): void {
    if (this.file === undefined) return;
    packContents.delete(this.file);
    closeSync(this.file.fd);
    this.file = undefined;
  }

  private opened(): OpenPack {
    if (this.file !== undefined) return this.file;
    const idxPath = this.packPath.replace(/\.pack$/, ".idx");
    let index: PackIndex;
    let fd: number;
    try {
      index = PackIndex.parse(readFileSync(idxPath), idxPath);
      fd = openSync(this.packPath, "r");
    } catch (error) {
      throw ioError(`Cannot open pack ${this.packPath}`, error);
    }
    const file: OpenPack = { index, fd, size: 0 };
    this.file = file;
    try {
      file.size = fstatSync(fd).size;
      this.checkEnvelope(file);
    } catch (error) {
      this.close();
      throw ioError(`Cannot open pack ${this.packPath}`, error);
    }
    return file;
  }

  /** Bytes of the pack: a small pack's from its contents read whole (kept in a shared, bounded cache), else read at `offset`. */
  private readBytes(offset: number, length: number): Buffer {
    const file = this.opened();
    if (file.size > WHOLE_PACK_BYTES) return this.readFromDisk(file, offset, length);
    let content = packContents.get(file);
    if (content === undefined) {
      content = this.readFromDisk(file, 0, file.size);
      packContents.set(file, content, { size: content.length });
    }
    return content.subarray(offset, Math.min(offset + length, file.size));
  }

  private readFromDisk(file: OpenPack, offset: number, length: number): Buffer {
    const buffer = Buffer.allocUnsafe(length);
    let done = 0;
    try {
      while (done < length) {
        const n = readSync(file.fd, buffer, done, length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (error) {
      throw ioError(`Cannot read ${this.packPath}`, error);
    }
    return done === length ? buffer : buffer.subarray(0, done);
  }

  /** Checks `PACK`, version 2 or 3, the object count and the trailer against the index. */
  private checkEnvelope(file: OpenPack): void {
    const header = this.readFromDisk(file, 0, 12);
    const version = header.length === 12 ? header.readUInt32BE(4) : 0;
    if (header.toString("latin1", 0, 4) !== "PACK" || (version !== 2 && version !== 3)) throw corrupt(`${this.packPath} is not a packfile`);
    if (header.readUInt32BE(8) !== file.index.count) throw corrupt(`${this.packPath} and its index disagree on the object count`);
    if (file.size < 32 || !this.readFromDisk(file, file.size - 20, 20).equals(file.index.packChecksum)) {
      throw corrupt(`${this.packPath} does not match its index's checksum`);
    }
  }

  /** Parses an entry's type, size and delta base reference from its bytes. */
  private parseHeader(bytes: Buffer, offset: number): EntryHeader {
    let at = 0;
    let byte = bytes[at++] ?? 0;
    const kind = (byte >> 4) & 7;
    let size = byte & 15;
    let scale = 16;
    while (byte & 0x80) {
      if (at >= bytes.length) throw corrupt(`Truncated entry header at ${offset} in ${this.packPath}`);
      byte = bytes[at++]!;
      size += (byte & 0x7f) * scale;
      scale *= 128;
    }
    if (kind === PackType.ofsDelta) return this.ofsHeader(bytes, at, offset, kind, size);
    if (kind === PackType.refDelta) {
      if (at + 20 > bytes.length) throw corrupt(`Truncated REF_DELTA at ${offset} in ${this.packPath}`);
      return { kind, size, dataAt: offset + at + 20, baseId: bytes.toString("hex", at, at + 20) };
    }
    if (TYPE_NAMES[kind] === undefined) throw corrupt(`Unknown entry type ${kind} at ${offset} in ${this.packPath}`);
    return { kind, size, dataAt: offset + at };
  }

  /** OFS_DELTA's base distance: big-endian base-128 where each continuation adds one (no redundant encodings). */
  private ofsHeader(bytes: Buffer, at: number, offset: number, kind: number, size: number): EntryHeader {
    let byte = bytes[at++] ?? 0;
    let distance = byte & 0x7f;
    while (byte & 0x80) {
      if (at >= bytes.length) throw corrupt(`Truncated OFS_DELTA at ${offset} in ${this.packPath}`);
      byte = bytes[at++]!;
      distance = (distance + 1) * 128 + (byte & 0x7f);
    }
    if (distance <= 0 || distance > offset) throw corrupt(`OFS_DELTA base out of range at ${offset} in ${this.packPath}`);
    return { kind, size, dataAt: offset + at, baseOffset: offset - distance };
  }

  /** Inflates an entry's data (`raw` holds the entry from its header on). */
  private inflateEntry(raw: Buffer, offset: number, entry: EntryHeader): Buffer {
    const data = inflateObject(raw.subarray(entry.dataAt - offset), `Entry at ${offset} in ${this.packPath}`);
    if (data.length !== entry.size) throw corrupt(`Entry at ${offset} in ${this.packPath} inflates to ${data.length} bytes, not ${entry.size}`);
    return data;
  }
}

function missingBase(id: ObjectId, packPath: string): never {
  throw corrupt(`Delta base ${id} of an entry in ${packPath} is missing`);
}
