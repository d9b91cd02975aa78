import { unlinkSync, writeSync } from "node:fs";
import { ioError, isErrno } from "./errors.js";

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
