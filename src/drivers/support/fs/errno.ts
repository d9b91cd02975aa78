/** Node system errors as the file engine reads them. */

/** Errors that mean a path holds nothing: missing, below a file, or a symlink loop. */
const NOTHING_THERE = new Set(["ENOENT", "ENOTDIR", "ELOOP"]);

/** The errno code of a Node system error (ENOENT, EEXIST, ...), if it is one. */
export function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException)?.code;
}

/** Whether a failure means the path holds nothing: missing, below a file, or a symlink loop. */
export function nothingThere(error: unknown): boolean {
  return NOTHING_THERE.has(errnoOf(error) ?? "");
}
