import { isUtf8 } from "node:buffer";
import { isStorageError } from "../../core/errors.js";
import { DEFAULT_KEY_LIMITS, type KeyLimits } from "../../core/types.js";
import { corrupt, gitError } from "../errors.js";
import { isObjectId, type GitObject, type ObjectId } from "../objects/objectId.js";
import { signatureNow } from "../objects/signature.js";
import { isTreeMode, type TreeEntry } from "../objects/tree.js";
import type { Repository } from "../repo/repository.js";
import { NOTES_LAYOUT } from "../store/notesLayout.js";
import { MAX_CHECKED_ENTRIES, VALUE_MODES, walkNewEntries, type WalkedTree } from "../store/treeCheck.js";
import { buildTree, walkTree } from "../store/treeRef.js";
import { checkSyncOptions, syncLoop, type Integrated, type SyncLoopOptions, type SyncResult } from "./fetchCheck.js";
import { mergeBase } from "./merge.js";
import { redactRemote } from "./remote.js";

/**
 * Sync of a notes ref with a remote (the git-notes driver's `sync`): fetch,
 * a three-way merge per tree entry (each note, each kept key blob), push
 * with a lease. Notes are entries by annotated id, so what each side added
 * (receipts written on both sides) merges without conflict; only an entry
 * both sides changed differently is decided by the policy.
 */

/** Options of {@link syncNotes}. */
export interface NotesSyncOptions extends SyncLoopOptions {
  /**
   * Which side wins an entry both sides changed to different notes.
   * @default "ours"
   */
  policy?: "ours" | "theirs";
}

/** What a notes sync did: as the git driver's sync reports it, `conflicts` naming tree entries (annotated ids, kept paths). */
export type NotesSyncResult = SyncResult;

/** The root directory where the git-notes driver keeps each key's blob (`stowage-keys/<id>`), so `git gc` keeps what its notes annotate. */
export const KEPT_KEYS_DIR = "stowage-keys";

/** A tree of the notes layout being checked: the root, a fan-out directory (`prefix`: the hex digits above it) or the kept keys. */
interface NotesTable extends WalkedTree {
  prefix: string;
  keys: boolean;
}

const FANOUT_DIR = /^[0-9a-f]{2}$/;
const HEX = /^[0-9a-f]+$/;

function notNotes(table: NotesTable, entry: TreeEntry | undefined, what: string): Error {
  const where = table.keys ? KEPT_KEYS_DIR : table.prefix === "" ? "the root" : `fan-out ${table.prefix}`;
  const name = entry === undefined ? "" : ` (entry ${JSON.stringify(entry.rawName === undefined ? entry.name : entry.rawName.toString("hex"))})`;
  return corrupt(`Not a stowage notes tree: ${where} holds ${what}${name}`);
}

/** A kept key: a blob named by its own id, no longer than a key may be, that is a key (UTF-8 without NUL). */
function checkKeptKey(repo: Repository, table: NotesTable, entry: TreeEntry, limits: KeyLimits): undefined {
  if (entry.rawName !== undefined || !isObjectId(entry.name) || entry.id !== entry.name) throw notNotes(table, entry, "an entry that is not a key blob under its own id");
  if (!VALUE_MODES.has(entry.mode)) throw notNotes(table, entry, `mode ${entry.mode} for a key blob`);
  const bytes = repo.readBlob(entry.id);
  if (bytes.length > limits.bytes) throw notNotes(table, entry, `a key of ${bytes.length} bytes, past the key limit of ${limits.bytes}`);
  if (bytes.includes(0) || !isUtf8(bytes)) throw notNotes(table, entry, "a key blob that is not UTF-8 text");
  return undefined;
}

/** A note (a blob whose path spells a full object id), a fan-out directory, or at the root the kept keys. */
function checkNoteEntry(table: NotesTable, entry: TreeEntry, dirs: ReadonlySet<string>): NotesTable | undefined {
  if (entry.rawName !== undefined) throw notNotes(table, entry, "a name that is not UTF-8");
  if (table.prefix === "" && entry.name === KEPT_KEYS_DIR) {
    if (!isTreeMode(entry.mode)) throw notNotes(table, entry, `mode ${entry.mode} for the kept keys`);
    return { id: entry.id, prefix: "", keys: true };
  }
  const path = table.prefix + entry.name;
  if (isTreeMode(entry.mode)) {
    if (!FANOUT_DIR.test(entry.name) || path.length >= 40) throw notNotes(table, entry, "a directory that is not a fan-out of notes");
    return { id: entry.id, prefix: path, keys: false };
  }
  if (!HEX.test(entry.name) || !isObjectId(path)) throw notNotes(table, entry, "a name that is neither a note nor a fan-out directory");
  if (!VALUE_MODES.has(entry.mode)) throw notNotes(table, entry, `mode ${entry.mode} for a note`);
  // The same object's note at two fan-outs: which one is meant is not decidable.
  if (dirs.has(entry.name.slice(0, 2))) throw notNotes(table, entry, "a note of an object that also has one in a fan-out directory");
  return undefined;
}

/**
 * Checks that a fetched notes tree is what git-notes and stock `git notes`
 * write, before it is merged: notes (blobs named by a full object id, in
 * fan-out directories of two hex digits), the kept key blobs, nothing else;
 * no empty directory, no name that is not UTF-8, no link or submodule, no
 * note given twice, keys within the key limits; at most
 * {@link MAX_CHECKED_ENTRIES} entries read (`E_TOO_LARGE`). Entries equal to
 * the local tree's (`known`) are not read again.
 * @throws StorageError `E_CORRUPT` at the first entry refused; `E_TOO_LARGE` past the bound
 */
export function checkNotesTree(repo: Repository, root: ObjectId, known?: ObjectId, limits: KeyLimits = DEFAULT_KEY_LIMITS, limit = MAX_CHECKED_ENTRIES): void {
  const start: NotesTable = { id: root, known, prefix: "", keys: false };
  walkNewEntries<NotesTable>(
    repo,
    start,
    (table, entries) => {
      if (entries.length === 0 && table !== start) throw notNotes(table, undefined, "nothing (an empty directory)");
      if (table.keys) return (entry) => checkKeptKey(repo, table, entry, limits);
      const dirs = new Set(entries.filter((entry) => isTreeMode(entry.mode)).map((entry) => entry.name));
      return (entry) => checkNoteEntry(table, entry, dirs);
    },
    limit,
  );
}

const LOCAL_ATTEMPTS = 100;

/** Every entry of a notes commit's tree by name (fan-out undone), as the notes layout names them; its trees are added to `trees`. */
function namesAt(repo: Repository, commit: ObjectId | undefined, trees = new Set<ObjectId>()): Map<string, ObjectId> {
  const names = new Map<string, ObjectId>();
  if (commit !== undefined) walkTree(repo, repo.readCommit(commit).tree, NOTES_LAYOUT, names, trees);
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

/** The merge commit of `ours` and `theirs` (both parents), its tree built in the notes layout; trees in `known` (both sides' own) are not written again. */
function writeMerge(repo: Repository, ref: string, remote: string, ours: ObjectId, theirs: ObjectId, names: Map<string, ObjectId>, known: ReadonlySet<ObjectId>): ObjectId {
  const objects: GitObject[] = [];
  const tree = buildTree(NOTES_LAYOUT.pathsOf(names), known, objects, new Set());
  repo.writeObjects(objects);
  const who = signatureNow("stowage", "stowage@localhost");
  return repo.writeCommit({ tree, parents: [ours, theirs], author: who, committer: who, extraHeaders: [], message: `stowage: merge ${ref} from ${redactRemote(remote)}\n` });
}

/** Where the local ref goes given the fetched commit; the ref moves by compare-and-swap, a local write meanwhile is merged again. */
async function integrate(repo: Repository, ref: string, remote: string, theirs: ObjectId | undefined, policy: "ours" | "theirs"): Promise<Integrated> {
  for (let attempt = 0; attempt < LOCAL_ATTEMPTS; attempt++) {
    const ours = repo.refs.resolve(ref);
    if (theirs === undefined || theirs === ours) return { tip: ours, merged: false, fastForwarded: false, conflicts: [] };
    const read = (id: ObjectId) => repo.readCommit(id);
    const base = ours === undefined ? undefined : mergeBase(read, ours, theirs);
    if (ours !== undefined && base === theirs) return { tip: ours, merged: false, fastForwarded: false, conflicts: [] };
    let step: Integrated = { tip: theirs, merged: false, fastForwarded: true, conflicts: [] };
    if (ours !== undefined && base !== ours) {
      // The trees of both sides are in the repository already (theirs fetched): the merge writes only new ones.
      const known = new Set<ObjectId>();
      const { names, conflicts } = mergeNames(namesAt(repo, base), namesAt(repo, ours, known), namesAt(repo, theirs, known), policy);
      step = { tip: writeMerge(repo, ref, remote, ours, theirs, names, known), merged: true, fastForwarded: false, conflicts };
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
 * Syncs the notes ref `ref` with the same ref on `remote` (a configured remote, a URL or a path):
 * fetch, check the fetched tree ({@link checkNotesTree}; refused, the local ref is unchanged),
 * merge per entry, push with a lease; the loop is the git driver's (fetchCheck.ts).
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, a bad `policy`, `retries`, `timeout` or `env`; `E_CORRUPT`/`E_TOO_LARGE` when the fetched commit is refused; `E_CONFLICT` when the remote keeps refusing the push; `E_UNAVAILABLE` when git fails; what the remote functions throw
 */
export async function syncNotes(repo: Repository, ref: string, remote: string, given?: NotesSyncOptions | null): Promise<NotesSyncResult> {
  const options = given ?? {};
  checkSyncOptions("git-notes sync", options, ["policy"]);
  const policy = options.policy ?? "ours";
  if (policy !== "ours" && policy !== "theirs") throw gitError("E_INVALID_OPTION", `policy is "ours" or "theirs", got ${JSON.stringify(policy)}`);
  return syncLoop(repo, ref, remote, options, {
    check: (fetched, ours) => checkNotesTree(repo, repo.readCommit(fetched).tree, ours === undefined ? undefined : repo.readCommit(ours).tree),
    integrate: (theirs) => integrate(repo, ref, remote, theirs, policy),
  });
}
