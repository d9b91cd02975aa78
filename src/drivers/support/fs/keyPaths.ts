import { DEFAULT_KEY_LIMITS, type KeyLimits } from "../../../core/types.js";

/**
 * What a key's segments may be as file names under the fs and fs-lite
 * drivers, and how long keys may get (documented in docs/fs.md, *Key limits*).
 */

/** Temp files of in-flight writes start with this; keys may not. */
export const TEMP_PREFIX = ".stowage-tmp-";

/** The longest file name, in UTF-8 bytes (NAME_MAX on Linux, macOS and Windows). */
const NAME_MAX = 255;

/** The longest path the kernel takes, in bytes, without its closing NUL (Linux PATH_MAX is 4096). */
const PATH_MAX = 4095;

/**
 * Bytes kept free at the end of every key's path: a temp file's name (at most
 * 45 bytes: prefix, pid, thread, tag, counter) stands beside the key's file,
 * and the meta sidecar `key$` is one byte longer than the key.
 */
const PATH_ROOM = 64;

/**
 * The key limits under a base whose real path has `baseBytes` bytes: key,
 * separator and room must fit in PATH_MAX; a segment takes at least two bytes
 * with its separator, and the core's default bounds the depth.
 */
export function fileKeyLimits(baseBytes: number): KeyLimits {
  const bytes = Math.max(0, PATH_MAX - baseBytes - 1 - PATH_ROOM);
  return { bytes, segments: Math.min(DEFAULT_KEY_LIMITS.segments, Math.floor((bytes + 1) / 2)) };
}

/**
 * The most bytes a segment may have: NAME_MAX, less one for the last segment
 * of a key that is not itself a meta sidecar (ending `$`), so that its
 * sidecar's name fits too.
 */
function segmentLimit(segment: string, last: boolean): number {
  return last && !segment.endsWith("$") ? NAME_MAX - 1 : NAME_MAX;
}

/**
 * True when a segment names a `.git` directory on some file system, as Git
 * itself refuses such paths: case-insensitively, with the characters HFS+
 * ignores (all non-ASCII ones are set aside here, as in the git driver's
 * key paths) and the trailing dots and spaces NTFS drops, and NTFS's short
 * name `git~1`.
 */
export function isDotGitName(segment: string): boolean {
  if (segment.length < 4) return false;
  // Only non-ASCII characters are dropped, so the first ASCII one must start `.git` or `git~1`.
  const first = segment.charCodeAt(0);
  if (first < 0x80 && first !== 46 && first !== 103 && first !== 71) return false;
  // eslint-disable-next-line no-control-regex
  const name = segment.replace(/[^\x00-\x7f]/g, "").toLowerCase().replace(/[. ]+$/, "");
  return name === ".git" || name === "git~1";
}

/**
 * Why a segment cannot be a file name of this store, or undefined when it can.
 * Names that keys never produce (`:`, `\`, `?`, which key normalization
 * consumes) and lone surrogates (UTF-8 cannot carry them: two keys would
 * share one file) are refused too, so that every listed name reads back.
 * One pass over the characters: this runs for every segment of every key.
 */
export function segmentProblem(segment: string, last: boolean): string | undefined {
  if (segment === "." || segment === "..") return "a `.` or `..` segment";
  let bytes = 0;
  for (let i = 0; i < segment.length; i++) {
    const code = segment.charCodeAt(i);
    if (code < 0x80) {
      if (code === 0 || code === 47 || code === 58 || code === 63 || code === 92) return "a NUL, `/`, `:`, `?` or `\\` in a file name";
      bytes += 1;
    } else if (code < 0x800) {
      bytes += 2;
    } else if (code < 0xd800 || code > 0xdfff) {
      bytes += 3;
    } else if (code <= 0xdbff && (segment.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else {
      return "a lone UTF-16 surrogate (not valid UTF-8)";
    }
  }
  if (segment.startsWith(TEMP_PREFIX)) return `a segment starting ${TEMP_PREFIX} (reserved for temp files)`;
  if (isDotGitName(segment)) return "a `.git` segment (a Git repository's own files)";
  const limit = segmentLimit(segment, last);
  return bytes > limit ? `a segment longer than ${limit} bytes` : undefined;
}
