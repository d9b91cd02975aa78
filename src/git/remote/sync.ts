import { isStorageError } from "../../core/errors.js";
import type { KeyLimits } from "../../core/types.js";
import { gitError } from "../errors.js";
import { mergeCommits, type MergeContext, type MergePolicy } from "./merge.js";
import type { ObjectId } from "../objects/objectId.js";
import { checkSyncOptions, syncLoop, type Integrated, type SyncLoopOptions, type SyncResult } from "./fetchCheck.js";
import { redactRemote } from "./remote.js";
import { checkKeyTree } from "../store/treeCheck.js";

/** Options of {@link syncRef} (and of the git driver's `sync`). */
export interface SyncOptions extends SyncLoopOptions {
  /**
   * How keys both sides changed are decided (see {@link MergePolicy}).
   * @default "latest"
   */
  policy?: MergePolicy;
}

export type { SyncResult };

/** The store a sync works on: the merge context plus its ref. */
export interface SyncTarget extends MergeContext {
  ref: string;
  /**
   * The store's key limits: a fetched tree with a longer or deeper key is refused.
   * @default the core's
   */
  keyLimits?: KeyLimits;
}

const LOCAL_ATTEMPTS = 1000;

function checkPolicy(policy: unknown): MergePolicy {
  if (policy === undefined) return "latest";
  if (policy === "latest" || policy === "ours" || policy === "theirs" || typeof policy === "function") return policy as MergePolicy;
  throw gitError("E_INVALID_OPTION", `policy is "latest", "ours", "theirs" or a function, got ${JSON.stringify(policy)}`);
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
  checkSyncOptions("git sync", options, ["policy"]);
  const policy = checkPolicy(options.policy);
  return syncLoop(target.repo, target.ref, remote, options, {
    // Only what differs from the local tip is read.
    check: (fetched, ours) => checkKeyTree(target.repo, target.readCommit(fetched).tree, ours === undefined ? undefined : target.readCommit(ours).tree, target.keyLimits),
    integrate: (theirs) => integrate(target, theirs, policy, remote),
  });
}
