import { createHash, randomBytes } from "node:crypto";
import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from "ioredis";
import { defineDriver } from "../../core/defineDriver.js";
import { conflictError } from "../../core/errors.js";
import { checkOptions } from "../../core/options.js";
import { describeExpiry } from "../../core/ttl.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type LockTake, type RemoveOptions, type SetOptions, type StorageMeta, type WatchCallback } from "../../core/types.js";
import { optionNames } from "../support/optionNames.js";
import { close, createClient, readyGate, type RedisClient } from "./connection.js";
import { asBuffer, globEscape, pxOf, scriptGuard } from "./encoding.js";
import { DRIVER_NAME, invalidOption, toStorageError } from "./errors.js";
import { BATCH, isNoScript, META, RELEASE_LOCK, REMOVE, SET_MANY, TAKE_LOCK, WRITE, type BatchOp, type Script } from "./scripts.js";
import { createWatcher } from "./watch.js";
import { replyWatchdog } from "./watchdog.js";

export interface RedisDriverOptions {
  /**
   * Server URL, e.g. `redis://user:pass@127.0.0.1:6379/0` or `rediss://…`.
   * @default ioredis's, 127.0.0.1:6379
   */
  url?: string;
  /**
   * Prefix of every Redis key this driver owns: `app` stores `user:1` as `app:user:1`.
   * @default none (the whole database)
   */
  base?: string;
  /**
   * ms allowed for connecting and for each command; past it an operation fails with `E_UNAVAILABLE`.
   * @default 5000
   */
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
   * several slots then fails with `E_UNSUPPORTED`. Without it, the
   * `transactions` flag is only declared where every key is in one slot.
   * @default false
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
   * @default "tracking"; "pubsub" with `cluster`
   */
  watch?: WatchMode;
  /**
   * Pub/sub channel of `watch: "pubsub"`.
   * @default "stowage:events:<db>"
   */
  channel?: string;
  /**
   * COUNT hint of each SCAN page.
   * @default 1000
   */
  scanCount?: number;
}

export type WatchMode = "tracking" | "pubsub" | "keyspace" | "off";

export type { RedisClient };

/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<RedisDriverOptions>({
  url: true, base: true, timeout: true, client: true, cluster: true, clusterOptions: true, clusterTransactions: true, watch: true, channel: true,
  scanCount: true,
});
const DEFAULT_TIMEOUT = 5000;

const nothing = (): void => undefined;

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

/**
 * Keys as plain Redis strings through ioredis: values readable with `redis-cli GET`, raw bytes
 * stored as binary, native TTL (PX), CAS on an etag that is the SHA-1 of the stored bytes (checked
 * in Lua scripts, so checks and writes are atomic on the server), transactions as one script, SCAN
 * for listings, and watch across processes through client tracking, pub/sub or keyspace notifications.
 *
 * @throws StorageError `E_INVALID_OPTION` (from the factory) for an unknown option, one of the wrong type or range, or ioredis settings that undo the driver's design (`keyPrefix`, `maxRetriesPerRequest`, `enableOfflineQueue`, `autoResendUnfulfilledCommands`)
 * @throws StorageError (from operations) `E_UNAVAILABLE` when the server is not ready within `timeout` or the connection is closed; `E_UNSUPPORTED` from `watch` when the server lacks what the `watch` mode needs
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
  // Names this driver instance in its pub/sub messages, so its watchers can tell its writes (8 characters, no NUL).
  const sender = randomBytes(6).toString("base64url");

  /** Starts `work` now when the connection is ready, else once it is. */
  function whenReady<T>(work: () => Promise<T>): Promise<T> {
    return client.status === "ready" ? work() : ready().then(work);
  }

  /** Runs a command once the connection is ready; failures become StorageErrors. */
  function call<T>(work: () => Promise<T>, key?: string): Promise<T> {
    const started = whenReady(work);
    return started.catch((error: unknown) => Promise.reject(toStorageError(error, key)));
  }

  /** `call` for commands whose reply says nothing (SET, UNLINK): one promise less on the write path. */
  function callVoid(work: () => Promise<unknown>, key: string): Promise<void> {
    const started = whenReady(work);
    return started.then(nothing, (error: unknown) => Promise.reject(toStorageError(error, key)));
  }

  /**
   * Runs a script by its SHA-1, sending the source once if the server lost its script cache; one
   * rejection handler for both the resend and the StorageError (a promise less per script on the lock path).
   */
  function runScript(target: Script, keys: string[], args: (string | Buffer)[]): Promise<unknown> {
    const work = () => client.evalsha(target.sha, keys.length, ...keys, ...args);
    const started = whenReady(work);
    return started.catch((error: unknown) => {
      if (isNoScript(error)) return client.eval(target.lua, keys.length, ...keys, ...args).catch((retryError: unknown) => Promise.reject(toStorageError(retryError, keys[0])));
      return Promise.reject(toStorageError(error, keys[0]));
    });
  }

  /** Writes one value: a plain SET, or the WRITE script when a guard must be checked or an event published. */
  function write(key: string, value: string | Buffer, opts: SetOptions | undefined): Promise<void> {
    const full = prefix + key;
    const guard = scriptGuard(opts, key);
    if (guard === "" && channel === "") {
      const px = pxOf(opts);
      return callVoid(() => (px === "" ? client.set(full, value) : client.set(full, value, "PX", px)), key);
    }
    const message = channel && `u${sender}${createHash("sha1").update(value).digest("hex")}${full}`;
    return runScript(WRITE, [full], [value, pxOf(opts), guard, channel, message]).then((written) => {
      if (written === 0) throw conflictError(DRIVER_NAME, key, guard === "*" ? "Key already exists" : "Stored version differs");
    });
  }

  async function remove(key: string, opts: RemoveOptions | undefined): Promise<void> {
    const full = prefix + key;
    const guard = scriptGuard(opts, key);
    if (guard === "" && channel === "") return callVoid(() => client.unlink(full), key);
    if ((await runScript(REMOVE, [full], [guard, channel, channel && `r${sender}${full}`])) === -1) throw conflictError(DRIVER_NAME, key, "Stored version differs");
  }

  /** Applies operations in one script: every check first, then every write, all or nothing. */
  async function batch(ops: BatchOp[]): Promise<void> {
    if (ops.length === 0) return;
    const args: (string | Buffer)[] = [channel];
    for (const op of ops) args.push(op.kind, op.value, op.px);
    args.push(sender);
    const failed = await runScript(BATCH, ops.map((op) => prefix + op.key), args);
    if (typeof failed === "number" && failed > 0) throw conflictError(DRIVER_NAME, ops[failed - 1]!.key, "Stored version differs");
  }

  function setOps(key: string, value: string | Buffer, opts: SetOptions | undefined): BatchOp[] {
    const guard = scriptGuard(opts, key);
    const set: BatchOp = { key, kind: "s", value, px: pxOf(opts) };
    return guard ? [{ key, kind: "c", value: guard, px: "" }, set] : [set];
  }

  function commitOps(op: CommitOperation): BatchOp[] {
    if (op.type === "check") return [{ key: op.key, kind: "c", value: op.etag ?? "*", px: "" }];
    if (op.type === "remove") {
      const guard = scriptGuard(op.options, op.key);
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
    if (channel && removed.length > 0) await call(() => client.publish(channel, `r${sender}${removed.join("\0")}`));
  }

  /** Locks' fast path: the whole take in one script (see TAKE_LOCK). Not async: one promise less per take. */
  function takeLock(key: string, holder: string, now: number): Promise<LockTake> {
    return runScript(TAKE_LOCK, [prefix + key], [holder, String(now), channel, sender]).then(lockTakeOf);
  }

  /** Locks' release fast path: one script that swaps the taken record for the released one (see RELEASE_LOCK). */
  function releaseLock(key: string, taken: string, released: string): Promise<boolean> {
    return runScript(RELEASE_LOCK, [prefix + key], [taken, released, channel, sender]).then(isOne);
  }

  const watcher = watchMode === "off" ? undefined : createWatcher({ client, isCluster, prefix, db, watchMode, channel, sender, timeout, watchdog, call });

  return {
    name: DRIVER_NAME,
    // Redis keys hold up to 512 MB (measured: 70,000 bytes work); the default bounds the work per key.
    keyLimits: DEFAULT_KEY_LIMITS,
    options,
    flags: { ttl: true, cas: true, etag: "content", transactions: atomicAcrossKeys, clearBase: true, nestedKeys: true, watch: watchMode !== "off" },
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
      const guarded = items.some((item) => scriptGuard(item.options ?? common, item.key) !== "");
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
        [channel, ...items.map((item) => item.value), sender],
      );
    },
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    getMeta: async (key: string): Promise<StorageMeta | null> => {
      const reply = (await runScript(META, [prefix + key], [])) as [string, number, number] | null;
      if (!reply) return null;
      const [etag, pttl, size] = reply;
      const meta: StorageMeta = { etag, size };
      const now = Date.now();
      return pttl >= 0 ? describeExpiry(meta, now + pttl, now) : meta;
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
    takeLock,
    releaseLock,
    watch: watcher && ((callback: WatchCallback) => watcher.add(callback)),
    dispose: async () => {
      try {
        await watcher?.stop();
        await close(client);
      } finally {
        watchdog.stop();
      }
    },
  };
});

/** TAKE_LOCK's reply as a LockTake: {1, token, etag} taken, {0} held, {-1} declined. */
function lockTakeOf(reply: unknown): LockTake {
  const [outcome, token, etag] = reply as [number, number?, string?];
  if (outcome === 1) return { outcome: "taken", token: token!, etag: etag! };
  return { outcome: outcome === 0 ? "held" : "declined" };
}

const isOne = (reply: unknown): boolean => reply === 1;
