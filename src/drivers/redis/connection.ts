import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { StorageError } from "../../core/errors.js";
import { DRIVER_NAME, invalidOption } from "./errors.js";
import type { RedisDriverOptions } from "./index.js";

/** The ioredis client `getInstance()` returns. */
export type RedisClient = Redis | Cluster;

/** ioredis options the driver sets and a caller may not change (see createClient). */
const FIXED_CLIENT_OPTIONS = [
  ["maxRetriesPerRequest", 0],
  ["enableOfflineQueue", false],
  ["autoResendUnfulfilledCommands", false],
] as const;

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

export function createClient(options: RedisDriverOptions, timeout: number): RedisClient {
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
export function readyGate(connection: RedisClient, timeout: number, what: string) {
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
export async function close(connection: RedisClient): Promise<void> {
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
