import { isUtf8 } from "node:buffer";
import { corrupt } from "./errors.js";
import type { ObjectId } from "./objectId.js";

/** Entry modes as Git writes them in trees (a tree is `40000`, without the leading zero). */
export const TreeMode = {
  file: "100644",
  executable: "100755",
  symlink: "120000",
  tree: "40000",
  submodule: "160000",
} as const;

/** One entry of a tree. */
export interface TreeEntry {
  /** The mode as written in the tree (see {@link TreeMode}); kept verbatim for exact round trips. */
  mode: string;
  /** The entry's name, decoded as UTF-8. */
  name: string;
  id: ObjectId;
  /** The name's bytes, set only when they are not valid UTF-8 (so `name` could not carry them). */
  rawName?: Buffer;
}

const SLASH = 0x2f;

/** True for a tree entry (mode `40000`; `040000` accepted). */
export function isTreeMode(mode: string): boolean {
  return mode === "40000" || mode === "040000";
}

/** Parses a tree body into its entries, in stored order. */
export function decodeTree(body: Buffer): TreeEntry[] {
  const entries: TreeEntry[] = [];
  let at = 0;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    const nul = space < 0 ? -1 : body.indexOf(0, space + 1);
    if (space < 0 || nul < 0 || nul + 21 > body.length) throw corrupt("Truncated tree entry");
    const mode = body.toString("latin1", at, space);
    const entry: TreeEntry = { mode, name: body.toString("utf8", space + 1, nul), id: body.toString("hex", nul + 1, nul + 21) };
    if (!isUtf8(body.subarray(space + 1, nul))) entry.rawName = Buffer.from(body.subarray(space + 1, nul));
    entries.push(entry);
    at = nul + 21;
  }
  return entries;
}

interface Named {
  entry: TreeEntry;
  bytes: Buffer;
  dir: boolean;
}

/**
 * Git's tree order (`base_name_compare`): bytewise on names, where a tree's
 * name compares as if it ended in `/`.
 */
function compareNamed(a: Named, b: Named): number {
  const len = Math.min(a.bytes.length, b.bytes.length);
  const common = a.bytes.compare(b.bytes, 0, len, 0, len);
  if (common !== 0) return common;
  const ca = a.bytes.length > len ? (a.bytes[len] as number) : a.dir ? SLASH : 0;
  const cb = b.bytes.length > len ? (b.bytes[len] as number) : b.dir ? SLASH : 0;
  return ca - cb;
}

/** The bytes of an entry's name, refusing names Git cannot store. */
function nameBytes(entry: TreeEntry): Buffer {
  const bytes = entry.rawName ?? Buffer.from(entry.name, "utf8");
  if (bytes.length === 0 || bytes.includes(0) || bytes.includes(SLASH)) {
    throw corrupt(`Invalid tree entry name: ${JSON.stringify(entry.name)}`);
  }
  return bytes;
}

/**
 * Encodes entries as a tree body, sorted in Git's order (the input order
 * does not matter). Duplicate names are refused.
 */
export function encodeTree(entries: readonly TreeEntry[]): Buffer {
  const named: Named[] = entries.map((entry) => ({ entry, bytes: nameBytes(entry), dir: isTreeMode(entry.mode) }));
  named.sort(compareNamed);
  let size = 0;
  for (const n of named) size += n.entry.mode.length + n.bytes.length + 22;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < named.length; i++) {
    const { entry, bytes } = named[i] as Named;
    if (i > 0 && (named[i - 1] as Named).bytes.equals(bytes)) throw corrupt(`Duplicate tree entry: ${JSON.stringify(entry.name)}`);
    at += out.write(entry.mode, at, "latin1");
    out[at++] = 0x20;
    at += bytes.copy(out, at);
    out[at++] = 0;
    if (out.write(entry.id, at, "hex") !== 20) throw corrupt(`Invalid object id in tree entry: ${entry.id}`);
    at += 20;
  }
  return out;
}
