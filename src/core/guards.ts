import { StorageError } from "./errors.js";
import type { Mount } from "./mounts.js";
import type { RemoveOptions, SetOptions } from "./types.js";

/** Whether a write carries a CAS guard: the option is present, whatever its value. */
export function hasGuard(opts: SetOptions | RemoveOptions): boolean {
  return opts.ifMatch !== undefined || (opts as SetOptions).ifNoneMatch !== undefined || "ifMatch" in opts || "ifNoneMatch" in opts;
}

/**
 * Checks a write's CAS guard before anything is sent. A guard counts when
 * its option is present, whatever its value: `{ ifMatch: undefined }` (an
 * etag read from an absent key) must not turn into an unguarded write.
 *
 * @throws StorageError `E_UNSUPPORTED` on a driver not flagged `cas`;
 *   `E_INVALID_OPTION` for an `ifMatch` that is not a string or an `ifNoneMatch` other than `"*"`
 */
export function checkWriteOptions(mount: Mount, opts: SetOptions | RemoveOptions): void {
  if (!hasGuard(opts)) return;
  if (!mount.driver.flags?.cas) {
    throw new StorageError("E_UNSUPPORTED", `ifMatch / ifNoneMatch needs a driver flagged "cas"; ${mount.name} is not`, { driver: mount.name });
  }
  if ("ifNoneMatch" in opts && (opts as SetOptions).ifNoneMatch !== "*") {
    throw new StorageError("E_INVALID_OPTION", `ifNoneMatch only accepts "*", got ${String(JSON.stringify((opts as SetOptions).ifNoneMatch))}`, {
      driver: mount.name,
    });
  }
  if ("ifMatch" in opts && typeof opts.ifMatch !== "string") {
    throw new StorageError("E_INVALID_OPTION", `ifMatch must be an etag string, got ${String(JSON.stringify(opts.ifMatch))}`, { driver: mount.name });
  }
}

/**
 * The options for the writes that follow a guarded one (its meta sidecar):
 * the guard is the value's, and a sidecar's version never matches it.
 */
export function withoutGuards<T extends SetOptions | RemoveOptions>(opts: T): T {
  if (!hasGuard(opts)) return opts;
  const rest = { ...opts } as SetOptions;
  delete rest.ifMatch;
  delete rest.ifNoneMatch;
  return rest as T;
}
