import { isUtf8 } from "node:buffer";
import { corrupt } from "../errors.js";
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

/**
 * Parses a tree body into its entries, in stored order.
 * @throws StorageError `E_CORRUPT` for a truncated entry
 */
export function decodeTree(body: Buffer): TreeEntry[] {
  const entries: TreeEntry[] = [];
  const end = body.length;
  let at = 0;
  while (at < end) {
    const space = body.indexOf(0x20, at);
    // Scan the name for its NUL, noting whether any byte is non-ASCII.
    let nul = space + 1;
    let high = 0;
    while (nul < end && body[nul] !== 0) high |= body[nul++]!;
    if (space < 0 || nul + 21 > end) throw corrupt("Truncated tree entry");
    const entry: TreeEntry = {
      mode: body.toString("latin1", at, space),
      name: body.toString(high < 0x80 ? "latin1" : "utf8", space + 1, nul),
      id: body.toString("hex", nul + 1, nul + 21),
    };
    if (high >= 0x80 && !isUtf8(body.subarray(space + 1, nul))) entry.rawName = Buffer.from(body.subarray(space + 1, nul));
    entries.push(entry);
    at = nul + 21;
  }
  return entries;
}

/** An entry with its sort key: the name followed by `/` for a tree, NUL otherwise. */
interface Keyed {
  entry: TreeEntry;
  key: string;
}

/** True when JS string order (UTF-16 units) may differ from UTF-8 byte order: surrogates and U+E000 and above. */
function needsByteOrder(key: string): boolean {
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) >= 0xd800) return true;
  return false;
}

/**
 * Git's tree order (`base_name_compare`): bytewise on names, where a tree's
 * name compares as if it ended in `/` (and a file's as if it ended in NUL).
 */
function sortKeyed(keyed: Keyed[]): void {
  const bytewise = keyed.some((k) => k.entry.rawName !== undefined || needsByteOrder(k.key));
  if (!bytewise) {
    keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return;
  }
  const bytes = new Map(keyed.map((k) => [k, k.entry.rawName ? Buffer.concat([k.entry.rawName, Buffer.from(k.key.slice(-1))]) : Buffer.from(k.key, "utf8")]));
  keyed.sort((a, b) => Buffer.compare(bytes.get(a) as Buffer, bytes.get(b) as Buffer));
}

/** Refuses names Git cannot store in a tree. */
function checkName(entry: TreeEntry): void {
  const raw = entry.rawName;
  const bad = raw === undefined ? entry.name === "" || /[\0/]/.test(entry.name) : raw.length === 0 || raw.includes(0) || raw.includes(SLASH);
  if (bad) {
    throw corrupt(`Invalid tree entry name: ${JSON.stringify(entry.name)}`);
  }
}

/**
 * Encodes entries as a tree body, sorted in Git's order (the input order
 * does not matter). Duplicate names are refused.
 * @throws StorageError `E_CORRUPT` for a name Git cannot store (empty, holding `/` or NUL), a duplicate name or a bad object id
 */
export function encodeTree(entries: readonly TreeEntry[]): Buffer {
  const keyed: Keyed[] = entries.map((entry) => {
    checkName(entry);
    return { entry, key: entry.name + (isTreeMode(entry.mode) ? "/" : "\0") };
  });
  sortKeyed(keyed);
  let size = 0;
  for (const { entry } of keyed) size += entry.mode.length + (entry.rawName?.length ?? Buffer.byteLength(entry.name)) + 22;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (let i = 0; i < keyed.length; i++) {
    const { entry } = keyed[i] as Keyed;
    if (i > 0 && sameName((keyed[i - 1] as Keyed).entry, entry)) throw corrupt(`Duplicate tree entry: ${JSON.stringify(entry.name)}`);
    at += out.write(entry.mode, at, "latin1");
    out[at++] = 0x20;
    at += entry.rawName === undefined ? out.write(entry.name, at, "utf8") : entry.rawName.copy(out, at);
    out[at++] = 0;
    if (out.write(entry.id, at, "hex") !== 20 || entry.id.length !== 40) throw corrupt(`Invalid object id in tree entry: ${entry.id}`);
    at += 20;
  }
  return out;
}

function sameName(a: TreeEntry, b: TreeEntry): boolean {
  return a.rawName !== undefined || b.rawName !== undefined ? Buffer.from(a.rawName ?? a.name).equals(Buffer.from(b.rawName ?? b.name)) : a.name === b.name;
}
