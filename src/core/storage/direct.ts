import { isPromise, chain, type MaybePromise } from "../maybePromise.js";
import type { Located } from "../mounts.js";
import { deserializeRaw, type Serializer } from "../serializer.js";
import { bytesOf, gather, wholeStream, withStorageErrors, type Body } from "../streams.js";
import { refuseFence, refuseUnfenceable } from "../fence.js";
import { checkWriteOptions } from "../guards.js";
import type { ItemStream, SetOptions, Storage, StorageMeta, TransactionOptions } from "../types.js";
import { checkCallOptions, locate, NO_OPTIONS, type StorageContext } from "./context.js";
import { toPromise } from "./forms.js";
import { metaOf, readStep } from "./reads.js";
import { withTtl, writeStep } from "./writes.js";

/** A stored entry as {@link DirectAccess.read} finds it. */
export interface StoredEntry {
  /** What the driver stored: text in the storage's serializer format (or a driver's own value), or bytes for a raw read. */
  stored: unknown;
  /** The driver's meta (etag, mtime, size) and the expiry, as `getMeta(key, { nativeOnly: true })` has them. */
  meta: StorageMeta;
}

/**
 * Paths for code that moves stored text without decoding it into values
 * and encoding it again (the HTTP server). Each answers synchronously when
 * the key's driver does, and fails with a StorageError as the public API
 * does. Not part of the Storage API: get it with {@link getDirectAccess}.
 */
export interface DirectAccess {
  /** The serializer the stored text is in. */
  readonly serializer: Serializer;
  /** The meta of `key`, then its stored form (bytes when `raw`), from one key lookup; null when absent. */
  read(key: string, raw: boolean): MaybePromise<StoredEntry | null>;
  /** Stores text that is already in the serializer's format, as setItem stores a value's text. */
  writeText(key: string, text: string, opts: SetOptions): MaybePromise<void>;
}

const directAccess = new WeakMap<Storage, DirectAccess>();

/** The direct paths of a storage made by createCoreStorage; undefined for any other Storage. */
export function getDirectAccess(storage: Storage): DirectAccess | undefined {
  return directAccess.get(storage);
}

/** Registers the direct paths of a storage. */
export function setDirectAccess(storage: Storage, access: DirectAccess): void {
  directAccess.set(storage, access);
}

/** getMeta for a read that only needs native meta and expiry. */
const NATIVE_ONLY = Object.freeze({ nativeOnly: true });

export function readEntryStep(ctx: StorageContext, sync: boolean, key: string, raw: boolean): MaybePromise<StoredEntry | null> {
  return readEntry(ctx, locate(ctx, key, sync), raw);
}

function readEntry(ctx: StorageContext, loc: Located, raw: boolean): MaybePromise<StoredEntry | null> {
  // Meta before value: a write in between leaves a stale etag, which fails a later If-Match instead of passing it.
  const meta = metaOf(ctx, loc, NATIVE_ONLY);
  return isPromise(meta) ? meta.then((found) => entryOf(ctx, loc, found, raw)) : entryOf(ctx, loc, meta, raw);
}

function entryOf(ctx: StorageContext, loc: Located, meta: StorageMeta, raw: boolean): MaybePromise<StoredEntry | null> {
  const stored = readStep(ctx, loc, NO_OPTIONS, raw);
  if (isPromise(stored)) return stored.then((found) => toEntry(ctx, found, meta, raw));
  return toEntry(ctx, stored, meta, raw);
}

function toEntry(ctx: StorageContext, stored: unknown, meta: StorageMeta, raw: boolean): StoredEntry | null {
  if (stored === null) return null;
  return { stored: raw ? deserializeRaw(stored) : stored, meta };
}

export function writeTextStep(ctx: StorageContext, sync: boolean, key: string, text: string, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  return writeStep(ctx, locate(ctx, key, sync, true), text, opts);
}

/** getItemStream: the store's own stream (the TTL layer checks the expiry first), else the value read whole. */
export function getItemStream(ctx: StorageContext, key: string, opts: TransactionOptions = NO_OPTIONS): Promise<ItemStream | null> {
  return toPromise(ctx, key, () => {
    refuseFence(opts, "getItemStream");
    checkCallOptions(opts);
    const loc = locate(ctx, key, false);
    const driver = loc.mount.store;
    if (!driver.getItemStream) {
      return chain(readEntry(ctx, loc, true), (entry) => (entry === null ? null : wholeStream(entry.stored as Uint8Array, entry.meta)));
    }
    return chain(driver.getItemStream(loc.rel, opts), (opened) => (opened === null ? null : withStorageErrors(opened, loc.mount.name)));
  });
}

/** setItemStream: chunks go to a driver that takes them as they come, else are gathered for setItemRaw. */
export function setItemStream(ctx: StorageContext, key: string, body: unknown, opts: SetOptions = NO_OPTIONS): Promise<void> {
  let stream: Body | undefined;
  return toPromise(ctx, key, () => {
    stream = bytesOf(body);
    return writeStream(ctx, key, stream.chunks, opts);
  }).catch((error: unknown) => {
    // A write that fails before or while reading the body lets go of the caller's stream, without waiting on it.
    stream?.release().catch((releaseError: unknown) => process.emitWarning(`stowage: ending the stream of a failed setItemStream failed: ${String(releaseError)}`));
    // What the caller's own body threw comes back as it was thrown, however the driver reported it.
    const failure = stream?.failure();
    throw failure ? failure.error : error;
  });
}

/** Options are checked before a byte is read; a driver that cannot take chunks gets the body gathered. */
function writeStream(ctx: StorageContext, key: string, chunks: AsyncIterable<Uint8Array>, opts: SetOptions): MaybePromise<void> {
  checkCallOptions(opts);
  refuseUnfenceable(opts, "setItemStream");
  const loc = locate(ctx, key, false, true);
  checkWriteOptions(loc.mount, opts);
  const driver = loc.mount.store;
  if (!driver.setItemStream) return gather(chunks).then((bytes) => writeStep(ctx, loc, bytes, opts));
  return driver.setItemStream(loc.rel, chunks, withTtl(ctx, opts)).then(() => ctx.watchers.report(loc.mount, "update", loc.key));
}
