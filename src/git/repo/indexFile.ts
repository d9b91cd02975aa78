import { readFileSync } from "node:fs";
import { corrupt, ioError, isErrno } from "../errors.js";
import type { ObjectId } from "../objects/objectId.js";

const SIGNATURE = 0x44495243; // "DIRC"
const STAT_BYTES = 40;
const EXTENDED = 0x4000;
const NAME_MASK = 0xfff;

/**
 * The object ids a worktree's index file (`.git/index`, format versions 2-4)
 * refers to: staged blobs and the trees of its cache-tree extension. Git's
 * prune keeps these although no commit reaches them, and so must stowage's:
 * a file `git add`ed weeks ago and never committed is still the user's data.
 * No index file is an empty list.
 */
export function indexObjectIds(path: string): ObjectId[] {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return [];
    throw ioError(`Cannot read the index ${path}`, error);
  }
  if (data.length < 12 || data.readUInt32BE(0) !== SIGNATURE) throw corrupt(`${path} is not a git index`);
  const version = data.readUInt32BE(4);
  if (version < 2 || version > 4) throw corrupt(`${path}: index version ${version} is not supported`);
  const ids: ObjectId[] = [];
  let offset = 12;
  for (let count = data.readUInt32BE(8); count > 0; count--) {
    offset = readEntry(data, offset, version, ids, path);
  }
  // Extensions follow the entries; the 20-byte checksum ends the file.
  while (offset + 8 <= data.length - 20) {
    const name = data.toString("latin1", offset, offset + 4);
    const size = data.readUInt32BE(offset + 4);
    if (name === "TREE") readCacheTree(data.subarray(offset + 8, offset + 8 + size), ids);
    offset += 8 + size;
  }
  return ids;
}

/** Reads one entry's id and returns the offset of the next entry. */
function readEntry(data: Buffer, start: number, version: number, ids: ObjectId[], path: string): number {
  const flagsAt = start + STAT_BYTES + 20;
  if (flagsAt + 2 > data.length) throw corrupt(`${path}: truncated index entry`);
  ids.push(data.toString("hex", start + STAT_BYTES, flagsAt));
  const flags = data.readUInt16BE(flagsAt);
  let offset = flagsAt + 2 + (version >= 3 && (flags & EXTENDED) !== 0 ? 2 : 0);
  if (version === 4) {
    // A varint (how much of the previous path to drop), then the NUL-terminated rest of the path; no padding.
    while ((data[offset]! & 0x80) !== 0) offset++;
    const end = data.indexOf(0, offset + 1);
    if (end === -1) throw corrupt(`${path}: truncated index entry`);
    return end + 1;
  }
  const nameLength = flags & NAME_MASK;
  const nameEnd = nameLength < NAME_MASK ? offset + nameLength : data.indexOf(0, offset);
  if (nameEnd === -1 || nameEnd > data.length) throw corrupt(`${path}: truncated index entry`);
  // Entries are NUL-padded to a multiple of 8 bytes from their start, with at least one NUL.
  return start + ((nameEnd - start + 8) & ~7);
}

/** The cache-tree extension: `path NUL count SP subtrees LF` then the tree id when count >= 0. */
function readCacheTree(data: Buffer, ids: ObjectId[]): void {
  let offset = 0;
  while (offset < data.length) {
    const pathEnd = data.indexOf(0, offset);
    const lineEnd = data.indexOf(0x0a, pathEnd);
    if (pathEnd === -1 || lineEnd === -1) return;
    const [count] = data.toString("latin1", pathEnd + 1, lineEnd).split(" ");
    offset = lineEnd + 1;
    if (Number(count) >= 0) {
      ids.push(data.toString("hex", offset, offset + 20));
      offset += 20;
    }
  }
}
