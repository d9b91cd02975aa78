import { gitError } from "../errors.js";

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
 * as keys (property-tested in test/git/keyEncoding.test.ts).
 */

/** Appended to the last component: marks a leaf (a key's value) as opposed to a directory. */
export const LEAF_MARK = "%";

/** Longest encoded component in bytes: a file name of 255 bytes, minus `.lock`. */
export const MAX_COMPONENT_BYTES = 250;

// Characters Git forbids anywhere in a ref name, plus `%` (the escape) and `/` (the separator).
// eslint-disable-next-line no-control-regex
const ALWAYS_ESCAPED = /[\x00-\x20\x7f~^:?*[\\/%]/;

function hex(code: number, width: number): string {
  return code.toString(16).toUpperCase().padStart(width, "0");
}

/** Encodes one key segment as a ref/tree name component (without the leaf mark). */
export function encodeKeySegment(segment: string): string {
  let out = "";
  const lockAt = segment.endsWith(".lock") ? segment.length - 5 : -1;
  for (let i = 0; i < segment.length; i++) {
    const char = segment[i] as string;
    const code = segment.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = segment.charCodeAt(i + 1);
      if (code <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        out += char + (segment[i + 1] as string);
        i++;
      } else {
        out += `%u${hex(code, 4)}`;
      }
    } else if (ALWAYS_ESCAPED.test(char) || (char === "." && (i === 0 || i === lockAt || segment[i - 1] === ".")) || (char === "{" && segment[i - 1] === "@")) {
      out += `%${hex(code, 2)}`;
    } else {
      out += char;
    }
  }
  return out;
}

/** Decodes a component written by {@link encodeKeySegment}; `undefined` when it is not one. */
export function decodeKeySegment(component: string): string | undefined {
  let out = "";
  for (let i = 0; i < component.length; i++) {
    const char = component[i] as string;
    if (char !== "%") {
      out += char;
      continue;
    }
    const wide = component[i + 1] === "u";
    const digits = wide ? component.slice(i + 2, i + 6) : component.slice(i + 1, i + 3);
    if (!(wide ? /^[0-9A-F]{4}$/ : /^[0-9A-F]{2}$/).test(digits)) return undefined;
    out += String.fromCharCode(parseInt(digits, 16));
    i += wide ? 5 : 2;
  }
  return out;
}

/** Splits a key into segments at the `:` that sit between two non-empty segments. */
export function splitKey(key: string): string[] {
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
export function keyComponents(key: string): string[] {
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
