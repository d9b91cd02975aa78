import { isStorageError } from "../../core/errors.js";
import { checkOptions } from "../../core/options.js";
import { gitError } from "../errors.js";
import type { GitObject, ObjectId } from "../objects/objectId.js";
import { signatureNow } from "../objects/signature.js";
import { isTreeMode } from "../objects/tree.js";
import type { Repository } from "../repo/repository.js";
import { NOTES_LAYOUT } from "../store/notesLayout.js";
import { buildTree } from "../store/treeRef.js";
import { mergeBase } from "./merge.js";
import { fetchRef, pushRef, redactRemote, type RemoteOptions } from "./remote.js";
import type { SyncResult } from "./sync.js";

/**
 * Sync of a notes ref with a remote (the git-notes driver's `sync`): fetch,
 * a three-way merge per tree entry (each note, each kept key blob), push
 * with a lease. Notes are entries by annotated id, so what each side added
 * (receipts written on both sides) merges without conflict; only an entry
 * both sides changed differently is decided by the policy.
 */

/** Options of {@link syncNotes}. */
export interface NotesSyncOptions extends RemoteOptions {
  /**
   * Which side wins an entry both sides changed to different notes.
   * @default "ours"
   */
  policy?: "ours" | "theirs";
  /**
   * How many times a push the remote refused (it moved meanwhile) is followed by a new fetch, merge and push.
   * @default 5
   */
  retries?: number;
}

/** What a notes sync did: as the git driver's sync reports it, `conflicts` naming tree entries (annotated ids, kept paths). */
export type NotesSyncResult = SyncResult;

const LOCAL_ATTEMPTS = 100;

/** Every entry of a notes commit's tree by name (fan-out undone), as the notes layout names them. */
function namesAt(repo: Repository, commit: ObjectId | undefined): Map<string, ObjectId> {
  const names = new Map<string, ObjectId>();
  if (commit === undefined) return names;
  const stack = [{ tree: repo.readCommit(commit).tree, prefix: "" }];
  for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
    for (const entry of repo.readTree(dir.tree)) {
      const path = dir.prefix + entry.name;
      if (isTreeMode(entry.mode)) stack.push({ tree: entry.id, prefix: `${path}/` });
      else names.set(NOTES_LAYOUT.nameOf(path), entry.id);
    }
  }
  return names;
}

/** Per-entry three-way merge: a side's change wins over the base; both changed differently is a conflict, decided by `policy`. */
function mergeNames(base: Map<string, ObjectId>, ours: Map<string, ObjectId>, theirs: Map<string, ObjectId>, policy: "ours" | "theirs"): { names: Map<string, ObjectId>; conflicts: string[] } {
  const names = new Map<string, ObjectId>();
  const conflicts: string[] = [];
  for (const name of new Set([...base.keys(), ...ours.keys(), ...theirs.keys()])) {
    const [was, mine, yours] = [base.get(name), ours.get(name), theirs.get(name)];
    let chosen = mine;
    if (mine === was) chosen = yours;
    else if (yours !== was && yours !== mine) {
      conflicts.push(name);
      chosen = policy === "ours" ? mine : yours;
    }
    if (chosen !== undefined) names.set(name, chosen);
  }
  return { names, conflicts };
}

/** The merge commit of `ours` and `theirs` (both parents), its tree built in the notes layout. */
function writeMerge(repo: Repository, ref: string, remote: string, ours: ObjectId, theirs: ObjectId, names: Map<string, ObjectId>): ObjectId {
  const objects: GitObject[] = [];
  const tree = buildTree(NOTES_LAYOUT.pathsOf(names), new Set(), objects, new Set());
  repo.writeObjects(objects);
  const who = signatureNow("stowage", "stowage@localhost");
  return repo.writeCommit({ tree, parents: [ours, theirs], author: who, committer: who, extraHeaders: [], message: `stowage: merge ${ref} from ${redactRemote(remote)}\n` });
}

interface Step {
  tip: ObjectId | undefined;
  merged: boolean;
  fastForwarded: boolean;
  conflicts: string[];
}

/** Where the local ref goes given the fetched commit; the ref moves by compare-and-swap, a local write meanwhile is merged again. */
async function integrate(repo: Repository, ref: string, remote: string, theirs: ObjectId | undefined, policy: "ours" | "theirs"): Promise<Step> {
  for (let attempt = 0; attempt < LOCAL_ATTEMPTS; attempt++) {
    const ours = repo.refs.resolve(ref);
    if (theirs === undefined || theirs === ours) return { tip: ours, merged: false, fastForwarded: false, conflicts: [] };
    const read = (id: ObjectId) => repo.readCommit(id);
    const base = ours === undefined ? undefined : mergeBase(read, ours, theirs);
    if (ours !== undefined && base === theirs) return { tip: ours, merged: false, fastForwarded: false, conflicts: [] };
    let step: Step = { tip: theirs, merged: false, fastForwarded: true, conflicts: [] };
    if (ours !== undefined && base !== ours) {
      const { names, conflicts } = mergeNames(namesAt(repo, base), namesAt(repo, ours), namesAt(repo, theirs), policy);
      step = { tip: writeMerge(repo, ref, remote, ours, theirs, names), merged: true, fastForwarded: false, conflicts };
    }
    try {
      await repo.refs.updateAsync(ref, step.tip as ObjectId, { expected: ours ?? null, message: `stowage: sync ${ref} with ${redactRemote(remote)}` });
      return step;
    } catch (error) {
      if (isStorageError(error, "E_CONFLICT") && repo.refs.resolve(ref) !== ours) continue;
      throw error;
    }
  }
  throw gitError("E_UNAVAILABLE", `${ref} kept moving during the sync: gave up after ${LOCAL_ATTEMPTS} attempts`);
}

/**
 * Syncs the notes ref `ref` with the same ref on `remote` (a configured remote, a URL or a path).
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, a bad `policy` or `retries`; `E_CONFLICT` when the remote keeps refusing the push; `E_UNAVAILABLE` when git fails; what the remote functions throw
 */
export async function syncNotes(repo: Repository, ref: string, remote: string, options: NotesSyncOptions = {}): Promise<NotesSyncResult> {
  checkOptions("git-notes sync", options, ["policy", "retries", "timeout", "env"]);
  const policy = options.policy ?? "ours";
  if (policy !== "ours" && policy !== "theirs") throw gitError("E_INVALID_OPTION", `policy is "ours" or "theirs", got ${JSON.stringify(policy)}`);
  const retries = options.retries ?? 5;
  if (!Number.isInteger(retries) || retries < 0) throw gitError("E_INVALID_OPTION", `retries must be an integer of at least 0, got ${String(retries)}`);
  const remoteOptions: RemoteOptions = {};
  if (options.timeout !== undefined) remoteOptions.timeout = options.timeout;
  if (options.env !== undefined) remoteOptions.env = options.env;
  const conflicts = new Set<string>();
  let merged = false;
  let fastForwarded = false;
  for (let attempt = 0; attempt <= retries; attempt++) {
    const fetched = await fetchRef(repo, remote, ref, remoteOptions);
    const step = await integrate(repo, ref, remote, fetched, policy);
    for (const name of step.conflicts) conflicts.add(name);
    merged ||= step.merged;
    fastForwarded ||= step.fastForwarded;
    const result = { fetched: fetched ?? null, merged, fastForwarded, conflicts: [...conflicts], tip: step.tip ?? null };
    if (step.tip === undefined || step.tip === fetched) return { ...result, pushed: false };
    if ((await pushRef(repo, remote, ref, step.tip, fetched, remoteOptions)).ok) return { ...result, pushed: true };
  }
  throw gitError("E_CONFLICT", `${redactRemote(remote)} refused the push of ${ref} ${retries + 1} times; its ref keeps moving`);
}
