import { isStorageError } from "../../core/errors.js";
import { checkOptions } from "../../core/options.js";
import { gitError } from "../errors.js";
import type { ObjectId } from "../objects/objectId.js";
import type { Repository } from "../repo/repository.js";
import { fetchRef, pushRef, redactRemote, trackingRef, type RemoteOptions } from "./remote.js";

/**
 * What every sync of a ref with a remote shares, whatever the tree layout of
 * the ref (the git driver's key trees, git-notes' notes trees): the options'
 * checks, a fetch whose result is checked before anything merges it (with
 * the bounded walk of store/treeCheck.ts), and the fetch–merge–push loop.
 * The layout-specific parts (the tree check, the merge) are passed in.
 */

/** Options every sync takes (each sync adds its own `policy`). */
export interface SyncLoopOptions extends RemoteOptions {
  /**
   * How many times a push the remote refused (it moved meanwhile) is followed by a new fetch, merge and push.
   * @default 5
   */
  retries?: number;
}

/** What a sync did. */
export interface SyncResult {
  /** The remote's commit as last fetched; null when the remote had no such ref. */
  fetched: ObjectId | null;
  /** True when a merge commit was written (both sides had commits the other lacked). */
  merged: boolean;
  /** True when the local ref moved to the remote's commit without a merge. */
  fastForwarded: boolean;
  /** True when the remote ref was updated. */
  pushed: boolean;
  /** Keys (or tree entries) both sides had changed to different values, decided by the policy. */
  conflicts: string[];
  /** The ref's commit after the sync (local and remote hold it); null when neither side has commits. */
  tip: ObjectId | null;
}

/** Where one attempt left the local ref. */
export interface Integrated {
  tip: ObjectId | undefined;
  merged: boolean;
  fastForwarded: boolean;
  conflicts: string[];
}

/** The layout-specific steps of a sync. */
export interface SyncSteps {
  /** Throws `E_CORRUPT` (or `E_TOO_LARGE`) when the fetched commit is not one the store could have written; `ours` is the local tip, already trusted. */
  check(fetched: ObjectId, ours: ObjectId | undefined): void;
  /** Brings the fetched commit (undefined: the remote has none) into the local ref. */
  integrate(theirs: ObjectId | undefined): Promise<Integrated>;
}

/**
 * Every option of a sync named `who` (`retries`, `timeout`, `env` and the `extra` ones), checked before git runs.
 * @throws StorageError `E_INVALID_OPTION` for an unknown option or a bad `retries`, `timeout` or `env`
 */
export function checkSyncOptions<T extends SyncLoopOptions>(who: string, options: T, extra: readonly (keyof T & string)[]): void {
  checkOptions<T>(who, options, [...extra, "retries", "timeout", "env"]);
  const { retries, timeout, env } = options;
  if (retries !== undefined && (!Number.isInteger(retries) || retries < 0)) throw gitError("E_INVALID_OPTION", `retries must be an integer of at least 0, got ${String(retries)}`);
  if (timeout !== undefined && (typeof timeout !== "number" || !(timeout > 0) || !Number.isFinite(timeout))) {
    throw gitError("E_INVALID_OPTION", `timeout must be a number of ms above 0, got ${String(timeout)}`);
  }
  if (env !== undefined && (typeof env !== "object" || env === null || Object.values(env).some((value) => value !== undefined && typeof value !== "string"))) {
    throw gitError("E_INVALID_OPTION", "env must be an object of strings");
  }
}

/**
 * Fetches the remote's commit and runs `check` on it (only when it differs
 * from the local tip) before anything merges it. On refusal (`E_CORRUPT`;
 * `E_TOO_LARGE` past the check's bound) the tracking ref goes back to where
 * it was, so the refused commit is not kept reachable; the local ref never moved.
 */
async function fetchChecked(repo: Repository, ref: string, remote: string, options: RemoteOptions, check: SyncSteps["check"]): Promise<ObjectId | undefined> {
  const tracking = trackingRef(remote, ref);
  const before = repo.refs.resolve(tracking);
  const fetched = await fetchRef(repo, remote, ref, options);
  const ours = repo.refs.resolve(ref);
  if (fetched === undefined || fetched === ours) return fetched;
  try {
    check(fetched, ours);
  } catch (error) {
    if (before === undefined) repo.refs.delete(tracking, { expected: fetched });
    else repo.refs.update(tracking, before, { expected: fetched, message: "stowage: refused what was fetched" });
    if (!isStorageError(error, "E_CORRUPT")) throw error;
    throw gitError("E_CORRUPT", `${redactRemote(remote)} ${ref} at ${fetched} is refused, the local ref is unchanged: ${error.message}`, error);
  }
  return fetched;
}

/**
 * A queue that runs the syncs given to it one at a time, in call order, whatever each one's outcome:
 * two syncs of one store at once would fetch into the same tracking ref.
 */
export function oneAtATime(): <T>(run: () => Promise<T>) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return (run) => {
    const next = last.then(run);
    last = next.catch(() => undefined);
    return next;
  };
}

function notTaken(remote: string, ref: string, why: string): Error {
  return gitError("E_CONFLICT", `${redactRemote(remote)} refused the push of ${ref}: ${why}`);
}

/**
 * Syncs `ref` with the same ref on `remote`: fetch and check, integrate,
 * push with a lease on the commit fetched. A push refused because the remote
 * moved is retried from the fetch (`retries` times), then `E_CONFLICT`; a
 * refusal while the remote did not move is `E_CONFLICT` at once.
 * @throws StorageError `E_CONFLICT` as above; `E_CORRUPT`/`E_TOO_LARGE` when the fetched commit is refused; what the remote functions and the steps throw
 */
export async function syncLoop(repo: Repository, ref: string, remote: string, options: SyncLoopOptions, steps: SyncSteps): Promise<SyncResult> {
  const retries = options.retries ?? 5;
  const conflicts = new Set<string>();
  let merged = false;
  let fastForwarded = false;
  let refused: { at: ObjectId | undefined; summary: string } | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const fetched = await fetchChecked(repo, ref, remote, options, steps.check);
    // Refused although the remote did not move: a hook or a setting, which another round will not change.
    if (refused !== undefined && fetched === refused.at) throw notTaken(remote, ref, `${refused.summary}, and the remote ref did not move`);
    const step = await steps.integrate(fetched);
    for (const key of step.conflicts) conflicts.add(key);
    merged ||= step.merged;
    fastForwarded ||= step.fastForwarded;
    const result = { fetched: fetched ?? null, merged, fastForwarded, conflicts: [...conflicts], tip: step.tip ?? null };
    if (step.tip === undefined || step.tip === fetched) return { ...result, pushed: false };
    const pushed = await pushRef(repo, remote, ref, step.tip, fetched, options);
    if (pushed.ok) return { ...result, pushed: true };
    refused = { at: fetched, summary: pushed.summary };
  }
  throw notTaken(remote, ref, `${retries + 1} times, last ${refused?.summary}; its ref keeps moving`);
}
