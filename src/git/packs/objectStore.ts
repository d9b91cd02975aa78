import { readdirSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { ioError, isErrno } from "../errors.js";
import { freshenFile, loosePath, readLooseObject, writeLooseObject } from "../objects/looseObjects.js";
import type { GitObject, ObjectId, ObjectType } from "../objects/objectId.js";
import { PackReader, type ObjectResolver } from "./packReader.js";
import type { WrittenPack } from "./packWriter.js";

/** Options of an {@link ObjectStore}. */
export interface ObjectStoreOptions {
  /** Check objects read against their ids. */
  verify: boolean;
  /** fsync new loose objects. */
  fsync: boolean;
}

/**
 * One `objects/` directory: its loose objects and its packs. The list of
 * packs is re-read only by {@link rescan}, and only when `objects/pack`
 * changed since the last scan.
 */
export class ObjectStore {
  /** `objects/pack` */
  readonly packDir: string;
  private packs: PackReader[] = [];
  private packStamp = "";

  constructor(
    readonly objectsDir: string,
    private readonly options: ObjectStoreOptions,
  ) {
    this.packDir = join(objectsDir, "pack");
  }

  /** Packs open now. */
  get packFiles(): readonly string[] {
    return this.packs.map((pack) => pack.packPath);
  }

  /** The object from the packs open now; `external` finds REF_DELTA bases outside them. */
  readPacked(id: ObjectId, external: ObjectResolver): GitObject | undefined {
    const pack = this.packWith(id);
    return pack?.read(id, external, this.options.verify);
  }

  /** The loose object, or `undefined` when there is no such file. */
  readLoose(id: ObjectId): GitObject | undefined {
    return readLooseObject(this.objectsDir, id, this.options.verify);
  }

  /** True when the object is in an open pack or loose (no rescan). */
  has(id: ObjectId): boolean {
    return this.packWith(id) !== undefined || this.looseExists(id);
  }

  /** The open pack holding `id`, if any. */
  packWith(id: ObjectId): PackReader | undefined {
    // holds() may drop a pack: walk the list as it was.
    const packs = this.packs;
    for (const pack of packs) if (this.holds(pack, id)) return pack;
    return undefined;
  }

  /**
   * True when the pack holds `id`. A pack installed lazily that a concurrent
   * merge removed before its first use is dropped (its objects are in the
   * merged pack, which the caller's rescan finds).
   */
  private holds(pack: PackReader, id: ObjectId): boolean {
    try {
      return pack.has(id);
    } catch (error) {
      if (!(error instanceof Error && isErrno(error.cause, "ENOENT"))) throw error;
      this.packs = this.packs.filter((other) => other !== pack);
      this.packStamp = "";
      return false;
    }
  }

  /**
   * Refreshes the mtime of the pack or loose file holding `id` (Git's
   * freshen, so a concurrent prune keeps it); false when neither exists.
   */
  freshen(id: ObjectId): boolean {
    const pack = this.packWith(id);
    return (pack !== undefined && freshenFile(pack.packPath)) || freshenFile(loosePath(this.objectsDir, id));
  }

  /** Writes a loose object (`id` already computed by the caller); an existing one is only freshened. */
  writeLoose(type: ObjectType, body: Uint8Array, id: ObjectId): ObjectId {
    const pack = this.packWith(id);
    if (pack !== undefined && freshenFile(pack.packPath)) return id;
    return writeLooseObject(this.objectsDir, type, body, { fsync: this.options.fsync, id });
  }

  /** Adds a pack just written here, so it is read without waiting for a rescan (opened at its first use). */
  installPack(pack: WrittenPack | undefined): void {
    if (pack === undefined || this.packs.some((reader) => reader.packPath === pack.packPath)) return;
    this.packs.unshift(PackReader.lazy(pack.packPath));
  }

  /**
   * Re-reads `objects/pack` when it changed (or always, with `force`: a
   * directory's times tick coarsely, so a pack renamed in by another process
   * within the tick of our last scan leaves them as they were); true when
   * the set of packs changed.
   */
  rescan(force = false): boolean {
    const stamp = dirStamp(this.packDir);
    if (stamp === this.packStamp && !force) return false;
    const byPath = new Map(this.packs.map((pack) => [pack.packPath, pack]));
    const next: PackReader[] = [];
    for (const name of listPackNames(this.packDir)) {
      const path = join(this.packDir, name);
      const reader = byPath.get(path) ?? openPackIfPresent(path);
      byPath.delete(path);
      if (reader !== undefined) next.push(reader);
    }
    for (const gone of byPath.values()) gone.close();
    const changed = next.length !== this.packs.length || next.some((pack, i) => pack !== this.packs[i]);
    this.packs = next;
    this.packStamp = stamp;
    return changed;
  }

  /** Closes pack descriptors; the next rescan reopens them. */
  close(): void {
    for (const pack of this.packs) pack.close();
    this.packs = [];
    this.packStamp = "";
  }

  private looseExists(id: ObjectId): boolean {
    try {
      statSync(loosePath(this.objectsDir, id));
      return true;
    } catch (error) {
      if (isErrno(error, "ENOENT", "ENOTDIR")) return false;
      throw ioError(`Cannot stat object ${id}`, error);
    }
  }
}

/**
 * The `objects/` directories listed in `objects/info/alternates` (relative
 * paths resolve against `objects/`), followed recursively as Git does.
 */
export function readAlternates(objectsDir: string, seen = new Set<string>([resolve(objectsDir)])): string[] {
  let text: string;
  try {
    text = readFileSync(join(objectsDir, "info", "alternates"), "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR")) return [];
    throw ioError(`Cannot read ${objectsDir}/info/alternates`, error);
  }
  const dirs: string[] = [];
  for (const line of text.split("\n")) {
    const entry = line.trim();
    if (entry === "" || entry.startsWith("#")) continue;
    const dir = isAbsolute(entry) ? entry : resolve(objectsDir, entry);
    if (seen.has(dir) || seen.size > 5) continue;
    seen.add(dir);
    dirs.push(dir, ...readAlternates(dir, seen));
  }
  return dirs;
}

/** `pack-*.pack` names that have their `.idx`, newest first (recent objects are the likely reads). */
function listPackNames(packDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(packDir);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return [];
    throw ioError(`Cannot list ${packDir}`, error);
  }
  const idx = new Set(names.filter((name) => name.startsWith("pack-") && name.endsWith(".idx")));
  const packs = names.filter((name) => name.startsWith("pack-") && name.endsWith(".pack") && idx.has(name.replace(/\.pack$/, ".idx")));
  const mtime = new Map(packs.map((name) => [name, statMtime(join(packDir, name))]));
  return packs.sort((a, b) => (mtime.get(b) ?? 0) - (mtime.get(a) ?? 0));
}

function statMtime(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return 0;
    throw ioError(`Cannot stat ${path}`, error);
  }
}

/** Opens a pack that a concurrent `git gc` may just have removed; `undefined` then. */
function openPackIfPresent(path: string): PackReader | undefined {
  try {
    return PackReader.open(path);
  } catch (error) {
    if (error instanceof Error && isErrno(error.cause, "ENOENT")) return undefined;
    throw error;
  }
}

function dirStamp(dir: string): string {
  try {
    const stat = statSync(dir, { bigint: true });
    return `${stat.ino}:${stat.mtimeNs}:${stat.ctimeNs}`;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return "";
    throw ioError(`Cannot stat ${dir}`, error);
  }
}
