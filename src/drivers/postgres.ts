import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Client as PgClient, Pool as PgPool, PoolClient, PoolConfig, QueryArrayConfig, QueryConfig, QueryResultRow } from "pg";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError, type StorageErrorCode } from "../core/errors.js";
import { guardOf } from "../core/guards.js";
import { checkOptions } from "../core/options.js";
import { describeExpiry } from "../core/ttl.js";
import { Deadlines } from "./support/deadlines.js";
import { checkKeyBytes, errorWrapper, expiresAt, hasGuards, isVersionEtag, keysetPages, lastWriteEach, schemaOnce, withinDepth, type BatchItem } from "./support/tableDriver.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type RemoveOptions, type SetOptions, type StorageMeta, type Unwatch, type WatchCallback, type WatchEvent, type WatchInfo } from "../core/types.js";
import { prefixEnd } from "./support/keyRange.js";
import { optionNames } from "./support/optionNames.js";

export interface PostgresOptions extends Omit<PoolConfig, "connectionString"> {
  /** Connection URL, e.g. `postgres://user:pass@host:5432/db` (or use pg's `host`, `user`, ... options). */
  url?: string;
  /**
   * Table that holds the keys: `[A-Za-z_][A-Za-z0-9_]*`, at most 48 characters.
   * @default "stowage"
   */
  table?: string;
  /**
   * Milliseconds allowed for connecting and for each statement.
   * A server that is down or does not answer gives `E_UNAVAILABLE` within it.
   * Sets pg's `connectionTimeoutMillis` and `statement_timeout` unless given; the driver times each statement
   * itself (pg's `query_timeout` arms a timer per query, which costs more than the rest of a point read).
   * @default 5000
   */
  timeout?: number;
  /**
   * How often expired rows are deleted, in ms.
   * @default 60_000
   */
  purgeInterval?: number;
  /**
   * Whether writes NOTIFY watchers in every process. With
   * `false` writes send nothing (NOTIFY serializes committing writers on a
   * server-wide lock), the driver is not flagged `watch`, and watchers see
   * the writes of this process only.
   * @default true
   */
  notify?: boolean;
}

const DRIVER_NAME = "postgres";
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<PostgresOptions>({
  // The driver's own options, then pg.Pool's, passed through (PoolConfig; `connectionString` is `url` here).
  url: true, table: true, timeout: true, purgeInterval: true, notify: true, max: true, min: true, idleTimeoutMillis: true, log: true, Promise: true,
  allowExitOnIdle: true, maxUses: true, maxLifetimeSeconds: true, Client: true, onConnect: true, verify: true, user: true, database: true,
  password: true, port: true, host: true, keepAlive: true, stream: true, statement_timeout: true, ssl: true, enableChannelBinding: true,
  sslnegotiation: true, query_timeout: true, lock_timeout: true, keepAliveInitialDelayMillis: true, idle_in_transaction_session_timeout: true,
  application_name: true, fallback_application_name: true, connectionTimeoutMillis: true, types: true, options: true, client_encoding: true,
  pipeline: true,
});
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;
/** Under btree's limit on an index row (2704 bytes), with room for its header. */
export const MAX_KEY_BYTES = 2600;
const COLUMNS = ["expires_at", "key", "mtime", "raw", "value", "version"];

// SQLSTATE codes (or their class, two characters) that mean "the server cannot serve this now".
const UNAVAILABLE_STATES = new Set(["08", "53", "57P01", "57P02", "57P03", "57014", "55P03"]);
const NODE_UNAVAILABLE = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);
// pg reports lost connections and its own timeouts with messages, not codes.
const UNAVAILABLE_MESSAGE = /connection terminated|timeout|not queryable|connection ended|ended by the server/i;

function classify(error: unknown): StorageErrorCode {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string") {
    if (NODE_UNAVAILABLE.has(code) || UNAVAILABLE_STATES.has(code) || UNAVAILABLE_STATES.has(code.slice(0, 2))) return "E_UNAVAILABLE";
    if (code === "40001" || code === "40P01") return "E_CONFLICT";
    if (code === "54000") return "E_TOO_LARGE";
    if (code === "22021" || code === "22P05") return "E_INVALID_VALUE";
  }
  return error instanceof Error && UNAVAILABLE_MESSAGE.test(error.message) ? "E_UNAVAILABLE" : "E_DRIVER";
}

/** Whatever pg threw, as a StorageError with the original as `cause`. */
const toError = errorWrapper(DRIVER_NAME, classify);
const checkKey = (key: string) => checkKeyBytes(key, MAX_KEY_BYTES, DRIVER_NAME);


/** Why a table name is safe to put in SQL: it matched TABLE_NAME, and is quoted anyway. */
const ident = (name: string) => `"${name}"`;

/** Characters of a driver instance's id in its notifications (8: base64url of 6 random bytes). */
const SENDER_LENGTH = 8;

/**
 * The SQL of one table: every statement the driver runs, built once from the
 * validated table name. `sender` (base64url, safe in a literal) names this
 * driver instance in its notifications, so its watchers can tell its writes.
 */
function statements(table: string, notifies: boolean, sender: string) {
  const t = ident(table);
  const channel = `stowage.${table}`;
  const alive = "(expires_at IS NULL OR expires_at > $2)";
  const firstVersion = "(floor(random() * 281474976710656) + 1)::bigint";
  // A write NOTIFYs the keys it wrote from the same statement: `u` or `r`, the sender, an update's new
  // version and `:`, then the key. Without NOTIFY it is the plain statement (no CTE, no RETURNING for the
  // server to build); callers read only its row count, the same either way.
  const notifying = (write: string, event: "u" | "r") =>
    notifies
      ? `WITH w AS (${write} RETURNING key${event === "u" ? ", version" : ""}) SELECT pg_notify('${channel}', '${event}${sender}' || ${event === "u" ? "version || ':' || " : ""}key) FROM w`
      : write;
  // A batch NOTIFYs its keys in groups, each `U` or `R` and the sender, then `<version>:<bytes>:<key>`
  // (`<bytes>:<key>` for `R`) repeated: one notification per row would cost a third of a 1000-row write;
  // a group stays under the 8000-byte payload limit (a version has at most 19 digits).
  const notifyingBatch = (write: string, event: "U" | "R") =>
    notifies
      ? `WITH w AS (${write} RETURNING key${event === "U" ? ", version" : ""}), n AS (SELECT key${event === "U" ? ", version" : ""}, sum(octet_length(key) + 26) OVER (ROWS UNBOUNDED PRECEDING) AS c FROM w)
    SELECT count(*) FROM (SELECT pg_notify('${channel}', '${event}${sender}' || string_agg(${event === "U" ? "version || ':' || " : ""}octet_length(key) || ':' || key, '')) FROM n GROUP BY c / 5000) g`
      : write;
  const upsertTail = `ON CONFLICT (key) DO UPDATE SET value = excluded.value, raw = excluded.raw, version = s.version + 1,
    mtime = excluded.mtime, expires_at = excluded.expires_at`;
  return {
    channel,
    createTable: `CREATE TABLE IF NOT EXISTS ${t} (
        key text COLLATE "C" PRIMARY KEY,
        value text,
        raw bytea,
        version bigint NOT NULL,
        mtime bigint NOT NULL,
        expires_at bigint,
        CHECK ((value IS NULL) <> (raw IS NULL)))`,
    createIndex: `CREATE INDEX IF NOT EXISTS ${ident(`${table}_expires`)} ON ${t} (expires_at) WHERE expires_at IS NOT NULL`,
    // $1 key, $2 now.
    get: `SELECT value, raw FROM ${t} WHERE key = $1 AND ${alive}`,
    has: `SELECT 1 FROM ${t} WHERE key = $1 AND ${alive}`,
    meta: `SELECT version, mtime, expires_at, octet_length(value), octet_length(raw) FROM ${t} WHERE key = $1 AND ${alive}`,
    getMany: `SELECT key, value, raw FROM ${t} WHERE key = ANY($1::text[]) AND ${alive}`,
    // $1 key, $2 now, $3 text, $4 bytes, $5 expires_at.
    upsert: notifying(`INSERT INTO ${t} AS s (key, value, raw, version, mtime, expires_at) VALUES ($1, $3, $4, ${firstVersion}, $2, $5)
      ${upsertTail}`, "u"),
    insertIfAbsent: notifying(`INSERT INTO ${t} AS s (key, value, raw, version, mtime, expires_at) VALUES ($1, $3, $4, ${firstVersion}, $2, $5)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, raw = excluded.raw, version = excluded.version, mtime = excluded.mtime,
      expires_at = excluded.expires_at WHERE s.expires_at IS NOT NULL AND s.expires_at <= $2`, "u"),
    // ... and $6 the expected version.
    updateIfVersion: notifying(`UPDATE ${t} SET value = $3, raw = $4, version = version + 1, mtime = $2, expires_at = $5
      WHERE key = $1 AND version = $6 AND ${alive}`, "u"),
    // $1 keys, $2 now, $3 texts, $4 expiries, each a JSON array (cheaper to send than pg's array literals):
    // one statement for a whole batch.
    upsertMany: notifyingBatch(`INSERT INTO ${t} AS s (key, value, version, mtime, expires_at)
      SELECT k, v, ${firstVersion}, $2, e::bigint
      FROM ROWS FROM (json_array_elements_text($1::json), json_array_elements_text($3::json), json_array_elements_text($4::json)) AS u(k, v, e)
      ${upsertTail}`, "U"),
    remove: notifying(`DELETE FROM ${t} WHERE key = $1`, "r"),
    // $1 key, $2 now, $3 version.
    removeIfVersion: notifying(`DELETE FROM ${t} WHERE key = $1 AND ${alive} AND version = $3`, "r"),
    // $1 from, $2 now, $3 to.
    keysInRange: `SELECT key FROM ${t} WHERE key >= $1 AND key < $3 AND ${alive}`,
    pageInRange: `SELECT key FROM ${t} WHERE key > $1 AND key < $3 AND ${alive} ORDER BY key LIMIT $4`,
    pageAll: `SELECT key FROM ${t} WHERE key > $1 AND ${alive} ORDER BY key LIMIT $3`,
    allKeys: `SELECT key FROM ${t} WHERE expires_at IS NULL OR expires_at > $1`,
    clearRange: notifyingBatch(`DELETE FROM ${t} WHERE key >= $1 AND key < $2`, "R"),
    clearAll: notifyingBatch(`DELETE FROM ${t}`, "R"),
    purge: `DELETE FROM ${t} WHERE expires_at <= $1`,
    // Transactions: lock a key's row, or hold an absent key with an already expired placeholder row.
    lock: `SELECT version, expires_at FROM ${t} WHERE key = $1 FOR UPDATE`,
    placeholder: `INSERT INTO ${t} (key, value, version, mtime, expires_at) VALUES ($1, '', ${firstVersion}, 0, 0) ON CONFLICT (key) DO NOTHING`,
    dropPlaceholders: `DELETE FROM ${t} WHERE key = ANY($1::text[]) AND expires_at = 0`,
  };
}

type Statements = ReturnType<typeof statements>;
type Db = Pick<PoolClient, "query">;

/**
 * Keys in one PostgreSQL table (key, value, raw, version, mtime, expires_at)
 * through a pg Pool: CAS on `version`, TTL on `expires_at`, atomic commits in
 * one transaction on one pooled connection, watch through LISTEN/NOTIFY.
 *
 * @throws StorageError `E_INVALID_OPTION` (from the factory) for an unknown option, a bad table name or a value of the wrong type
 * @throws StorageError (from operations) `E_UNAVAILABLE` when the server does not answer within `timeout`
 */
export default defineDriver<PostgresOptions, PgPool>((options: PostgresOptions = {}) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  const { url, table = "stowage", timeout = 5000, purgeInterval = 60_000, notify = true, ...poolOptions } = options;
  if (!TABLE_NAME.test(table)) throw new StorageError("E_INVALID_OPTION", `Invalid table name: ${JSON.stringify(table)}`, { driver: DRIVER_NAME });
  const config: PoolConfig = {
    keepAlive: true,
    ...poolOptions,
    connectionString: url,
    connectionTimeoutMillis: poolOptions.connectionTimeoutMillis ?? timeout,
    statement_timeout: poolOptions.statement_timeout ?? timeout,
  };
  const pool = new pg.Pool(config);
  // An idle connection that died (a server restart) is dropped by the pool and replaced on next use;
  // the operations that need the server report their own errors.
  pool.on("error", () => undefined);
  const sender = randomBytes(6).toString("base64url");
  const sql: Statements = statements(table, notify, sender);
  // Statement timeouts without pg's timer per query; the rare statements outside `run` keep pg's own.
  const deadlines = new Deadlines(timeout, () => new StorageError("E_UNAVAILABLE", `[postgres] No answer within ${timeout} ms`, { driver: DRIVER_NAME }));
  const timed = <R extends QueryResultRow = QueryResultRow>(client: PoolClient, text: string, values?: unknown[]) => timedQuery<R>(client, timeout, text, values);
  const named = (name: keyof Statements, values: unknown[]): QueryArrayConfig => ({
    name: `stowage_${table}_${name}`,
    text: sql[name] as string,
    values,
    rowMode: "array",
  });

  let ready = false;
  /** Creates the table under an advisory lock, so processes starting together do not race. */
  const createSchema = async () => {
    const client = await pool.connect();
    let failure: Error | undefined;
    try {
      await timed(client, "BEGIN");
      await timed(client, "SELECT pg_advisory_xact_lock(hashtext($1))", [`stowage:${table}`]);
      await timed(client, sql.createTable);
      const { rows } = await timed<{ column_name: string }>(
        client,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1",
        [table],
      );
      const missing = COLUMNS.filter((column) => !rows.some((row) => row.column_name === column));
      if (missing.length > 0) {
        throw new StorageError("E_INVALID_OPTION", `Table ${table} exists without the columns ${missing.join(", ")}: not a stowage table`, {
          driver: DRIVER_NAME,
        });
      }
      await timed(client, sql.createIndex);
      await timed(client, "COMMIT");
      ready = true;
    } catch (error) {
      failure = await rollback(client, timeout);
      throw error;
    } finally {
      client.release(failure);
    }
  };
  const schema = schemaOnce(DRIVER_NAME, createSchema, toError);
  const ensureSchema = schema.ensure;

  /** Runs one statement on the pool; errors come back as StorageErrors. */
  const run = (name: keyof Statements, values: unknown[], key?: string, db: Db = pool) => {
    const config = named(name, values);
    const query = ready ? deadlines.within(db.query(config)) : ensureSchema().then(() => deadlines.within(db.query(config)));
    return query.catch((error: unknown) => Promise.reject(toError(error, key)));
  };

  // Expired rows are invisible at once; this removes the ones nobody touches again.
  const purger = setInterval(() => {
    if (!ready) return;
    run("purge", [Date.now()]).catch((error: unknown) => process.emitWarning(`stowage postgres: purging expired rows failed: ${String(error)}`));
  }, purgeInterval).unref();

  /** Writes one value under the guards its options carry; E_CONFLICT when a guard fails. */
  const write = async (key: string, value: string | Uint8Array, opts: SetOptions | undefined, db: Db = pool) => {
    checkKey(key);
    const now = Date.now();
    const text = typeof value === "string" ? value : null;
    const bytes = typeof value === "string" ? null : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    const values = [key, now, text, bytes, expiresAt(now, opts)];
    const guard = guardOf(opts, DRIVER_NAME, key);
    if (guard.kind === "match") {
      if (!isVersionEtag(guard.etag) || (await run("updateIfVersion", [...values, guard.etag], key, db)).rowCount === 0) {
        throw conflictError(DRIVER_NAME, key, "Stored version differs");
      }
      return;
    }
    if (guard.kind === "absent") {
      if ((await run("insertIfAbsent", values, key, db)).rowCount === 0) throw conflictError(DRIVER_NAME, key, "Key already exists");
      return;
    }
    await run("upsert", values, key, db);
  };

  const remove = async (key: string, opts: RemoveOptions | undefined, db: Db = pool) => {
    const guard = guardOf(opts, DRIVER_NAME, key);
    if (guard.kind !== "match") {
      await run("remove", [key], key, db);
      return;
    }
    if (!isVersionEtag(guard.etag) || (await run("removeIfVersion", [key, Date.now(), guard.etag], key, db)).rowCount === 0) {
      throw conflictError(DRIVER_NAME, key, "Stored version differs");
    }
  };

  const read = async (key: string): Promise<string | Buffer | null> => {
    const { rows } = await run("get", [key, Date.now()], key);
    const row = rows[0];
    return row === undefined ? null : ((row[0] ?? row[1]) as string | Buffer);
  };

  /**
   * Checks a key's etag inside a transaction and keeps it so until COMMIT: a
   * live row is locked FOR UPDATE; an absent key gets an expired placeholder
   * row (invisible to readers) that holds it against concurrent inserts.
   */
  const check = async (db: Db, key: string, etag: string | null, placeholders: string[]) => {
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rows } = await run("lock", [key], key, db);
      const row = rows[0];
      if (row !== undefined) {
        const live = row[1] === null || Number(row[1]) > Date.now();
        if ((live ? String(row[0]) : null) !== etag) throw conflictError(DRIVER_NAME, key, "Stored version differs");
        return;
      }
      if (etag !== null) throw conflictError(DRIVER_NAME, key, "Stored version differs");
      if ((await run("placeholder", [key], key, db)).rowCount === 1) {
        placeholders.push(key);
        return;
      }
    }
    throw conflictError(DRIVER_NAME, key, "Key changed while checked");
  };

  const commit = async (operations: CommitOperation[]) => {
    if (!ready) await ensureSchema();
    const client = await pool.connect().catch((error: unknown) => Promise.reject(toError(error)));
    let failure: Error | undefined;
    try {
      await timed(client, "BEGIN");
      const placeholders: string[] = [];
      for (const op of operations) {
        if (op.type === "check") await check(client, op.key, op.etag, placeholders);
        else if (op.type === "remove") await remove(op.key, op.options, client);
        else await write(op.key, op.value, op.options, client);
      }
      if (placeholders.length > 0) await run("dropPlaceholders", [placeholders], undefined, client);
      await timed(client, "COMMIT");
    } catch (error) {
      failure = await rollback(client, timeout);
      throw toError(error);
    } finally {
      client.release(failure);
    }
  };

  const setItems = async (items: BatchItem[], common: SetOptions = {}) => {
    const batch = lastWriteEach(items);
    if (hasGuards(batch, common)) {
      // Guards need their checks: the whole batch goes through one transaction.
      await commit(batch.map(({ key, value, options }) => ({ type: "set", key, value, options: options ?? common })));
      return;
    }
    const now = Date.now();
    batch.forEach(({ key }) => checkKey(key));
    const keys = JSON.stringify(batch.map((item) => item.key));
    const expiries = JSON.stringify(batch.map((item) => expiresAt(now, item.options ?? common)));
    await run("upsertMany", [keys, now, JSON.stringify(batch.map((item) => item.value)), expiries]);
  };

  const keysUnder = async (base: string): Promise<string[]> => {
    const now = Date.now();
    const { rows } = base ? await run("keysInRange", [base, now, prefixEnd(base)]) : await run("allKeys", [now]);
    return rows.map((row) => row[0] as string);
  };

  const listeners = new Set<PgClient>();
  const watch = async (callback: WatchCallback): Promise<Unwatch> => {
    if (!ready) await ensureSchema();
    const listener = new Listener(config, sql.channel, sender, callback, listeners);
    await listener.start();
    return () => listener.stop();
  };

  return {
    name: DRIVER_NAME,
    // The primary key index refuses entries past 2704 bytes (measured: 2692 bytes of incompressible text hold). One byte short, for the core's meta sidecar `key$`.
    keyLimits: { bytes: MAX_KEY_BYTES - 1, segments: DEFAULT_KEY_LIMITS.segments },
    options,
    flags: { maxDepth: true, ttl: true, cas: true, etag: "version", transactions: true, watch: notify, clearBase: true, nestedKeys: true },
    getInstance: () => pool,
    hasItem: async (key: string) => (await run("has", [key, Date.now()], key)).rowCount! > 0,
    getItem: read,
    getItemRaw: read,
    getItems: async (items: { key: string }[]) => {
      const keys = items.map(({ key }) => key);
      const { rows } = await run("getMany", [keys, Date.now()]);
      const found = new Map(rows.map((row) => [row[0] as string, (row[1] ?? row[2]) as string | Buffer]));
      return keys.map((key) => ({ key, value: found.get(key) ?? null }));
    },
    setItem: (key: string, value: string, opts: SetOptions) => write(key, value, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => write(key, value, opts),
    setItems,
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    getMeta: async (key: string): Promise<StorageMeta | null> => {
      const now = Date.now();
      const row = (await run("meta", [key, now], key)).rows[0];
      if (row === undefined) return null;
      const meta: StorageMeta = { etag: String(row[0]), mtime: new Date(Number(row[1])), size: Number(row[3] ?? row[4]) };
      return describeExpiry(meta, row[2] === null ? undefined : Number(row[2]), now);
    },
    getKeys: async (base: string, opts: { maxDepth?: number }) => withinDepth(await keysUnder(base ?? ""), opts?.maxDepth),
    iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      const prefix = base ?? "";
      const to = prefix ? prefixEnd(prefix) : undefined;
      return keysetPages(prefix, opts.batchSize ?? 1000, opts.maxDepth, async (after, limit) => {
        const now = Date.now();
        const { rows } = to === undefined ? await run("pageAll", [after, now, limit]) : await run("pageInRange", [after, now, to, limit]);
        const keys = rows.map((row) => row[0] as string);
        return { keys, last: keys[keys.length - 1]! };
      });
    },
    clear: async (base: string) => {
      if (base) await run("clearRange", [base, prefixEnd(base)]);
      else await run("clearAll", []);
    },
    commit: (operations: CommitOperation[]) => commit(operations),
    // Without NOTIFY there is nothing to listen to: the core reports this process's writes instead.
    watch: notify ? watch : undefined,
    dispose: async () => {
      if (!schema.dispose()) return;
      clearInterval(purger);
      deadlines.stop();
      await Promise.all([...listeners].map((client) => client.end()));
      await pool.end();
    },
  };
});

/** A statement under pg's own per-query timeout: for the few outside `run` (schema, BEGIN, COMMIT, ROLLBACK). */
function timedQuery<R extends QueryResultRow = QueryResultRow>(client: PoolClient, timeout: number, text: string, values?: unknown[]) {
  const config: QueryConfig & { query_timeout: number } = { text, values, query_timeout: timeout };
  return client.query<R>(config);
}

/** Rolls back a failed transaction; when even that fails the connection is unusable, and the pool must drop it. */
async function rollback(client: PoolClient, timeout: number): Promise<Error | undefined> {
  try {
    await timedQuery(client, timeout, "ROLLBACK");
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/** One change a notification names: the event, the key and what is known of it. */
type Change = [WatchEvent, string, WatchInfo];

/**
 * The changes of one notification (see `statements`): `u<sender><version>:<key>`,
 * `r<sender><key>`, or a batch `U<sender>` of `<version>:<bytes>:<key>` /
 * `R<sender>` of `<bytes>:<key>` entries. `self` is this instance's sender id.
 */
function parsePayload(payload: string, self: string): Change[] {
  const kind = payload[0];
  const event: WatchEvent = kind === "r" || kind === "R" ? "remove" : "update";
  const origin = payload.slice(1, 1 + SENDER_LENGTH) === self ? "local" : "remote";
  const body = payload.slice(1 + SENDER_LENGTH);
  if (kind === "r") return [[event, body, { origin }]];
  if (kind === "u") {
    const colon = body.indexOf(":");
    return [[event, body.slice(colon + 1), { origin, etag: body.slice(0, colon) }]];
  }
  const bytes = Buffer.from(body);
  const changes: Change[] = [];
  for (let at = 0; at < bytes.length; ) {
    let etag: string | undefined;
    if (kind === "U") {
      const versionEnd = bytes.indexOf(58, at);
      etag = bytes.toString("latin1", at, versionEnd);
      at = versionEnd + 1;
    }
    const colon = bytes.indexOf(58, at);
    const end = colon + 1 + Number(bytes.toString("latin1", at, colon));
    changes.push([event, bytes.toString("utf8", colon + 1, end), etag === undefined ? { origin } : { origin, etag }]);
    at = end;
  }
  return changes;
}

/**
 * One LISTEN connection for a watch. Every write statement NOTIFYs its
 * keys on the table's channel, so this sees the writes of every process. A lost connection is opened again every second until
 * stopped (events sent while it was down are not replayed).
 */
class Listener {
  private client: PgClient | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: PoolConfig,
    private readonly channel: string,
    private readonly self: string,
    private readonly callback: WatchCallback,
    private readonly clients: Set<PgClient>,
  ) {}

  /** Opens the connection and listens; the first attempt fails with E_UNAVAILABLE when the server does not answer. */
  async start(initial = true): Promise<void> {
    const client = new pg.Client(this.config);
    client.on("notification", ({ payload }) => {
      if (this.stopped || !payload) return;
      for (const [event, key, info] of parsePayload(payload, this.self)) this.callback(event, key, info);
    });
    client.on("error", () => this.lost(client));
    client.on("end", () => this.lost(client));
    this.client = client;
    this.clients.add(client);
    try {
      await client.connect();
      await client.query(`LISTEN ${ident(this.channel)}`);
    } catch (error) {
      if (initial) this.stopped = true;
      this.discard(client);
      throw toError(error);
    }
    if (this.stopped) await this.stop();
  }

  private discard(client: PgClient): void {
    this.clients.delete(client);
    if (this.client === client) this.client = undefined;
    client.end().catch((error: unknown) => process.emitWarning(`stowage postgres: closing a LISTEN connection failed: ${String(error)}`));
  }

  /** The connection broke: open another, unless this one was already replaced or stopped. */
  private lost(client: PgClient): void {
    const current = this.client === client;
    this.discard(client);
    if (current) this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      // A failed attempt is followed by the next one: the server may still be starting.
      if (!this.stopped) this.start(false).catch(() => this.schedule());
    }, 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    if (client) {
      this.clients.delete(client);
      await client.end();
    }
  }
}
