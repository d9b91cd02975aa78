import { isStorageError } from "../../core/errors.js";
import { checkOptions } from "../../core/options.js";
import type { KeyLimits } from "../../core/types.js";
import { gitError } from "../errors.js";
import { mergeCommits, type MergeContext, type MergePolicy } from "./merge.js";
import type { ObjectId } from "../objects/objectId.js";
import { fetchRef, pushRef, redactRemote, trackingRef, type RemoteOptions } from "./remote.js";
import { checkKeyTree } from "../store/treeCheck.js";

/** Options of {@link syncRef} (and of the git driver's `sync`). */
export interface SyncOptions extends RemoteOptions {
  /**
   * How keys both sides changed are decided (see {@link MergePolicy}).
   * @default "latest"
   */
  policy?: MergePolicy;
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
  /** Keys both sides had changed to different values, decided by the policy. */
  conflicts: string[];
  /** The ref's commit after the sync (local and remote hold it); null when neither side has commits. */
  tip: ObjectId | null;
}

/** The store a sync works on: the merge context plus its ref. */
export interface SyncTarget extends MergeContext {
  ref: string;
  /**
   * The store's key limits: a fetched tree with a longer or deeper key is refused.
   * @default the core's
   */
  keyLimits?: KeyLimits;
}

/** Where one attempt left the local ref. */
interface Integrated {
  tip: ObjectId | undefined;
  merged: boolean;
  fastForwarded: boolean;
  conflicts: string[];
}

const LOCAL_ATTEMPTS = 1000;

/** Every sync option, checked before git runs. */
function checkSyncOptions(options: SyncOptions): void {
  checkOptions("git sync", options, ["policy", "retries", "timeout", "env"]);
  const { retries, timeout, env } = options;
  if (retries !== undefined && (!Number.isInteger(retries) || retries < 0)) throw gitError("E_INVALID_OPTION", `retries must be an integer of at least 0, got ${String(retries)}`);
  if (timeout !== undefined && (typeof timeout !== "number" || !(timeout > 0) || !Number.isFinite(timeout))) {
    throw gitError("E_INVALID_OPTION", `timeout must be a number of ms above 0, got ${String(timeout)}`);
  }
  if (env !== undefined && (typeof env !== "object" || env === null || Object.values(env).some((value) => value !== undefined && typeof value !== "string"))) {
    throw gitError("E_INVALID_OPTION", "env must be an object of strings");
  }
}

function checkPolicy(policy: unknown): MergePolicy {
  if (policy === undefined) return "latest";
  if (policy === "latest" || policy === "ours" || policy === "theirs" || typeof policy === "function") return policy as MergePolicy;
  throw gitError("E_INVALID_OPTION", `policy is "latest", "ours", "theirs" or a function, got ${JSON.stringify(policy)}`);
}

/**
 * Fetches the remote's commit and checks that its tree is a stowage key tree
 * (only what differs from the local tip is read) before anything merges it.
 * On refusal (`E_CORRUPT`; `E_TOO_LARGE` past the check's bound) the
 * tracking ref goes back to where it was, so the refused commit is not kept
 * reachable; the local ref never moved.
 */
async function fetchChecked(target: SyncTarget, remote: string, options: SyncOptions): Promise<ObjectId | undefined> {
  const tracking = trackingRef(remote, target.ref);
  const before = target.repo.refs.resolve(tracking);
  const fetched = await fetchRef(target.repo, remote, target.ref, options);
  const ours = target.repo.refs.resolve(target.ref);
  if (fetched === undefined || fetched === ours) return fetched;
  try {
    checkKeyTree(target.repo, target.readCommit(fetched).tree, ours === undefined ? undefined : target.readCommit(ours).tree, target.keyLimits);
  } catch (error) {
    if (before === undefined) target.repo.refs.delete(tracking, { expected: fetched });
    else target.repo.refs.update(tracking, before, { expected: fetched, message: "stowage: refused what was fetched" });
    if (!isStorageError(error, "E_CORRUPT")) throw error;
    throw gitError("E_CORRUPT", `${redactRemote(remote)} ${target.ref} at ${fetched} is refused, the local ref is unchanged: ${error.message}`, error);
  }
  return fetched;
}

/**
 * Brings the fetched commit into the local ref: fast-forward, nothing, or a
 * merge commit; the ref moves by compare-and-swap, and a local write landing
 * meanwhile is merged again on the new tip.
 */
async function integrate(target: SyncTarget, theirs: ObjectId | undefined, policy: MergePolicy, remote: string): Promise<Integrated> {
  const message = `stowage: merge ${target.ref} from ${redactRemote(remote)}`;
  for (let attempt = 0; attempt < LOCAL_ATTEMPTS; attempt++) {
    const ours = target.repo.refs.resolve(target.ref);
    if (theirs === undefined) return { tip: ours, merged: false, fastForwarded: false, conflicts: [] };
    const outcome = ours === undefined ? { id: theirs, kind: "fast-forward", conflicts: [] } : await mergeCommits(target, policy, ours, theirs, message);
    if (outcome.id !== ours) {
      try {
        await target.repo.refs.updateAsync(target.ref, outcome.id, { expected: ours ?? null, message: outcome.kind === "merge" ? message : `stowage: fast-forward from ${redactRemote(remote)}` });
      } catch (error) {
        if (isStorageError(error, "E_CONFLICT") && target.repo.refs.resolve(target.ref) !== ours) continue;
        throw error;
      }
    }
    return { tip: outcome.id, merged: outcome.kind === "merge", fastForwarded: outcome.kind === "fast-forward", conflicts: outcome.conflicts };
  }
  throw gitError("E_UNAVAILABLE", `${target.ref} kept moving during the sync: gave up after ${LOCAL_ATTEMPTS} attempts`);
}

/**
 * Syncs `target.ref` with the same ref on `remote` (a configured remote, a
 * URL or a path): fetch it, merge it into the local ref per key, push the
 * result with a lease on the commit fetched. A push refused because the
 * remote moved is retried from the fetch (`retries` times), then
 * `E_CONFLICT`; a refusal while the remote did not move is `E_CONFLICT` at once.
 * @throws StorageError `E_INVALID_OPTION` for a bad `retries`, `timeout`, `env` or `policy`; `E_CONFLICT` as above; `E_CORRUPT` when the fetched commit is refused; `E_UNAVAILABLE` when git fails or the local ref keeps moving; what the remote functions throw
 */
export async function syncRef(target: SyncTarget, remote: string, given?: SyncOptions | null): Promise<SyncResult> {
  const options = given ?? {};
  checkSyncOptions(options);
  const policy = checkPolicy(options.policy);
  const retries = options.retries ?? 5;
  const conflicts = new Set<string>();
  let merged = false;
  let fastForwarded = false;
  let refused: { at: ObjectId | undefined; summary: string } | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const fetched = await fetchChecked(target, remote, options);
    // Refused although the remote did not move: a hook or a setting, which another round will not change.
    if (refused !== undefined && fetched === refused.at) throw notTaken(remote, target.ref, `${refused.summary}, and the remote ref did not move`);
    const step = await integrate(target, fetched, policy, remote);
    for (const key of step.conflicts) conflicts.add(key);
    merged ||= step.merged;
    fastForwarded ||= step.fastForwarded;
    const result = { fetched: fetched ?? null, merged, fastForwarded, conflicts: [...conflicts], tip: step.tip ?? null };
    if (step.tip === undefined || step.tip === fetched) return { ...result, pushed: false };
    const pushed = await pushRef(target.repo, remote, target.ref, step.tip, fetched, options);
    if (pushed.ok) return { ...result, pushed: true };
    refused = { at: fetched, summary: pushed.summary };
  }
  throw notTaken(remote, target.ref, `${retries + 1} times, last ${refused?.summary}; its ref keeps moving`);
}

function notTaken(remote: string, ref: string, why: string): Error {
  return gitError("E_CONFLICT", `${redactRemote(remote)} refused the push of ${ref}: ${why}`);
}
