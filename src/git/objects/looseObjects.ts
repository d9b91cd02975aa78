import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { corrupt, ioError, isErrno } from "../errors.js";
import { frameObject, hashObject, unframeObject, type GitObject, type ObjectId, type ObjectType } from "./objectId.js";
import { makeDirectories, removeQuietly, writeAll } from "../fileUtil.js";
import { tempName } from "../tempName.js";
import { deflateObject, inflateObject } from "./zlib.js";

/** Options for writing loose objects. */
export interface LooseWriteOptions {
  /** fsync each new object file before it is renamed into place (default false, as Git). */
  fsync?: boolean;
  /** The object's id when the caller has hashed it already. */
  id?: ObjectId;
}

/** `objects/ab/cdef…` for an id. */
export function loosePath(objectsDir: string, id: ObjectId): string {
  return join(objectsDir, id.slice(0, 2), id.slice(2));
}

/** Inflates a loose object file's bytes and checks header and (optionally) id. */
export function parseLooseObject(data: Buffer, id: ObjectId, verify = true): GitObject {
  const framed = inflateObject(data, `Loose object ${id}`);
  const object = unframeObject(framed, `loose object ${id}`);
  if (verify && hashObject(object.type, object.body) !== id) throw corrupt(`Loose object ${id} hashes to another id`);
  return object;
}

/** Reads a loose object; `undefined` when there is none. `E_CORRUPT` for a damaged one. */
export function readLooseObject(objectsDir: string, id: ObjectId, verify = true): GitObject | undefined {
  let data: Buffer;
  try {
    data = readFileSync(loosePath(objectsDir, id));
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR")) return undefined;
    throw ioError(`Cannot read loose object ${id}`, error);
  }
  return parseLooseObject(data, id, verify);
}

/**
 * Refreshes an existing loose object's mtime, so a concurrent `git gc`/prune
 * with a grace period keeps it (Git's "freshen"). False when it does not exist.
 */
export function freshenLooseObject(objectsDir: string, id: ObjectId): boolean {
  return freshenFile(loosePath(objectsDir, id));
}

/** Sets a file's mtime to now; false when it does not exist or is not ours to touch (Git then writes a copy). */
export function freshenFile(path: string): boolean {
  // existsSync does not throw: a miss (the common case when writing) costs no exception.
  if (!existsSync(path)) return false;
  const now = new Date();
  try {
    utimesSync(path, now, now);
    return true;
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR", "EPERM", "EACCES")) return false;
    throw ioError(`Cannot refresh ${path}`, error);
  }
}

/**
 * Writes an object as a loose file (deflated at Git's loose level, 1) through
 * a temporary file renamed into place; an existing object only gets its
 * mtime refreshed. Returns the id.
 */
export function writeLooseObject(objectsDir: string, type: ObjectType, body: Uint8Array, options: LooseWriteOptions = {}): ObjectId {
  const id = options.id ?? hashObject(type, body);
  if (freshenLooseObject(objectsDir, id)) return id;
  const data = deflateObject(frameObject(type, body));
  const dir = join(objectsDir, id.slice(0, 2));
  const temp = join(dir, tempName("tmp_obj_"));
  try {
    writeTempFile(dir, temp, data, options.fsync === true);
    renameSync(temp, loosePath(objectsDir, id));
  } catch (error) {
    removeQuietly(temp, error);
    throw ioError(`Cannot write loose object ${id}`, error);
  }
  return id;
}

/** Creates `temp` exclusively (read-only, as Git's objects are) and fills it. */
function writeTempFile(dir: string, temp: string, data: Buffer, fsync: boolean): void {
  let fd: number;
  try {
    fd = openSync(temp, "wx", 0o444);
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw error;
    makeDirectories(dir);
    fd = openSync(temp, "wx", 0o444);
  }
  try {
    writeAll(fd, data);
    if (fsync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
