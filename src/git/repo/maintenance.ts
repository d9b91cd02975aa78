import { readdirSync, statSync, unlinkSync, utimesSync, type Stats } from "node:fs";
import { join } from "node:path";
import { decodeCommit } from "../objects/commit.js";
import { writeCommitGraph } from "../packs/commitGraph.js";
import { ioError, isErrno } from "../errors.js";
import { indexObjectIds } from "./indexFile.js";
import { loosePath, writeLooseObject } from "../objects/looseObjects.js";
import { isObjectId, ZERO_ID, type ObjectId, type ObjectType } from "../objects/objectId.js";
import { PackReader } from "../packs/packReader.js";
import type { PackWriter } from "../packs/packWriter.js";
import { readReflog } from "../refs/reflog.js";
import { decodeTag } from "../objects/tag.js";
import type { Repository } from "./repository.js";
import { isTreeMode, TreeMode } from "../objects/tree.js";

/** Options of {@link maintain}. */
export interface MaintenanceOptions {
  /**
   * Merge every pack into one; without it, only the small ones, geometrically.
   * @default false
   */
  all?: boolean;
  /**
   * Pack the loose objects too.
   * @default true
   */
  loose?: boolean;
  /**
   * Delete unreachable loose objects older than `grace` instead of packing them.
   * @default false
   */
  prune?: boolean;
  /**
   * How old an unreachable loose object must be to be pruned, in ms (as git gc).
   * @default two weeks
   */
  grace?: number;
}

/** What one maintenance run did. */
export interface MaintenanceResult {
  packsMerged: number;
  looseObjectsPacked: number;
  looseObjectsPruned: number;
  /** Unreachable objects of merged packs dropped (their pack older than the grace period). */
  packedObjectsPruned: number;
  /** Unreachable objects of merged packs written back as loose objects, to age out from their pack's mtime. */
  packedObjectsLoosened: number;
  /** The new pack, when one was written. */
  pack?: string;
}

const TWO_WEEKS = 14 * 24 * 3600 * 1000;

interface PackFile {
  /** Path without the `.pack` / `.idx` extension. */
  base: string;
  size: number;
  /** Files beside the pack and its index that go with it (`.rev`, `.bitmap`). */
  extras: string[];
}

/** What pruning needs: the age limit, and the reachable set computed once, after the listing. */
interface Pruning {
  cutoff: number;
  reachable(): Set<ObjectId>;
}

/**
 * Packs loose objects and merges packs into one new pack, then deletes what
 * it merged — safe while other writers run: objects are only ever removed
 * once the pack holding them is in place (readers that miss rescan the pack
 * directory), packs with a `.keep` file are left alone, and a concurrent run
 * that removed a file first is not an error. Packs to merge are chosen
 * geometrically (each pack kept must be at least twice the size of all the
 * smaller ones together), so repeated runs rewrite little.
 *
 * With `prune`, unreachable objects go as `git gc` lets them go: a loose one
 * older than `grace` is deleted; one in a merged pack is dropped when the
 * pack is older than `grace`, and otherwise written out as a loose object
 * carrying the pack's mtime, so it is pruned once that age passes. Ages are
 * checked again just before a deletion: a writer that reused an object
 * meanwhile has refreshed its file (Git's freshen), and the object stays.
 * @throws StorageError `E_IO` when a file cannot be listed, read, written or removed; `E_CORRUPT` for a damaged object or pack it reads
 */
export function maintain(repo: Repository, options: MaintenanceOptions = {}): MaintenanceResult {
  const packDir = join(repo.objectsDir, "pack");
  const packs = selectPacks(listPacks(packDir), options.all === true);
  const loose = options.loose === false ? [] : listLoose(repo.objectsDir);
  let reachable: Set<ObjectId> | undefined;
  const pruning: Pruning | undefined =
    options.prune === true ? { cutoff: Date.now() - (options.grace ?? TWO_WEEKS), reachable: () => (reachable ??= reachableObjects(repo)) } : undefined;
  // Pruning packs only reachable loose objects: the others stay loose, to age out by their own mtime.
  const toPack = pruning ? loose.filter((id) => pruning.reachable().has(id)) : loose;
  const pruned = pruning ? olderThan(repo, loose.filter((id) => !pruning.reachable().has(id)), pruning.cutoff) : [];
  const result: MaintenanceResult = { packsMerged: 0, looseObjectsPacked: 0, looseObjectsPruned: 0, packedObjectsPruned: 0, packedObjectsLoosened: 0 };
  if (packs.length + toPack.length >= 2 || (packs.length === 0 && toPack.length > 0)) {
    const writer = repo.packWriter({ mode: "disk" });
    const dropped = new Map<PackFile, ObjectId[]>();
    try {
      for (const pack of packs) dropped.set(pack, mergePack(repo, pack, writer, pruning, result));
      for (const id of toPack) {
        const object = repo.readObject(id);
        writer.add(object.type, object.body);
      }
    } catch (error) {
      writer.abort();
      throw error;
    }
    const written = writer.finish();
    repo.installPack(written);
    result.pack = written?.packPath;
    for (const pack of packs) {
      if (`${pack.base}.pack` === written?.packPath) continue;
      result.packedObjectsPruned += dropUnreachable(repo, pack, dropped.get(pack) ?? [], pruning, result);
      removePack(pack);
    }
    for (const id of toPack) removeFile(loosePath(repo.objectsDir, id));
    result.packsMerged = packs.length;
    result.looseObjectsPacked = toPack.length;
    // Close the packs just removed.
    repo.rescanPacks();
  }
  for (const id of pruned) if (removeIfOld(loosePath(repo.objectsDir, id), pruning!.cutoff)) result.looseObjectsPruned++;
  // A commit-graph may list a commit that was reachable when it was written and is pruned now: rewrite it, as git gc does.
  if (result.looseObjectsPruned + result.packedObjectsPruned > 0 && repo.commitGraph() !== undefined) writeCommitGraph(repo);
  return result;
}

/**
 * Copies a pack into the writer: every object without pruning, else the
 * reachable ones, loosening the unreachable ones of a young pack. Returns
 * the unreachable ids of an old pack, to drop. Whole entries are copied as
 * stored (checked against the index's CRC), deltas resolved.
 */
function mergePack(repo: Repository, pack: PackFile, writer: PackWriter, pruning: Pruning | undefined, result: MaintenanceResult): ObjectId[] {
  const reader = openPack(pack);
  if (reader === undefined) return [];
  const dropped: ObjectId[] = [];
  const mtime = pruning ? statIfPresent(`${pack.base}.pack`)?.mtimeMs : undefined;
  const resolve = (id: ObjectId) => repo.tryReadObject(id);
  try {
    for (let i = 0; i < reader.index.count; i++) {
      const id = reader.index.idAt(i);
      if (pruning === undefined || pruning.reachable().has(id)) {
        const stored = reader.storedEntry(i);
        if (stored !== undefined) writer.addStored(stored);
        else {
          const object = reader.readAt(reader.index.offsetAt(i), resolve);
          writer.add(object.type, object.body);
        }
      } else if (mtime !== undefined && mtime < pruning.cutoff) dropped.push(id);
      else {
        const object = reader.readAt(reader.index.offsetAt(i), resolve);
        if (loosen(repo, id, object.type, object.body, mtime ?? Date.now())) result.packedObjectsLoosened++;
      }
    }
  } finally {
    reader.close();
  }
  return dropped;
}

/**
 * Counts the unreachable objects of an old pack as pruned — unless the pack
 * was refreshed since the merge began (a writer reused one of its objects),
 * in which case they are written out as loose objects, young.
 */
function dropUnreachable(repo: Repository, pack: PackFile, ids: ObjectId[], pruning: Pruning | undefined, result: MaintenanceResult): number {
  if (ids.length === 0 || pruning === undefined) return 0;
  const mtime = statIfPresent(`${pack.base}.pack`)?.mtimeMs;
  if (mtime === undefined || mtime < pruning.cutoff) return ids.length;
  const reader = PackReader.open(`${pack.base}.pack`);
  try {
    for (const id of ids) {
      const object = reader.read(id, (base) => repo.tryReadObject(base))!;
      if (loosen(repo, id, object.type, object.body, mtime)) result.packedObjectsLoosened++;
    }
  } finally {
    reader.close();
  }
  return 0;
}

/** Writes an object out of a pack as a loose object dated `mtime`; false when it already is loose (its own date stands). */
function loosen(repo: Repository, id: ObjectId, type: ObjectType, body: Buffer, mtime: number): boolean {
  const path = loosePath(repo.objectsDir, id);
  if (statIfPresent(path) !== undefined) return false;
  writeLooseObject(repo.objectsDir, type, body, { id });
  const date = new Date(mtime);
  utimesSync(path, date, date);
  return true;
}

/** Packs of a pack directory (with their index, without a `.keep`), smallest first. */
function listPacks(packDir: string): PackFile[] {
  const names = namesIn(packDir);
  const present = new Set(names);
  const packs: PackFile[] = [];
  for (const name of names) {
    if (!/^pack-[0-9a-f]{40}\.pack$/.test(name)) continue;
    const stem = name.slice(0, -5);
    if (!present.has(`${stem}.idx`) || present.has(`${stem}.keep`) || present.has(`${stem}.promisor`)) continue;
    const size = statIfPresent(join(packDir, name))?.size;
    const extras = [".rev", ".bitmap"].filter((extension) => present.has(stem + extension));
    if (size !== undefined) packs.push({ base: join(packDir, stem), size, extras });
  }
  return packs.sort((a, b) => a.size - b.size);
}

/** The smallest packs that break the geometric progression (all of them with `all`). */
function selectPacks(packs: PackFile[], all: boolean): PackFile[] {
  if (all) return packs;
  let cut = 0;
  let smaller = 0;
  packs.forEach((pack, index) => {
    if (pack.size < 2 * smaller) cut = index + 1;
    smaller += pack.size;
  });
  return cut >= 2 ? packs.slice(0, cut) : [];
}

/** Opens a pack to merge; undefined when a concurrent run merged it away (its objects are in that run's pack). */
function openPack(pack: PackFile): PackReader | undefined {
  try {
    return PackReader.open(`${pack.base}.pack`);
  } catch (error) {
    if (error instanceof Error && isErrno(error.cause, "ENOENT")) return undefined;
    throw error;
  }
}

/** Loose object ids under objects/xx/. */
function listLoose(objectsDir: string): ObjectId[] {
  const ids: ObjectId[] = [];
  for (let byte = 0; byte < 256; byte++) {
    const prefix = byte.toString(16).padStart(2, "0");
    for (const name of namesIn(join(objectsDir, prefix))) if (isObjectId(prefix + name)) ids.push(prefix + name);
  }
  return ids;
}

/** The loose objects among `ids` whose file is older than the cutoff. */
function olderThan(repo: Repository, ids: ObjectId[], cutoff: number): ObjectId[] {
  return ids.filter((id) => (statIfPresent(loosePath(repo.objectsDir, id))?.mtimeMs ?? Date.now()) < cutoff);
}

/**
 * Every object reachable from refs, HEAD and the reflogs, and every object
 * a worktree's index holds (staged files, cache-tree), as git prune keeps them.
 */
export function reachableObjects(repo: Repository): Set<ObjectId> {
  const roots: ObjectId[] = [];
  const head = repo.refs.resolve("HEAD");
  if (head !== undefined) roots.push(head);
  for (const index of indexFiles(repo)) roots.push(...indexObjectIds(index));
  for (const ref of repo.refs.list("refs/")) {
    roots.push(ref.id);
    if (ref.peeled !== undefined) roots.push(ref.peeled);
    for (const entry of readReflog(repo.refs.logPath(ref.name))) roots.push(entry.old, entry.new);
  }
  const seen = new Set<ObjectId>();
  const pending = roots.filter((id) => id !== ZERO_ID);
  while (pending.length > 0) {
    const id = pending.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    const object = repo.tryReadObject(id);
    if (object === undefined) continue;
    if (object.type === "commit") {
      const commit = decodeCommit(object.body);
      pending.push(commit.tree, ...commit.parents);
    } else if (object.type === "tag") pending.push(decodeTag(object.body).object);
    else if (object.type === "tree") {
      for (const entry of repo.readTree(id)) if (entry.mode !== TreeMode.submodule && (isTreeMode(entry.mode) || !seen.has(entry.id))) pending.push(entry.id);
    }
  }
  return seen;
}

/** The index files of the main worktree and of linked worktrees. */
function indexFiles(repo: Repository): string[] {
  const worktrees = join(repo.commonDir, "worktrees");
  return [join(repo.gitDir, "index"), join(repo.commonDir, "index"), ...namesIn(worktrees).map((name) => join(worktrees, name, "index"))].filter(
    (path, i, all) => all.indexOf(path) === i,
  );
}

/** Deletes a file still older than the cutoff; false when it was refreshed or is gone. */
function removeIfOld(path: string, cutoff: number): boolean {
  const mtime = statIfPresent(path)?.mtimeMs;
  if (mtime === undefined || mtime >= cutoff) return false;
  removeFile(path);
  return true;
}

function removePack(pack: PackFile): void {
  // The index goes first: a reader lists packs by their index, and never finds one whose pack is gone.
  for (const extension of [".idx", ".pack", ...pack.extras]) removeFile(`${pack.base}${extension}`);
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw ioError(`Cannot remove ${path}`, error);
  }
}

/** A file's stat, or undefined when it is gone (merged or pruned by a concurrent run). */
function statIfPresent(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw ioError(`Cannot stat ${path}`, error);
  }
}

/** A directory's names; none when it does not exist. */
function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return [];
    throw ioError(`Cannot list ${dir}`, error);
  }
}
