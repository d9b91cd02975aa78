import { createHash } from "node:crypto";
import { gitError } from "../errors.js";

/**
 * How stowage keys become Git names, both ways. Two spellings share one
 * escaping core (`%XX`, uppercase hex of an ASCII byte; `%uXXXX` for a lone
 * UTF-16 surrogate, which UTF-8 cannot carry; paired surrogates kept):
 *
 * - ref paths ({@link keyPath}), for git-refs, git-notes and git-objects:
 *   everything a ref name forbids is escaped;
 * - tree entry names ({@link encodeKeyName}), for the `git` driver: only
 *   `%` and what Git's fsck treats specially, so plain keys are plain paths.
 *
 * Both layouts are documented (docs/git-refs.md, docs/git.md) and must not
 * change: each decoder accepts only the exact spelling its encoder writes.
 */

const PERCENT = 37;

function hex(code: number, width: number): string {
  return code.toString(16).toUpperCase().padStart(width, "0");
}

/** Escapes the characters `escaped(i)` names as `%XX`, and lone surrogates as `%uXXXX`; keeps paired surrogates. */
function escapeText(text: string, escaped: (index: number) => boolean): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      out += text[i]! + text[i + 1]!;
      i++;
    } else if (code >= 0xd800 && code <= 0xdfff) {
      out += `%u${hex(code, 4)}`;
    } else {
      out += escaped(i) ? `%${hex(code, 2)}` : text[i]!;
    }
  }
  return out;
}

/** Undoes every `%XX` and `%uXXXX` (uppercase hex); `undefined` for a `%` that starts neither. */
function unescapeText(text: string): string | undefined {
  if (!text.includes("%")) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    if (char !== "%") {
      out += char;
      continue;
    }
    const wide = text[i + 1] === "u";
    const digits = wide ? text.slice(i + 2, i + 6) : text.slice(i + 1, i + 3);
    if (!(wide ? /^[0-9A-F]{4}$/ : /^[0-9A-F]{2}$/).test(digits)) return undefined;
    out += String.fromCharCode(parseInt(digits, 16));
    i += wide ? 5 : 2;
  }
  return out;
}

// --- ref paths: git-refs, git-notes, git-objects ------------------------------

/**
 * A reversible mapping of stowage keys onto Git names (ref names below a
 * prefix, tree paths), shared by the git-refs, git-notes and git-objects
 * drivers. Keys' `:` separators become `/`; each segment keeps every
 * character Git allows and escapes the rest as `%XX` (uppercase hex of the
 * ASCII byte) or, for a lone UTF-16 surrogate, `%uXXXX`. The last component
 * carries the leaf mark `%`, which no encoded segment ends with (every `%`
 * the encoder writes starts an escape), so `a` (`a%`) and `a:b` (`a/b%`)
 * never collide as file and directory.
 *
 * Escaped: `%`; control characters, DEL, space and `~ ^ : ? * [ \ /`; a `.`
 * that starts a segment or follows a `.`; a `{` after `@`; the `.` of a
 * trailing `.lock`. A `:` is a separator only between two non-empty
 * segments; others (leading, trailing, doubled) stay in a segment as `%3A`.
 *
 * Reversible and collision-free: {@link decodeKeySegment} undoes each escape
 * and {@link pathKey} accepts only the exact spelling {@link keyPath} writes,
 * so the mapping is a bijection between non-empty keys and the paths read
 * as keys (property-tested in test/git/store/keyEncoding.test.ts).
 */

/** Appended to the last component: marks a leaf (a key's value) as opposed to a directory. */
const LEAF_MARK = "%";

/** Longest encoded component in bytes: a file name of 255 bytes, minus `.lock`. */
export const MAX_COMPONENT_BYTES = 250;

// Characters Git forbids anywhere in a ref name, plus `%` (the escape) and `/` (the separator).
// eslint-disable-next-line no-control-regex
const ALWAYS_ESCAPED = /[\x00-\x20\x7f~^:?*[\\/%]/;

/** Encodes one key segment as a ref/tree name component (without the leaf mark). */
function encodeKeySegment(segment: string): string {
  const lockAt = segment.endsWith(".lock") ? segment.length - 5 : -1;
  return escapeText(segment, (i) => {
    const char = segment[i] as string;
    return ALWAYS_ESCAPED.test(char) || (char === "." && (i === 0 || i === lockAt || segment[i - 1] === ".")) || (char === "{" && segment[i - 1] === "@");
  });
}

/** Decodes a component written by {@link encodeKeySegment}; `undefined` when it is not one. */
function decodeKeySegment(component: string): string | undefined {
  return unescapeText(component);
}

/** Splits a key into segments at the `:` that sit between two non-empty segments. */
function splitKey(key: string): string[] {
  const segments: string[] = [];
  let current = "";
  for (let i = 0; i < key.length; i++) {
    const char = key[i] as string;
    if (char === ":" && current !== "" && i + 1 < key.length && key[i + 1] !== ":") {
      segments.push(current);
      current = "";
    } else {
      current += char;
    }
  }
  segments.push(current);
  return segments;
}

/**
 * The name components of a key: encoded segments, the last with the leaf
 * mark. `E_INVALID_KEY` for the empty key, and when a component would exceed
 * a file name's length (the key is past what a ref, a file, can name).
 */
function keyComponents(key: string): string[] {
  // The empty key would be the bare leaf mark, which names no key (pathKey): refused, not written unreadable.
  if (key === "") throw gitError("E_INVALID_KEY", "The empty key names no ref or path");
  const components = unchecked(key);
  for (const component of components) {
    if (component.length > MAX_COMPONENT_BYTES / 3 && Buffer.byteLength(component) > MAX_COMPONENT_BYTES) {
      throw gitError("E_INVALID_KEY", `A key segment encodes to more than ${MAX_COMPONENT_BYTES} bytes: ${JSON.stringify(key.slice(0, 80))}…`);
    }
  }
  return components;
}

function unchecked(key: string): string[] {
  const components = splitKey(key).map(encodeKeySegment);
  components[components.length - 1] += LEAF_MARK;
  return components;
}

/** The `/`-joined path of a key (`user:1` → `user/1%`). */
export function keyPath(key: string): string {
  return keyComponents(key).join("/");
}

/**
 * The key a path names, or `undefined` when the path is not exactly what
 * {@link keyPath} writes for some key (a foreign ref or tree entry).
 */
export function pathKey(path: string): string | undefined {
  if (!path.endsWith(LEAF_MARK)) return undefined;
  const components = path.slice(0, -LEAF_MARK.length).split("/");
  const segments: string[] = [];
  for (const component of components) {
    const segment = decodeKeySegment(component);
    if (segment === undefined) return undefined;
    segments.push(segment);
  }
  const key = segments.join(":");
  if (key === "") return undefined;
  // Only the canonical spelling names a key: anything else would read a value the key's own name does not hold.
  return unchecked(key).join("/") === path ? key : undefined;
}

/**
 * The directory path (with a trailing `/`) under which every key starting
 * with `base` (a normalized base such as `user:`) lives; `""` (the root)
 * for `""` and bases not ending in `:`. Filter the keys found: `user::x`
 * (empty segment) lives outside `user/`, and callers should not rely on it.
 */
export function basePath(base: string): string {
  if (!base.endsWith(":") || base === ":") return "";
  const trimmed = base.slice(0, -1);
  return `${splitKey(trimmed).map(encodeKeySegment).join("/")}/`;
}

// --- tree entry names: the git driver ----------------------------------------

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

/** The tree entry name of one key segment. */
export function encodeKeyName(segment: string): string {
  const first = specialStart(segment);
  return escapeText(segment, (i) => (i === 0 && first) || segment.charCodeAt(i) === PERCENT);
}

/**
 * The key segment a tree entry name stands for, or undefined when the name
 * is not exactly what {@link encodeKeyName} writes for some segment: the
 * layout's own names, and names written by someone else (`100%`, `.gitignore`)
 * — reading those as keys would list keys whose own names read nothing.
 */
export function decodeKeyName(name: string): string | undefined {
  const segment = unescapeText(name);
  return segment !== undefined && segment !== "" && encodeKeyName(segment) === name ? segment : undefined;
}

/** The entry names of a normalized key (`user:1` → `["user", "1"]`). */
export function keyToNames(key: string): string[] {
  return key.split(":").map(encodeKeyName);
}
