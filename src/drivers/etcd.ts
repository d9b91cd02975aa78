import { randomBytes } from "node:crypto";
import {
  ClientClosedError,
  Etcd3,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  type ICompare,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type IResponseHeader,
  type IResponseOp,
  type Watcher,
} from "etcd3";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError } from "../core/errors.js";
import { guardOf } from "../core/guards.js";
import { checkOptions } from "../core/options.js";
import { describeExpiry } from "../core/ttl.js";
import { filterKeyByDepth } from "../core/keys.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type HistoryEntry, type LockTake, type RemoveOptions, type SetOptions, type StorageMeta, type WatchCallback, type WatchEvent } from "../core/types.js";
import { prefixEndBytes } from "./support/keyRange.js";
import { optionNames } from "./support/optionNames.js";
import { OwnWrites } from "./support/ownWrites.js";

export interface EtcdOptions {
  /**
   * etcd endpoints with their scheme.
   * @default "http://127.0.0.1:2379"
   */
  hosts?: string | string[];
  /**
   * Prefix of every key this driver writes; `clear()` removes only keys under it.
   * @default "stowage/"
   */
  prefix?: string;
  /**
   * Milliseconds for connecting and for each call. A server
   * that does not answer fails the call with `E_UNAVAILABLE` after this long;
   * the driver does not retry on its own.
   * @default 5000
   */
  timeout?: number;
  /**
   * Most operations in one etcd transaction: the server's `--max-txn-ops`. `setItems`, `getItems` and `clear` split their work into
   * transactions of this size.
   * @default 128
   */
  maxTxnOps?: number;
  /**
   * Values longer than this many bytes are stored in chunks of this size, each its own request: etcd refuses requests above
   * `--max-request-bytes` (1.5 MiB by default), and etcd 3.4.22+ cannot
   * replay a WAL entry above 10 MiB on restart.
   * @default 1 MiB
   */
  chunkSize?: number;
  /** Further etcd3 client options (credentials, auth, grpcOptions, ...); `hosts` and the timeouts above win. */
  client?: Omit<IOptions, "hosts">;
}

const DRIVER_NAME = "etcd";

/** Tries of the lock fast path's read-and-swap before it leaves the record to the generic path. */
const TAKE_ATTEMPTS = 16;
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<EtcdOptions>({ hosts: true, prefix: true, timeout: true, maxTxnOps: true, chunkSize: true, client: true });
const NUL = Buffer.from([0]);
/** Most bytes of values in one transaction that setItems builds (etcd's default request limit is 1.5 MiB). */
const TXN_BYTES = 1024 * 1024;

/** etcd3's fault policy type, taken from its own options so cockatiel need not be imported. */
type FaultPolicy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * A policy that runs each call once. etcd3 retries and opens a circuit
 * breaker by default, so a dead server could hold a call far longer than the
 * timeout and keep failing calls for seconds after it is back; stowage fails
 * fast with E_UNAVAILABLE and lets the caller decide.
 */
const once: FaultPolicy = {
  _altReturn: undefined as never,
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
  // async: etcd3 hands in functions that throw synchronously and expects a rejected promise back.
  execute: async (fn, signal) => fn({ signal: signal ?? new AbortController().signal }),
};

/** Turns what etcd3 threw into a StorageError whose code says what the caller can do. */
function toError(error: unknown, key?: string): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const options = { driver: DRIVER_NAME, key, cause: error };
  if (
    error instanceof GRPCUnavailableError ||
    error instanceof GRPCDeadlineExceededError ||
    error instanceof ClientClosedError ||
    /ECONNREFUSED|No connection established|Failed to connect/i.test(message)
  ) {
    return new StorageError("E_UNAVAILABLE", `etcd is unavailable: ${message}`, options);
  }
  if (error instanceof GRPCResourceExhastedError || /request is too large|too many operations in txn|larger than max/i.test(message)) {
    return new StorageError("E_TOO_LARGE", `etcd refused the request as too large: ${message} (see docs/etcd.md for --max-request-bytes and --max-txn-ops)`, options);
  }
  if (/compacted/i.test(message)) {
    return new StorageError("E_NOT_FOUND", `That revision has been compacted away: ${message}`, options);
  }
  if (/future revision/i.test(message)) {
    return new StorageError("E_NOT_FOUND", `That revision does not exist yet: ${message}`, options);
  }
  return new StorageError("E_DRIVER", `[etcd] ${message}`, options);
}

/** The range end of a prefix; where there is none, NUL, which etcd reads as "to the last key". */
function prefixEnd(prefix: Buffer): Buffer {
  return prefixEndBytes(prefix) ?? NUL;
}

/** Bytes of keys and values in one put, delete or range operation. */
function plainBytes(op: IRequestOp): number {
  const part = op.request_put ?? op.request_delete_range ?? op.request_range;
  return (part?.key?.length ?? 0) + (op.request_put?.value?.length ?? 0) + (op.request_delete_range?.range_end?.length ?? 0);
}

/**
 * Bytes an operation puts in a request, keys included: keys run to 64 KiB, so
 * maxTxnOps of them alone could pass the server's request limit. The driver's
 * own transactions (a removal) nest one level, so that is as deep as this looks.
 */
function opBytes(op: IRequestOp): number {
  const txn = op.request_txn;
  if (!txn) return plainBytes(op);
  const compared = (txn.compare ?? []).reduce((sum, compare) => sum + (compare.key?.length ?? 0), 0);
  return [...(txn.success ?? []), ...(txn.failure ?? [])].reduce((sum, inner) => sum + plainBytes(inner), compared);
}

/** The reply of a put or a transaction. */
interface WriteReply {
  header: IResponseHeader;
  succeeded?: boolean;
  responses?: IResponseOp[];
}

/** Whether responses changed a key: a put, a deletion that found keys, or a nested transaction that did either. */
function changed(responses: IResponseOp[] | undefined): boolean {
  return (responses ?? []).some(
    (response) =>
      Boolean(response.response_put) ||
      (response.response_delete_range !== undefined && response.response_delete_range !== null && response.response_delete_range.deleted !== "0") ||
      (Boolean(response.response_txn?.succeeded) && changed(response.response_txn.responses)),
  );
}

/**
 * The revision a write made, or undefined where it made none (a failed
 * compare, a removal of an absent key): etcd's reply then names the current
 * revision, which another client's write may have made.
 */
function revisionWritten(reply: WriteReply): string | undefined {
  if (reply.succeeded === undefined) return reply.header.revision;
  return reply.succeeded && changed(reply.responses) ? reply.header.revision : undefined;
}

/**
 * The token of a lock record stored as plain JSON (what `JSON.stringify` gives it) and whether its
 * holder is null or expired at `now`; undefined for anything else (a chunked value's empty text, a
 * custom serializer's form), which locks then read through their generic path.
 */
function lockRecordState(text: string, now: number): { token: number; free: boolean } | undefined {
  let record: { token?: unknown; holder?: { expiresAt?: unknown } | null } | null;
  try {
    record = JSON.parse(text) as typeof record;
  } catch {
    // Not JSON: not a record this fast path may replace; the generic path reads it (and reports E_CORRUPT).
    return undefined;
  }
  if (record === null || typeof record !== "object" || JSON.stringify(record) !== text) return undefined;
  const { token, holder } = record;
  if (typeof token !== "number" || !Number.isSafeInteger(token + 1) || token < 0 || holder === undefined) return undefined;
  if (holder === null) return { token, free: true };
  if (typeof holder !== "object" || typeof holder.expiresAt !== "number") return undefined;
  return { token, free: holder.expiresAt <= now };
}

/** How a revision is written: a positive integer (etcd's are int64, so they stay text). */
const REVISION = /^[1-9][0-9]{0,17}$/;

/** A revision given by the caller as a version: a positive integer. */
function parseRevision(text: unknown, what: string): number {
  const revision = typeof text === "string" && REVISION.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(revision)) throw new StorageError("E_INVALID_OPTION", `${what} must be an etcd revision, got ${JSON.stringify(text)}`, { driver: DRIVER_NAME });
  return revision;
}

/** Items in groups of at most `maxCount` and about `maxBytes` bytes each (an item larger than that goes alone). */
function groupsOf<T>(items: T[], maxCount: number, maxBytes: number, bytesOf: (item: T) => number): T[][] {
  const groups: T[][] = [];
  let group: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = bytesOf(item);
    if (group.length > 0 && (group.length >= maxCount || bytes + size > maxBytes)) {
      groups.push(group);
      group = [];
      bytes = 0;
    }
    group.push(item);
    bytes += size;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * Keys in etcd (v3 API, through etcd3): one etcd key per stowage key under a
 * prefix, values as bytes. The etag is the key's `mod_revision`; CAS and
 * transactions are etcd transactions comparing revisions; TTL is a lease per
 * write; history is read back through revisions until compaction removes
 * them. A removal also writes a tombstone (`<prefix>\0<key>`) in the same
 * revision, so history can step over deletions.
 *
 * @throws StorageError `E_INVALID_OPTION` (from the factory) for an unknown option or one of the wrong type or range
 * @throws StorageError (from operations) `E_UNAVAILABLE` when etcd does not answer within `timeout`; `E_TOO_LARGE` when etcd refuses a request as too large; `E_NOT_FOUND` for a version compacted away or not yet written; `E_CORRUPT` for a chunked value with missing chunks or the wrong size
 */
export default defineDriver<EtcdOptions, Etcd3>((options: EtcdOptions = {}) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  const timeout = options.timeout ?? 5000;
  const maxTxnOps = options.maxTxnOps ?? 128;
  const prefixText = options.prefix ?? "stowage/";
  if (!Number.isFinite(timeout) || timeout <= 0) throw new StorageError("E_INVALID_OPTION", "timeout must be a positive number of ms", { driver: DRIVER_NAME });
  if (!Number.isInteger(maxTxnOps) || maxTxnOps < 4) throw new StorageError("E_INVALID_OPTION", "maxTxnOps must be an integer >= 4", { driver: DRIVER_NAME });
  const chunkSize = options.chunkSize ?? 1024 * 1024;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new StorageError("E_INVALID_OPTION", "chunkSize must be a positive integer", { driver: DRIVER_NAME });
  const prefix = Buffer.from(prefixText);
  // Stowage keys never start with NUL, so user keys start at prefix + \x01.
  const firstKey = Buffer.concat([prefix, Buffer.from([1])]);
  const client = new Etcd3({
    ...options.client,
    hosts: options.hosts ?? "http://127.0.0.1:2379",
    dialTimeout: timeout,
    // Each unary call gets the timeout as its deadline; watch streams live on.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + timeout }),
    faultHandling: { host: () => once, global: once, ...options.client?.faultHandling },
    grpcOptions: {
      // Values bigger than gRPC's 4 MB default must come back; the server's --max-request-bytes bounds what goes in.
      "grpc.max_receive_message_length": -1,
      "grpc.max_send_message_length": -1,
      // Reconnect quickly once the server is back, rather than after gRPC's default backoff of up to 2 minutes.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": Math.min(timeout, 2000),
      ...options.client?.grpcOptions,
    },
  });
  const watchers = new Set<Watcher>();

  const keyOf = (key: string): Buffer => Buffer.from(prefixText + key);
  const tombOf = (key: string): Buffer => Buffer.from(`${prefixText}\0${key}`);
  // A chunked value: the key holds an empty value, its manifest "<id> <count> <size>" is written in
  // the same revision, and chunk n of set id lives at <prefix>\0\0<key>\0<id>\0<n>.
  const manifestOf = (key: string): Buffer => Buffer.from(`${prefixText}\0\0${key}`);
  const chunksOf = (key: string): string => `${prefixText}\0\0${key}\0`;
  const chunkOf = (key: string, id: string, index: number): Buffer => Buffer.from(`${chunksOf(key)}${id}\0${index}`);
  const userKey = (raw: Buffer): string => raw.subarray(prefix.length).toString();
  const rangeOf = (base: string): { key: Buffer; range_end: Buffer } =>
    base ? { key: keyOf(base), range_end: prefixEnd(keyOf(base)) } : { key: firstKey, range_end: prefixEnd(prefix) };

  const own = new OwnWrites();
  /** A write call whose revision the watch will recognise as this instance's. */
  const written = <T extends WriteReply>(reply: Promise<T>): Promise<T> => own.track(reply, revisionWritten);

  /** Runs one etcd call, turning its failure into a StorageError. */
  async function call<T>(key: string | undefined, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw toError(error, key);
    }
  }

  const read = (key: string, revision?: number): Promise<IKeyValue | undefined> =>
    call(key, async () => (await client.kv.range({ key: keyOf(key), revision })).kvs[0]);

  /** The manifest of a chunked value, when `found` is one: written in the very revision of the key's empty value. */
  async function manifestFor(key: string, found: IKeyValue): Promise<{ id: string; count: number; size: number } | null> {
    if (found.value.length > 0) return null;
    const manifest = (await call(key, () => client.kv.range({ key: manifestOf(key), revision: found.mod_revision }))).kvs[0];
    if (!manifest || manifest.mod_revision !== found.mod_revision) return null;
    const [id, count, size] = manifest.value.toString().split(" ");
    return { id: id!, count: Number(count), size: Number(size) };
  }

  /** The bytes of a stored value, gathered from its chunks as of its own revision when it has them. */
  async function bytesOf(key: string, found: IKeyValue): Promise<Buffer> {
    const manifest = await manifestFor(key, found);
    if (!manifest) return found.value;
    const parts = await Promise.all(
      Array.from({ length: manifest.count }, (_, index) =>
        call(key, async () => (await client.kv.range({ key: chunkOf(key, manifest.id, index), revision: found.mod_revision })).kvs[0]),
      ),
    );
    if (parts.some((part) => part === undefined)) throw new StorageError("E_CORRUPT", `Chunks of ${key} are missing`, { driver: DRIVER_NAME, key });
    const value = Buffer.concat(parts.map((part) => part!.value));
    if (value.length !== manifest.size) throw new StorageError("E_CORRUPT", `Chunked value of ${key} has the wrong size`, { driver: DRIVER_NAME, key });
    return value;
  }

  /** A lease that ends the key `ttl` ms from now, rounded up to etcd's whole seconds; 0 for none. */
  async function leaseFor(ttl: number | undefined): Promise<string | number> {
    if (ttl === undefined) return 0;
    const granted = await call(undefined, () => client.leaseClient.leaseGrant({ TTL: Math.ceil(ttl / 1000) }));
    return granted.ID;
  }

  /** Leases for a batch: one per distinct ttl. */
  async function leasesFor(ttls: (number | undefined)[]): Promise<Map<number | undefined, string | number>> {
    const distinct = [...new Set(ttls)];
    const ids = await Promise.all(distinct.map(leaseFor));
    return new Map(distinct.map((ttl, index) => [ttl, ids[index]!]));
  }

  const putOp = (key: string, value: string | Uint8Array, lease: string | number): IRequestOp => ({
    request_put: { key: keyOf(key), value: Buffer.from(value as Uint8Array), lease },
  });

  /** Deletes every chunk set of a key whose id sorts before `before` (all of them without it). */
  const dropChunksOp = (key: string, before?: string): IRequestOp => {
    const start = Buffer.from(chunksOf(key));
    return { request_delete_range: { key: start, range_end: before === undefined ? prefixEnd(start) : Buffer.from(chunksOf(key) + before) } };
  };

  /**
   * Deleting a key writes its tombstone in the same revision and drops its
   * chunks; a nested txn does nothing for an absent key.
   */
  const removeOp = (key: string): IRequestOp => ({
    request_txn: {
      compare: [{ key: keyOf(key), target: "Create", result: "Greater", create_revision: 0 }],
      success: [
        { request_delete_range: { key: keyOf(key) } },
        { request_put: { key: tombOf(key), value: Buffer.alloc(0) } },
        { request_delete_range: { key: manifestOf(key) } },
        dropChunksOp(key),
      ],
      failure: [],
    },
  });
  const REMOVE_OPS = 4;

  /** A write as transaction parts: the ops that store it and the compares it needs to land. */
  interface Staged {
    ops: IRequestOp[];
    compare: ICompare[];
  }

  /**
   * Prepares the write of a value. A value above chunkSize has its chunks
   * written first, under a new id that sorts after every older one; the
   * transaction then stores the empty value and its manifest, drops the
   * key's older chunk sets, and checks the new set is still there (a
   * concurrent large write to the same key may have dropped it).
   */
  async function stage(key: string, bytes: Buffer, lease: string | number): Promise<Staged> {
    if (bytes.length <= chunkSize) return { ops: [putOp(key, bytes, lease)], compare: [] };
    const id = `${Date.now().toString(36).padStart(9, "0")}${randomBytes(4).toString("hex")}`;
    const count = Math.ceil(bytes.length / chunkSize);
    await Promise.all(
      Array.from({ length: count }, (_, index) =>
        // Chunks share the key's lease, so they end with it.
        call(key, () => client.kv.put({ key: chunkOf(key, id, index), value: bytes.subarray(index * chunkSize, (index + 1) * chunkSize), lease })),
      ),
    );
    return {
      ops: [putOp(key, Buffer.alloc(0), lease), { request_put: { key: manifestOf(key), value: Buffer.from(`${id} ${count} ${bytes.length}`), lease } }, dropChunksOp(key, id)],
      compare: [{ key: chunkOf(key, id, 0), target: "Create", result: "Greater", create_revision: 0 }],
    };
  }

  /** The compare that holds when `key` is at `etag` (`null`: absent); an etag no revision has is a conflict at once. */
  const guard = (key: string, etag: string | null): ICompare => {
    if (etag === null) return { key: keyOf(key), target: "Create", result: "Equal", create_revision: 0 };
    if (!REVISION.test(etag)) throw conflictError(DRIVER_NAME, key, "Stored version differs");
    return { key: keyOf(key), target: "Mod", result: "Equal", mod_revision: etag };
  };

  function guardsOf(key: string, opts: SetOptions | RemoveOptions | undefined): ICompare[] {
    const parsed = guardOf(opts, DRIVER_NAME, key);
    return parsed.kind === "none" ? [] : [guard(key, parsed.kind === "match" ? parsed.etag : null)];
  }

  async function write(key: string, value: string | Uint8Array, opts: SetOptions | undefined): Promise<void> {
    const lease = await leaseFor(opts?.ttl);
    const guards = guardsOf(key, opts);
    const bytes = Buffer.from(value as Uint8Array);
    if (guards.length === 0 && bytes.length <= chunkSize) {
      await written(call(key, () => client.kv.put({ key: keyOf(key), value: bytes, lease })));
      return;
    }
    // A large write whose chunks a concurrent large write dropped is tried again.
    for (let attempt = 0; ; attempt++) {
      const staged = await stage(key, bytes, lease);
      const result = await written(call(key, () => client.kv.txn({ compare: [...guards, ...staged.compare], success: staged.ops, failure: [] })));
      if (result.succeeded) return;
      if (staged.compare.length === 0 || attempt >= 3 || !(await chunksDropped(key, staged))) {
        await unstage(key, staged);
        throw conflictError(DRIVER_NAME, key, opts?.ifMatch === undefined ? "Key already exists" : "Stored version differs");
      }
    }
  }

  /** Deletes the chunks a staged write wrote ahead, once its transaction failed. */
  async function unstage(key: string, staged: Staged): Promise<void> {
    if (staged.compare.length === 0) return;
    // The set's keys all start with its first chunk's key minus the trailing "0".
    const first = staged.compare[0]!.key!;
    const set = first.subarray(0, first.length - 1);
    await call(key, () => client.kv.deleteRange({ key: set, range_end: prefixEnd(set) }));
  }

  /** Whether the chunk set a staged write checks for is gone. */
  async function chunksDropped(key: string, staged: Staged): Promise<boolean> {
    const first = staged.compare[0]!.key!;
    return (await call(key, () => client.kv.range({ key: first, count_only: true }))).count === "0";
  }

  async function remove(key: string, opts: RemoveOptions | undefined): Promise<void> {
    const compare = guardsOf(key, opts);
    const result = await written(call(key, () => client.kv.txn({ compare, success: [removeOp(key)], failure: [] })));
    if (!result.succeeded) throw conflictError(DRIVER_NAME, key, "Stored version differs");
  }

  /** Pages through keys under `base`, `limit` at a time, in key order. */
  async function* pages(base: string, limit: number): AsyncGenerator<string[]> {
    const { key: start, range_end } = rangeOf(base);
    let from = start;
    for (;;) {
      const page = await call(base, () => client.kv.range({ key: from, range_end, limit, keys_only: true }));
      if (page.kvs.length === 0) return;
      yield page.kvs.map((kv) => userKey(kv.key));
      if (!page.more) return;
      // The next page starts just after the last key of this one.
      from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, NUL]);
    }
  }

  async function keysUnder(base: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const page of pages(base, 10_000)) keys.push(...page);
    return keys;
  }

  /**
   * Runs ops in transactions side by side (not atomic as a whole), each with
   * at most maxTxnOps operations and about TXN_BYTES of keys and values.
   */
  async function inTransactions(ops: IRequestOp[], perOp = 1): Promise<void> {
    const groups = groupsOf(ops, Math.floor(maxTxnOps / perOp), TXN_BYTES, opBytes);
    await Promise.all(groups.map((success) => written(call(undefined, () => client.kv.txn({ compare: [], success, failure: [] })))));
  }

  async function getItems(items: { key: string }[]): Promise<{ key: string; value: string | null }[]> {
    const keys = items.map((item) => item.key);
    const groups = groupsOf(keys, maxTxnOps, TXN_BYTES, (key) => prefix.length + Buffer.byteLength(key));
    const results = await Promise.all(
      groups.map((group) => call(undefined, () => client.kv.txn({ compare: [], success: group.map((key) => ({ request_range: { key: keyOf(key) } })), failure: [] }))),
    );
    const found = results.flatMap((result) => result.responses.map((response) => response.response_range.kvs[0]));
    // Empty values may be chunked ones: those are read in full.
    const values = await Promise.all(found.map((kv, index) => (kv === undefined ? null : kv.value.length > 0 ? kv.value : bytesOf(keys[index]!, kv))));
    return keys.map((key, index) => ({ key, value: values[index]?.toString() ?? null }));
  }

  /**
   * Walks a key's versions back from `revision`: each value found leads to
   * the revision before it, and where the key is absent its tombstone names
   * the revision that removed it. Stops at the key's first write or at
   * compaction.
   */
  async function history(key: string, limit: number): Promise<HistoryEntry<string>[]> {
    const entries: HistoryEntry<string>[] = [];
    let revision: number | undefined;
    while (entries.length < limit) {
      let found: IKeyValue | undefined;
      let tomb: IKeyValue | undefined;
      try {
        found = await read(key, revision);
        if (!found) tomb = (await client.kv.range({ key: tombOf(key), revision })).kvs[0];
      } catch (error) {
        const failure = toError(error, key);
        // Older revisions are gone: the history ends here.
        if (failure.code === "E_NOT_FOUND" && revision !== undefined) return entries;
        throw failure;
      }
      const step = found ?? tomb;
      if (!step) return entries;
      const at = Number(step.mod_revision);
      entries.push({ version: step.mod_revision, value: found ? (await bytesOf(key, found)).toString() : null, date: new Date(0) });
      if (at <= 1) return entries;
      revision = at - 1;
    }
    return entries;
  }

  async function meta(key: string): Promise<StorageMeta | null> {
    const found = await read(key);
    if (!found) return null;
    const result: StorageMeta = { etag: found.mod_revision, size: (await manifestFor(key, found))?.size ?? found.value.length };
    if (found.lease !== "0") {
      const lease = await call(key, () => client.leaseClient.leaseTimeToLive({ ID: found.lease }));
      const seconds = Number(lease.TTL);
      const now = Date.now();
      if (seconds >= 0) describeExpiry(result, now + seconds * 1000, now);
    }
    return result;
  }

  /**
   * Opens a watch stream within the timeout. etcd3's own `create()` waits
   * for the stream to connect or fail, but while the server is down the
   * stream only retries, so it would wait for as long as the outage lasts.
   */
  async function openWatcher(): Promise<Watcher> {
    const watcher = client.watch().inRange({ start: prefix, end: prefixEnd(prefix) }).watcher();
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        watcher.once("connected", () => resolve());
        watcher.once("error", reject);
        timer = setTimeout(() => reject(new StorageError("E_UNAVAILABLE", `etcd did not open a watch within ${timeout} ms`, { driver: DRIVER_NAME })), timeout);
      });
    } catch (error) {
      await watcher.cancel().catch((failure: unknown) => process.emitWarning(`stowage etcd: closing a watch that did not open failed: ${String(failure)}`));
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return watcher;
  }

  /**
   * Events of user keys (not tombstones, manifests or chunks) with their
   * revision as etag and version; `origin` is "local" for a revision one of
   * this instance's writes returned.
   */
  async function watch(callback: WatchCallback): Promise<() => Promise<void>> {
    const watcher = await own.opening(() => call(undefined, openWatcher));
    watchers.add(watcher);
    const forward = (event: WatchEvent) => (kv: IKeyValue) => {
      if (kv.key.length <= prefix.length || kv.key[prefix.length] === 0) return;
      own.report(callback, event, userKey(kv.key), kv.mod_revision);
    };
    watcher.on("put", forward("update"));
    watcher.on("delete", forward("remove"));
    // A watch stream that breaks is re-opened by etcd3 from the last revision seen; failures to do so surface here.
    watcher.on("error", (error) => process.emitWarning(`stowage etcd watch: ${String(error)}`));
    return async () => {
      if (!watchers.delete(watcher)) return;
      own.closed();
      await watcher.cancel();
    };
  }

  async function commit(operations: CommitOperation[]): Promise<void> {
    const compare: ICompare[] = [];
    const writes = operations.filter((op) => op.type !== "check");
    const leases = await leasesFor(writes.map((op) => (op.type === "remove" ? undefined : op.options.ttl)));
    const success: IRequestOp[] = [];
    const stagedAll: Staged[] = [];
    for (const op of operations) {
      if (op.type === "check") compare.push(guard(op.key, op.etag));
      else if (op.type === "remove") success.push(removeOp(op.key));
      else {
        // Chunks of large values are written ahead; only the entries that name them are in the transaction.
        const staged = await stage(op.key, Buffer.from(op.value as Uint8Array), leases.get(op.options.ttl)!);
        stagedAll.push(staged);
        success.push(...staged.ops);
        compare.push(...staged.compare);
      }
    }
    const result = await written(call(undefined, () => client.kv.txn({ compare, success, failure: [] })));
    if (result.succeeded) return;
    await Promise.all(stagedAll.map((staged) => unstage("", staged)));
    throw conflictError(DRIVER_NAME, operations.find((op) => op.type === "check")?.key ?? "", "Stored version differs");
  }

  /**
   * Locks' fast path: the record and its revision in one read, then one transaction that writes the
   * next holding only if the key is still at that revision.
   */
  async function takeLock(key: string, holder: string, now: number): Promise<LockTake> {
    // Bounded: a record that keeps moving under the take is left to the generic path, which bounds its own tries.
    for (let attempt = 0; attempt < TAKE_ATTEMPTS; attempt++) {
      const found = await read(key);
      // An absent record is first written through the storage's serializer, by the generic path.
      if (!found) return { outcome: "declined" };
      const seen = lockRecordState(found.value.toString(), now);
      if (!seen) return { outcome: "declined" };
      if (!seen.free) return { outcome: "held" };
      const token = seen.token + 1;
      const text = `{"token":${token},"holder":${holder}}`;
      // A record too big for one etcd value is stored in chunks by `write`: leave it to the generic path.
      if (Buffer.byteLength(text) > chunkSize) return { outcome: "declined" };
      const result = await written(
        call(key, () => client.kv.txn({ compare: [guard(key, found.mod_revision)], success: [putOp(key, text, 0)], failure: [] })),
      );
      if (result.succeeded) return { outcome: "taken", token, etag: result.header.revision };
      // Another write came between the read and the transaction (a release, a take): read again.
    }
    return { outcome: "declined" };
  }

  /** A key's bytes, as of `opts.version` (a revision) when given. */
  async function readBytes(key: string, opts?: { version?: unknown }): Promise<Buffer | null> {
    const revision = opts?.version === undefined ? undefined : parseRevision(opts.version, "version");
    const found = await read(key, revision);
    return found ? bytesOf(key, found) : null;
  }

  return {
    name: DRIVER_NAME,
    // etcd takes keys up to its request size (1.5 MiB by default; measured: 70,000 bytes work); the default bounds the work per key.
    keyLimits: DEFAULT_KEY_LIMITS,
    options,
    flags: { ttl: true, cas: true, etag: "version", transactions: true, history: true, watch: true, clearBase: true, nestedKeys: true },
    getInstance: () => client,
    hasItem: async (key: string) => (await call(key, () => client.kv.range({ key: keyOf(key), count_only: true }))).count !== "0",
    getItem: async (key: string, opts?: { version?: unknown }) => (await readBytes(key, opts))?.toString() ?? null,
    getItemRaw: readBytes,
    getItems,
    setItem: (key: string, value: string, opts: SetOptions) => write(key, value, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => write(key, value, opts),
    setItems: async (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) => {
      const guarded: typeof items = [];
      const plain: typeof items = [];
      for (const item of items) (guardsOf(item.key, item.options ?? common).length > 0 || Buffer.byteLength(item.value) > chunkSize ? guarded : plain).push(item);
      const leases = await leasesFor(plain.map((item) => (item.options ?? common).ttl));
      await Promise.all([
        inTransactions(plain.map((item) => putOp(item.key, item.value, leases.get((item.options ?? common).ttl)!))),
        ...guarded.map((item) => write(item.key, item.value, item.options ?? common)),
      ]);
    },
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    getMeta: meta,
    takeLock,
    getKeys: async (base: string, opts: { maxDepth?: number }) => {
      const keys = await keysUnder(base ?? "");
      return opts?.maxDepth === undefined ? keys : keys.filter((key) => filterKeyByDepth(key, opts.maxDepth));
    },
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      for await (const page of pages(base ?? "", opts.batchSize ?? 1000)) {
        yield opts.maxDepth === undefined ? page : page.filter((key) => filterKeyByDepth(key, opts.maxDepth));
      }
    },
    clear: async (base: string) => {
      // Key by key, so every removal leaves its tombstone and watchers see each one.
      for await (const page of pages(base ?? "", 10_000)) await inTransactions(page.map(removeOp), REMOVE_OPS);
    },
    commit,
    getHistory: (key: string, opts: { limit?: number }) => history(key, opts?.limit ?? Number.POSITIVE_INFINITY),
    watch,
    dispose: async () => {
      await Promise.all([...watchers].map((watcher) => watcher.cancel()));
      watchers.clear();
      client.close();
    },
  };
});
