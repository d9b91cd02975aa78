import type { Redis, RedisOptions } from "ioredis";
import { StorageError } from "../../core/errors.js";
import type { Unwatch, WatchCallback, WatchEvent, WatchInfo } from "../../core/types.js";
import { close, readyGate, type RedisClient } from "./connection.js";
import { globEscape } from "./encoding.js";
import { DRIVER_NAME, toStorageError } from "./errors.js";
import type { ReplyWatchdog } from "./watchdog.js";

/** How the watcher learns of changes; "off" has no watcher. */
export type NativeWatchMode = "tracking" | "pubsub" | "keyspace";

/** What the watcher shares with the driver that made it. */
export interface WatchContext {
  client: RedisClient;
  isCluster: boolean;
  /** Prefix of every Redis key the driver owns ("" for none). */
  prefix: string;
  db: number;
  watchMode: NativeWatchMode;
  /** Pub/sub channel of watch: "pubsub" ("" otherwise). */
  channel: string;
  /** The id that names this driver instance in its pub/sub messages. */
  sender: string;
  timeout: number;
  watchdog: ReplyWatchdog;
  /** Runs a command once the driver's connection is ready; failures become StorageErrors. */
  call: <T>(work: () => Promise<T>) => Promise<T>;
}

const UNKNOWN_ORIGIN: WatchInfo = Object.freeze({ origin: "unknown" });
/** Characters of a driver instance's id in its messages (base64url of 6 random bytes). */
const SENDER_LENGTH = 8;
/** Characters of an etag: a SHA-1 in hex. */
const ETAG_LENGTH = 40;

// Where the server sends tracking invalidations for RESP2 connections.
const INVALIDATE_CHANNEL = "__redis__:invalidate";

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

/**
 * The driver's change feed: connections of its own, opened with the first
 * listener and closed with the last, that turn tracking invalidations,
 * pub/sub messages or keyspace notifications into watch events.
 */
export function createWatcher({ client, isCluster, prefix, db, watchMode, channel, sender, timeout, watchdog, call }: WatchContext) {
  const listeners = new Set<WatchCallback>();
  let connections: RedisClient[] = [];
  let starting: Promise<void> | undefined;
  let classifying: Promise<void> = Promise.resolve();
  const keyspacePrefix = `__keyspace@${db}__:`;

  // Invalidations and keyspace events name keys only: not the writer, not the value.
  const emit = (event: WatchEvent, fullKey: string, info: WatchInfo = UNKNOWN_ORIGIN) => {
    if (!fullKey.startsWith(prefix)) return;
    const key = fullKey.slice(prefix.length);
    for (const listener of listeners) listener(event, key, info);
  };
  // The driver's own messages: `u` or `r`, the sender's 8-character id, then NUL-separated entries,
  // each an update's etag (40 hex digits, the SHA-1 of the value) and key, or a removed key.
  const onMessage = (_channel: string, message: string) => {
    const event: WatchEvent = message[0] === "u" ? "update" : "remove";
    const origin = message.slice(1, 1 + SENDER_LENGTH) === sender ? "local" : "remote";
    for (const entry of message.slice(1 + SENDER_LENGTH).split("\0")) {
      if (event === "remove") emit(event, entry, { origin });
      else emit(event, entry.slice(ETAG_LENGTH), { origin, etag: entry.slice(0, ETAG_LENGTH) });
    }
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
