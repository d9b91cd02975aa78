import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { isStorageError } from "../../core/errors.js";
import { gitError } from "../errors.js";
import { gitEnv } from "../gitEnv.js";
import { isObjectId, type ObjectId } from "../objects/objectId.js";
import { isValidRefName } from "../refs/refName.js";
import type { Repository } from "../repo/repository.js";

/**
 * Remotes through the stock `git` CLI (docs/git-engine.md, "Remotes and merges"): every
 * transport, credential helper and ssh setup git has works, and this module
 * never opens a connection itself. git runs with an argument array (no
 * shell), `--` before the remote, `GIT_TERMINAL_PROMPT=0` (a missing
 * credential fails instead of waiting on a prompt), `LC_ALL=C` (messages
 * stay English, so the two this module reads are recognized) and
 * `protocol.ext.allow=never` (an `ext::` URL would run a command); variables
 * such as `GIT_DIR` inherited from a hook are dropped. Fetches check every
 * object received (`fetch.fsckObjects`, `transfer.fsckObjects`), so nothing
 * `git fsck` would refuse enters the repository.
 */

/** Options of a fetch or push. */
export interface RemoteOptions {
  /**
   * Kill git after this many ms (`E_UNAVAILABLE`).
   * @default no limit
   */
  timeout?: number;
  /** Extra environment for git (e.g. `GIT_SSH_COMMAND`), over this process's. */
  env?: NodeJS.ProcessEnv;
}

/** Options of {@link pushRefspecs}. */
export interface PushOptions extends RemoteOptions {
  /**
   * Compare-and-swap on the remote: for each ref, the id it must hold there
   * for the push to happen (`null`: it must not exist). Sent as
   * `--force-with-lease=<ref>:<id>`.
   */
  leases?: Record<string, ObjectId | null>;
}

/** What a push did to each ref, from `git push --porcelain`. */
export interface PushedRef {
  /** The remote ref. */
  ref: string;
  /** False when git or the remote refused the update (`!` in git's porcelain output). */
  ok: boolean;
  /** git's summary, e.g. `[new reference]`, `[rejected] (stale info)`, `[remote rejected] (hook declined)`. */
  summary: string;
}

interface GitRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Remotes are a configured name, a URL or a path; one starting with `-` would be read as an option. */
function checkRemote(remote: string): void {
  if (typeof remote !== "string" || remote === "" || remote.startsWith("-") || remote.includes("\0")) {
    throw gitError("E_INVALID_OPTION", `Not a remote name, URL or path: ${JSON.stringify(remote)}`);
  }
}

/** A refspec `[+]<src>[:<dst>]` whose sides are full ref names, object ids or globs of refs. */
function checkRefspec(refspec: string): void {
  const [src = "", dst, extra] = refspec.replace(/^\+/, "").split(":");
  const side = (name: string): boolean => isObjectId(name) || (name.startsWith("refs/") && isValidRefName(name.replace("*", "x")));
  if (extra !== undefined || !side(src) || (dst !== undefined && !side(dst))) {
    throw gitError("E_INVALID_OPTION", `Not a refspec of full ref names: ${JSON.stringify(refspec)}`);
  }
}

/**
 * Runs stock git on the repository, `config` (`-c name=value` pairs) before
 * the command in `args`; resolves with its exit code and output (a spawn failure is `E_UNAVAILABLE`).
 */
function runGit(repo: Repository, args: string[], options: RemoteOptions, config: string[] = []): Promise<GitRun> {
  const argv = ["--git-dir", repo.gitDir, "-c", "protocol.ext.allow=never", ...config, ...args];
  return new Promise((resolve, reject) => {
    const child = execFile("git", argv, { env: gitEnv(options.env), timeout: options.timeout ?? 0, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : undefined;
      if (code !== undefined && !error?.killed) resolve({ code, stdout, stderr });
      else reject(gitError("E_UNAVAILABLE", `git ${args[0]} failed to run: ${error?.killed ? `killed after ${options.timeout} ms` : String(error)}`, error));
    });
    child.stdin?.end();
  });
}

/** `E_UNAVAILABLE` with git's own words: an unreachable remote, an authentication failure, a missing repository. */
function unavailable(what: string, remote: string, run: GitRun): Error {
  const said = run.stderr.trim() || run.stdout.trim();
  return gitError("E_UNAVAILABLE", `git ${what} ${redactRemote(remote)} failed (exit ${run.code}): ${said}`, new Error(said));
}

/** Makes git check every object a fetch receives (as `git fsck` does) and keep none of a pack that fails. */
const FETCH_CHECKS = ["-c", "fetch.fsckObjects=true", "-c", "transfer.fsckObjects=true"];
/** What git prints when a received object fails those checks (from index-pack or unpack-objects). */
const FSCK_FAILED = /fsck error|index-pack failed|unpack-objects (?:failed|abnormal exit)|did not pass fsck/;

/**
 * `git fetch -- <remote> <refspecs…>` with object checking: brings the
 * remote refs and the objects they need into the repository. A refspec whose
 * source the remote lacks is `E_NOT_FOUND` (a glob matching nothing is not an
 * error); objects `git fsck` refuses (a tree entry `..`, a `.gitmodules` with
 * a disallowed URL, a malformed commit) are `E_CORRUPT`, and then no ref
 * moves and none of them is kept; anything else git fails on is `E_UNAVAILABLE`.
 * @throws StorageError `E_INVALID_OPTION` for a remote or refspec git would misread; `E_NOT_FOUND`, `E_CORRUPT`, `E_UNAVAILABLE` as above
 */
export async function fetchRefspecs(repo: Repository, remote: string, refspecs: string[], options: RemoteOptions = {}): Promise<void> {
  checkRemote(remote);
  refspecs.forEach(checkRefspec);
  const run = await runGit(repo, ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", remote, ...refspecs], options, FETCH_CHECKS);
  if (run.code === 0) return;
  const missing = /couldn't find remote ref (\S+)/.exec(run.stderr);
  if (missing !== null) throw gitError("E_NOT_FOUND", `${redactRemote(remote)} has no ${missing[1]}`);
  if (FSCK_FAILED.test(run.stderr)) {
    const said = run.stderr.trim();
    throw gitError("E_CORRUPT", `${redactRemote(remote)} sent objects git fsck refuses; nothing was fetched: ${said}`, new Error(said));
  }
  throw unavailable("fetch", remote, run);
}

/**
 * `git push --porcelain [--force-with-lease=…] -- <remote> <refspecs…>`:
 * the outcome per ref. Refused refs are reported (`ok: false`), not thrown:
 * whether a refusal is worth a retry is the caller's call. A push that fails
 * before reporting on refs is `E_UNAVAILABLE`.
 * @throws StorageError `E_INVALID_OPTION` for a remote or refspec git would misread, or a lease that is not an object id; `E_UNAVAILABLE` as above
 */
export async function pushRefspecs(repo: Repository, remote: string, refspecs: string[], options: PushOptions = {}): Promise<PushedRef[]> {
  checkRemote(remote);
  refspecs.forEach(checkRefspec);
  const leases = Object.entries(options.leases ?? {}).map(([ref, id]) => {
    checkRefspec(ref);
    if (id !== null && !isObjectId(id)) throw gitError("E_INVALID_OPTION", `A lease is an object id or null, got ${JSON.stringify(id)}`);
    return `--force-with-lease=${ref}:${id ?? ""}`;
  });
  const run = await runGit(repo, ["push", "--porcelain", ...leases, "--", remote, ...refspecs], options);
  const pushed = parsePorcelain(run.stdout);
  if (pushed.length === 0 && run.code !== 0) throw unavailable("push", remote, run);
  return pushed;
}

/** The `<flag>\t<from>:<to>\t<summary>` lines of `git push --porcelain`. */
function parsePorcelain(stdout: string): PushedRef[] {
  const out: PushedRef[] = [];
  for (const line of stdout.split("\n")) {
    const match = /^([ +\-*!=])\t[^\t]*:([^\t]+)\t(.*)$/.exec(line);
    if (match !== null) out.push({ ref: match[2]!, ok: match[1] !== "!", summary: match[3]! });
  }
  return out;
}

/**
 * The ref a remote's copy of `ref` is fetched into:
 * `refs/stowage-remotes/<remote>/<ref without refs/>`. A remote that is a
 * plain name (letters, digits, `.`, `_`, `-`) keeps it; a URL or path is
 * named `url-<first 16 hex digits of its SHA-1>`.
 */
export function trackingRef(remote: string, ref: string): string {
  const plain = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(remote) && isValidRefName(`refs/stowage-remotes/${remote}`);
  const name = plain ? remote : `url-${createHash("sha1").update(remote, "utf8").digest("hex").slice(0, 16)}`;
  return `refs/stowage-remotes/${name}/${ref.replace(/^refs\//, "")}`;
}

/**
 * Fetches the remote's `ref` into its {@link trackingRef} (forced: the
 * tracking ref mirrors the remote) and returns the id, or undefined when the
 * remote has no such ref (the tracking ref is then deleted).
 * @throws StorageError as {@link fetchRefspecs} (a missing ref is not an error here)
 */
export async function fetchRef(repo: Repository, remote: string, ref: string, options: RemoteOptions = {}): Promise<ObjectId | undefined> {
  const tracking = trackingRef(remote, ref);
  try {
    await fetchRefspecs(repo, remote, [`+${ref}:${tracking}`], options);
  } catch (error) {
    if (!isStorageError(error, "E_NOT_FOUND")) throw error;
    repo.refs.delete(tracking);
    return undefined;
  }
  return repo.refs.resolve(tracking);
}

/**
 * Pushes commit `id` to the remote's `ref` if the remote still holds
 * `expected` there (undefined: no such ref); on success the tracking ref
 * follows. `ok: false` when the remote refused (it moved since the fetch, or
 * a hook or a lock refused).
 * @throws StorageError as {@link pushRefspecs}; `E_UNAVAILABLE` when git reports nothing about the ref
 */
export async function pushRef(repo: Repository, remote: string, ref: string, id: ObjectId, expected: ObjectId | undefined, options: RemoteOptions = {}): Promise<PushedRef> {
  const pushed = await pushRefspecs(repo, remote, [`${id}:${ref}`], { ...options, leases: { [ref]: expected ?? null } });
  const outcome = pushed.find((entry) => entry.ref === ref);
  if (outcome === undefined) throw gitError("E_UNAVAILABLE", `git push to ${redactRemote(remote)} reported nothing about ${ref}`);
  if (outcome.ok) repo.refs.update(trackingRef(remote, ref), id, { message: `stowage: pushed to ${redactRemote(remote)}` });
  return outcome;
}

/** The remote as it may be shown: a URL's user and password left out (they must not reach messages or commits). */
export function redactRemote(remote: string): string {
  return remote.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, "$1");
}
