import { StorageError } from "../../core/errors.js";
import { guardOf } from "../../core/guards.js";
import { checkKeyLimits, filterKeyByDepth, isMetaKey } from "../../core/keys.js";
import type { CommitOperation, DriverFlags, KeyLimits, RemoveOptions, SetOptions, StorageMeta } from "../../core/types.js";
import type { ObjectId } from "../objects/objectId.js";
import type { Repository } from "../repo/repository.js";
import type { NameChange, TreeRef } from "./treeRef.js";

/**
 * Refuses a key past a git driver's limits with E_INVALID_KEY, for use
 * without the core (which checks them first). The core's meta key of a key
 * (`<key>$`, its TTL sidecar) is one byte longer and within the limits
 * whenever its key is.
 */
export function checkDriverKey(key: string, limits: KeyLimits, driver: string): void {
  checkKeyLimits(isMetaKey(key) ? key.slice(0, -1) : key, limits, driver);
}

/**
 * The old value a write's guard ({@link guardOf}) asks for, as a ref change
 * states it: `undefined` (none), `null` (absent) or an etag.
 *
 * @throws StorageError `E_CONFLICT` for `ifMatch` together with `ifNoneMatch`
 */
export function expectation(opts: SetOptions | RemoveOptions | undefined, driver: string, key: string): string | null | undefined {
  const guard = guardOf(opts, driver, key);
  if (guard.kind === "none") return undefined;
  return guard.kind === "match" ? guard.etag : null;
}

/**
 * Folds a transaction's operations into one change per name: the last write
 * wins, conditions (`check`, `ifMatch`, `ifNoneMatch`) add up, and two
 * different conditions on one key are `E_CONFLICT` at once (both can never
 * hold). A check alone writes back the value it requires: a no-op once it holds.
 */
export function foldOperations(
  operations: readonly CommitOperation[],
  nameOf: (key: string) => string,
  build: (op: Exclude<CommitOperation, { type: "check" }>) => NameChange,
  driver: string,
): NameChange[] {
  const changes = new Map<string, NameChange>();
  for (const op of operations) {
    const next = op.type === "check" ? undefined : build(op);
    const name = nameOf(op.key);
    const previous = changes.get(name);
    const wanted = op.type === "check" ? op.etag : next?.expected;
    if (previous?.expected !== undefined && wanted !== undefined && previous.expected !== wanted) {
      throw new StorageError("E_CONFLICT", `Conflicting conditions on one key: ${op.key}`, { driver, key: op.key });
    }
    const expected = previous?.expected ?? wanted;
    const merged: NameChange = next ?? previous ?? { name, id: op.type === "check" ? op.etag : null };
    const entry: NameChange = { name, id: merged.id };
    if (merged.also !== undefined) entry.also = merged.also;
    if (expected !== undefined) entry.expected = expected;
    changes.set(name, entry);
  }
  return [...changes.values()];
}

/**
 * Queues the change `make` builds for the next group commit. A change that
 * cannot be built (a key the driver refuses) rejects on its own, before
 * anything is queued, instead of throwing into its caller's batch.
 */
export function enqueueChange(ref: TreeRef, make: () => NameChange): Promise<void> {
  let change: NameChange;
  try {
    change = make();
  } catch (error) {
    return Promise.reject(error);
  }
  return ref.enqueue(change);
}

/** What the drivers whose keys each name one blob (git-refs, git-notes, git-objects) can do. */
export const BLOB_DRIVER_FLAGS: DriverFlags = Object.freeze({ maxDepth: true, sync: true, cas: true, etag: "content", transactions: true, clearBase: true, nestedKeys: true });

/** The read methods of a driver whose keys each name one blob. */
export interface BlobReads {
  hasItem(key: string): boolean;
  getItem(key: string): string | null;
  getItemRaw(key: string): Uint8Array | null;
  getItems(items: { key: string }[]): { key: string; value: string | null }[];
  getMeta(key: string): StorageMeta | null;
  getKeys(base: string, opts: { maxDepth?: number }): string[];
}

/**
 * Reads for the drivers whose keys name blobs (git-refs, git-notes,
 * git-objects), from where a key's blob id is and which keys lie under a
 * base: the etag is the blob id, raw values are copies (the object cache
 * shares its buffers).
 */
export function blobReads(repo: Repository, idOf: (key: string) => ObjectId | undefined, keysUnder: (base: string) => string[]): BlobReads {
  const blobOf = (key: string): Buffer | undefined => {
    const id = idOf(key);
    return id === undefined ? undefined : repo.readBlob(id);
  };
  const textOf = (key: string): string | null => blobOf(key)?.toString("utf8") ?? null;
  return {
    hasItem: (key) => idOf(key) !== undefined,
    getItem: textOf,
    getItemRaw: (key) => {
      const body = blobOf(key);
      return body === undefined ? null : Buffer.from(body);
    },
    getItems: (items) => items.map(({ key }) => ({ key, value: textOf(key) })),
    getMeta: (key) => {
      const id = idOf(key);
      return id === undefined ? null : { etag: id, size: repo.readBlob(id).length };
    },
    getKeys: (base, opts) => {
      const keys = keysUnder(base ?? "");
      return opts?.maxDepth === undefined ? keys : keys.filter((key) => filterKeyByDepth(key, opts.maxDepth));
    },
  };
}
