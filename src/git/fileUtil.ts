import { rmdirSync, unlinkSync, writeSync } from "node:fs";
import { dirname, sep } from "node:path";
import { ioError, isErrno } from "./errors.js";

// core's mkdir one level at a time (Node's recursive mkdir spins under /proc); re-exported so the layers below store/ import no core.
export { makeDirectories } from "../core/directories.js";

/** Writes all of `data` at the file's position (a write may be partial). */
export function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done);
}

/**
 * Removes a temporary file. After a failure (`original`), a removal failure
 * is added to the original error's message; otherwise it is thrown.
 */
export function removeQuietly(path: string, original: unknown): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if (isErrno(error, "ENOENT")) return;
    if (!(original instanceof Error)) throw ioError(`Cannot remove ${path}`, error);
    original.message += ` (and ${path} could not be removed: ${(error as Error).message})`;
  }
}

/** Removes directories left empty (by a ref deletion), from `dir` up to but not including `stop`; a non-empty one ends the walk. */
export function pruneEmptyDirs(dir: string, stop: string): void {
  for (let current = dir; current.startsWith(stop + sep); current = dirname(current)) {
    try {
      rmdirSync(current);
    } catch (error) {
      if (isErrno(error, "ENOTEMPTY", "EEXIST", "ENOENT")) return;
      throw ioError(`Cannot remove ${current}`, error);
    }
  }
}
