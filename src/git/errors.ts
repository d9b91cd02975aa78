import { StorageError, type StorageErrorCode } from "../core/errors.js";

// The engine's errors are stowage's StorageErrors; below store/ this module is the one way to them (a lint rule keeps core out of the lower layers).
export { isStorageError, StorageError } from "../core/errors.js";

/** A StorageError raised by the Git engine (no driver name yet: the driver sets it). */
export function gitError(code: StorageErrorCode, message: string, cause?: unknown): StorageError {
  return new StorageError(code, message, cause === undefined ? {} : { cause });
}

/** `E_CORRUPT`: an object or file in the repository is not what Git would have written. */
export function corrupt(message: string, cause?: unknown): StorageError {
  return gitError("E_CORRUPT", message, cause);
}

/** True when `error` is a Node system error with the given `code` (ENOENT, EEXIST, ...). */
export function isErrno(error: unknown, ...codes: string[]): boolean {
  return error instanceof Error && codes.includes((error as NodeJS.ErrnoException).code ?? "");
}

/** Wraps a file-system failure as `E_IO`, keeping StorageErrors as they are. */
export function ioError(what: string, error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return gitError("E_IO", `${what}: ${message}`, error);
}
