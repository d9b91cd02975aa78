import { closeSync, openSync, readSync, realpathSync, statSync, type Stats } from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { errnoOf, nothingThere } from "./errno.js";
import { isDotGitName } from "./keyPaths.js";

/**
 * Whether a file store's base would put its files into a Git repository's
 * own files: the rule for the base, as `isDotGitName` is for keys' segments
 * (docs/fs.md, *Git repositories*).
 */

/** HEAD as Git validates it: a symbolic ref into refs/, or an object id (SHA-1 or SHA-256). */
const HEAD_CONTENT = /^(?:ref:\s*refs\/|[0-9a-f]{40}(?:[0-9a-f]{24})?\s*$)/;

/** stat, following links; undefined for a path that holds nothing (or is too long to name anything: a base not made yet may be). */
function statOf(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if (nothingThere(error) || errnoOf(error) === "ENAMETOOLONG") return undefined;
    throw error;
  }
}

/** The first bytes of a file, as text. */
function headOf(path: string): string {
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.alloc(128);
    return buffer.toString("latin1", 0, readSync(fd, buffer, 0, buffer.length, 0));
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether `dir` is a Git directory as Git itself decides (setup.c,
 * `is_git_directory`): a valid HEAD file, an `objects` and a `refs`
 * directory. A bare repository is one; so is any `.git` directory.
 */
function isGitDirectory(dir: string): boolean {
  if (!statOf(join(dir, "objects"))?.isDirectory() || !statOf(join(dir, "refs"))?.isDirectory()) return false;
  const head = join(dir, "HEAD");
  return statOf(head)?.isFile() === true && HEAD_CONTENT.test(headOf(head));
}

/**
 * The real path `path` has, or will have once made: the real path of its
 * nearest existing ancestor, then the rest as written (`path` is absolute
 * and normalized, so the rest holds no `..` and, not existing, no link).
 */
export function plannedRealPath(path: string): string {
  const missing: string[] = [];
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      return join(realpathSync.native(dir), ...missing.reverse());
    } catch (error) {
      if (errnoOf(error) !== "ENOENT" || dirname(dir) === dir) throw error;
      missing.push(basename(dir));
    }
  }
}

/**
 * Why a real path is no place for a file store's base, or undefined: it is
 * or lies inside a `.git` directory (any segment Git would take for `.git`,
 * by the rule keys follow), or it is a Git directory or lies below one (a
 * bare repository: writing `config` or `hooks/pre-commit` there rewrites it).
 * Work: three stats per ancestor, at open.
 */
export function gitDirectoryProblem(realPath: string): string | undefined {
  if (realPath.split(sep).some(isDotGitName)) return "it is or lies inside a .git directory";
  for (let dir = realPath; ; dir = dirname(dir)) {
    if (isGitDirectory(dir)) return dir === realPath ? "it is a Git directory (a bare repository)" : `it lies inside the Git directory ${dir}`;
    if (dirname(dir) === dir) return undefined;
  }
}
