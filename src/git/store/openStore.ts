import { spawnSync } from "node:child_process";
import { readdirSync, realpathSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { isStorageError, StorageError } from "../../core/errors.js";
import { gitError, ioError, isErrno } from "../errors.js";
import { isValidRefName } from "../refs/refName.js";
import { gitEnv } from "../gitEnv.js";
import { enclosingRepository, realPathOf, Repository, type RepositoryOptions } from "../repo/repository.js";

/** What {@link Repository.init} makes: a directory holding only these is a repository being created (by another process, say). */
const INIT_ENTRIES: ReadonlySet<string> = new Set(["HEAD", "config", "objects", "refs"]);

/**
 * The repository a git driver's `dir` names (docs/git.md, "Where the
 * repository is"): an existing repository is opened (bare, a `.git`
 * directory, or a work tree's top directory); where there is none, a bare
 * repository is created, but only in a new or empty directory outside any
 * repository or ignored by the work tree it lies in. A directory inside a
 * work tree (not ignored) or a git dir, or holding other files, is refused
 * with `E_INVALID_OPTION` before anything is created: a bare repository
 * there would sit among the app's files (and be committed with them).
 */
export function openOrInit(dir: string, options: RepositoryOptions = {}): Repository {
  if (typeof dir !== "string" || dir === "" || dir.includes("\0")) throw gitError("E_INVALID_OPTION", `dir must be a non-empty path without NUL, got ${JSON.stringify(dir)}`);
  try {
    return Repository.open(dir, options);
  } catch (error) {
    if (!isStorageError(error, "E_NOT_FOUND")) throw error;
  }
  checkNewRepositoryDir(resolve(dir));
  return Repository.init(dir, options);
}

function checkNewRepositoryDir(dir: string): void {
  const others = entriesOf(dir).filter((name) => !INIT_ENTRIES.has(name));
  if (others.length > 0) {
    const shown = others.slice(0, 3).map((name) => JSON.stringify(name)).join(", ") + (others.length > 3 ? ", …" : "");
    throw gitError("E_INVALID_OPTION", `${dir} is neither a Git repository nor empty (it holds ${shown}): a new repository is only created in a new or empty directory`);
  }
  const enclosing = enclosingRepository(dirname(dir));
  if (enclosing === undefined) return;
  // A path the work tree ignores (`.stowage/` in .gitignore) is declared not to be one of its files.
  const real = join(realPathOf(dirname(dir)), basename(dir));
  if (enclosing.workTree && isIgnored(enclosing.dir, real)) return;
  const where = enclosing.workTree ? "the work tree of the Git repository" : "the Git directory";
  throw gitError(
    "E_INVALID_OPTION",
    `${dir} lies inside ${where} at ${enclosing.dir}: pass ${enclosing.dir} to store in that repository, a directory outside it${enclosing.workTree ? ", list it in the work tree's .gitignore" : ""}, or create a repository at ${dir} first (git init --bare)`,
  );
}

/**
 * True when stock git says the work tree at `top` ignores the directory
 * `dir` (`git check-ignore`, the trailing `/` matching directory patterns).
 * git missing or failing counts as not ignored: the caller refuses then.
 */
function isIgnored(top: string, dir: string): boolean {
  const run = spawnSync("git", ["-C", top, "check-ignore", "-q", "--", `${dir}/`], { env: gitEnv(), stdio: "ignore", timeout: 10_000 });
  return run.status === 0;
}

/** The names in a directory; none when it does not exist yet. */
function entriesOf(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return [];
    if (isErrno(error, "ENOTDIR")) throw gitError("E_INVALID_OPTION", `${dir} is a file, not a directory for a repository`, error);
    throw ioError(`Cannot read ${dir}`, error);
  }
}

/** Indexes (common dir and ref) a driver of this process holds: see {@link holdIndex}. */
const heldIndexes = new Set<string>();

/**
 * Claims `ref` of the repository for one driver of this process, so a second
 * mount left on the same default index (whose keys it would list and clear)
 * is refused with `E_INVALID_OPTION`. Returns the release, for dispose (once
 * is enough; later calls do nothing).
 */
export function holdIndex(repo: Repository, ref: string, driver: string): () => void {
  const claim = `${realCommonDir(repo)}\0${ref}`;
  if (heldIndexes.has(claim)) {
    throw new StorageError(
      "E_INVALID_OPTION",
      `${ref} of ${repo.commonDir} is already the index of another ${driver} driver of this process: give each mount its own namespace, pass the same ref explicitly to share one index on purpose, or dispose the first`,
      { driver },
    );
  }
  heldIndexes.add(claim);
  let held = true;
  return () => {
    if (held) heldIndexes.delete(claim);
    held = false;
  };
}

function realCommonDir(repo: Repository): string {
  try {
    return realpathSync(repo.commonDir);
  } catch (error) {
    throw ioError(`Cannot resolve ${repo.commonDir}`, error);
  }
}

/**
 * The ref a driver's `ref` and `namespace` options name: `ref` (default
 * `fallback`), then `-<namespace>` when one is given (a separate ref rather
 * than `<ref>/<namespace>`, which Git's D/F rule forbids next to `<ref>`).
 *
 * @throws StorageError `E_INVALID_OPTION` unless both are strings (the namespace not empty) making a valid ref name under `refs/`
 */
export function namespacedRef(options: { ref?: unknown; namespace?: unknown }, fallback: string, driver: string): string {
  const { ref = fallback, namespace } = options;
  const refuse = (why: string) => new StorageError("E_INVALID_OPTION", why, { driver });
  if (typeof ref !== "string") throw refuse(`ref must be a string, got ${typeof ref}`);
  if (namespace !== undefined && (typeof namespace !== "string" || namespace === "")) throw refuse(`namespace must be a non-empty string, got ${JSON.stringify(namespace)}`);
  const name = namespace === undefined ? ref : `${ref}-${namespace}`;
  if (!name.startsWith("refs/") || !isValidRefName(name)) throw refuse(`Not a valid ref name under refs/: ${JSON.stringify(name)}`);
  return name;
}
