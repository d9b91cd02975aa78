import { conflictError, StorageError } from "./errors.js";
import type { Mount } from "./mounts.js";
import type { CommitOperation, RemoveOptions, SetOptions } from "./types.js";

/** A write's CAS guard as a driver checks it: none, the etag the key must hold, or "the key must be absent". */
export type Guard = { readonly kind: "none" } | { readonly kind: "match"; readonly etag: string } | { readonly kind: "absent" };

const NO_GUARD: Guard = { kind: "none" };
const ABSENT: Guard = { kind: "absent" };

/**
 * The guard a write's (or removal's) options carry, read the same way by
 * every driver: `ifMatch` is "match", `ifNoneMatch` is "absent" (the core
 * admits only `"*"`, see {@link checkWriteOptions}). Both at once never hold
 * (a key that must be absent has no etag), so they add up to a conflict, as
 * Git's guards and HTTP's `If-Match` with `If-None-Match: *` do. A removal's
 * `ifNoneMatch` never gets here: the core refuses it ({@link refuseCreateOnlyRemoval}).
 *
 * @throws StorageError `E_CONFLICT` for `ifMatch` together with `ifNoneMatch`
 */
export function guardOf(opts: SetOptions | RemoveOptions | undefined, driver: string, key: string): Guard {
  const ifNoneMatch = (opts as SetOptions | undefined)?.ifNoneMatch;
  if (opts?.ifMatch === undefined) return ifNoneMatch === undefined ? NO_GUARD : ABSENT;
  if (ifNoneMatch !== undefined) throw conflictError(driver, key, "ifMatch and ifNoneMatch never hold together");
  return { kind: "match", etag: opts.ifMatch };
}

/** A write's guard as commit operations: a check of `key` (its `ifMatch` etag, or null for `ifNoneMatch`), or none without a guard. */
export function guardChecks(key: string, opts: SetOptions | RemoveOptions): CommitOperation[] {
  return hasGuard(opts) ? [{ type: "check", key, etag: opts.ifMatch ?? null }] : [];
}

/** Whether a write carries a CAS guard: the option is present, whatever its value. */
export function hasGuard(opts: SetOptions | RemoveOptions | undefined): boolean {
  if (opts === undefined) return false;
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
 * Refuses `ifNoneMatch` on a removal. "Remove only if absent" can do
 * nothing but fail or do nothing, and drivers differed on which (some
 * answered E_CONFLICT, some ignored the guard), so the core refuses it
 * before any driver sees it, on every driver, present whatever its value.
 *
 * @throws StorageError `E_INVALID_OPTION`
 */
export function refuseCreateOnlyRemoval(opts: RemoveOptions, driver?: string): void {
  if (opts !== null && typeof opts === "object" && "ifNoneMatch" in opts) {
    throw new StorageError("E_INVALID_OPTION", "A removal takes no ifNoneMatch: a key that must not exist has nothing to remove; use ifMatch to guard a removal", {
      driver,
    });
  }
}

/** {@link checkWriteOptions} for a removal: `ifNoneMatch` is refused first ({@link refuseCreateOnlyRemoval}), on any driver. */
export function checkRemoveOptions(mount: Mount, opts: RemoveOptions): void {
  refuseCreateOnlyRemoval(opts, mount.name);
  checkWriteOptions(mount, opts);
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
