import { corrupt } from "../errors.js";

/** Reads a delta header's little-endian base-128 size at `at`; returns [value, next position]. */
function readSize(delta: Buffer, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  let byte: number;
  do {
    if (at >= delta.length) throw corrupt("Truncated delta header");
    byte = delta[at++]!;
    value += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte & 0x80);
  return [value, at];
}

/**
 * Applies a Git delta to its base: after the base and result sizes come
 * instructions, either "copy size bytes from base offset" (high bit set; the
 * low 7 bits say which offset/size bytes follow) or "insert the next n bytes".
 */
export function applyDelta(base: Buffer, delta: Buffer): Buffer {
  const [baseSize, afterBase] = readSize(delta, 0);
  if (baseSize !== base.length) throw corrupt(`Delta expects a base of ${baseSize} bytes, found ${base.length}`);
  const [resultSize, afterSizes] = readSize(delta, afterBase);
  let at = afterSizes;
  const out = Buffer.allocUnsafe(resultSize);
  let written = 0;
  while (at < delta.length) {
    const op = delta[at++]!;
    if (op & 0x80) {
      let offset = 0;
      let size = 0;
      if (op & 0x01) offset = delta[at++]!;
      if (op & 0x02) offset |= delta[at++]! << 8;
      if (op & 0x04) offset |= delta[at++]! << 16;
      if (op & 0x08) offset += delta[at++]! * 0x1000000;
      if (op & 0x10) size = delta[at++]!;
      if (op & 0x20) size |= delta[at++]! << 8;
      if (op & 0x40) size |= delta[at++]! << 16;
      if (size === 0) size = 0x10000;
      if (at > delta.length || offset + size > base.length || written + size > resultSize) throw corrupt("Delta copy out of range");
      written += base.copy(out, written, offset, offset + size);
    } else if (op !== 0) {
      if (at + op > delta.length || written + op > resultSize) throw corrupt("Delta insert out of range");
      written += delta.copy(out, written, at, at + op);
      at += op;
    } else {
      throw corrupt("Delta has a reserved opcode 0");
    }
  }
  if (written !== resultSize) throw corrupt(`Delta produced ${written} bytes, expected ${resultSize}`);
  return out;
}
