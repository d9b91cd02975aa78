/** Machine-readable error codes carried by every {@link StorageError}. */
export type StorageErrorCode =
  | "E_INVALID_KEY"
  | "E_INVALID_VALUE"
  | "E_INVALID_OPTION"
  | "E_READONLY"
  | "E_NOT_FOUND"
  | "E_CONFLICT"
  | "E_UNSUPPORTED"
  | "E_TOO_LARGE"
  | "E_UNAVAILABLE"
  | "E_CORRUPT"
  | "E_IO"
  | "E_DRIVER"
  /** A fenced write whose fence token is lower than one already used on that mount ({@link Fence}). */
  | "E_FENCED"
  /** A lock that could not be acquired within the time asked (`stowage/coordination`). */
  | "E_LOCK_TIMEOUT"
  /** A lock renewed or released by someone other than its holder. */
  | "E_NOT_OWNER"
  /** A lock renewed or released after it expired or another holder took it over. */
  | "E_LOCK_LOST";

export interface StorageErrorOptions {
  /** Name of the driver that raised or caused the error. */
  driver?: string;
  /** The key the failed operation was about, when there was one. */
  key?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * The one error type stowage throws. `code` says what went wrong,
 * `driver` where, and `cause` keeps the original error.
 */
export class StorageError extends Error {
  readonly code: StorageErrorCode;
  driver?: string;
  readonly key?: string;

  constructor(code: StorageErrorCode, message: string, options: StorageErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "StorageError";
    this.code = code;
    this.driver = options.driver;
    this.key = options.key;
  }
}

/** True when `error` is a {@link StorageError}, optionally with the given code. */
export function isStorageError(error: unknown, code?: StorageErrorCode): error is StorageError {
  return error instanceof StorageError && (code === undefined || error.code === code);
}

/**
 * Turns whatever a driver threw into a StorageError, keeping the original as
 * `cause`, so callers can always branch on `code`.
 */
export function toStorageError(error: unknown, driver: string | undefined): StorageError {
  if (error instanceof StorageError) {
    if (error.driver === undefined) error.driver = driver;
    return error;
  }
  const message = error instanceof Error ? error.message : String(error);
  return new StorageError("E_DRIVER", `[${driver ?? "driver"}] ${message}`, { driver, cause: error });
}

/** The E_CONFLICT a driver throws when a CAS guard or a transaction check fails. */
export function conflictError(driver: string, key: string, why: string): StorageError {
  return new StorageError("E_CONFLICT", `${why}: ${key}`, { driver, key });
}
