/**
 * The GitVan guide's lock storage (acquireLock / releaseLock / isLocked /
 * getLockInfo / renewLock / cleanup) as a thin adapter over
 * {@link createLocks}: the same calls and return conventions, but taken by
 * compare-and-swap with fencing tokens instead of check-then-act.
 */
import { isStorageError, StorageError } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import type { Clock, Storage } from "../core/types.js";
import { createLocks, type LockInfo } from "./locks.js";

/** Options of {@link lockStorage}. */
export interface LockStorageOptions {
  /** The storage the lock records live in; its mount for `<prefix>:<key>` must be flagged `cas`. */
  storage: Storage;
  /**
   * Lease length in ms of every lock taken or renewed through the adapter.
   * @default 30000
   */
  ttl?: number;
  /**
   * Key under which the lock records live.
   * @default "locks"
   */
  prefix?: string;
  /**
   * Where time comes from.
   * @default the system clock (`Date.now`)
   */
  clock?: Clock;
}

/** The guide's LockInfo, plus the fencing token. `acquired + ttl` is when the lease ends (a renewal raises `ttl`). */
export interface GitVanLockInfo {
  owner: string;
  /** Epoch ms when this holder acquired the lock. */
  acquired: number;
  /** Ms from `acquired` to the end of the lease. */
  ttl: number;
  /** `<pid>@<host>` of the process that acquired it. */
  process: string;
  /** The fencing token of this holding. */
  token: number;
}

/**
 * The guide's lock storage. Its booleans answer the lock questions; what is
 * not a lock answer still throws (the guide returned false for those): the
 * storage's own errors (`E_UNAVAILABLE`, …), `E_INVALID_KEY` for a bad key,
 * `E_UNSUPPORTED` on a mount not flagged `cas`, `E_CORRUPT` for a record that is not a lock's.
 */
export interface GitVanLockStorage {
  /** True when `owner` now holds `key`; when it already held it, its lease is renewed to `ttl` from now (false if that renewal finds the lease ended). False while another owner holds it. */
  acquireLock(key: string, owner: string): Promise<boolean>;
  /** True when released, or when nobody held it; false when another owner holds it, or `owner`'s lease had already ended (nothing changes). */
  releaseLock(key: string, owner: string): Promise<boolean>;
  /** Whether `key` has a holder whose lease has not ended. */
  isLocked(key: string): Promise<boolean>;
  /** The holder of `key`, or null when free or expired. */
  getLockInfo(key: string): Promise<GitVanLockInfo | null>;
  /** True when `owner`'s lease now ends `ttl` from now; false when `owner` does not hold `key` or its lease had ended. */
  renewLock(key: string, owner: string): Promise<boolean>;
  /** Clears the holders whose lease ended (their tokens stay); returns how many. */
  cleanup(): Promise<number>;
}

/**
 * The GitVan guide's lock storage over any storage whose driver is flagged `cas`.
 *
 * @example
 * const locks = lockStorage({ storage, ttl: 30_000 });
 * if (await locks.acquireLock("deploy", "worker-1")) { ... await locks.releaseLock("deploy", "worker-1"); }
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, a missing storage, a bad ttl or clock; `E_INVALID_KEY` for a bad prefix
 */
export function lockStorage(options: LockStorageOptions): GitVanLockStorage {
  checkOptions("lockStorage", options, ["storage", "ttl", "prefix", "clock"]);
  const { storage, ...lockOptions } = options ?? ({} as LockStorageOptions);
  if (storage === null || typeof storage !== "object" || typeof storage.getMeta !== "function") {
    throw new StorageError("E_INVALID_OPTION", "[lockStorage] storage must be a stowage Storage");
  }
  const locks = createLocks(storage, lockOptions);

  /** `action`'s answer, or false when it failed because `owner` does not hold the lock (E_NOT_OWNER, E_LOCK_LOST). */
  const unlessNotHeld = async (action: () => Promise<unknown>): Promise<boolean> => {
    try {
      await action();
      return true;
    } catch (error) {
      if (isStorageError(error, "E_NOT_OWNER") || isStorageError(error, "E_LOCK_LOST")) return false;
      throw error;
    }
  };

  const renewHeld = (key: string, owner: string) => unlessNotHeld(() => locks.renew(key, owner));

  return {
    async acquireLock(key, owner) {
      if ((await locks.acquire(key, { owner })) !== null) return true;
      // Refused: re-entrant when the owner already holds it (its lease renewed, as a fresh acquire would start it).
      return (await locks.info(key))?.owner === owner && renewHeld(key, owner);
    },
    async releaseLock(key, owner) {
      try {
        await locks.release(key, owner);
        return true;
      } catch (error) {
        if (isStorageError(error, "E_LOCK_LOST")) return false;
        // Refused: true only when that was because nobody holds it (the guide's "already released").
        if (isStorageError(error, "E_NOT_OWNER")) return (await locks.info(key)) === null;
        throw error;
      }
    },
    isLocked: (key) => locks.isLocked(key),
    async getLockInfo(key) {
      const info = await locks.info(key);
      return info && gitVanInfo(info);
    },
    renewLock: (key, owner) => renewHeld(key, owner),
    cleanup: () => locks.cleanup(),
  };
}

function gitVanInfo(info: LockInfo): GitVanLockInfo {
  return { owner: info.owner, acquired: info.acquiredAt, ttl: info.expiresAt - info.acquiredAt, process: `${info.pid}@${info.host}`, token: info.token };
}
