import { StorageError, isStorageError } from "./errors.js";
import { commitFenced, fenceOption, refuseFence, withoutFence } from "./fence.js";
import { checkWriteOptions, hasGuard, refuseCreateOnlyRemoval } from "./guards.js";
import { metaKeyOf } from "./keys.js";
import { commitsAtomically, type Located, type Mount } from "./mounts.js";
import type { Serializer } from "./serializer.js";
import { toBytes } from "./serializer.js";
import type {
  CommitOperation,
  RemoveOptions,
  SetOptions,
  Storage,
  TransactionHandle,
  TransactionOptions,
  UpdateOptions,
} from "./types.js";

/** What a transaction needs from the storage that runs it. */
export interface TransactionContext {
  serializer: Serializer;
  /** Resolves a key; `write`: it is written or removed, so a `?` in it is E_INVALID_KEY. */
  locate(key: string, write?: boolean): Located;
  report(mount: Mount, event: "update" | "remove", key: string): void;
  /** The ttl a write gets: its own, or the storage's default. */
  checkTtl(ttl: unknown): number | undefined;
  /** The storage's clock, in epoch milliseconds: when a ttl written now expires. */
  now(): number;
  /** The root mount: where a fenced transaction that touched no key checks its fence. */
  root(): Mount;
}

/** A write as a transaction buffers it (and as a fenced write is planned, see storage/fenced.ts). */
export type BufferedWrite =
  | { loc: Located; type: "set"; value: string; options: SetOptions }
  | { loc: Located; type: "setRaw"; value: Uint8Array; options: SetOptions }
  | { loc: Located; type: "remove"; options: RemoveOptions };

/**
 * What the caller's own callback threw, on its way out of `update` or
 * `transaction`: the storage hands `error` back as it was (same object),
 * where every other failure becomes a StorageError.
 */
export class CallerError {
  constructor(readonly error: unknown) {}
}

/** Refuses a callback that is not a function before anything runs (calling it would throw a TypeError the caller did not write). */
function checkCallback(method: string, fn: unknown): void {
  if (typeof fn !== "function") throw new StorageError("E_INVALID_OPTION", `${method} needs a function, got ${fn === null ? "null" : typeof fn}`);
}

/** Runs the caller's callback; what it throws travels as a {@link CallerError}. */
async function callerStep<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw new CallerError(error);
  }
}

/**
 * Read-modify-write on etags: re-reads and re-runs `fn` when another writer
 * got in between, up to `retries` times, then fails with E_CONFLICT.
 */
export async function runUpdate<R>(
  storage: Storage,
  mount: Mount,
  key: string,
  fn: (current: R | null) => unknown,
  opts: UpdateOptions,
): Promise<R | null> {
  checkCallback("update", fn);
  if (!mount.driver.flags?.cas) {
    throw new StorageError("E_UNSUPPORTED", `update needs a driver flagged "cas"; ${mount.name} is not`, { driver: mount.name });
  }
  const retries = opts.retries ?? 10;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new StorageError("E_INVALID_OPTION", `retries must be a non-negative integer, got ${String(opts.retries)}`, { driver: mount.name });
  }
  for (let attempt = 0; ; attempt++) {
    const { etag } = await storage.getMeta(key, { nativeOnly: true });
    const current = await storage.getItem<R>(key);
    const next = await callerStep(() => fn(current));
    const guard: SetOptions = etag ? { ifMatch: etag } : { ifNoneMatch: "*" };
    try {
      if (next === undefined) {
        if (etag) await storage.removeItem(key, { ifMatch: etag });
        return null;
      }
      await storage.setItem(key, next, opts.ttl === undefined ? guard : { ...guard, ttl: opts.ttl });
      return next as R;
    } catch (error) {
      if (!isStorageError(error, "E_CONFLICT") || attempt >= retries) throw error;
    }
  }
}

/**
 * The mount a transaction runs in, if its driver has atomic commits.
 *
 * @throws StorageError `E_UNSUPPORTED` for a driver not flagged "transactions"
 */
function transactional(mount: Mount): Mount {
  if (!commitsAtomically(mount.store)) {
    throw new StorageError("E_UNSUPPORTED", `transaction needs a driver flagged "transactions"; ${mount.name} is not`, { driver: mount.name });
  }
  return mount;
}

/**
 * Runs `fn` against a handle that buffers writes (reads see them), then
 * hands every write to the driver's atomic `commit`, guarded by the etags
 * of what `fn` read: all land, or none do.
 */
export async function runTransaction<R>(
  storage: Storage,
  context: TransactionContext,
  fn: (tx: TransactionHandle) => Promise<R> | R,
  opts: TransactionOptions,
): Promise<R> {
  checkCallback("transaction", fn);
  // A fence is checked before the callback runs, and applied at commit (core/fence.ts).
  const fence = fenceOption(opts);
  let mount: Mount | undefined;
  let finished = false;
  const writes = new Map<string, BufferedWrite>();
  const reads = new Map<string, string | null>();

  const enter = (key: string, write?: boolean): Located => {
    if (finished) throw new StorageError("E_INVALID_OPTION", "This transaction has already finished");
    const loc = context.locate(key, write);
    if (!mount) {
      mount = transactional(loc.mount);
    } else if (loc.mount !== mount) {
      throw new StorageError("E_UNSUPPORTED", `A transaction stays within one mount (${mount.base || "root"}), ${loc.key} is outside it`);
    }
    return loc;
  };

  // The etag is taken before the value, so a write in between shows up as a conflict at commit.
  const observe = async (loc: Located): Promise<void> => {
    if (reads.has(loc.key) || writes.has(loc.key) || !loc.mount.driver.flags?.cas) return;
    const { etag } = await storage.getMeta(loc.key, { nativeOnly: true });
    reads.set(loc.key, etag ?? null);
  };

  const readBuffered = (loc: Located, raw: boolean): unknown => {
    const write = writes.get(loc.key)!;
    if (write.type === "remove") return null;
    if (write.type === "setRaw") return raw ? write.value.slice() : context.serializer.deserialize(write.value.slice());
    return raw ? new TextEncoder().encode(write.value) : context.serializer.deserialize(write.value);
  };

  const tx: TransactionHandle = {
    async hasItem(key) {
      const loc = enter(key);
      if (writes.has(loc.key)) return writes.get(loc.key)!.type !== "remove";
      await observe(loc);
      return storage.hasItem(loc.key);
    },
    async getItem<T>(key: string) {
      const loc = enter(key);
      if (writes.has(loc.key)) return readBuffered(loc, false) as T | null;
      await observe(loc);
      return storage.getItem<T>(loc.key);
    },
    async getItemRaw(key) {
      const loc = enter(key);
      if (writes.has(loc.key)) return readBuffered(loc, true) as Uint8Array | null;
      await observe(loc);
      return storage.getItemRaw(loc.key);
    },
    async setItem(key, value, options = {}) {
      if (value === undefined) return tx.removeItem(key, options);
      const loc = enter(key, true);
      writes.delete(loc.key);
      writes.set(loc.key, { loc, type: "set", value: context.serializer.serialize(value), options });
    },
    async setItemRaw(key, value, options = {}) {
      const loc = enter(key, true);
      writes.delete(loc.key);
      writes.set(loc.key, { loc, type: "setRaw", value: toBytes(value).slice(), options });
    },
    async removeItem(key, options = {}) {
      refuseCreateOnlyRemoval(options);
      const loc = enter(key, true);
      writes.delete(loc.key);
      writes.set(loc.key, { loc, type: "remove", options });
    },
  };

  let result: R;
  try {
    result = await callerStep(() => fn(tx));
  } finally {
    finished = true;
  }
  // A fenced transaction commits even without writes: the check of its fence (and of its reads) is what it asked for.
  if (!fence && (!mount || writes.size === 0)) return result;
  const target = mount ?? transactional(context.root());
  const operations = await planCommit(context, target, reads, [...writes.values()]);
  if (fence) await commitFenced(target, target.writer, fence, () => operations, withoutFence(opts));
  else await target.writer.commit!(operations, opts);
  for (const write of writes.values()) context.report(target, write.type === "remove" ? "remove" : "update", write.loc.key);
  return result;
}

/** The driver operations for a transaction: etag checks first, then the writes. */
export async function planCommit(
  context: TransactionContext,
  mount: Mount,
  reads: Map<string, string | null>,
  writes: BufferedWrite[],
): Promise<CommitOperation[]> {
  const operations: CommitOperation[] = [];
  const relOf = (key: string) => key.slice(mount.base.length);
  for (const [key, etag] of reads) operations.push({ type: "check", key: relOf(key), etag });
  for (const write of writes) {
    refuseFence(write.options, "A transaction's write (pass the fence to transaction(fn, { fence }))");
    const rel = write.loc.rel;
    if (hasGuard(write.options)) {
      checkWriteOptions(mount, write.options);
      operations.push({ type: "check", key: rel, etag: write.options.ifMatch ?? null });
    }
    // The ttl goes with the write: the mount's store keeps it (natively, or in the sidecar, in this same commit: storage/expiry.ts).
    if (write.type === "remove") {
      operations.push({ type: "remove", key: rel, options: write.options });
      if ((write.options as RemoveOptions).removeMeta) operations.push({ type: "remove", key: metaKeyOf(rel), options: {} });
      continue;
    }
    const options: SetOptions = { ...write.options, ttl: context.checkTtl(write.options.ttl) };
    operations.push(write.type === "set" ? { type: "set", key: rel, value: write.value, options } : { type: "setRaw", key: rel, value: write.value, options });
  }
  return operations;
}
