import { randomBytes } from "node:crypto";
import {
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StoredMsg,
} from "@nats-io/jetstream";
import { KvWatchInclude, Kvm, type KV } from "@nats-io/kv";
import { connect, headers, type MsgHdrs, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { defineDriver } from "../core/defineDriver.js";
import { StorageError } from "../core/errors.js";
import { guardOf } from "../core/guards.js";
import { checkOptions } from "../core/options.js";
import { describeExpiry } from "../core/ttl.js";
import { filterKeyByDepth } from "../core/keys.js";
import { DEFAULT_KEY_LIMITS, type HistoryEntry, type RemoveOptions, type SetOptions, type StorageMeta, type WatchCallback, type WatchEvent } from "../core/types.js";
import { optionNames } from "./support/optionNames.js";
import { OwnWrites } from "./support/ownWrites.js";

export interface NatsKvOptions {
  /**
   * NATS servers, `host:port` or URLs.
   * @default "127.0.0.1:4222"
   */
  servers?: string | string[];
  /**
   * Bucket name, `[-_A-Za-z0-9]+`; created if absent.
   * @default "stowage"
   */
  bucket?: string;
  /**
   * Versions kept per key, 1 to 64; applies when the bucket is created.
   * @default 10
   */
  history?: number;
  /** Age in ms after which the server drops every entry of the bucket (JetStream `max_age`); applies when the bucket is created. */
  ttl?: number;
  /**
   * Copies of the bucket in a JetStream cluster: 1, 3 or 5; applies when the bucket is created.
   * @default 1
   */
  replicas?: number;
  /**
   * Milliseconds for connecting and for each operation; a server that does not answer gives `E_UNAVAILABLE`.
   * @default 5000
   */
  timeout?: number;
  /** Further options for `connect()` of `@nats-io/transport-node` (user, pass, token, tls, name, ...). */
  connection?: Omit<NodeConnectionOptions, "servers" | "timeout">;
}

/** What `getInstance()` returns once connected. */
export interface NatsKvInstance {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  kv: KV;
}

const DRIVER_NAME = "nats-kv";
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<NatsKvOptions>({ servers: true, bucket: true, history: true, ttl: true, replicas: true, timeout: true, connection: true });
const BUCKET_NAME = /^[-\w]+$/;
/** Marks removals, as NATS KV itself does. */
const OPERATION = "KV-Operation";
/** Epoch ms after which the entry reads as absent (stowage's per-key TTL). */
const EXPIRES = "Stowage-Expires";
/** `<id> <count> <size>`: the value lives in `count` chunk entries (values above the server's max payload). */
const CHUNKS = "Stowage-Chunks";
/** First token of chunk keys: `=` followed by a lower-case letter never comes out of the key encoding. */
const CHUNK_TOKEN = "=chunks";
/** Room left in a message for headers and framing below the server's max_payload. */
const HEADER_ROOM = 4096;
/**
 * Longest subject a key may become: the server drops a connection whose
 * control line (subject, reply inbox, sizes) passes max_control_line (4 KB).
 */
const MAX_SUBJECT = 3800;
const SAFE = /[A-Za-z0-9_-]/;

/** One stowage key segment as a NATS subject token: `[A-Za-z0-9_-]` stay, every other byte becomes `=XX`. */
export function encodeToken(segment: string): string {
  let out = "";
  for (const char of segment) {
    if (SAFE.test(char)) out += char;
    else for (const byte of Buffer.from(char)) out += `=${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function decodeToken(token: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === "=") {
      bytes.push(Number.parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString();
}

// Keys made only of characters that stay as they are: the encoding is just ":" to ".".
const PLAIN_KEY = /^[\w:-]*$/;

/** A stowage key (`a:b`) as a NATS KV key (`a.b`), reversibly. */
export function encodeKey(key: string): string {
  return PLAIN_KEY.test(key) ? key.replaceAll(":", ".") : key.split(":").map(encodeToken).join(".");
}

/** The stowage key a NATS KV key written by {@link encodeKey} stands for. */
export function decodeKey(natsKey: string): string {
  return natsKey.includes("=") ? natsKey.split(".").map(decodeToken).join(":") : natsKey.replaceAll(".", ":");
}

/** Turns what the NATS client threw into a StorageError whose code says what the caller can do. */
function toError(error: unknown, key?: string): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const options = { driver: DRIVER_NAME, key, cause: error };
  if (error instanceof JetStreamApiError && error.code === 10071) {
    return new StorageError("E_CONFLICT", `Stored version differs: ${key ?? ""}`, options);
  }
  const name = error instanceof Error ? error.name : "";
  if (/timeout|closed|refused|connection|disconnect|no responders|not enabled/i.test(`${name} ${message}`)) {
    return new StorageError("E_UNAVAILABLE", `NATS is unavailable: ${message}`, options);
  }
  if (/maximum payload|max_payload|too large/i.test(message)) {
    return new StorageError("E_TOO_LARGE", `NATS refused the message as too large: ${message}`, options);
  }
  return new StorageError("E_DRIVER", `[nats-kv] ${message}`, options);
}

const nothing = (): void => undefined;

/** An async queue: a producer pushes, a consumer iterates; `end` closes it (with an error to fail the consumer). */
function channel<T>() {
  const items: T[] = [];
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  return {
    push(item: T) {
      items.push(item);
      notify();
    },
    end(error?: unknown) {
      done = true;
      failure = error;
      notify();
    },
    async *[Symbol.asyncIterator](): AsyncGenerator<T> {
      for (;;) {
        if (items.length > 0) yield items.shift()!;
        else if (failure !== undefined) throw failure;
        else if (done) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

const isRemoval = (header: MsgHdrs | undefined): boolean => {
  const operation = header?.get(OPERATION);
  return operation === "DEL" || operation === "PURGE";
};

const expiresOf = (header: MsgHdrs | undefined): number | undefined => {
  const text = header?.get(EXPIRES);
  return text ? Number(text) : undefined;
};

const isExpired = (header: MsgHdrs | undefined, now = Date.now()): boolean => {
  const expires = expiresOf(header);
  return expires !== undefined && expires <= now;
};

/** An entry that holds a value right now: not a removal, not expired. */
const isLive = (message: StoredMsg | null): boolean => message !== null && !isRemoval(message.header) && !isExpired(message.header);

/**
 * Keys in a NATS JetStream KV bucket. Keys map onto subject tokens
 * reversibly, values are stored as their bytes, the etag is the entry's
 * revision (stream sequence), history is the bucket's per-key history, watch
 * is a KV watcher. A per-key expiry and the chunking of values above the
 * server's max payload travel in message headers.
 *
 * @throws StorageError `E_INVALID_OPTION` (from the factory) for an unknown option, one of the wrong type or range, a bad bucket name
 * @throws StorageError (from operations) `E_UNAVAILABLE` when NATS does not answer within `timeout` or after dispose; `E_TOO_LARGE` when NATS refuses a message as too large; `E_INVALID_KEY` for a key too long for a subject once escaped; `E_NOT_FOUND` for a version no longer kept; `E_CORRUPT` for a chunked value of the wrong size
 */
export default defineDriver<NatsKvOptions, NatsKvInstance | undefined>((options: NatsKvOptions = {}) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  const bucket = options.bucket ?? "stowage";
  const timeout = options.timeout ?? 5000;
  const historyDepth = options.history ?? 10;
  if (!BUCKET_NAME.test(bucket)) throw new StorageError("E_INVALID_OPTION", `Invalid bucket name: ${JSON.stringify(bucket)}`, { driver: DRIVER_NAME });
  if (!Number.isInteger(historyDepth) || historyDepth < 1 || historyDepth > 64) {
    throw new StorageError("E_INVALID_OPTION", "history must be an integer from 1 to 64", { driver: DRIVER_NAME });
  }
  if (!Number.isFinite(timeout) || timeout <= 0) throw new StorageError("E_INVALID_OPTION", "timeout must be a positive number of ms", { driver: DRIVER_NAME });
  const stream = `KV_${bucket}`;
  // How old an unnamed chunk set must be before a later large write collects it: twice the
  // time a writer may take to publish the entry that names its chunks.
  const chunkGrace = 2 * timeout;
  const subjectPrefix = `$KV.${bucket}.`;
  // The longest NATS key: its chunk subjects (prefix, "=chunks.", key, ".<id>.<n>") must stay within MAX_SUBJECT.
  const maxNatsKey = MAX_SUBJECT - subjectPrefix.length - CHUNK_TOKEN.length - 40;
  // Every byte of a key may take three characters escaped (=XX), so this many bytes always fit,
  // with one more for the core's meta sidecar `key$`.
  const keyLimits = { bytes: Math.floor(maxNatsKey / 3) - 1, segments: DEFAULT_KEY_LIMITS.segments };
  if (keyLimits.bytes < 1) throw new StorageError("E_INVALID_OPTION", `Bucket name too long: it leaves no room for a key in a subject`, { driver: DRIVER_NAME });
  let opening: Promise<NatsKvInstance> | undefined;
  let instance: NatsKvInstance | undefined;
  let disposed = false;
  const stopWatchers = new Set<() => void>();
  const own = new OwnWrites();
  /** A publish of a key's entry, whose sequence the watch will recognise as this instance's. */
  const published = <T extends { seq: number }>(ack: Promise<T>): Promise<T> => own.track(ack, (reply) => String(reply.seq));

  async function open(): Promise<NatsKvInstance> {
    const nc = await connect({
      // Keep reconnecting while the storage lives: calls fail with E_UNAVAILABLE meanwhile, and work again once the server is back.
      maxReconnectAttempts: -1,
      // No Error made ahead of every request for its stack: that was ~40% of the client's CPU per write.
      // Failures still carry the client's error as their cause.
      noAsyncTraces: true,
      ...options.connection,
      servers: options.servers ?? "127.0.0.1:4222",
      timeout,
    });
    try {
      const js = jetstream(nc, { timeout });
      const jsm = await jetstreamManager(nc, { timeout });
      const kv = await new Kvm(js).create(bucket, { history: historyDepth, ttl: options.ttl ?? 0, replicas: options.replicas ?? 1, timeout });
      return { nc, js, jsm, kv };
    } catch (error) {
      await nc.close();
      throw error;
    }
  }

  /** The connection, opened on first use; a failed open is retried by the next call. */
  function connection(): Promise<NatsKvInstance> {
    if (disposed) return Promise.reject(new StorageError("E_UNAVAILABLE", "This nats-kv driver has been disposed", { driver: DRIVER_NAME }));
    if (instance && !instance.nc.isClosed()) return Promise.resolve(instance);
    opening ??= open().then(
      (opened) => {
        instance = opened;
        opening = undefined;
        return opened;
      },
      (error: unknown) => {
        opening = undefined;
        throw toError(error);
      },
    );
    return opening;
  }

  async function run<T>(key: string | undefined, work: (conn: NatsKvInstance) => Promise<T>): Promise<T> {
    const conn = await connection();
    try {
      return await work(conn);
    } catch (error) {
      throw toError(error, key);
    }
  }

  const subjectOf = (natsKey: string): string => subjectPrefix + natsKey;

  /** The NATS key of a stowage key, refused when its subject would break the server's control line limit. */
  function natsKeyOf(key: string): string {
    const natsKey = encodeKey(key);
    if (natsKey.length > maxNatsKey) {
      throw new StorageError("E_INVALID_KEY", `Key too long for a NATS subject once escaped (${natsKey.length} characters)`, { driver: DRIVER_NAME, key });
    }
    return natsKey;
  }

  const chunkFilter = (natsKey: string) => subjectOf(`${CHUNK_TOKEN}.${natsKey}.*.*`);

  const lastOf = (conn: NatsKvInstance, natsKey: string): Promise<StoredMsg | null> =>
    conn.jsm.direct.getMessage(stream, { last_by_subj: subjectOf(natsKey) });

  /** The value of a stored message: its bytes, gathered from its chunks when it has them. */
  async function valueOf(conn: NatsKvInstance, natsKey: string, message: { header?: MsgHdrs; data: Uint8Array }): Promise<Uint8Array> {
    const manifest = message.header?.get(CHUNKS);
    if (!manifest) return message.data;
    const [id, countText, sizeText] = manifest.split(" ");
    const parts = await Promise.all(
      Array.from({ length: Number(countText) }, (_, index) => conn.jsm.direct.getMessage(stream, { last_by_subj: subjectOf(`${CHUNK_TOKEN}.${natsKey}.${id}.${index}`) })),
    );
    if (parts.some((part) => part === null)) {
      throw new StorageError("E_NOT_FOUND", `The chunks of this version of ${decodeKey(natsKey)} are no longer kept`, { driver: DRIVER_NAME, key: decodeKey(natsKey) });
    }
    const value = Buffer.concat(parts.map((part) => part!.data));
    if (value.length !== Number(sizeText)) throw new StorageError("E_CORRUPT", `Chunked value of ${decodeKey(natsKey)} has the wrong size`, { driver: DRIVER_NAME });
    return value;
  }

  /** Removes an expired entry for good, unless something newer was written since. */
  async function dropExpired(conn: NatsKvInstance, natsKey: string, message: StoredMsg): Promise<void> {
    try {
      await removeNow(conn, natsKey, message.seq);
    } catch (error) {
      // A newer write beat the cleanup: that write stands, nothing to drop.
      if (!(error instanceof JetStreamApiError && error.code === 10071)) throw error;
    }
  }

  /** The live message of a key, or null; an expired one is dropped on the way. */
  async function readLive(conn: NatsKvInstance, natsKey: string): Promise<StoredMsg | null> {
    const message = await lastOf(conn, natsKey);
    if (message === null || isRemoval(message.header)) return null;
    if (isExpired(message.header)) {
      await dropExpired(conn, natsKey, message);
      return null;
    }
    return message;
  }

  async function read(key: string, version: unknown): Promise<Uint8Array | null> {
    const natsKey = natsKeyOf(key);
    return run(key, async (conn) => {
      if (version === undefined) {
        const message = await readLive(conn, natsKey);
        return message ? valueOf(conn, natsKey, message) : null;
      }
      const seq = typeof version === "string" && /^[1-9][0-9]*$/.test(version) ? Number(version) : Number.NaN;
      if (!Number.isSafeInteger(seq)) throw new StorageError("E_INVALID_OPTION", `version must be a revision number, got ${JSON.stringify(version)}`, { driver: DRIVER_NAME });
      const message = await conn.jsm.direct.getMessage(stream, { seq });
      if (message === null || message.subject !== subjectOf(natsKey)) {
        throw new StorageError("E_NOT_FOUND", `Revision ${seq} is not a kept version of ${key}`, { driver: DRIVER_NAME, key });
      }
      return isRemoval(message.header) ? null : valueOf(conn, natsKey, message);
    });
  }

  function headersFor(opts: SetOptions | undefined): MsgHdrs | undefined {
    if (opts?.ttl === undefined) return undefined;
    const header = headers();
    header.set(EXPIRES, String(Date.now() + opts.ttl));
    return header;
  }

  /** Publishes the value (or its chunk manifest) of a key, guarded by `expect` when given. */
  async function publish(conn: NatsKvInstance, natsKey: string, value: Uint8Array, opts: SetOptions | undefined, expect: number | undefined): Promise<void> {
    const header = headersFor(opts);
    const room = (conn.nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM;
    const publishOptions = expect === undefined ? {} : { expect: { lastSubjectSequence: expect } };
    if (value.length <= room) {
      await published(conn.js.publish(subjectOf(natsKey), value, { ...publishOptions, headers: header }));
      return;
    }
    // Above max_payload: chunks first, under a fresh id, then the entry that names them; readers
    // only ever follow an entry to chunks that are complete.
    const id = randomBytes(8).toString("hex");
    const count = Math.ceil(value.length / room);
    await Promise.all(
      Array.from({ length: count }, (_, index) =>
        conn.js.publish(subjectOf(`${CHUNK_TOKEN}.${natsKey}.${id}.${index}`), value.subarray(index * room, (index + 1) * room)),
      ),
    );
    const manifest = header ?? headers();
    manifest.set(CHUNKS, `${id} ${count} ${value.length}`);
    try {
      await published(conn.js.publish(subjectOf(natsKey), new Uint8Array(0), { ...publishOptions, headers: manifest }));
    } catch (error) {
      await conn.jsm.streams.purge(stream, { filter: subjectOf(`${CHUNK_TOKEN}.${natsKey}.${id}.*`) });
      throw error;
    }
    // The write stands; a failed clean-up only leaves chunks for the next one.
    await collectChunks(conn, natsKey).catch((error: unknown) => process.emitWarning(`stowage nats-kv: collecting old chunks failed: ${String(error)}`));
  }

  /**
   * Purges the chunk sets of a key that no version the bucket keeps names any
   * more. A set is only collected once its newest chunk is older than
   * `chunkGrace`, so a concurrent writer that has published its chunks but
   * not yet the entry that names them keeps them.
   */
  async function collectChunks(conn: NatsKvInstance, natsKey: string): Promise<void> {
    const named = new Set<string>();
    for await (const message of lastPerSubject(conn, subjectOf(natsKey), DeliverPolicy.All, true)) {
      const manifest = message.headers?.get(CHUNKS);
      if (manifest) named.add(manifest.split(" ")[0]!);
    }
    const newest = new Map<string, number>();
    for await (const message of lastPerSubject(conn, chunkFilter(natsKey), DeliverPolicy.LastPerSubject, true)) {
      const id = message.subject.split(".").at(-2)!;
      newest.set(id, Math.max(newest.get(id) ?? 0, message.time.getTime()));
    }
    const cutoff = Date.now() - chunkGrace;
    const unnamed = [...newest].filter(([id, time]) => !named.has(id) && time < cutoff).map(([id]) => id);
    await Promise.all(unnamed.map((id) => conn.jsm.streams.purge(stream, { filter: subjectOf(`${CHUNK_TOKEN}.${natsKey}.${id}.*`) })));
  }

  /**
   * The common write, once connected: no guard, no expiry, a value within one
   * message: one publish, without the async frames of the general path.
   */
  function writePlain(conn: NatsKvInstance, key: string, natsKey: string, bytes: Uint8Array): Promise<void> {
    return published(conn.js.publish(subjectOf(natsKey), bytes)).then(nothing, (error: unknown) => Promise.reject(toError(error, key)));
  }

  function write(key: string, value: string | Uint8Array, opts: SetOptions | undefined): Promise<void> {
    const natsKey = natsKeyOf(key);
    const bytes = typeof value === "string" ? Buffer.from(value) : value;
    const plain = opts?.ifMatch === undefined && opts?.ifNoneMatch === undefined && opts?.ttl === undefined;
    if (plain && instance && !instance.nc.isClosed() && bytes.length <= (instance.nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM) {
      return writePlain(instance, key, natsKey, bytes);
    }
    return writeGuarded(key, natsKey, bytes, opts);
  }

  async function writeGuarded(key: string, natsKey: string, bytes: Uint8Array, opts: SetOptions | undefined): Promise<void> {
    const guard = guardOf(opts, DRIVER_NAME, key);
    await run(key, async (conn) => {
      if (guard.kind === "match") {
        const seq = /^[1-9][0-9]*$/.test(guard.etag) ? Number(guard.etag) : Number.NaN;
        if (!Number.isSafeInteger(seq)) throw new StorageError("E_CONFLICT", `Stored version differs: ${key}`, { driver: DRIVER_NAME, key });
        // An expired entry no longer holds the etag the caller saw.
        const current = await lastOf(conn, natsKey);
        if (current === null || !isLive(current) || current.seq !== seq) throw new StorageError("E_CONFLICT", `Stored version differs: ${key}`, { driver: DRIVER_NAME, key });
        return publish(conn, natsKey, bytes, opts, seq);
      }
      if (guard.kind === "absent") {
        // Absent, removed or expired: the write is guarded on that very entry (or on none at all).
        const current = await lastOf(conn, natsKey);
        if (isLive(current)) throw new StorageError("E_CONFLICT", `Key already exists: ${key}`, { driver: DRIVER_NAME, key });
        return publish(conn, natsKey, bytes, opts, current?.seq ?? 0);
      }
      return publish(conn, natsKey, bytes, opts, undefined);
    });
  }

  /** Writes a removal marker (guarded on `expect` when given), then drops the key's chunks unless the caller does that in bulk. */
  async function removeNow(conn: NatsKvInstance, natsKey: string, expect: number | undefined, dropChunks = true): Promise<void> {
    const header = headers();
    header.set(OPERATION, "DEL");
    await published(conn.js.publish(subjectOf(natsKey), new Uint8Array(0), { headers: header, ...(expect === undefined ? {} : { expect: { lastSubjectSequence: expect } }) }));
    if (dropChunks) await conn.jsm.streams.purge(stream, { filter: chunkFilter(natsKey) });
  }

  async function remove(key: string, opts: RemoveOptions | undefined): Promise<void> {
    const natsKey = natsKeyOf(key);
    const guard = guardOf(opts, DRIVER_NAME, key);
    await run(key, async (conn) => {
      if (guard.kind !== "match") return removeNow(conn, natsKey, undefined);
      const current = await lastOf(conn, natsKey);
      if (current === null || !isLive(current) || String(current.seq) !== guard.etag) throw new StorageError("E_CONFLICT", `Stored version differs: ${key}`, { driver: DRIVER_NAME, key });
      return removeNow(conn, natsKey, current.seq);
    });
  }

  /**
   * Streams the last message of every subject matching `filter` (headers
   * only) from an ordered consumer, ending once none is pending.
   */
  async function* lastPerSubject(conn: NatsKvInstance, filter: string, deliver: DeliverPolicy, headersOnly: boolean): AsyncGenerator<JsMsg> {
    const consumer = await conn.js.consumers.getPushConsumer(stream, { filter_subjects: filter, deliver_policy: deliver, headers_only: headersOnly });
    const info = await consumer.info(true);
    if (info.num_pending === 0) {
      await consumer.delete();
      return;
    }
    const queue = channel<JsMsg>();
    const messages = await consumer.consume({
      callback: (message) => {
        queue.push(message);
        if (message.info.pending === 0) queue.end();
      },
    });
    void messages.closed().then(
      () => queue.end(),
      (error: unknown) => queue.end(error),
    );
    try {
      yield* queue;
    } finally {
      messages.stop();
      // The server keeps an ephemeral consumer for 5 minutes after its subscription ends, tracking every
      // later write to the stream: 40 listings left 40 of them and halved the bucket's write rate.
      await consumer.delete().catch((error: unknown) => process.emitWarning(`stowage nats-kv: removing a listing's consumer failed: ${String(error)}`));
    }
  }

  /** Live keys under a filter, in the order the stream holds them. */
  async function* liveKeys(conn: NatsKvInstance, base: string): AsyncGenerator<string> {
    const filter = base ? subjectOf(`${encodeKey(base.replace(/:$/, ""))}.>`) : subjectOf(">");
    const now = Date.now();
    for await (const message of lastPerSubject(conn, filter, DeliverPolicy.LastPerSubject, true)) {
      if (isRemoval(message.headers) || isExpired(message.headers, now)) continue;
      const natsKey = message.subject.slice(subjectPrefix.length);
      if (natsKey.startsWith(`${CHUNK_TOKEN}.`)) continue;
      yield decodeKey(natsKey);
    }
  }

  async function history(key: string, limit: number): Promise<HistoryEntry<string>[]> {
    const natsKey = natsKeyOf(key);
    return run(key, async (conn) => {
      const found: JsMsg[] = [];
      for await (const message of lastPerSubject(conn, subjectOf(natsKey), DeliverPolicy.All, false)) found.push(message);
      const newest = found.reverse().slice(0, limit);
      return Promise.all(
        newest.map(async (message) => {
          const date = message.time;
          if (isRemoval(message.headers)) return { version: String(message.seq), value: null, date };
          const value = await valueOf(conn, natsKey, { header: message.headers, data: message.data });
          return { version: String(message.seq), value: Buffer.from(value).toString(), date };
        }),
      );
    });
  }

  async function meta(key: string): Promise<StorageMeta | null> {
    const natsKey = natsKeyOf(key);
    return run(key, async (conn) => {
      const message = await readLive(conn, natsKey);
      if (!message) return null;
      const chunks = message.header?.get(CHUNKS);
      const result: StorageMeta = { etag: String(message.seq), mtime: message.time, size: chunks ? Number(chunks.split(" ")[2]) : message.data.length };
      return describeExpiry(result, expiresOf(message.header));
    });
  }

  /**
   * Entries of user keys (not chunks) with their sequence as etag and
   * version; `origin` is "local" for a sequence one of this instance's
   * publishes was acknowledged with.
   */
  async function watch(callback: WatchCallback): Promise<() => Promise<void>> {
    const watcher = await own.opening(() => run(undefined, (conn) => conn.kv.watch({ key: ">", include: KvWatchInclude.UpdatesOnly })));
    const stop = () => watcher.stop();
    stopWatchers.add(stop);
    void (async () => {
      for await (const entry of watcher) {
        if (entry.key.startsWith(`${CHUNK_TOKEN}.`)) continue;
        const event: WatchEvent = entry.operation === "PUT" ? "update" : "remove";
        own.report(callback, event, decodeKey(entry.key), String(entry.revision));
      }
    })().catch((error: unknown) => process.emitWarning(`stowage nats-kv watch ended: ${String(error)}`));
    return async () => {
      if (!stopWatchers.delete(stop)) return;
      own.closed();
      stop();
    };
  }

  /** Removes every live key under `base` (each leaves a removal marker, so watchers and history see it) and their chunks. */
  async function clear(base: string): Promise<void> {
    await run(base, async (conn) => {
      const pending: Promise<void>[] = [];
      for await (const key of liveKeys(conn, base)) {
        pending.push(removeNow(conn, encodeKey(key), undefined, false));
        if (pending.length >= 256) await Promise.all(pending.splice(0));
      }
      await Promise.all(pending);
      await conn.jsm.streams.purge(stream, { filter: subjectOf(base ? `${CHUNK_TOKEN}.${encodeKey(base.replace(/:$/, ""))}.>` : `${CHUNK_TOKEN}.>`) });
    });
  }

  const getText = async (key: string, opts?: { version?: unknown }) => {
    const bytes = await read(key, opts?.version);
    return bytes === null ? null : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString();
  };

  return {
    name: DRIVER_NAME,
    keyLimits,
    options,
    flags: { ttl: true, cas: true, etag: "version", history: true, watch: true, clearBase: true, nestedKeys: true },
    getInstance: () => instance,
    hasItem: async (key: string) => {
      const natsKey = natsKeyOf(key);
      return run(key, async (conn) => (await readLive(conn, natsKey)) !== null);
    },
    getItem: getText,
    getItemRaw: (key: string, opts?: { version?: unknown }) => read(key, opts?.version),
    getItems: (items: { key: string }[]) => Promise.all(items.map(async ({ key }) => ({ key, value: await getText(key) }))),
    setItem: (key: string, value: string, opts: SetOptions) => write(key, value, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => write(key, value, opts),
    setItems: async (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) => {
      await Promise.all(items.map((item) => write(item.key, item.value, item.options ?? common)));
    },
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    getMeta: meta,
    getKeys: async (base: string, opts: { maxDepth?: number }) =>
      run(base, async (conn) => {
        const keys: string[] = [];
        for await (const key of liveKeys(conn, base ?? "")) if (filterKeyByDepth(key, opts?.maxDepth)) keys.push(key);
        return keys;
      }),
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      const conn = await connection();
      const size = opts.batchSize ?? 1000;
      let batch: string[] = [];
      try {
        for await (const key of liveKeys(conn, base ?? "")) {
          if (!filterKeyByDepth(key, opts.maxDepth)) continue;
          batch.push(key);
          if (batch.length >= size) {
            yield batch;
            batch = [];
          }
        }
      } catch (error) {
        throw toError(error, base);
      }
      if (batch.length > 0) yield batch;
    },
    clear: (base: string) => clear(base ?? ""),
    getHistory: (key: string, opts: { limit?: number }) => history(key, opts?.limit ?? Number.POSITIVE_INFINITY),
    watch,
    dispose: async () => {
      disposed = true;
      for (const stop of stopWatchers) stop();
      stopWatchers.clear();
      // A connection still opening is waited for and closed; one that failed to open left nothing to close.
      const conn = instance ?? (opening ? await opening.then((opened) => opened, () => undefined) : undefined);
      instance = undefined;
      if (conn && !conn.nc.isClosed()) await conn.nc.drain();
    },
  };
});
