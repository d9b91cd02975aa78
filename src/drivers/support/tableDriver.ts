import { StorageError, type StorageErrorCode } from "../../core/errors.js";
import { hasGuard } from "../../core/guards.js";
import { filterKeyByDepth } from "../../core/keys.js";
import type { MaybePromise } from "../../core/maybePromise.js";
import type { SetOptions } from "../../core/types.js";

/**
 * What drivers that keep keys as rows of one table (sqlite, postgres, mysql) share:
 * key limits, error wrapping, schema creation once, batch preparation and
 * keyset paging. Each driver keeps its own SQL and its own error codes.
 */

/** One write of a batch, as the core hands it to a driver. */
export interface BatchItem {
  key: string;
  value: string;
  options?: SetOptions;
}

/**
 * The last write to each key of a batch, sorted by key, so that concurrent
 * batches lock rows in one order. A batch already in strictly ascending order
 * (no repeats) is returned as it is, without a map or a sort.
 */
export function lastWriteEach<T extends { key: string }>(items: T[]): T[] {
  let ascending = true;
  for (let i = 1; i < items.length && ascending; i++) ascending = items[i - 1]!.key < items[i]!.key;
  if (ascending) return items;
  const byKey = new Map<string, T>();
  for (const item of items) byKey.set(item.key, item);
  return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** Whether any write of a batch carries a CAS guard (its own options, else the batch's). */
export function hasGuards(items: BatchItem[], common: SetOptions): boolean {
  return items.some(({ options }) => hasGuard(options ?? common));
}

/** Whether an etag can be a stored version (1 to 18 digits, a BIGINT): any other never matches a row. */
export const isVersionEtag = (etag: string): boolean => /^\d{1,18}$/.test(etag);

/** The epoch ms at which a write made `now` expires, or null for none. */
export function expiresAt(now: number, opts: SetOptions | undefined): number | null {
  return opts?.ttl === undefined ? null : now + Math.ceil(opts.ttl);
}

/** Refuses a key longer than `maxBytes` of UTF-8 (counted only when its length allows that many). */
export function checkKeyBytes(key: string, maxBytes: number, driver: string): void {
  if (key.length * 3 > maxBytes && Buffer.byteLength(key) > maxBytes) {
    throw new StorageError("E_INVALID_KEY", `Key too long: ${Buffer.byteLength(key)} bytes, ${driver} keys hold at most ${maxBytes}`, { driver, key });
  }
}

/** A driver's error wrapper: whatever its client threw, as a StorageError coded by `classify`, the original as `cause`. */
export function errorWrapper(driver: string, classify: (error: unknown) => StorageErrorCode): (error: unknown, key?: string) => StorageError {
  return (error, key) => {
    if (error instanceof StorageError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new StorageError(classify(error), `[${driver}] ${message}`, { driver, key, cause: error });
  };
}

/**
 * Creates a table once per driver: concurrent callers share one attempt; a
 * failed attempt is forgotten, so a later call tries again (the server may be
 * back); a disposed driver refuses with E_UNAVAILABLE.
 */
export function schemaOnce(driver: string, create: () => Promise<void>, toError: (error: unknown) => StorageError) {
  let pending: Promise<void> | undefined;
  let disposed = false;
  return {
    ensure(): Promise<void> {
      if (disposed) return Promise.reject(new StorageError("E_UNAVAILABLE", `This ${driver} driver was disposed`, { driver }));
      pending ??= create().catch((error: unknown) => {
        pending = undefined;
        throw toError(error);
      });
      return pending;
    },
    dispose(): boolean {
      const first = !disposed;
      disposed = true;
      return first;
    },
  };
}

/** Keys at most `maxDepth` deep (all of them without one). */
export function withinDepth(keys: string[], maxDepth: number | undefined): string[] {
  return maxDepth === undefined ? keys : keys.filter((key) => filterKeyByDepth(key, maxDepth));
}

/**
 * Keyset paging over a primary key: `page(after, limit)` reads the next keys
 * in key order after `after`, with the cursor of its last row. Each page is
 * one index range read; a short page is the last. `page` may answer at once
 * (sqlite's synchronous statements) or with a promise.
 */
export async function* keysetPages<C>(
  first: C,
  limit: number,
  maxDepth: number | undefined,
  page: (after: C, limit: number) => MaybePromise<{ keys: string[]; last: C }>,
): AsyncGenerator<string[]> {
  let after = first;
  for (;;) {
    const { keys, last } = await page(after, limit);
    if (keys.length === 0) return;
    after = last;
    yield withinDepth(keys, maxDepth);
    if (keys.length < limit) return;
  }
}
