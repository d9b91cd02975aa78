import { StorageError } from "./errors.js";
import { guardChecks, withoutGuards } from "./guards.js";
import { all, chain, isPromise, type MaybePromise } from "./maybePromise.js";
import { BASE64_PREFIX, deserializeRaw, serializeRaw } from "./serializer.js";
import { gather, wholeStream } from "./streams.js";
import type { AsyncWrites, CommitOperation, Driver, DriverFlags, HistoryEntry, ItemStream, SetOptions, StorageMeta, TransactionOptions } from "./types.js";
import { wrapDriver, type WrappedDriver } from "./wrapDriver.js";

/** One encode/decode pair over whole values, for {@link transformValues}. */
export interface ValueTransform {
  /**
   * The wrapper's driver name.
   * @default "transform"
   */
  name?: string;
  /** The bytes to store for the bytes a user writes (compressed, encrypted, …). */
  encode(bytes: Uint8Array): MaybePromise<Uint8Array>;
  /** The user's bytes back from what `encode` made. */
  decode(bytes: Uint8Array): MaybePromise<Uint8Array>;
  /**
   * `encode` and `decode` return their result, never a promise: the wrapper
   * keeps the inner driver's `sync` flag. Otherwise it narrows it.
   * @default false
   */
  sync?: boolean;
  /**
   * `encode` gives the same bytes for the same input (gzip does; encryption
   * with a random IV does not). Over a driver whose etags are content hashes
   * (`etag: "content"`), a transform that is not declares `etag: "version"`:
   * the same value written again is stored as other bytes, so its etag changes.
   * @default true
   */
  deterministic?: boolean;
}

// The first byte of every encoded plaintext says what the user wrote, so reads give back the same type.
const STRING_TAG = 0x73; // "s": setItem's text, as UTF-8
const BYTES_TAG = 0x62; // "b": setItemRaw's bytes
// The first stored byte of a value stored as bytes, before the encoded ones: never the "b" of `base64:` text
// (the form written before, and still where the inner driver has no raw methods), nor the start of JSON or other foreign text.
const BYTES_FORM = 0x00;

type Value = string | Uint8Array;
const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Wraps `inner` so that every value passes through `encode` on the way in
 * and `decode` on the way out: the base of byte-changing layers
 * (compression, encryption). Every path is covered: setItem, setItems,
 * setItemRaw, setItemStream, commit operations and asyncWrites; getItem,
 * getItems, getItemRaw, getItemStream, getHistory and
 * `getItem(key, { version })`. Meta sidecars (`key$`, which hold TTLs and
 * setMeta fields) go through it like any value.
 *
 * How values are stored: a tag byte (string or bytes) and the user's bytes
 * (a string as UTF-8) are encoded together. Where `inner` has both
 * `getItemRaw` and `setItemRaw` (whose round trip the compliance kit checks
 * on every driver), the result is stored as bytes: one form byte (0x00) and
 * the encoded bytes, one byte more than `encode` made. `setItems` then
 * goes as one `commit` of `setRaw` operations where `inner` is flagged
 * `transactions` (so the batch stays atomic), else as one `setItemRaw` per
 * value; `getItems` reads in one inner `getItems` and reads again with
 * `getItemRaw` each value the driver hands back as text (git, redis,
 * http); history entries are read the same way, by version. Otherwise
 * the result is written as text, `base64:` followed by its base64, through
 * `inner.setItem` (a third more bytes). Values in that text form stay
 * readable on every driver. Streams are transformed whole (the value is
 * gathered first). `getMeta(key).size` is the user's size (one extra read
 * of the value when the driver reports a size). Etags are the inner
 * driver's, of the stored bytes: a transform that encodes the same bytes
 * differently each time (a random IV) makes a content-hash etag change on
 * every write.
 *
 * Flags follow {@link wrapDriver}'s rule; `sync` is narrowed unless the
 * transform says it is synchronous, and `etag: "content"` becomes
 * `"version"` when it says it is not deterministic.
 *
 * @throws StorageError `E_INVALID_OPTION` when `encode` or `decode` is not a function, `sync` or `deterministic` is not a boolean, or `inner` not a driver
 * @throws StorageError (from reads) `E_CORRUPT` when a stored value was not written through this transform or `decode` fails
 * @throws StorageError (from writes) `E_INVALID_VALUE` when `encode` fails
 * @example
 * const gzipped = transformValues(sqlite({ path: "data.db" }), { name: "gzip", encode: (b) => gzipSync(b), decode: (b) => gunzipSync(b), sync: true });
 */
export function transformValues(inner: Driver, transform: ValueTransform): WrappedDriver {
  const name = transform?.name ?? "transform";
  if (typeof transform?.encode !== "function" || typeof transform.decode !== "function") {
    throw new StorageError("E_INVALID_OPTION", `${name} needs encode and decode functions`, { driver: name });
  }
  for (const option of ["sync", "deterministic"] as const) {
    if (transform[option] !== undefined && typeof transform[option] !== "boolean") {
      throw new StorageError("E_INVALID_OPTION", `${name}: ${option} must be true or false`, { driver: name });
    }
  }
  const codec = valueCodec(transform, name);
  // inner's members bound to it (wrapDriver binds what it forwards), for the calls made here: a driver whose methods use `this` keeps it.
  const source = wrapDriver(inner, { name });
  const reads = source.getItemRaw && source.setItemRaw ? bytesReads(source, codec) : textReads(source, codec);
  const getMeta = source.getMeta && ((key: string, opts: TransactionOptions) => chain(source.getMeta!(key, opts), (meta) => userMeta(meta, () => reads.getItem(key, opts))));

  return wrapDriver(inner, {
    name,
    options: transform,
    flags: transformFlags(inner, transform),
    ...reads,
    getMeta,
    ...writesThrough(source, codec, inner.flags?.transactions === true),
    asyncWrites: source.asyncWrites && asyncWritesThrough(source, codec),
    // A stream has nowhere to go encoded without setItem or setItemRaw; forwarded, it would bypass the transform.
    drop: source.setItem || source.setItemRaw ? [] : ["setItemStream"],
  });
}

type Reads = Pick<Driver, "getItemRaw" | "getItems" | "getItemStream" | "getHistory"> & { getItem: (key: string, opts?: TransactionOptions) => MaybePromise<Value | null> };

/** Reads of values stored as bytes: getItemRaw, and a value the driver hands back as text read again as bytes. */
function bytesReads(source: Driver, codec: ValueCodec): Reads {
  const getItemRaw = source.getItemRaw!;
  const getItem = (key: string, opts?: TransactionOptions): MaybePromise<Value | null> => chain(getItemRaw(key, opts ?? {}), codec.read);
  /** A stored value as the driver gave it, or its bytes where it gave text that is not the `base64:` form (the stored bytes as lossy text). */
  const bytesOf = (stored: unknown, [key, opts]: [string, TransactionOptions]): MaybePromise<unknown> =>
    typeof stored === "string" && !stored.startsWith(BASE64_PREFIX) ? getItemRaw(key, opts) : stored;
  let itemsAsText = false;
  const readAgain = <T extends { value: unknown }>(entries: T[], keyOf: (entry: T) => [string, TransactionOptions]) =>
    all(entries.map((entry) => chain(chain(bytesOf(entry.value, keyOf(entry)), codec.read), (value) => ({ ...entry, value }))));
  return {
    getItem,
    getItemRaw: getItem,
    getItems:
      source.getItems &&
      ((items, common) => {
        const options = new Map(items.map((item) => [item.key, { ...common, ...item.options }]));
        const keyOf = (entry: { key: string }): [string, TransactionOptions] => [entry.key, options.get(entry.key) ?? common ?? {}];
        // A driver that handed back a value as text once does so for every value: its getItems would only add a round trip.
        if (itemsAsText) return readAgain(items.map(({ key }) => ({ key, value: "" })), keyOf);
        return chain(source.getItems!(items, common), (results) => {
          itemsAsText = results.some((entry) => typeof entry.value === "string" && !entry.value.startsWith(BASE64_PREFIX));
          return readAgain(results, keyOf);
        });
      }),
    getItemStream: source.getItemStream && ((key, opts) => chain(source.getItemStream!(key, opts), (opened) => opened && decodedStream(opened, codec, (bytes) => bytes))),
    getHistory:
      source.getHistory && ((key, opts) => chain(source.getHistory!(key, opts), (entries) => readAgain<HistoryEntry<unknown>>(entries, (entry) => [key, { version: entry.version }]))),
  };
}

/** Reads of values stored as `base64:` text, through the driver's own reads. */
function textReads(source: Driver, codec: ValueCodec): Reads {
  const decodeAll = <T extends { value: unknown }>(entries: T[]) => all(entries.map((entry) => chain(codec.read(entry.value), (value) => ({ ...entry, value }))));
  const getItem = (key: string, opts?: TransactionOptions): MaybePromise<Value | null> => chain(source.getItem(key, opts), codec.read);
  return {
    getItem,
    getItemRaw: source.getItemRaw && getItem,
    getItems: source.getItems && ((items, common) => chain(source.getItems!(items, common), decodeAll)),
    // Drivers stream the stored `base64:` text either as that text (fs) or as the bytes it stands for, as getItemRaw reads it (http).
    getItemStream:
      source.getItemStream &&
      ((key, opts) => chain(source.getItemStream!(key, opts), (opened) => opened && decodedStream(opened, codec, (bytes) => (startsWithPrefix(bytes) ? bytes : serializeRaw(bytes))))),
    getHistory: source.getHistory && ((key, opts) => chain(source.getHistory!(key, opts), (entries) => decodeAll<HistoryEntry<unknown>>(entries))),
  };
}

/** What the transform changes of inner's flags: sync unless it is synchronous, a content etag unless it is deterministic. */
function transformFlags(inner: Driver, transform: ValueTransform): DriverFlags {
  const flags: DriverFlags = transform.sync === true ? {} : { sync: false };
  if (transform.deterministic === false && inner.flags?.etag === "content") flags.etag = "version";
  return flags;
}

/** Values to stored bytes or text, and back from either. */
interface ValueCodec {
  /** The bytes form: {@link BYTES_FORM}, then the encoded bytes. */
  bytes(value: Value): MaybePromise<Uint8Array>;
  /** The text form: `base64:` and the encoded bytes' base64. */
  text(value: Value): MaybePromise<string>;
  read(stored: unknown): MaybePromise<Value | null>;
}

function valueCodec(transform: ValueTransform, name: string): ValueCodec {
  const encode = (value: Value) => chain(guarded(() => transform.encode(tagged(value)), "E_INVALID_VALUE", `${name}: encode failed`, name), (bytes) => checkedBytes(bytes, name));
  const decode = (bytes: Uint8Array) => guarded(() => transform.decode(bytes), "E_CORRUPT", `${name}: decode failed`, name);
  return {
    bytes: (value) => chain(encode(value), withForm),
    text: (value) => chain(encode(value), serializeRaw),
    read: (stored) => {
      if (stored === null || stored === undefined) return null;
      return chain(decode(encodedBytes(stored, name)), (plain) => untagged(checkedBytes(plain, name), name));
    },
  };
}

function withForm(encoded: Uint8Array): Uint8Array {
  const stored = new Uint8Array(encoded.byteLength + 1);
  stored[0] = BYTES_FORM;
  stored.set(encoded, 1);
  return stored;
}

/** Runs one side of the transform; what it throws or rejects with becomes a StorageError with `code`. */
function guarded(step: () => MaybePromise<Uint8Array>, code: "E_INVALID_VALUE" | "E_CORRUPT", message: string, name: string): MaybePromise<Uint8Array> {
  const fail = (cause: unknown): never => {
    if (cause instanceof StorageError) throw cause;
    throw new StorageError(code, `${message}: ${cause instanceof Error ? cause.message : String(cause)}`, { driver: name, cause });
  };
  try {
    const result = step();
    return isPromise(result) ? result.catch(fail) : result;
  } catch (error) {
    return fail(error);
  }
}

function checkedBytes(bytes: unknown, name: string): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  throw new StorageError("E_INVALID_VALUE", `${name}: encode and decode must return a Uint8Array, got ${typeof bytes}`, { driver: name });
}

function tagged(value: Value): Uint8Array {
  const payload = typeof value === "string" ? new TextEncoder().encode(value) : value;
  const plain = new Uint8Array(payload.byteLength + 1);
  plain[0] = typeof value === "string" ? STRING_TAG : BYTES_TAG;
  plain.set(payload, 1);
  return plain;
}

function untagged(plain: Uint8Array, name: string): Value {
  const payload = plain.subarray(1);
  // A copy, and a plain Uint8Array even when the transform hands back a Buffer.
  if (plain[0] === BYTES_TAG) return new Uint8Array(payload);
  if (plain[0] === STRING_TAG) {
    try {
      return utf8.decode(payload);
    } catch (cause) {
      throw new StorageError("E_CORRUPT", `${name}: a stored string is not UTF-8`, { driver: name, cause });
    }
  }
  throw new StorageError("E_CORRUPT", `${name}: a stored value carries no type tag (written without this transform?)`, { driver: name });
}

/**
 * The encoded bytes in a stored value: the bytes form, or `base64:` text as a
 * string or as the bytes of one (drivers differ in which they hand back).
 */
function encodedBytes(found: unknown, name: string): Uint8Array {
  // An ArrayBuffer is bytes too, as the core's raw reads take it.
  const stored = found instanceof ArrayBuffer ? new Uint8Array(found) : found;
  if (stored instanceof Uint8Array && stored[0] === BYTES_FORM) return stored.subarray(1);
  const text = stored instanceof Uint8Array ? Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).toString("utf8") : stored;
  if (typeof text !== "string" || !text.startsWith(BASE64_PREFIX)) {
    throw new StorageError("E_CORRUPT", `${name}: a stored value was not written through this transform`, { driver: name });
  }
  return deserializeRaw(text)!;
}

/** The size the user wrote, in place of the stored one; the value is read only where the driver reports a size. */
function userMeta(meta: StorageMeta | null, read: () => MaybePromise<Value | null>): MaybePromise<StorageMeta | null> {
  if (meta === null || meta.size === undefined) return meta;
  return chain(read(), (current) => (current === null ? meta : { ...meta, size: byteLength(current) }));
}

const byteLength = (value: Value) => (typeof value === "string" ? Buffer.byteLength(value) : value.byteLength);

/**
 * The inner driver's stream decoded whole, as one chunk: its meta is the
 * version the inner stream opened (a value and a meta read apart could
 * pair one version's bytes with the next one's etag), with the user's size.
 * `stored` turns the streamed bytes into what `codec.read` takes.
 */
async function decodedStream(opened: ItemStream, codec: ValueCodec, stored: (bytes: Uint8Array) => Value): Promise<ItemStream> {
  const value = await codec.read(stored(await gather(opened.body)));
  return wholeStream(deserializeRaw(value!)!, opened.meta);
}

const PREFIX_BYTES = Buffer.from(BASE64_PREFIX);
const startsWithPrefix = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).subarray(0, PREFIX_BYTES.length).equals(PREFIX_BYTES);

/**
 * The write methods of the wrapper over `target` (the inner driver, or its
 * asyncWrites), each only where `target` has its own. With `setItemRaw` and
 * `getItemRaw` values go as bytes to `setItemRaw`; else as text to
 * `setItem`, or as the bytes of that text to a `setItemRaw` without
 * `setItem`, so no write of `target` is left to bypass the transform.
 */
function writesThrough(target: Driver, codec: ValueCodec, transactional: boolean): Partial<Driver> {
  const { setItem, setItemRaw } = target;
  if (setItemRaw && target.getItemRaw) return bytesWrites(target, codec, transactional);
  const commit = target.commit && commitThrough(target.commit, codec.text);
  const store = setItem ?? (setItemRaw && ((key: string, text: string, opts: TransactionOptions) => setItemRaw(key, Buffer.from(text), opts)));
  if (!store) return { setItems: target.setItems && setItemsThrough(target.setItems, codec), commit };
  const set = (key: string, value: Value, opts: TransactionOptions) => chain(codec.text(value), (text) => store(key, text, opts));
  return {
    setItem: setItem && set,
    setItemRaw: setItemRaw && set,
    setItems: target.setItems && setItemsThrough(target.setItems, codec),
    setItemStream: target.setItemStream && ((key, body, opts) => gather(body).then((bytes) => set(key, bytes, opts))),
    commit,
  };
}

/**
 * Writes in the bytes form, all to `setItemRaw` or `commit`. A setItems is
 * one commit where `target` is transactional (atomic, as its setItems was);
 * else one setItemRaw per value, as a driver without transactions promises
 * no all-or-nothing batch.
 */
function bytesWrites(target: Driver, codec: ValueCodec, transactional: boolean): Partial<Driver> {
  const setItemRaw = target.setItemRaw!;
  const set = (key: string, value: Value, opts: TransactionOptions) => chain(codec.bytes(value), (bytes) => setItemRaw(key, bytes, opts));
  const commit = target.commit && commitThrough(target.commit, codec.bytes);
  const setItems: Driver["setItems"] =
    commit && transactional
      ? (items, common = {}) => commit(items.flatMap((item) => guardedSet(item.key, item.value, item.options ?? common)), withoutGuards(common))
      : (items, common = {}) => chain(all(items.map((item) => set(item.key, item.value, item.options ?? common))), () => undefined);
  return {
    setItem: target.setItem && set,
    setItemRaw: set,
    setItems: target.setItems && setItems,
    setItemStream: target.setItemStream && ((key, body, opts) => gather(body).then((bytes) => set(key, bytes, opts))),
    commit,
  };
}

/** A setItems entry as commit operations: its guard as a check (as the core's commits carry guards), then the write. */
function guardedSet(key: string, value: string, options: SetOptions): CommitOperation[] {
  return [...guardChecks(key, options), { type: "set", key, value, options: withoutGuards(options) }];
}

/** A setItems whose values are encoded to text first. */
function setItemsThrough(setItems: NonNullable<Driver["setItems"]>, codec: ValueCodec): NonNullable<Driver["setItems"]> {
  return (items, common) => chain(all(items.map((item) => chain(codec.text(item.value), (value) => ({ ...item, value })))), (encoded) => setItems(encoded, common));
}

/** The inner driver's asyncWrites, each write transformed (removals pass as they are). */
function asyncWritesThrough(inner: Driver, codec: ValueCodec): AsyncWrites {
  const writes = inner.asyncWrites!;
  const target = { ...inner, ...writes } as Driver;
  const through = writesThrough(target, codec, inner.flags?.transactions === true);
  return {
    setItem: writes.setItem && through.setItem,
    setItemRaw: writes.setItemRaw && through.setItemRaw,
    setItems: writes.setItems && through.setItems,
    commit: writes.commit && through.commit,
    removeItem: writes.removeItem?.bind(writes),
  };
}

/** A commit whose set operations are encoded by `form`: bytes go as setRaw, text as set. */
function commitThrough<F extends string | Uint8Array>(commit: NonNullable<Driver["commit"]>, form: (value: Value) => MaybePromise<F>): NonNullable<Driver["commit"]> {
  const encodeOp = (op: CommitOperation): MaybePromise<CommitOperation> =>
    op.type === "set" || op.type === "setRaw"
      ? chain(form(op.value), (value): CommitOperation => (typeof value === "string" ? { type: "set", key: op.key, value, options: op.options } : { type: "setRaw", key: op.key, value, options: op.options }))
      : op;
  return (operations, opts) => chain(all(operations.map(encodeOp)), (encoded) => commit(encoded, opts));
}
