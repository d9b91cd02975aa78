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
 *   a `~`) → `%67…`.
 * - Every other character is kept, so plain keys are plain paths.
 *
 * An encoded name therefore only ever holds `%` followed by two upper-case
 * hex digits or by `u` and four: names with any other `%` sequence are free
 * for the layout's own entries ({@link VALUE_ENTRY}, fan-out buckets).
 */

/** The entry holding the value of a key that also has keys below it (`a` when `a:b` exists). */
export const VALUE_ENTRY = "%value";

const PERCENT = 37;

/** True for the names of fan-out buckets: `%` and two lower-case hex digits. */
export function isBucketName(name: string): boolean {
  return name.length === 3 && name.charCodeAt(0) === PERCENT && /^%[0-9a-f]{2}$/.test(name);
}

/** True when a segment starts like `.git` for Git's fsck once case and ignorable characters are set aside. */
function looksLikeDotGit(segment: string): boolean {
  if (segment === "." || segment === "..") return true;
  // eslint-disable-next-line no-control-regex
  return segment.replace(/[^\x00-\x7f]/g, "").toLowerCase().startsWith(".git");
}

/** True when a segment needs escaping beyond `%`: Git special names and lone surrogates. */
function needsEscape(segment: string): boolean {
  const first = segment.charCodeAt(0);
  if (first === 46 && looksLikeDotGit(segment)) return true;
  if ((first === 103 || first === 71) && /^gi/i.test(segment) && segment.includes("~")) return true;
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
  if (!needsEscape(segment)) return segment;
  const first = segment.charCodeAt(0);
  const special = (first === 46 && looksLikeDotGit(segment)) || ((first === 103 || first === 71) && /^gi/i.test(segment) && segment.includes("~"));
  return special ? `%${hex(first, 2)}${escapeChars(segment.slice(1))}` : escapeChars(segment);
}

/**
 * The key segment of a tree entry name. Names the encoding cannot produce
 * (written by someone else) read as themselves; only the escapes it emits
 * are decoded.
 */
export function decodeKeyName(name: string): string {
  if (!name.includes("%")) return name;
  return name.replace(/%(25|2E|47|67)|%u(D[89A-F][0-9A-F]{2})/g, (_match, byte: string | undefined, unit: string | undefined) =>
    String.fromCharCode(parseInt(byte ?? unit ?? "", 16)),
  );
}

/** The entry names of a normalized key (`user:1` → `["user", "1"]`). */
export function keyToNames(key: string): string[] {
  return key.split(":").map(encodeKeyName);
}
