import { createHash } from "node:crypto";
import { corrupt } from "../errors.js";
import type { ObjectId } from "../objects/objectId.js";

const MAGIC = 0xff744f63; // "\377tOc"
const HEADER = 8;
const FANOUT = 256 * 4;
const LARGE = 0x80000000;

/**
 * A pack's `.idx` (version 2), held in memory: fanout table, sorted ids,
 * CRC-32s, 32-bit offsets (high bit set: an index into the 64-bit table),
 * then the pack's and the index's own SHA-1.
 */
export class PackIndex {
  /** Objects in the pack. */
  readonly count: number;
  private readonly idsAt: number;
  private readonly crcsAt: number;
  private readonly offsetsAt: number;
  private readonly largeAt: number;
  private sortedOffsets: Float64Array | undefined;

  private constructor(private readonly data: Buffer) {
    this.count = data.readUInt32BE(HEADER + FANOUT - 4);
    this.idsAt = HEADER + FANOUT;
    this.crcsAt = this.idsAt + this.count * 20;
    this.offsetsAt = this.crcsAt + this.count * 4;
    this.largeAt = this.offsetsAt + this.count * 4;
  }

  /** Parses and size-checks an index file's bytes; `E_CORRUPT` when it is not a v2 index. */
  static parse(data: Buffer, what: string): PackIndex {
    if (data.length < HEADER + FANOUT + 40 || data.readUInt32BE(0) !== MAGIC || data.readUInt32BE(4) !== 2) {
      throw corrupt(`${what} is not a version 2 pack index`);
    }
    const index = new PackIndex(data);
    const minimum = index.largeAt + 40;
    if (data.length < minimum || (data.length - minimum) % 8 !== 0) throw corrupt(`${what} has the wrong size for ${index.count} objects`);
    return index;
  }

  /** The SHA-1 of the pack this index describes. */
  get packChecksum(): Buffer {
    return this.data.subarray(this.data.length - 40, this.data.length - 20);
  }

  /** Position of `id` in the sorted table, or -1. */
  find(id: ObjectId): number {
    return findSortedId(this.data, HEADER, this.idsAt, id);
  }

  /** The id at a position of the sorted table. */
  idAt(position: number): ObjectId {
    const at = this.idsAt + position * 20;
    return this.data.toString("hex", at, at + 20);
  }

  /** The CRC-32 of the packed entry at a position. */
  crcAt(position: number): number {
    return this.data.readUInt32BE(this.crcsAt + position * 4);
  }

  /** The pack offset of the entry at a position. */
  offsetAt(position: number): number {
    const small = this.data.readUInt32BE(this.offsetsAt + position * 4);
    if (small < LARGE) return small;
    const at = this.largeAt + (small - LARGE) * 8;
    if (at + 8 > this.data.length - 40) throw corrupt(`Pack index large offset ${small - LARGE} out of range`);
    return Number(this.data.readBigUInt64BE(at));
  }

  /**
   * Where the entry at `offset` ends: the next entry's offset, or the pack's
   * trailer. Entries are contiguous, so this bounds the zlib stream exactly.
   */
  entryEnd(offset: number, packSize: number): number {
    const sorted = (this.sortedOffsets ??= this.buildSortedOffsets());
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sorted[mid]! <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo < sorted.length ? sorted[lo]! : packSize - 20;
  }

  private buildSortedOffsets(): Float64Array {
    const offsets = new Float64Array(this.count);
    for (let i = 0; i < this.count; i++) offsets[i] = this.offsetAt(i);
    return offsets.sort();
  }
}

/**
 * Position of `id` in a table of sorted 20-byte ids at `idsAt`, narrowed by
 * the 256-entry fanout of cumulative counts at `fanoutAt` (as `.idx` and
 * commit-graph files lay them out); -1 when absent.
 */
export function findSortedId(data: Buffer, fanoutAt: number, idsAt: number, id: ObjectId): number {
  const key = Buffer.from(id, "hex");
  if (key.length !== 20) return -1;
  const first = key[0]!;
  let lo = first === 0 ? 0 : data.readUInt32BE(fanoutAt + (first - 1) * 4);
  let hi = data.readUInt32BE(fanoutAt + first * 4);
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const at = idsAt + mid * 20;
    const order = key.compare(data, at, at + 20);
    if (order === 0) return mid;
    if (order < 0) hi = mid;
    else lo = mid + 1;
  }
  return -1;
}

/** One object of a pack, as its index records it. */
export interface PackIndexEntry {
  id: ObjectId;
  /** Where its entry starts in the pack. */
  offset: number;
  /** CRC-32 of the entry's bytes (header and zlib data). */
  crc: number;
}

/**
 * Encodes a `.idx` v2: fanout, sorted ids, CRC-32s, 32-bit offsets (from
 * 2 GiB on, the high bit set and an index into the 64-bit table that
 * follows), the pack's checksum and the index's own.
 */
export function encodePackIndex(entries: readonly PackIndexEntry[], packChecksum: Buffer): Buffer {
  const sorted = [...entries].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const n = sorted.length;
  const largeCount = sorted.filter((entry) => entry.offset >= LARGE).length;
  const out = Buffer.alloc(HEADER + FANOUT + n * 28 + largeCount * 8 + 40);
  out.writeUInt32BE(MAGIC, 0);
  out.writeUInt32BE(2, 4);
  const fanout = new Uint32Array(256);
  for (const entry of sorted) fanout[parseInt(entry.id.slice(0, 2), 16)]! += 1;
  let running = 0;
  for (let i = 0; i < 256; i++) out.writeUInt32BE((running += fanout[i]!), HEADER + i * 4);
  const ids = HEADER + FANOUT;
  const crcs = ids + n * 20;
  const offsets = crcs + n * 4;
  const largeAt = offsets + n * 4;
  let large = 0;
  sorted.forEach((entry, i) => {
    out.write(entry.id, ids + i * 20, "hex");
    out.writeUInt32BE(entry.crc >>> 0, crcs + i * 4);
    if (entry.offset < LARGE) {
      out.writeUInt32BE(entry.offset, offsets + i * 4);
    } else {
      out.writeUInt32BE(LARGE + large, offsets + i * 4);
      out.writeBigUInt64BE(BigInt(entry.offset), largeAt + large++ * 8);
    }
  });
  const tail = largeAt + largeCount * 8;
  packChecksum.copy(out, tail);
  createHash("sha1").update(out.subarray(0, tail + 20)).digest().copy(out, tail + 20);
  return out;
}
