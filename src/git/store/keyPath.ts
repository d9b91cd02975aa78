import { createHash } from "node:crypto";

/**
 * The reversible mapping between stowage key segments and Git tree entry
 * names used by the `git` driver (documented in docs/git.md):
 *
 * - `%` is written `%25`; a lone UTF-16 surrogate (which UTF-8 cannot carry) `%uXXXX`.
 * - A segment Git refuses or treats specially gets its first character
 *   escaped: `.`, `..` and anything starting with `.git` once case and
 *   non-ASCII characters are ignored (HFS/NTFS aliases of `.git`,
 *   `.gitmodules`, `.gitattributes`) → `%2E…`; and NTFS short names of those
 *   (`git~1`, `gitmod~1`, `gi7eba~1`: a segment starting with `gi` that holds
 *   a `~`) → `%67…`/`%47…`.
 * - Every other character is kept, so plain keys are plain paths.
 *
 * Why the layout's own names never collide with a key's: every `%` the
 * encoder writes is one of the escapes above, so it is followed by `2`, `4`,
 * `6` or `u`. The layout's names ({@link VALUE_ENTRY} `%value`, buckets
 * `%xNN`) put `v` or `x` after their `%` — neither a hex digit nor `u` in
 * either case — so no encoded segment equals one, even on a file system that
 * folds case. (Buckets were `%NN` before 0.x: `%25`, an escaped `%`, was both.)
 *
 * Why the encoding is reversible and collision-free: {@link decodeKeyName}
 * undoes each escape, so decode(encode(s)) = s for every segment, which
 * makes encode injective; and decode accepts only names that encode back to
 * themselves, so every name read as a key is the one name that key is
 * written under.
 */

/** The entry holding the value of a key that also has keys below it (`a` when `a:b` exists). */
export const VALUE_ENTRY = "%value";

/**
 * Bucket levels a directory may have: a table this deep never fans out, and
 * readers take a deeper bucket-like tree (which only someone else could
 * write) for a plain table, so every walk through buckets stays this short.
 */
export const MAX_BUCKET_LEVEL = 19;

/** Fan-out bucket names: this prefix and two lower-case hex digits of the entry name's SHA-1. */
const BUCKET_PREFIX = "%x";

const PERCENT = 37;

/** True for the names of fan-out buckets: `%x` and two lower-case hex digits. */
export function isBucketName(name: string): boolean {
  return name.length === 4 && name.startsWith(BUCKET_PREFIX) && /^%x[0-9a-f]{2}$/.test(name);
}

/** The SHA-1 (hex) of an entry name, whose digit pairs pick its bucket at each fan-out level. */
export function nameHash(name: string): string {
  return createHash("sha1").update(name, "utf8").digest("hex");
}

/** The bucket an entry whose name hashes to `hash` goes to at fan-out `level`. */
export function bucketName(hash: string, level: number): string {
  return BUCKET_PREFIX + hash.slice(level * 2, level * 2 + 2);
}

/** True when a segment starts like `.git` for Git's fsck once case and ignorable characters are set aside. */
function looksLikeDotGit(segment: string): boolean {
  if (segment === "." || segment === "..") return true;
  // eslint-disable-next-line no-control-regex
  return segment.replace(/[^\x00-\x7f]/g, "").toLowerCase().startsWith(".git");
}

/** True when the first character must be escaped: `.`/`..`/`.git…` aliases and NTFS short names of them. */
function specialStart(segment: string): boolean {
  const first = segment.charCodeAt(0);
  if (first === 46) return looksLikeDotGit(segment);
  return (first === 103 || first === 71) && /^gi/i.test(segment) && segment.includes("~");
}

/** True when a segment holds `%` or a UTF-16 surrogate (paired or not). */
function hasEscapable(segment: string): boolean {
  for (let i = 0; i < segment.length; i++) {
    const code = segment.charCodeAt(i);
    if (code === PERCENT || (code >= 0xd800 && code <= 0xdfff)) return true;
  }
  return false;
}

function hex(code: number, width: number): string {
  return code.toString(16).toUpperCase().padStart(width, "0");
}

/** Escapes `%` and lone surrogates (paired ones are kept: they are valid UTF-8). */
function escapeChars(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === PERCENT) {
      out += "%25";
    } else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      out += text[i]! + text[i + 1]!;
      i++;
    } else if (code >= 0xd800 && code <= 0xdfff) {
      out += `%u${hex(code, 4)}`;
    } else {
      out += text[i]!;
    }
  }
  return out;
}

/** The tree entry name of one key segment. */
export function encodeKeyName(segment: string): string {
  if (specialStart(segment)) return `%${hex(segment.charCodeAt(0), 2)}${escapeChars(segment.slice(1))}`;
  return hasEscapable(segment) ? escapeChars(segment) : segment;
}

/**
 * The key segment a tree entry name stands for, or undefined when the name
 * is not exactly what {@link encodeKeyName} writes for some segment: the
 * layout's own names, and names written by someone else (`100%`, `.gitignore`)
 * — reading those as keys would list keys whose own names read nothing.
 */
export function decodeKeyName(name: string): string | undefined {
  const segment = name.includes("%")
    ? name.replace(/%(25|2E|47|67)|%u(D[89A-F][0-9A-F]{2})/g, (_match, byte: string | undefined, unit: string | undefined) =>
        String.fromCharCode(parseInt(byte ?? unit ?? "", 16)),
      )
    : name;
  return segment !== "" && encodeKeyName(segment) === name ? segment : undefined;
}

/** The entry names of a normalized key (`user:1` → `["user", "1"]`). */
export function keyToNames(key: string): string[] {
  return key.split(":").map(encodeKeyName);
}
