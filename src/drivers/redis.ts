import { createHash } from "node:crypto";
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from "ioredis";
import { deadlineTick } from "../core/deadlines.js";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError, type StorageErrorCode } from "../core/errors.js";
import { checkOptions } from "../core/options.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type RemoveOptions, type SetOptions, type StorageMeta, type Unwatch, type WatchCallback, type WatchEvent } from "../core/types.js";
import { optionNames } from "./support/optionNames.js";

export interface RedisDriverOptions {
  /** Server URL, e.g. `redis://user:pass@127.0.0.1:6379/0` or `rediss://…` (default: ioredis's, `127.0.0.1:6379`). */
  url?: string;
  /** Prefix of every Redis key this driver owns: `app` stores `user:1` as `app:user:1`. Default none (the whole database). */
  base?: string;
  /** ms allowed for connecting and for each command (default 5000); past it an operation fails with `E_UNAVAILABLE`. */
  timeout?: number;
  /** ioredis options for the connection (or, with `cluster`, for every node): TLS, password, `db`, `sentinels`, … */
  client?: RedisOptions;
  /** Nodes of a Redis Cluster; the driver then connects through ioredis's `Cluster`. */
  cluster?: ClusterNode[];
  /** Options of ioredis's `Cluster` (with `cluster`). */
  clusterOptions?: ClusterOptions;
  /**
   * With `cluster` and a base that is not a hash tag: declare transactions
   * anyway, for keys that share a hash tag (`{order-7}:…`); a transaction over
   * several slots then fails with `E_UNSUPPORTED`. Default false: the
   * `transactions` flag is only declared where every key is in one slot.
   */
  clusterTransactions?: boolean;
  /**
   * How `watch` learns of changes made by any process (see docs/redis.md):
   * - `"tracking"` (default without `cluster`): the server's client-side-caching invalidations
   *   (`CLIENT TRACKING … BCAST PREFIX <base>`, Redis 6+): every change under `base`, by any client,
   *   expirations included, at no cost to writers; no server configuration needed.
   * - `"pubsub"` (default with `cluster`): every write also publishes on `channel`, from the same
   *   script; sees only writers that use this mode too.
   * - `"keyspace"`: keyspace notifications, which the server must have enabled (`notify-keyspace-events K$gx`).
   * - `"off"`: no native watch: the core reports this process's own writes.
   */
  watch?: WatchMode;
  /** Pub/sub channel of `watch: "pubsub"` (default `stowage:events:<db>`). */
  channel?: string;
  /** COUNT hint of each SCAN page (default 1000). */
  scanCount?: number;
}

export type WatchMode = "tracking" | "pubsub" | "keyspace" | "off";

/** The ioredis client `getInstance()` returns. */
export type RedisClient = Redis | Cluster;

const DRIVER_NAME = "redis";
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<RedisDriverOptions>({
  url: true, base: true, timeout: true, client: true, cluster: true, clusterOptions: true, clusterTransactions: true, watch: true, channel: true,
  scanCount: true,
});
const DEFAULT_TIMEOUT = 5000;
// Where the server sends tracking invalidations for RESP2 connections.
const INVALIDATE_CHANNEL = "__redis__:invalidate";

const nothing = (): void => undefined;

/** A server without CLIENT TRACKING (before Redis 6, some proxies, an ACL without CLIENT) cannot watch this way. */
function noTracking(error: unknown): never {
  if (!(error instanceof Error) || error.name !== "ReplyError") throw error;
  const message = error.message;
  throw new StorageError("E_UNSUPPORTED", `watch: "tracking" needs CLIENT TRACKING (${message}); use watch: "pubsub"`, { driver: DRIVER_NAME, cause: error });
}

/** Failures of background work (re-subscribing, classifying events) have no caller to go to. */
function warn(error: unknown): void {
  process.emitWarning(`stowage redis watch: ${error instanceof Error ? error.message : String(error)}`);
}

interface Script {
  lua: string;
  sha: string;
}

function script(lua: string): Script {
  return { lua, sha: createHash("sha1").update(lua).digest("hex") };
}

// Guards: "" none, "*" the key must be absent, else the sha1 of the stored bytes (the etag).
const GUARD_FAILS = `local function fails(key, guard)
  if guard == '' then return false end
  local current = redis.call('GET', key)
  if guard == '*' then return current ~= false end
  return (not current) or redis.sha1hex(current) ~= guard
end
`;

// KEYS[1]; ARGV: value, px ('' none), guard, channel ('' none), message. Returns 1, or 0 when the guard fails.
const WRITE = script(`${GUARD_FAILS}
if fails(KEYS[1], ARGV[3]) then return 0 end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1`);

// KEYS[1]; ARGV: guard, channel, message. Returns keys removed (0 or 1), or -1 when the guard fails.
const REMOVE = script(`${GUARD_FAILS}
if fails(KEYS[1], ARGV[1]) then return -1 end
local removed = redis.call('UNLINK', KEYS[1])
if removed == 1 and ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed`);

// KEYS[1]. Returns nil, or {etag, pttl, size}.
const META = script(`local value = redis.call('GET', KEYS[1])
if not value then return nil end
return {redis.sha1hex(value), redis.call('PTTL', KEYS[1]), string.len(value)}`);

// KEYS: one per operation; ARGV[1] channel, then (kind, a, b) per operation: check (c, guard),
// set (s, value, px) or remove (r). Every check runs before any write; returns the 1-based index of
// the failed check, or 0 once everything is written.
const BATCH = script(`${GUARD_FAILS}
for i = 1, #KEYS do
  if ARGV[3 * i - 1] == 'c' and fails(KEYS[i], ARGV[3 * i]) then return i end
end
local updated, removed = {}, {}
for i = 1, #KEYS do
  local kind = ARGV[3 * i - 1]
  if kind == 's' then
    if ARGV[3 * i + 1] == '' then redis.call('SET', KEYS[i], ARGV[3 * i])
    else redis.call('SET', KEYS[i], ARGV[3 * i], 'PX', ARGV[3 * i + 1]) end
    updated[#updated + 1] = KEYS[i]
  elseif kind == 'r' and redis.call('UNLINK', KEYS[i]) == 1 then
    removed[#removed + 1] = KEYS[i]
  end
end
if ARGV[1] ~= '' then
  if #updated > 0 then redis.call('PUBLISH', ARGV[1], 'u' .. table.concat(updated, '\\0')) end
  if #removed > 0 then redis.call('PUBLISH', ARGV[1], 'r' .. table.concat(removed, '\\0')) end
end
return 0`);

// KEYS: the keys; ARGV[1] channel, ARGV[i + 1] the value of KEYS[i]. Plain writes without guards or TTL:
// MSET, in slices that stay under Lua's limit on unpacked values.
const SET_MANY = script(`local slice = {}
for i = 1, #KEYS do
  slice[#slice + 1] = KEYS[i]
  slice[#slice + 1] = ARGV[i + 1]
  if #slice == 2000 or i == #KEYS then
    redis.call('MSET', unpack(slice))
    slice = {}
  end
end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], 'u' .. table.concat(KEYS, '\\0')) end
return 0`);

type BatchOp = { key: string; kind: "c" | "s" | "r"; value: string | Buffer; px: string };

// Server replies that mean "try again later" rather than a broken request.
const TRANSIENT_REPLY = /^(LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|BUSY|NOREPLICAS)\b/;

/** Maps what ioredis threw to a StorageError: connection trouble is E_UNAVAILABLE. */
function toStorageError(error: unknown, key?: string): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const isReply = error instanceof Error && error.name === "ReplyError";
  let code: StorageErrorCode = "E_UNAVAILABLE";
  if (isReply && message.startsWith("CROSSSLOT")) code = "E_UNSUPPORTED";
  else if (isReply && message.startsWith("READONLY")) code = "E_READONLY";
  else if (isReply && !TRANSIENT_REPLY.test(message)) code = "E_DRIVER";
  const hint = code === "E_UNSUPPORTED" ? " (in a cluster, keys of one atomic operation must share a hash slot: use a {hash tag})" : "";
  return new StorageError(code, `[redis] ${message}${hint}`, { driver: DRIVER_NAME, key, cause: error });
}

function invalidOption(message: string): StorageError {
  return new StorageError("E_INVALID_OPTION", message, { driver: DRIVER_NAME });
}

/** A prefix written into a SCAN MATCH or PSUBSCRIBE pattern: glob characters escaped. */
function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, "\\$&");
}

/** PX of a ttl in ms; Redis takes whole milliseconds. */
function pxOf(opts: SetOptions | undefined): string {
  return opts?.ttl === undefined ? "" : String(Math.max(1, Math.round(opts.ttl)));
}

/** The guard of a write: "" none, "*" create-only, else the etag the stored value must have. */
function guardOf(opts: (SetOptions & RemoveOptions) | undefined): string {
  if (opts?.ifMatch !== undefined) return opts.ifMatch;
  return opts?.ifNoneMatch === "*" ? "*" : "";
}

/** Bytes as a Buffer view (ioredis sends only Buffers as binary), without a copy. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** ioredis options the driver sets and a caller may not change (see createClient). */
const FIXED_CLIENT_OPTIONS = [
  ["maxRetriesPerRequest", 0],
  ["enableOfflineQueue", false],
  ["autoResendUnfulfilledCommands", false],
] as const;

function checkValues(options: RedisDriverOptions): number {
  const timeout = options.timeout ?? DEFAULT_TIMEOUT;
  if (!Number.isFinite(timeout) || timeout <= 0) throw invalidOption(`timeout must be a positive number of ms, got ${String(options.timeout)}`);
  if (options.watch !== undefined && !["tracking", "pubsub", "keyspace", "off"].includes(options.watch)) {
    throw invalidOption(`watch must be "tracking", "pubsub", "keyspace" or "off", got ${JSON.stringify(options.watch)}`);
  }
  if ((options.watch === "keyspace" || options.watch === "tracking") && options.cluster) {
    throw invalidOption(`watch: "${options.watch}" is not supported with cluster (it is per node); use "pubsub"`);
  }
  return timeout;
}

type ClientSettings = Partial<Record<(typeof FIXED_CLIENT_OPTIONS)[number][0] | "keyPrefix", unknown>>;

/**
 * Refuses settings that undo the driver's design, as ioredis took them: from
 * the options or from the URL's query string (which ioredis lets win).
 */
function checkClientSettings(client: RedisClient): void {
  const settings: ClientSettings[] = client instanceof Cluster ? [client.options, client.options.redisOptions ?? {}] : [client.options];
  for (const set of settings) {
    if (set.keyPrefix) {
      throw invalidOption("Use the driver's base option instead of ioredis's keyPrefix (SCAN results do not carry keyPrefix)");
    }
    for (const [name, allowed] of FIXED_CLIENT_OPTIONS) {
      if (set[name] !== undefined && set[name] !== allowed) {
        throw invalidOption(`ioredis's ${name} must stay ${String(allowed)}: the driver's timeout relies on commands failing once, never queued or resent`);
      }
    }
  }
}

/** A database number as text (URL path, `?db=`, a string `db` option): digits only, which ioredis's parseInt would otherwise bend ("1abc" is 1). */
function checkDatabaseText(text: string): void {
  if (!/^\d+$/.test(text)) throw invalidOption(`The database number (the URL's path, its ?db= or client.db) must be a whole number from 0, got ${JSON.stringify(text)}`);
}

/** The texts ioredis reads the database number from: the path of a redis(s):// URL, a `db` query parameter, a string `db` option. */
function databaseTexts(options: RedisDriverOptions): string[] {
  const texts: string[] = [];
  const option: unknown = options.client?.db;
  if (typeof option === "string") texts.push(option);
  const url = options.url;
  if (!url) return texts;
  const query = url.indexOf("?");
  const fromQuery = query === -1 ? null : new URLSearchParams(url.slice(query + 1)).get("db");
  if (fromQuery !== null) texts.push(fromQuery);
  // Only with a scheme (or //host) is the path a database; ioredis reads other paths as a Unix socket.
  if (/^(rediss?:)?\/\//i.test(url)) {
    const path = new URL(url, "redis://localhost").pathname;
    if (path.length > 1) texts.push(path.slice(1));
  }
  return texts;
}

/**
 * Refuses a database number ioredis would SELECT wrongly, as it took it: NaN
 * (an uncaught SELECT failure that ended the process), a negative or
 * fractional number (refused by the server after connecting, which left the
 * connection in database 0), or any db on a cluster, which has only database 0.
 */
function checkDatabase(client: RedisClient, options: RedisDriverOptions): void {
  for (const text of databaseTexts(options)) checkDatabaseText(text);
  if (client instanceof Cluster) {
    const db: unknown = client.options.redisOptions?.db;
    if (db !== undefined && Number(db) !== 0) throw invalidOption(`A Redis Cluster has only database 0, got db ${String(db)}`);
    return;
  }
  const db = client.options.db ?? 0;
  if (!Number.isSafeInteger(db) || db < 0) throw invalidOption(`The database number must be a whole number from 0, got ${String(db)}`);
  // The ready check is what waits for SELECT's answer (see readyGate): without it, commands could run before a refusal arrives.
  if (db !== 0 && client.options.enableReadyCheck === false) throw invalidOption(`ioredis's enableReadyCheck must stay on with db ${db}: it orders readiness after SELECT's answer`);
}

/** A client as ioredis builds it, with the settings the driver refuses checked; a refused one is closed. */
function buildClient(build: () => RedisClient, options: RedisDriverOptions): RedisClient {
  let client: RedisClient;
  try {
    client = build();
  } catch (error) {
    // A URL ioredis cannot parse is a TypeError ("Invalid URL": the message quotes none of it, which may hold a password).
    throw new StorageError("E_INVALID_OPTION", `ioredis refused the connection options: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
  }
  try {
    checkClientSettings(client);
    checkDatabase(client, options);
  } catch (error) {
    // Only a caller's lazyConnect: false has connected it: that connection would keep the process alive.
    client.disconnect();
    throw error;
  }
  return client;
}

function createClient(options: RedisDriverOptions, timeout: number): RedisClient {
  // No offline queue and no resends: a command either reaches a ready server or fails at once, so a
  // write reported as failed is never replayed later behind the caller's back.
  const connection: RedisOptions = {
    connectTimeout: timeout,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    lazyConnect: true,
    ...options.client,
  };
  if (options.cluster) {
    // ioredis makes a cluster's node connections itself, out of the reply watchdog's reach: they time out per command.
    const nodes = options.cluster;
    const clusterOptions: ClusterOptions = {
      enableOfflineQueue: false,
      lazyConnect: true,
      ...options.clusterOptions,
      redisOptions: { commandTimeout: timeout, ...connection, ...options.clusterOptions?.redisOptions },
    };
    return buildClient(() => new Cluster(nodes, clusterOptions), options);
  }
  const url = options.url;
  return buildClient(() => (url ? new Redis(url, connection) : new Redis(connection)), options);
}

/**
 * Fails the commands of a connection that keeps one waiting past the timeout, with one interval
 * for all of a driver's connections. ioredis's own `commandTimeout` arms and clears a timer for
 * every command, about 5% of a GET's client CPU. Each tick marks the newest command queued on a
 * connection with the time; Redis answers a connection's commands in order, so the oldest mark
 * still queued bounds from below how long every command ahead of it has waited. Once that passes
 * the timeout the connection is cut, which fails every command on it (E_UNAVAILABLE) and lets
 * ioredis reconnect. That holds for a hung server and for one that answers, but too slowly for
 * what is queued behind: a command fails at most two ticks (a tick is a quarter of the timeout,
 * 100 ms at most) after its timeout.
 */
function replyWatchdog(timeout: number) {
  // Per connection, commands seen queued at a tick and when, oldest first (a Map keeps insertion order).
  const watched = new Map<Redis, Map<unknown, number>>();
  const tick = deadlineTick(timeout);
  let timer: NodeJS.Timeout | undefined;
  const check = (): void => {
    const now = Date.now();
    for (const [connection, marks] of watched) {
      // Closed for good (disposed, or a watch connection replaced): nothing more to watch.
      if (connection.status === "end") {
        watched.delete(connection);
        continue;
      }
      const queue = connection.commandQueue;
      const oldest = oldestWaiting(queue, marks);
      if (oldest !== undefined && now - oldest >= timeout) {
        marks.clear();
        connection.stream.destroy(new Error(`No reply within ${timeout} ms`));
        continue;
      }
      const newest = queue.peekBack();
      if (newest !== undefined) marks.set(newest, marks.get(newest) ?? now);
    }
  };
  return {
    watch(connection: RedisClient): void {
      if (connection instanceof Cluster) return;
      watched.set(connection, new Map());
      // unref: the watchdog never keeps a process alive on its own (the connections do, while open).
      timer ??= setInterval(check, tick).unref();
    },
    stop(): void {
      clearInterval(timer);
      timer = undefined;
      watched.clear();
    },
  };
}

/**
 * When the oldest marked command still queued was marked, after dropping the marks of commands
 * no longer queued (answered, or failed with their connection). The queue runs in mark order, so
 * the first marked command met walking it from the front is the oldest still waiting.
 */
function oldestWaiting(queue: Redis["commandQueue"], marks: Map<unknown, number>): number | undefined {
  if (marks.size === 0) return undefined;
  let oldest: unknown;
  for (let index = 0; index < queue.length; index++) {
    const command = queue.peekAt(index);
    if (marks.has(command)) {
      oldest = command;
      break;
    }
  }
  for (const command of marks.keys()) {
    if (command === oldest) return marks.get(command);
    marks.delete(command);
  }
  return undefined;
}

/** ioredis's SELECT of the configured database, refused by the server (a db past its `databases`). */
function isRefusedSelect(error: unknown): error is Error {
  return error instanceof Error && error.name === "ReplyError" && (error as { command?: { name?: string } }).command?.name === "select";
}

/**
 * Waits (at most `timeout` ms) until a connection is ready, connecting a lazy one. Connection
 * errors are kept as the cause of the E_UNAVAILABLE that follows.
 *
 * ioredis reports a connection ready even when the server refused its SELECT, and commands
 * then run in database 0. The refusal is answered before the ready check's INFO (which
 * checkDatabase keeps on), so the connection is closed for good before it can be ready, and
 * every operation fails with E_INVALID_OPTION from then on.
 */
function readyGate(connection: RedisClient, timeout: number, what: string) {
  let waiting: Promise<void> | undefined;
  let lastError: unknown;
  let refused: StorageError | undefined;
  const closed = () => refused ?? new StorageError("E_UNAVAILABLE", `${what}: the connection is closed`, { driver: DRIVER_NAME, cause: lastError });
  connection.on("error", (error: unknown) => {
    lastError = error;
    if (!isRefusedSelect(error) || refused) return;
    const db = (connection as Redis).options.db;
    refused = new StorageError("E_INVALID_OPTION", `${what}: the server refused database ${String(db)} (${error.message})`, { driver: DRIVER_NAME, cause: error });
    connection.disconnect();
  });
  const wait = () =>
    new Promise<void>((resolve, reject) => {
      const done = (error?: StorageError) => {
        clearTimeout(timer);
        connection.off("ready", onReady);
        connection.off("end", onEnd);
        waiting = undefined;
        if (error) reject(error);
        else resolve();
      };
      // A refused SELECT is seen before ready (see above): ready then is not ready.
      const onReady = () => done(refused);
      const onEnd = () => done(closed());
      const timer = setTimeout(() => {
        const reason = lastError instanceof Error ? `: ${lastError.message}` : "";
        done(refused ?? new StorageError("E_UNAVAILABLE", `${what}: not ready within ${timeout} ms${reason}`, { driver: DRIVER_NAME, cause: lastError }));
      }, timeout);
      connection.on("ready", onReady);
      connection.on("end", onEnd);
      if (connection.status === "wait") {
        connection.connect().catch((error: unknown) => {
          lastError = error;
        });
      }
    });
  return (): Promise<void> => {
    if (connection.status === "ready" && !refused) return Promise.resolve();
    if (connection.status === "end" || refused) return Promise.reject(closed());
    waiting ??= wait();
    return waiting;
  };
}

/** Closes a connection: QUIT lets pending replies arrive; a connection that cannot QUIT is dropped. */
async function close(connection: RedisClient): Promise<void> {
  if (connection.status === "ready") {
    try {
      await connection.quit();
      return;
    } catch (error) {
      // The server is gone or slow: dropping the socket is all that is left to do.
      process.emitWarning(`stowage redis: QUIT failed (${String(error)}), disconnecting`);
    }
  }
  connection.disconnect();
}

/**
 * Keys as plain Redis strings through ioredis: values readable with `redis-cli GET`, raw bytes
 * stored as binary, native TTL (PX), CAS on an etag that is the SHA-1 of the stored bytes (checked
 * in Lua scripts, so checks and writes are atomic on the server), transactions as one script, SCAN
 * for listings, and watch across processes through client tracking, pub/sub or keyspace notifications.
 */
export default defineDriver<RedisDriverOptions, RedisClient>((options: RedisDriverOptions = {}) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  const timeout = checkValues(options);
  const prefix = options.base ? options.base.replace(/:+$/, "") + ":" : "";
  // A cluster runs a multi-key script only when its keys share a slot: every key does when the base is a hash tag.
  const atomicAcrossKeys = !options.cluster || /^[^{]*\{[^}]+\}/.test(prefix) || options.clusterTransactions === true;
  const isCluster = options.cluster !== undefined;
  const scanCount = options.scanCount ?? 1000;
  const client = createClient(options, timeout);
  const watchdog = replyWatchdog(timeout);
  watchdog.watch(client);
  const ready = readyGate(client, timeout, "redis");
  const watchMode: WatchMode = options.watch ?? (isCluster ? "pubsub" : "tracking");
  const db = isCluster ? 0 : ((client as Redis).options.db ?? 0);
  const channel = watchMode === "pubsub" ? (options.channel ?? `stowage:events:${db}`) : "";

  /** Runs a command once the connection is ready; failures become StorageErrors. */
  function call<T>(work: () => Promise<T>, key?: string): Promise<T> {
    const started = client.status === "ready" ? work() : ready().then(work);
    return started.catch((error: unknown) => Promise.reject(toStorageError(error, key)));
  }

  /** `call` for commands whose reply says nothing (SET, UNLINK): one promise less on the write path. */
  function callVoid(work: () => Promise<unknown>, key: string): Promise<void> {
    const started = client.status === "ready" ? work() : ready().then(work);
    return started.then(nothing, (error: unknown) => Promise.reject(toStorageError(error, key)));
  }

  function evalScript(target: Script, keys: string[], args: (string | Buffer)[]): Promise<unknown> {
    return client.evalsha(target.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      // The server lost its script cache (a restart, SCRIPT FLUSH): send the source once.
      if (error instanceof Error && error.message.startsWith("NOSCRIPT")) return client.eval(target.lua, keys.length, ...keys, ...args);
      throw error;
    });
  }

  const runScript = (target: Script, keys: string[], args: (string | Buffer)[]) => call(() => evalScript(target, keys, args), keys[0]);

  /** Writes one value: a plain SET, or the WRITE script when a guard must be checked or an event published. */
  function write(key: string, value: string | Buffer, opts: SetOptions | undefined): Promise<void> {
    const full = prefix + key;
    const guard = guardOf(opts);
    if (guard === "" && channel === "") {
      const px = pxOf(opts);
      return callVoid(() => (px === "" ? client.set(full, value) : client.set(full, value, "PX", px)), key);
    }
    return runScript(WRITE, [full], [value, pxOf(opts), guard, channel, channel && "u" + full]).then((written) => {
      if (written === 0) throw conflictError(DRIVER_NAME, key, guard === "*" ? "Key already exists" : "Stored version differs");
    });
  }

  async function remove(key: string, opts: RemoveOptions | undefined): Promise<void> {
    const full = prefix + key;
    const guard = guardOf(opts);
    if (guard === "" && channel === "") return callVoid(() => client.unlink(full), key);
    if ((await runScript(REMOVE, [full], [guard, channel, channel && "r" + full])) === -1) throw conflictError(DRIVER_NAME, key, "Stored version differs");
  }

  /** Applies operations in one script: every check first, then every write, all or nothing. */
  async function batch(ops: BatchOp[]): Promise<void> {
    if (ops.length === 0) return;
    const args: (string | Buffer)[] = [channel];
    for (const op of ops) args.push(op.kind, op.value, op.px);
    const failed = await runScript(BATCH, ops.map((op) => prefix + op.key), args);
    if (typeof failed === "number" && failed > 0) throw conflictError(DRIVER_NAME, ops[failed - 1]!.key, "Stored version differs");
  }

  function setOps(key: string, value: string | Buffer, opts: SetOptions | undefined): BatchOp[] {
    const guard = guardOf(opts);
    const set: BatchOp = { key, kind: "s", value, px: pxOf(opts) };
    return guard ? [{ key, kind: "c", value: guard, px: "" }, set] : [set];
  }

  function commitOps(op: CommitOperation): BatchOp[] {
    if (op.type === "check") return [{ key: op.key, kind: "c", value: op.etag ?? "*", px: "" }];
    if (op.type === "remove") {
      const guard = guardOf(op.options);
      const removeOp: BatchOp = { key: op.key, kind: "r", value: "", px: "" };
      return guard ? [{ key: op.key, kind: "c", value: guard, px: "" }, removeOp] : [removeOp];
    }
    return setOps(op.key, op.type === "set" ? op.value : asBuffer(op.value), op.options);
  }

  /** The connections that hold keys: every master of a cluster, else the one client. */
  async function nodes(): Promise<Redis[]> {
    if (!isCluster) return [client as Redis];
    await call(() => Promise.resolve());
    return (client as Cluster).nodes("master");
  }

  /** Pages of full Redis keys under `base`, from SCAN on every node (a page may repeat a key). */
  async function* scan(base: string, count: number): AsyncGenerator<{ node: Redis; keys: string[] }> {
    const pattern = globEscape(prefix + base) + "*";
    for (const node of await nodes()) {
      let cursor = "0";
      do {
        const [next, keys] = await call(() => node.scan(cursor, "MATCH", pattern, "COUNT", count));
        cursor = next;
        if (keys.length > 0) yield { node, keys };
      } while (cursor !== "0");
    }
  }

  /** Removes one SCAN page with pipelined UNLINKs on the node that holds it (one key each: slots never mix), then reports it. */
  async function unlinkPage(node: Redis, keys: string[]): Promise<void> {
    const pipeline = node.pipeline();
    for (const key of keys) pipeline.unlink(key);
    const results = (await call(() => pipeline.exec())) ?? [];
    const failed = results.find(([error]) => error);
    if (failed) throw toStorageError(failed[0]);
    const removed = keys.filter((_, index) => results[index]?.[1] === 1);
    if (channel && removed.length > 0) await call(() => client.publish(channel, "r" + removed.join("\0")));
  }

  const watcher = createWatcher();

  function createWatcher() {
    const listeners = new Set<WatchCallback>();
    let connections: RedisClient[] = [];
    let starting: Promise<void> | undefined;
    let classifying: Promise<void> = Promise.resolve();
    const keyspacePrefix = `__keyspace@${db}__:`;

    const emit = (event: WatchEvent, fullKey: string) => {
      if (!fullKey.startsWith(prefix)) return;
      const key = fullKey.slice(prefix.length);
      for (const listener of listeners) listener(event, key);
    };
    const onMessage = (_channel: string, message: string) => {
      const event: WatchEvent = message[0] === "u" ? "update" : "remove";
      for (const fullKey of message.slice(1).split("\0")) emit(event, fullKey);
    };
    const onKeyspace = (_pattern: string, source: string, operation: string) => {
      const event = KEYSPACE_EVENTS[operation];
      if (event) emit(event, source.slice(keyspacePrefix.length));
    };
    // An invalidation names keys, not what happened to them: whether a key still exists tells an
    // update from a removal. One message at a time, so events keep the server's order.
    const onInvalidated = (_channel: Buffer, message: Buffer[] | Buffer | null) => {
      // null is FLUSHDB / FLUSHALL, which names no key.
      if (!Array.isArray(message)) return;
      const keys = message.map(String);
      classifying = classifying.then(() => classify(keys)).catch(warn);
    };
    async function classify(keys: string[]): Promise<void> {
      const pipeline = client.pipeline();
      for (const key of keys) pipeline.exists(key);
      const results = (await call(() => pipeline.exec())) ?? [];
      keys.forEach((key, index) => emit(results[index]?.[1] === 1 ? "update" : "remove", key));
    }

    async function checkNotifications(): Promise<void> {
      const reply = (await call(() => client.config("GET", "notify-keyspace-events"))) as string[];
      const flags = reply[1] ?? "";
      if (!flags.includes("K") || !(flags.includes("A") || ["g", "$", "x"].every((flag) => flags.includes(flag)))) {
        throw new StorageError("E_UNSUPPORTED", `watch: "keyspace" needs notify-keyspace-events with K$gx (the server has "${flags}")`, {
          driver: DRIVER_NAME,
        });
      }
    }

    /** A connection of the watcher's own (a subscribed one takes no other commands), once ready. */
    async function open(override: Partial<RedisOptions> = {}): Promise<RedisClient> {
      const connection = isCluster ? client.duplicate() : (client as Redis).duplicate(override);
      connections.push(connection);
      watchdog.watch(connection);
      await readyGate(connection, timeout, "redis watch")();
      return connection;
    }

    async function startSubscriber(): Promise<void> {
      if (watchMode === "keyspace") await checkNotifications();
      const subscriber = await open();
      if (watchMode === "keyspace") {
        subscriber.on("pmessage", onKeyspace);
        await subscriber.psubscribe(keyspacePrefix + globEscape(prefix) + "*");
      } else {
        subscriber.on("message", onMessage);
        await subscriber.subscribe(channel);
      }
    }

    /**
     * Tracking in broadcast mode: the server sends the names of changed keys under the prefix to the
     * subscriber. Both connections are set up again whenever either reconnects (a new subscriber has
     * a new client id to redirect to).
     */
    async function startTracking(): Promise<void> {
      const subscriber = (await open({ autoResubscribe: false })) as Redis;
      const tracker = (await open()) as Redis;
      subscriber.on("messageBuffer", onInvalidated);
      let redirect = "";
      const sync = async () => {
        // The connection that is not ready yet syncs again when it is.
        if (subscriber.status !== "ready" || tracker.status !== "ready") return;
        if (!redirect) {
          redirect = String(await subscriber.client("ID").catch(noTracking));
          await subscriber.subscribe(INVALIDATE_CHANNEL);
        }
        await tracker.call("CLIENT", "TRACKING", "OFF");
        await tracker.call("CLIENT", "TRACKING", "ON", "REDIRECT", redirect, "BCAST", ...(prefix ? ["PREFIX", prefix] : [])).catch(noTracking);
      };
      let syncing: Promise<void> = Promise.resolve();
      const resync = () => (syncing = syncing.then(sync, sync));
      subscriber.on("ready", () => {
        redirect = "";
        resync().catch(warn);
      });
      tracker.on("ready", () => resync().catch(warn));
      await resync();
    }

    async function stop(): Promise<void> {
      const open = connections;
      connections = [];
      starting = undefined;
      await Promise.all(open.map(close));
    }

    return {
      async add(callback: WatchCallback): Promise<Unwatch> {
        listeners.add(callback);
        try {
          starting ??= watchMode === "tracking" ? startTracking() : startSubscriber();
          await starting;
        } catch (error) {
          listeners.delete(callback);
          await stop();
          throw toStorageError(error);
        }
        return async () => {
          listeners.delete(callback);
          if (listeners.size === 0) await stop();
        };
      },
      stop,
    };
  }

  return {
    name: DRIVER_NAME,
    // Redis keys hold up to 512 MB (measured: 70,000 bytes work); the default bounds the work per key.
    keyLimits: DEFAULT_KEY_LIMITS,
    options,
    flags: { ttl: true, cas: true, transactions: atomicAcrossKeys, clearBase: true, nestedKeys: true, watch: watchMode !== "off" },
    getInstance: () => client,
    hasItem: async (key: string) => (await call(() => client.exists(prefix + key), key)) === 1,
    getItem: (key: string) => call(() => client.get(prefix + key), key),
    getItemRaw: (key: string) => call(() => client.getBuffer(prefix + key), key),
    getItems: async (items: { key: string }[]) => {
      const keys = items.map((item) => prefix + item.key);
      if (keys.length === 0) return [];
      // MGET is one command only when every key can live on one node.
      const values = isCluster ? await Promise.all(keys.map((key) => call(() => client.get(key)))) : await call(() => client.mget(keys));
      return items.map((item, index) => ({ key: item.key, value: values[index] ?? null }));
    },
    setItem: (key: string, value: string, opts: SetOptions) => write(key, value, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => write(key, asBuffer(value), opts),
    setItems: async (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) => {
      const guarded = items.some((item) => guardOf(item.options ?? common) !== "");
      if (isCluster && !guarded) {
        // Keys in different slots cannot share a script: each is written on its own.
        await Promise.all(items.map((item) => write(item.key, item.value, item.options ?? common)));
        return;
      }
      if (guarded || items.some((item) => (item.options ?? common).ttl !== undefined)) {
        await batch(items.flatMap((item) => setOps(item.key, item.value, item.options ?? common)));
        return;
      }
      if (items.length === 0) return;
      if (channel === "") {
        // One flat argument list, filled in place: flatMap would make an array per item.
        const args = new Array<string>(2 * items.length);
        items.forEach((item, index) => {
          args[2 * index] = prefix + item.key;
          args[2 * index + 1] = item.value;
        });
        await call(() => client.mset(args));
        return;
      }
      await runScript(
        SET_MANY,
        items.map((item) => prefix + item.key),
        [channel, ...items.map((item) => item.value)],
      );
    },
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    getMeta: async (key: string): Promise<StorageMeta | null> => {
      const reply = (await runScript(META, [prefix + key], [])) as [string, number, number] | null;
      if (!reply) return null;
      const [etag, pttl, size] = reply;
      const meta: StorageMeta = { etag, size };
      if (pttl >= 0) {
        meta.ttl = pttl;
        meta.expires = new Date(Date.now() + pttl);
      }
      return meta;
    },
    getKeys: async (base: string) => {
      const keys = new Set<string>();
      for await (const page of scan(base ?? "", scanCount)) for (const key of page.keys) keys.add(key.slice(prefix.length));
      return [...keys];
    },
    async *iterateKeys(base: string, opts: { batchSize?: number }) {
      for await (const page of scan(base ?? "", opts.batchSize ?? scanCount)) yield page.keys.map((key) => key.slice(prefix.length));
    },
    clear: async (base: string) => {
      for await (const page of scan(base ?? "", scanCount)) await unlinkPage(page.node, page.keys);
    },
    commit: (operations: CommitOperation[]) => batch(operations.flatMap(commitOps)),
    watch: watchMode === "off" ? undefined : (callback: WatchCallback) => watcher.add(callback),
    dispose: async () => {
      try {
        await watcher.stop();
        await close(client);
      } finally {
        watchdog.stop();
      }
    },
  };
});

/** Keyspace notifications that change what a key holds. */
const KEYSPACE_EVENTS: Record<string, WatchEvent> = {
  set: "update",
  setrange: "update",
  append: "update",
  incrby: "update",
  incrbyfloat: "update",
  restore: "update",
  rename_to: "update",
  copy_to: "update",
  move_to: "update",
  del: "remove",
  expired: "remove",
  evicted: "remove",
  rename_from: "remove",
  move_from: "remove",
};
