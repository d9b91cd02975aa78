import { readdirSync, statSync, unlinkSync, type Stats } from "node:fs";
import { join } from "node:path";
import { decodeCommit } from "./commit.js";
import { ioError, isErrno } from "./errors.js";
import { loosePath } from "./looseObjects.js";
import { isObjectId, ZERO_ID, type ObjectId } from "./objectId.js";
import { PackReader } from "./packReader.js";
import { readReflog } from "./reflog.js";
import { decodeTag } from "./tag.js";
import type { Repository } from "./repository.js";
import { isTreeMode, TreeMode } from "./tree.js";

/** Options of {@link maintain}. */
export interface MaintenanceOptions {
  /** Merge every pack into one (default false: only the small ones, geometrically). */
  all?: boolean;
  /** Pack the loose objects too (default true). */
  loose?: boolean;
  /** Delete unreachable loose objects older than `grace` instead of packing them (default false). */
  prune?: boolean;
  /** How old an unreachable loose object must be to be pruned, in ms (default two weeks, as git gc). */
  grace?: number;
}

/** What one maintenance run did. */
export interface MaintenanceResult {
  packsMerged: number;
  looseObjectsPacked: number;
  looseObjectsPruned: number;
  /** The new pack, when one was written. */
  pack?: string;
}

const TWO_WEEKS = 14 * 24 * 3600 * 1000;

interface PackFile {
  /** Path without the `.pack` / `.idx` extension. */
  base: string;
  size: number;
}

/**
 * Packs loose objects and merges packs into one new pack, then deletes what
 * it merged — safe while other writers run: objects are only ever removed
 * once the pack holding them is in place (readers that miss rescan the pack
 * directory), packs with a `.keep` file are left alone, and a concurrent run
 * that removed a file first is not an error. Packs to merge are chosen
 * geometrically (each pack kept must be at least twice the size of all the
 * smaller ones together), so repeated runs rewrite little.
 */
export function maintain(repo: Repository, options: MaintenanceOptions = {}): MaintenanceResult {
  const packDir = join(repo.objectsDir, "pack");
  const packs = selectPacks(listPacks(packDir), options.all === true);
  const loose = options.loose === false ? [] : listLoose(repo.objectsDir);
  const pruned = options.prune === true ? prunable(repo, loose, options.grace ?? TWO_WEEKS) : new Set<ObjectId>();
  const toPack = loose.filter((id) => !pruned.has(id));
  const result: MaintenanceResult = { packsMerged: 0, looseObjectsPacked: 0, looseObjectsPruned: 0 };
  if (packs.length + toPack.length >= 2 || (packs.length === 0 && toPack.length > 0)) {
    const writer = repo.packWriter({ mode: "disk" });
    try {
      for (const pack of packs) copyPack(repo, pack, writer.add.bind(writer));
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
    for (const pack of packs) if (`${pack.base}.pack` !== written?.packPath) removePack(pack.base);
    for (const id of toPack) removeFile(loosePath(repo.objectsDir, id));
    result.packsMerged = packs.length;
    result.looseObjectsPacked = toPack.length;
    // A lookup of an id no pack holds makes the stores rescan objects/pack and close the packs just removed.
    repo.hasObject(ZERO_ID);
  }
  for (const id of pruned) removeFile(loosePath(repo.objectsDir, id));
  result.looseObjectsPruned = pruned.size;
  return result;
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
    if (size !== undefined) packs.push({ base: join(packDir, stem), size });
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

/** Adds every object of a pack to the writer (deltas resolved: the new pack holds whole objects). */
function copyPack(repo: Repository, pack: PackFile, add: (type: "blob" | "tree" | "commit" | "tag", body: Buffer) => unknown): void {
  let reader: PackReader;
  try {
    reader = PackReader.open(`${pack.base}.pack`);
  } catch (error) {
    // Merged away by a concurrent run: its objects are in that run's pack.
    if (error instanceof Error && isErrno(error.cause, "ENOENT")) return;
    throw error;
  }
  try {
    const resolve = (id: ObjectId) => repo.tryReadObject(id);
    for (let i = 0; i < reader.index.count; i++) {
      const object = reader.readAt(reader.index.offsetAt(i), resolve);
      add(object.type, object.body);
    }
  } finally {
    reader.close();
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

/** Loose objects that no ref, no reflog entry and no HEAD reaches, older than `grace`. */
function prunable(repo: Repository, loose: ObjectId[], grace: number): Set<ObjectId> {
  const cutoff = Date.now() - grace;
  const old = loose.filter((id) => (statIfPresent(loosePath(repo.objectsDir, id))?.mtimeMs ?? Date.now()) < cutoff);
  if (old.length === 0) return new Set();
  const reachable = reachableObjects(repo);
  return new Set(old.filter((id) => !reachable.has(id)));
}

/** Every object reachable from refs, HEAD and the reflogs. */
export function reachableObjects(repo: Repository): Set<ObjectId> {
  const roots: ObjectId[] = [];
  const head = repo.refs.resolve("HEAD");
  if (head !== undefined) roots.push(head);
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

function removePack(base: string): void {
  // The index goes first: a reader lists packs by their index, and never finds one whose pack is gone.
  for (const extension of [".idx", ".pack", ".rev", ".bitmap"]) removeFile(`${base}${extension}`);
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
