import { constants, deflateSync, inflateSync } from "node:zlib";
import { corrupt } from "../errors.js";

/**
 * Objects up to this size are written as one *stored* (uncompressed) zlib
 * block: for small bodies, setting up a zlib stream costs far more than the
 * few bytes compression saves, and `git gc` recompresses them when it packs.
 */
export const STORED_MAX = 1024;
const MOD_ADLER = 65521;
// Largest run of bytes whose sums cannot lose precision before the modulo (zlib's NMAX).
const NMAX = 5552;

/** Adler-32, the checksum that ends a zlib stream. */
export function adler32(data: Uint8Array, start = 0, end = data.length): number {
  let a = 1;
  let b = 0;
  for (let i = start; i < end; ) {
    const stop = Math.min(end, i + NMAX);
    for (; i < stop; i++) {
      a += data[i]!;
      b += a;
    }
    a %= MOD_ADLER;
    b %= MOD_ADLER;
  }
  return (b * 65536 + a) >>> 0;
}

/** A zlib stream holding `data` in one stored block (`data` must be at most 65535 bytes). */
function storedStream(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(data.length + 11);
  out[0] = 0x78; // deflate, 32 KiB window
  out[1] = 0x01; // no dictionary, fastest; (0x78 * 256 + 0x01) % 31 === 0
  out[2] = 0x01; // final block, stored
  out.writeUInt16LE(data.length, 3);
  out.writeUInt16LE(data.length ^ 0xffff, 5);
  out.set(data, 7);
  out.writeUInt32BE(adler32(data), 7 + data.length);
  return out;
}

/** Bodies up to this size that {@link looksLikeHashes} are written stored. */
const BINARY_STORED_MAX = 16 * 1024;

/**
 * True for bytes that are mostly binary ids — a tree object (20 random
 * bytes per entry) or already-compressed data: NUL bytes and at least a
 * quarter of the first 4 KiB at or above 0x80 (text and JSON have neither).
 * Deflate level 1 gains about a fifth on such a tree, and deflating the one
 * tree a commit changes cost 100-300 µs of the commit in the profile (zlib
 * sets up 256 KiB of state per call); `git gc` recompresses.
 */
function looksLikeHashes(data: Uint8Array): boolean {
  if (data.length > BINARY_STORED_MAX) return false;
  const end = Math.min(data.length, 4096);
  let high = 0;
  let nul = 0;
  for (let i = 0; i < end; i++) {
    const byte = data[i]!;
    if (byte >= 0x80) high++;
    else if (byte === 0) nul++;
  }
  return nul > 0 && high * 4 >= end;
}

/**
 * Deflates an object's bytes: one stored block up to {@link STORED_MAX}
 * bytes, and for binary ids up to 16 KiB ({@link looksLikeHashes}); for a
 * buffer {@link inflateObject} returned, the stream it came from; else zlib
 * at `level`, with a window no larger than the data needs (the same bytes
 * out, less zlib state to set up: 5-15% less time for 1-4 KiB; any
 * inflater reads smaller windows).
 */
export function deflateObject(data: Uint8Array, level: number = constants.Z_BEST_SPEED): Buffer {
  if (data.length <= STORED_MAX) return storedStream(data);
  const source = inflatedFrom.get(data);
  if (source !== undefined) return source;
  if (looksLikeHashes(data)) return storedStream(data);
  // zlib keeps MIN_LOOKAHEAD (262) bytes beyond the window.
  const windowBits = Math.min(15, Math.max(9, Math.ceil(Math.log2(data.length + 262))));
  return deflateSync(data, { level, windowBits });
}

/**
 * The zlib stream each buffer {@link inflateObject} returned came from, so
 * that deflating that same buffer again — a pack merge copying objects from
 * small packs into one — hands back the stream instead of recompressing it
 * (recompressing was 45% of a merge's time). Keyed by identity: buffers read
 * from a repository are read-only by contract; a copy misses and deflates.
 */
const inflatedFrom = new WeakMap<Uint8Array, Buffer>();

/**
 * Inflates a zlib stream (trailing bytes after its end are ignored). A single
 * stored block — what we write for small objects — is unwrapped without zlib.
 */
export function inflateObject(data: Buffer, what: string): Buffer {
  if (data.length >= 11 && data[0] === 0x78 && data[1] === 0x01 && data[2] === 0x01) {
    const length = data.readUInt16LE(3);
    if ((length ^ 0xffff) === data.readUInt16LE(5) && data.length >= length + 11) {
      if (adler32(data, 7, 7 + length) !== data.readUInt32BE(7 + length)) throw corrupt(`${what} fails its zlib checksum`);
      const view = data.subarray(7, 7 + length);
      // A view into a much larger read (a whole small pack) would keep all of it alive with the object: copy.
      const body = data.buffer.byteLength > 2 * length + 64 ? Buffer.from(view) : view;
      if (length > STORED_MAX) inflatedFrom.set(body, Buffer.from(data.subarray(0, length + 11)));
      return body;
    }
  }
  let inflated: { buffer: Buffer; engine: { bytesWritten: number } };
  try {
    inflated = inflateSync(data, { info: true }) as unknown as typeof inflated;
  } catch (error) {
    throw corrupt(`${what} does not inflate: ${(error as Error).message}`, error);
  }
  if (inflated.buffer.length > STORED_MAX) {
    // A copy of just the stream: a view would keep the whole read buffer (up to a small pack) alive with the object.
    inflatedFrom.set(inflated.buffer, Buffer.from(data.subarray(0, inflated.engine.bytesWritten)));
  }
  return inflated.buffer;
}
