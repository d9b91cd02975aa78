import { createHash } from "node:crypto";
import { isStorageError, StorageError } from "./errors.js";
import { commitsAtomically, type Mount } from "./mounts.js";
import type { CommitOperation, Driver, Fence, TransactionOptions } from "./types.js";

/*
 * Fenced writes: a write carrying `{ fence }` lands only if `fence.token` is
 * at least the highest token already used with `fence.fenceId` on the
 * mount. The highest token lives in a fence record beside the data, in the
 * same mount, and is checked and raised in the same driver `commit` as the
 * write: a `check` of the record's etag, a `set` of the new token when it is
 * higher, then the write's own operations. So a holder paused past its lease
 * cannot land a late write once a later holder has written: the storage is
 * the service that checks the token.
 */

/**
 * Fence records sit at the top of a mount as `stowage-fence-<sha256 of the
 * fenceId in hex>$$`. A key ending in `$` is never a user key (the storage
 * refuses it, listings hide it), and `k$$` would be the sidecar of `k$`, a
 * key no one can write, so a record collides with no user key and no
 * sidecar. One segment of fixed length, in characters every driver's key
 * encoder takes (letters, digits, `-`, `$`): no user base but the whole
 * mount reaches it, so only a clear of the whole mount drops it.
 */
const RECORD_PREFIX = "stowage-fence-";

/** Attempts of a fenced commit while the fence record keeps moving under it (each move is a higher token landing). */
const MAX_ATTEMPTS = 16;

/** The request headers a fenced write carries its fence in over HTTP (the http driver sends them, the server reads them). */
export const FENCE_ID_HEADER = "x-fence-id";
export const FENCE_TOKEN_HEADER = "x-fence-token";
/**
 * Answer headers that say the server fenced: `X-Fence-Applied` (the token)
 * on a fenced write's success, `X-Fence-Accepted` (the token it was sent)
 * on the OPTIONS probe. The http driver probes once before its first
 * fenced write and checks the echo after each one, so a server or proxy
 * that drops the fence never passes for one that applied it.
 */
export const FENCE_APPLIED_HEADER = "x-fence-applied";
export const FENCE_ACCEPTED_HEADER = "x-fence-accepted";

/** The fence record's key in its mount (relative to the mount's base). */
export function fenceRecordKey(fenceId: string): string {
  return `${RECORD_PREFIX}${createHash("sha256").update(fenceId, "utf8").digest("hex")}$$`;
}

/** Whether options carry a fence: the option is present, whatever its value (`{ fence: undefined }` is a lock that is missing, not no fence). */
export function hasFence(opts: unknown): boolean {
  return opts !== null && typeof opts === "object" && "fence" in opts;
}

/**
 * The fence of a write's options, checked and copied (a lock's token read
 * once, so the check and the raise use the same token); undefined without one.
 *
 * @throws StorageError `E_INVALID_OPTION` unless `fence` is an object with a non-empty string `fenceId` and a positive safe integer `token`
 */
export function fenceOption(opts: object | undefined): Fence | undefined {
  if (!hasFence(opts)) return undefined;
  const fence: unknown = (opts as { fence?: unknown }).fence;
  if (fence === null || typeof fence !== "object") {
    throw new StorageError("E_INVALID_OPTION", `fence must be an object with fenceId and token, got ${fence === null ? "null" : typeof fence}`);
  }
  const { fenceId, token } = fence as { fenceId?: unknown; token?: unknown };
  if (typeof fenceId !== "string" || fenceId.length === 0) {
    throw new StorageError("E_INVALID_OPTION", `fence.fenceId must be a non-empty string, got ${typeof fenceId === "string" ? '""' : typeof fenceId}`);
  }
  if (typeof token !== "number" || !Number.isSafeInteger(token) || token < 1) {
    throw new StorageError("E_INVALID_OPTION", `fence.token must be a positive safe integer, got ${String(token)}`);
  }
  return { fenceId, token };
}

/** Options without `fence`: what the driver's commit and the write's own operations get, the fence being applied by the core. */
export function withoutFence<T extends TransactionOptions>(opts: T): T {
  if (!hasFence(opts)) return opts;
  const rest = { ...opts } as T & { fence?: unknown };
  delete rest.fence;
  return rest;
}

/**
 * Refuses a fence where it cannot be honoured: options of reads and of the
 * methods that take none, and the per-entry options of setItems (a fence
 * is one of its common options).
 *
 * @throws StorageError `E_INVALID_OPTION` when `opts` holds `fence`
 */
export function refuseFence(opts: unknown, where: string): void {
  if (hasFence(opts)) {
    throw new StorageError("E_INVALID_OPTION", `${where} takes no fence: a fence guards setItem, setItemRaw, removeItem, setItems (common options) and transaction`);
  }
}

/**
 * Where a fenced write goes, with its fence as checked: `"driver"`, a driver that applies
 * `options.fence` itself in the same atomic step as the write (flag
 * `fence`: the http driver, whose server fences on its own storage), for
 * one key only; `"commit"`, the core's fenced commit on a driver flagged
 * `transactions`. The fence is checked first.
 *
 * @throws StorageError `E_INVALID_OPTION` for a malformed fence; `E_UNSUPPORTED`
 *   for the sync API, and on a mount that can do neither (never emulated with a race)
 */
export function fenceRoute(mount: Mount, sync: boolean, opts: object, single: boolean): { route: "driver" | "commit"; fence: Fence } {
  // Parsed once here and handed on, so the check, the route and the commit use the same token.
  const fence = fenceOption(opts)!;
  if (sync) throw new StorageError("E_UNSUPPORTED", "A fenced write has no sync form: use the async API", { driver: mount.name });
  // The mount's store: the driver with the core's layers (TTL) in front, through which the write goes.
  if (commitsAtomically(mount.store)) return { route: "commit", fence };
  if (single && mount.store.flags?.fence) return { route: "driver", fence };
  throw new StorageError(
    "E_UNSUPPORTED",
    `A fenced ${single ? "write" : "setItems"} needs a driver flagged "transactions"${single ? ' (or "fence")' : ""}; ${mount.name} is not`,
    { driver: mount.name },
  );
}

/** The highest token a fence record holds (0 without one), from its stored form. */
function tokenOf(stored: unknown, mount: Mount, key: string): number {
  if (stored === null || stored === undefined) return 0;
  let record: unknown = stored;
  try {
    if (typeof stored === "string") record = JSON.parse(stored);
    else if (stored instanceof Uint8Array) record = JSON.parse(new TextDecoder().decode(stored));
  } catch (error) {
    throw new StorageError("E_CORRUPT", `The fence record ${key} is not JSON`, { driver: mount.name, key, cause: error });
  }
  const token = (record as { token?: unknown } | null)?.token;
  if (typeof token !== "number" || !Number.isSafeInteger(token) || token < 1) {
    throw new StorageError("E_CORRUPT", `The fence record ${key} holds no token`, { driver: mount.name, key });
  }
  return token;
}

/** The fence record's etag (null: absent). */
async function recordEtag(mount: Mount, key: string): Promise<string | null> {
  // From the mounted driver itself: a record has no expiry for the core's TTL layer to apply.
  const driver: Driver = mount.driver;
  if (!driver.getMeta) throw new StorageError("E_UNSUPPORTED", `A fenced write needs getMeta with etags; ${mount.name} has none`, { driver: mount.name });
  const meta = await driver.getMeta(key, {});
  return typeof meta?.etag === "string" ? meta.etag : null;
}

/**
 * The fence record as the commit will check it: its etag read BEFORE its
 * value, so a value read stale (older than the etag) cannot be — a record
 * that moves after the etag was read fails the commit's check.
 */
async function readRecord(mount: Mount, key: string): Promise<{ etag: string | null; token: number }> {
  const etag = await recordEtag(mount, key);
  const stored = await mount.driver.getItem(key, {});
  return { etag, token: tokenOf(stored, mount, key) };
}

/**
 * Commits a write's operations fenced: the record checked by etag, raised
 * when the token is higher, and the operations from `plan` (planned again
 * on each attempt), all in one driver commit. E_CONFLICT from the commit
 * is re-examined: a record that moved means a higher token landed in
 * between, so the next attempt re-reads it (and is fenced out if it is now
 * lower); a record that did not move means the caller's own guards failed,
 * and E_CONFLICT goes back to the caller.
 *
 * @throws StorageError `E_FENCED` when the token is lower than the record's (nothing changed);
 *   `E_CONFLICT` from the caller's guards, or when the record kept moving for {@link MAX_ATTEMPTS} attempts;
 *   `E_CORRUPT` for a record that holds no token
 */
export async function commitFenced(
  mount: Mount,
  writer: Driver,
  fence: Fence,
  plan: () => CommitOperation[] | Promise<CommitOperation[]>,
  opts: TransactionOptions,
): Promise<void> {
  const key = fenceRecordKey(fence.fenceId);
  for (let attempt = 1; ; attempt++) {
    const record = await readRecord(mount, key);
    if (fence.token < record.token) {
      throw new StorageError("E_FENCED", `Fenced out: token ${fence.token} of ${JSON.stringify(fence.fenceId)} is lower than ${record.token}, already used on ${mount.name}`, {
        driver: mount.name,
      });
    }
    const operations: CommitOperation[] = [{ type: "check", key, etag: record.etag }];
    if (fence.token > record.token) {
      operations.push({ type: "set", key, value: JSON.stringify({ fenceId: fence.fenceId, token: fence.token }), options: {} });
    }
    operations.push(...(await plan()));
    try {
      await writer.commit!(operations, opts);
      return;
    } catch (error) {
      if (!isStorageError(error, "E_CONFLICT")) throw error;
      if ((await recordEtag(mount, key)) === record.etag) throw error;
      if (attempt >= MAX_ATTEMPTS) {
        throw new StorageError("E_CONFLICT", `The fence record of ${JSON.stringify(fence.fenceId)} kept moving for ${MAX_ATTEMPTS} attempts`, { driver: mount.name, cause: error });
      }
    }
  }
}

/**
 * Refuses a fence on a write that has no fenced form (setItemStream: a
 * stream cannot share a commit with the fence record).
 *
 * @throws StorageError `E_UNSUPPORTED` when `opts` holds `fence`
 */
export function refuseUnfenceable(opts: unknown, method: string): void {
  if (hasFence(opts)) {
    throw new StorageError("E_UNSUPPORTED", `${method} has no fenced form: write the value with setItemRaw(key, bytes, { fence })`);
  }
}
