import mysql from "mysql2/promise";
import type { ExecuteValues, Pool, PoolConnection, PoolOptions, ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { defineDriver } from "../core/defineDriver.js";
import { conflictError, StorageError, type StorageErrorCode } from "../core/errors.js";
import { guardOf, type Guard } from "../core/guards.js";
import { checkOptions } from "../core/options.js";
import { describeExpiry } from "../core/ttl.js";
import { Deadlines } from "./support/deadlines.js";
import { checkKeyBytes, errorWrapper, expiresAt, hasGuards, isVersionEtag, keysetPages, lastWriteEach, schemaOnce, withinDepth, type BatchItem } from "./support/tableDriver.js";
import { DEFAULT_KEY_LIMITS, type CommitOperation, type RemoveOptions, type SetOptions, type StorageMeta, type Unwatch, type WatchCallback, type WatchInfo } from "../core/types.js";
import { prefixEndBytes } from "./support/keyRange.js";
import { optionNames } from "./support/optionNames.js";

export interface MysqlOptions extends Omit<PoolOptions, "uri"> {
  /** Connection URL, e.g. `mysql://user:pass@host:3306/db` (or use mysql2's `host`, `user`, ... options). */
  url?: string;
  /**
   * Table that holds the keys: `[A-Za-z_][A-Za-z0-9_]*`, at most 48 characters.
   * @default "stowage"
   */
  table?: string;
  /**
   * Milliseconds allowed for connecting and for each statement.
   * A server that is down or does not answer gives `E_UNAVAILABLE` within it.
   * Sets mysql2's `connectTimeout` unless given; statements are timed by the driver.
   * @default 5000
   */
  timeout?: number;
  /**
   * How often expired rows are deleted, in ms.
   * @default 60_000
   */
  purgeInterval?: number;
  /**
   * Whether watchers see writes from every process and client (without it,
   * only this storage object's own writes). With it, triggers on
   * the table log each change to `<table>_changes`, which watching drivers
   * read every `pollInterval` ms: every write to the table, whoever makes
   * it, then also inserts a row there.
   * @default false
   */
  watch?: boolean;
  /**
   * How often a watching driver reads the change log, in ms.
   * @default 100
   */
  pollInterval?: number;
}

const DRIVER_NAME = "mysql";
/** Every option the driver reads; anything else is refused (E_INVALID_OPTION). */
const OPTION_NAMES = optionNames<MysqlOptions>({
  // The driver's own options, then mysql2's pool options, passed through (PoolOptions; `uri` is `url` here).
  url: true, table: true, timeout: true, purgeInterval: true, watch: true, pollInterval: true, Promise: true, user: true, database: true,
  password: true, port: true, host: true, stream: true, ssl: true, waitForConnections: true, connectionLimit: true, maxIdle: true, idleTimeout: true,
  queueLimit: true, resetOnRelease: true, decimalNumbers: true, password1: true, password2: true, password3: true, charset: true, localAddress: true,
  socketPath: true, timezone: true, connectTimeout: true, stringifyObjects: true, insecureAuth: true, infileStreamFactory: true, typeCast: true,
  queryFormat: true, supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, debug: true, trace: true, multipleStatements: true,
  flags: true, rowsAsArray: true, enableKeepAlive: true, keepAliveInitialDelay: true, charsetNumber: true, compress: true, authSwitchHandler: true,
  connectAttributes: true, isServer: true, maxPreparedStatements: true, namedPlaceholders: true, nestTables: true, passwordSha1: true, pool: true,
  disableEval: true, enableCleartextPlugin: true, authPlugins: true, jsonStrings: true, gracefulEnd: true,
});
/** How long the change log keeps a change: far longer than any poll takes to read it. */
const CHANGE_RETENTION = 10 * 60_000;
/**
 * How long a poll waits for a change id below ones it has read: ids are taken
 * at insert and appear at commit, so a slower transaction's change shows up
 * late, and one rolled back never does.
 */
const GAP_GRACE = 2000;
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,47}$/;
/** InnoDB's limit on an index key (DYNAMIC rows): the key column is VARBINARY of this many bytes. */
export const MAX_KEY_BYTES = 3072;
const COLUMNS = ["expires_at", "key", "mtime", "raw", "value", "version"];
/** What a statement carries besides its values, at most: SQL text and escaping of a row's other fields. */
const STATEMENT_OVERHEAD = 1024;

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN",
  "PROTOCOL_CONNECTION_LOST", "PROTOCOL_SEQUENCE_TIMEOUT", "PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR", "PROTOCOL_ENQUEUE_AFTER_QUIT",
  "ER_SERVER_SHUTDOWN", "ER_CON_COUNT_ERROR", "ER_CONNECTION_KILLED", "ER_LOCK_WAIT_TIMEOUT", "ER_STATEMENT_TIMEOUT",
]);
// mysql2 reports a connection it closed itself with messages, not codes.
const UNAVAILABLE_MESSAGE = /closed state|pool is closed|connection lost|timeout/i;

function classify(error: unknown): StorageErrorCode {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string") {
    if (UNAVAILABLE_CODES.has(code)) return "E_UNAVAILABLE";
    if (code === "ER_LOCK_DEADLOCK") return "E_CONFLICT";
    if (code === "ER_NET_PACKET_TOO_LARGE" || code === "ER_DATA_TOO_LONG" || code === "ER_TOO_LONG_KEY") return "E_TOO_LARGE";
  }
  return error instanceof Error && UNAVAILABLE_MESSAGE.test(error.message) ? "E_UNAVAILABLE" : "E_DRIVER";
}

/** Whatever mysql2 threw, as a StorageError with the original as `cause`. */
const toError = errorWrapper(DRIVER_NAME, classify);
const checkKey = (key: string) => checkKeyBytes(key, MAX_KEY_BYTES, DRIVER_NAME);

/** The range end of a prefix of keys compared as bytes: a non-empty prefix's UTF-8 always has one (UTF-8 never holds 0xff). */
function prefixEnd(prefix: string): Buffer {
  return prefixEndBytes(Buffer.from(prefix)) ?? Buffer.alloc(0);
}

/** The SQL of one table, built once from the validated (and quoted) table name. */
function statements(table: string) {
  const t = `\`${table}\``;
  const c = `\`${table}_changes\``;
  const alive = "(expires_at IS NULL OR expires_at > ?)";
  const firstVersion = "FLOOR(1 + RAND() * 281474976710656)";
  const columns = "(`key`, value, raw, version, mtime, expires_at)";
  const tagged = "CONCAT(IFNULL(expires_at, ''), IF(raw IS NULL, 't', 'b'), IFNULL(value, raw)) AS tagged";
  // Every write moves the version (the etag is a version, as on postgres): the same value written again
  // too, so the row always changes and the change log's update trigger always fires.
  const upsertTail = `ON DUPLICATE KEY UPDATE version = version + 1, mtime = VALUES(mtime),
    value = VALUES(value), raw = VALUES(raw), expires_at = VALUES(expires_at)`;
  return {
    // Keys compare as bytes (VARBINARY), so a prefix is one range of the primary key.
    createTable: `CREATE TABLE IF NOT EXISTS ${t} (
      \`key\` VARBINARY(${MAX_KEY_BYTES}) NOT NULL,
      value LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
      raw LONGBLOB NULL,
      version BIGINT NOT NULL,
      mtime BIGINT NOT NULL,
      expires_at BIGINT NULL,
      PRIMARY KEY (\`key\`),
      KEY \`${table}_expires\` (expires_at)
    ) ENGINE=InnoDB ROW_FORMAT=DYNAMIC`,
    columns: "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?",
    maxPacket: "SELECT @@max_allowed_packet AS size",
    // key. Reads ask for one column and send one parameter: mysql2 pays for each column of every result
    // set (its definition comes with each) and for each parameter, so the expiry, a tag ("t" text, "b"
    // bytes) and the value come as one binary column, and the caller checks the expiry.
    get: `SELECT ${tagged} FROM ${t} WHERE \`key\` = ?`,
    // key (expiry checked by the caller)
    has: `SELECT expires_at FROM ${t} WHERE \`key\` = ?`,
    // key, now
    meta: `SELECT version, mtime, expires_at, OCTET_LENGTH(value) AS text_size, OCTET_LENGTH(raw) AS raw_size FROM ${t} WHERE \`key\` = ? AND ${alive}`,
    // keys (expanded by mysql2), now
    getMany: `SELECT \`key\`, ${tagged} FROM ${t} WHERE \`key\` IN (?)`,
    // key, text, bytes, now, expires_at
    upsert: `INSERT INTO ${t} ${columns} VALUES (?, ?, ?, ${firstVersion}, ?, ?) ${upsertTail}`,
    // key, text, now: the common write (text, no expiry) sends three values, not five.
    upsertText: `INSERT INTO ${t} ${columns} VALUES (?, ?, NULL, ${firstVersion}, ?, NULL) ${upsertTail}`,
    insert: `INSERT INTO ${t} ${columns} VALUES (?, ?, ?, ${firstVersion}, ?, ?)`,
    // now, then the rows as one JSON array of [key, text, expires_at]: one prepared statement for every
    // batch size, and the values travel unescaped (escaping 1000 rows into SQL text cost more than the server's work).
    upsertMany: `INSERT INTO ${t} ${columns} SELECT CAST(j.k AS BINARY), j.v, NULL, ${firstVersion}, ?, j.e FROM JSON_TABLE(?, '$[*]' COLUMNS (
      k VARCHAR(${MAX_KEY_BYTES}) CHARACTER SET utf8mb4 PATH '$[0]', v LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PATH '$[1]', e BIGINT PATH '$[2]')) AS j
      ${upsertTail}`,
    // text, bytes, now, expires_at, key, version, now
    updateIfVersion: `UPDATE ${t} SET value = ?, raw = ?, version = version + 1, mtime = ?, expires_at = ? WHERE \`key\` = ? AND version = ? AND ${alive}`,
    // key, now
    dropExpired: `DELETE FROM ${t} WHERE \`key\` = ? AND expires_at <= ?`,
    remove: `DELETE FROM ${t} WHERE \`key\` = ?`,
    // key, version, now
    removeIfVersion: `DELETE FROM ${t} WHERE \`key\` = ? AND version = ? AND ${alive}`,
    // from, to, now
    keysInRange: `SELECT \`key\` FROM ${t} WHERE \`key\` >= ? AND \`key\` < ? AND ${alive}`,
    allKeys: `SELECT \`key\` FROM ${t} WHERE ${alive}`,
    // after, to, now, limit
    pageInRange: `SELECT \`key\` FROM ${t} WHERE \`key\` > ? AND \`key\` < ? AND ${alive} ORDER BY \`key\` LIMIT ?`,
    pageAll: `SELECT \`key\` FROM ${t} WHERE \`key\` > ? AND ${alive} ORDER BY \`key\` LIMIT ?`,
    clearRange: `DELETE FROM ${t} WHERE \`key\` >= ? AND \`key\` < ?`,
    clearAll: `DELETE FROM ${t}`,
    purge: `DELETE FROM ${t} WHERE expires_at <= ?`,
    // Inside a transaction: locks the row, or (REPEATABLE READ) the gap where an absent key would go.
    lock: `SELECT version, expires_at FROM ${t} WHERE \`key\` = ? FOR UPDATE`,
    // The change log the triggers write (with the watch option).
    createChanges: `CREATE TABLE IF NOT EXISTS ${c} (
      id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
      \`key\` VARBINARY(${MAX_KEY_BYTES}) NOT NULL,
      removed BOOLEAN NOT NULL,
      at BIGINT NOT NULL,
      PRIMARY KEY (id),
      KEY \`${table}_changes_at\` (at)
    ) ENGINE=InnoDB ROW_FORMAT=DYNAMIC`,
    triggers: (["INSERT", "UPDATE", "DELETE"] as const).map((event) => {
      const row = event === "DELETE" ? "OLD" : "NEW";
      return `CREATE TRIGGER \`${table}_after_${event.toLowerCase()}\` AFTER ${event} ON ${t} FOR EACH ROW
        INSERT INTO ${c} (\`key\`, removed, at) VALUES (${row}.\`key\`, ${event === "DELETE"}, CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED))`;
    }),
    lastChange: `SELECT COALESCE(MAX(id), 0) AS id FROM ${c}`,
    // after, limit
    changesAfter: `SELECT id, \`key\`, removed FROM ${c} WHERE id > ? ORDER BY id LIMIT ?`,
    // before
    pruneChanges: `DELETE FROM ${c} WHERE at < ?`,
  };
}

type Statements = ReturnType<typeof statements>;

const UNKNOWN_ORIGIN: WatchInfo = Object.freeze({ origin: "unknown" });

/**
 * Reads the change log for a driver's watchers, every `interval` ms while
 * any watch: from the last change there when the first watcher came, in id
 * order. Ids are taken at insert and appear at commit, so an id below ones
 * read may appear later: the cursor waits at it up to GAP_GRACE ms before
 * passing it (a rolled-back write never fills it).
 */
class ChangePoller {
  private readonly callbacks = new Set<WatchCallback>();
  private cursor = 0;
  /** Ids above the cursor already reported. */
  private readonly reported = new Set<number>();
  private gapSince = 0;
  private timer: NodeJS.Timeout | undefined;
  private starting: Promise<void> | undefined;
  private polling = false;

  constructor(
    private readonly last: () => Promise<number>,
    private readonly after: (id: number) => Promise<Row[]>,
    private readonly interval: number,
  ) {}

  async add(callback: WatchCallback): Promise<Unwatch> {
    this.callbacks.add(callback);
    // Watchers that come together share one start.
    this.starting ??= this.start();
    try {
      await this.starting;
    } catch (error) {
      this.callbacks.delete(callback);
      if (this.callbacks.size === 0) this.stop();
      throw error;
    }
    return () => {
      this.callbacks.delete(callback);
      if (this.callbacks.size === 0) this.stop();
    };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.starting = undefined;
    this.callbacks.clear();
  }

  private async start(): Promise<void> {
    const cursor = await this.last();
    // Every watcher left (or the driver was disposed) while the log was read.
    if (this.callbacks.size === 0) return;
    this.cursor = cursor;
    this.reported.clear();
    this.gapSince = 0;
    this.timer = setInterval(() => void this.poll(), this.interval);
  }

  private async poll(): Promise<void> {
    // A slow read is not overtaken by the next tick's.
    if (this.polling) return;
    this.polling = true;
    try {
      for (const row of await this.after(this.cursor)) {
        const id = Number(row.id);
        if (this.reported.has(id)) continue;
        this.reported.add(id);
        const key = keyOf(row);
        // The log's rows name neither the writer nor the version (its schema predates both): nothing more to tell.
        for (const callback of this.callbacks) callback(Number(row.removed) === 1 ? "remove" : "update", key, UNKNOWN_ORIGIN);
      }
      this.advance(Date.now());
    } catch (error) {
      // The next tick reads again from the same cursor: nothing is skipped.
      process.emitWarning(`stowage mysql: reading the change log failed: ${String(error)}`);
    } finally {
      this.polling = false;
    }
  }

  /** Moves the cursor over the ids reported, and past a gap waited on for GAP_GRACE. */
  private advance(now: number): void {
    for (;;) {
      if (this.reported.delete(this.cursor + 1)) {
        this.cursor++;
        this.gapSince = 0;
      } else if (this.reported.size === 0) {
        return;
      } else if (this.gapSince === 0) {
        this.gapSince = now;
        return;
      } else if (now - this.gapSince < GAP_GRACE) {
        return;
      } else {
        this.cursor = Math.min(...this.reported) - 1;
        this.gapSince = 0;
      }
    }
  }
}
type Db = Pick<PoolConnection, "execute" | "query">;
type Row = RowDataPacket & Record<string, unknown>;
const alive = (row: Row) => row.expires_at === null || Number(row.expires_at) > Date.now();
/** A stored value from its tagged form `[expires_at digits]t<text>` or `[expires_at digits]b<bytes>`; null once expired. */
const untag = (row: Row): string | Buffer | null => {
  const tagged = row.tagged as Buffer;
  let at = 0;
  while (tagged[at]! >= 0x30 && tagged[at]! <= 0x39) at++;
  if (at > 0 && Number(tagged.toString("latin1", 0, at)) <= Date.now()) return null;
  return tagged[at] === 0x74 ? tagged.toString("utf8", at + 1) : tagged.subarray(at + 1);
};
const keyOf = (row: Row) => (row.key as Buffer).toString("utf8");

type BatchRow = [key: string, text: string, expiresAt: number | null];

// With the u flag a surrogate pair is one code point outside this range: only lone halves match.
const LONE_SURROGATE = /[\ud800-\udfff]/gu;
const wellFormed = (text: string) => text.replace(LONE_SURROGATE, "\ufffd");

/**
 * Rows of a batch as one JSON text (one JSON.stringify of the whole array is
 * several times cheaper than joining rows). JSON.stringify writes a lone
 * surrogate as a `\ud…` escape, which the server's JSON parser refuses: those
 * strings send U+FFFD instead, as mysql2 does for single statements.
 */
function batchJson(rows: BatchRow[]): string {
  const json = JSON.stringify(rows);
  if (!json.includes("\\ud")) return json;
  return JSON.stringify(rows.map(([key, text, expires]) => [wellFormed(key), wellFormed(text), expires]));
}

/**
 * Keys in one MariaDB/MySQL (InnoDB) table through a mysql2 pool: CAS on
 * `version`, TTL on `expires_at`, multi-row upserts for batches, atomic
 * commits in one transaction with `SELECT ... FOR UPDATE` checks. Watch
 * across processes with the `watch` option (triggers and a polled change
 * log); without it the core reports this storage object's writes.
 *
 * @throws StorageError `E_INVALID_OPTION` (from the factory) for an unknown option, a bad table name or a value of the wrong type
 * @throws StorageError (from operations) `E_UNAVAILABLE` when the server does not answer within `timeout`; `E_TOO_LARGE` for a value above the server's `max_allowed_packet`
 */
export default defineDriver<MysqlOptions, Pool>((options: MysqlOptions = {}) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  const { url, table = "stowage", timeout = 5000, purgeInterval = 60_000, watch: watchAcross = false, pollInterval = 100, ...poolOptions } = options;
  if (!TABLE_NAME.test(table)) throw new StorageError("E_INVALID_OPTION", `Invalid table name: ${JSON.stringify(table)}`, { driver: DRIVER_NAME });
  // trace: false spares a stack capture per statement; failures carry the driver error as `cause` anyway.
  const pool = mysql.createPool({ trace: false, ...poolOptions, uri: url, connectTimeout: poolOptions.connectTimeout ?? timeout });
  const sql = statements(table);
  // Statement timeouts without mysql2's timer per statement.
  const deadlines = new Deadlines(timeout, () => new StorageError("E_UNAVAILABLE", `[mysql] No answer within ${timeout} ms`, { driver: DRIVER_NAME }));

  let ready = false;
  let maxPacket = 0;
  // CREATE TABLE IF NOT EXISTS is atomic in InnoDB (metadata lock): processes starting together do not race.
  const createSchema = async () => {
    await pool.query({ sql: sql.createTable, timeout });
    const [columns] = await pool.execute<Row[]>({ sql: sql.columns, timeout }, [table]);
    const missing = COLUMNS.filter((column) => !columns.some((row) => String(row.name).toLowerCase() === column));
    if (missing.length > 0) {
      throw new StorageError("E_INVALID_OPTION", `Table ${table} exists without the columns ${missing.join(", ")}: not a stowage table`, {
        driver: DRIVER_NAME,
      });
    }
    const [packet] = await pool.query<Row[]>({ sql: sql.maxPacket, timeout });
    maxPacket = Number(packet[0]!.size);
    if (watchAcross) await createChangeLog();
    ready = true;
  };
  /** The change log and its triggers; a trigger another process made first is kept. */
  const createChangeLog = async () => {
    await pool.query({ sql: sql.createChanges, timeout });
    for (const trigger of sql.triggers) {
      await pool.query({ sql: trigger, timeout }).catch((error: unknown) => {
        if ((error as { code?: string }).code !== "ER_TRG_ALREADY_EXISTS") throw error;
      });
    }
  };
  const schema = schemaOnce(DRIVER_NAME, createSchema, toError);
  const ensureSchema = schema.ensure;

  /** Runs one prepared statement (or, with `expand`, one whose array values mysql2 expands); errors as StorageErrors. */
  const run = <T extends Row[] | ResultSetHeader>(name: Exclude<keyof Statements, "triggers">, values: unknown[], key?: string, db: Db = pool, expand = false) => {
    // Plain SQL text, not an options object: mysql2 copies an options object on every call.
    const query = () => deadlines.within(expand ? db.query<T>(sql[name], values) : db.execute<T>(sql[name], values as ExecuteValues[]));
    return (ready ? query() : ensureSchema().then(query)).then(
      ([result]) => result,
      (error: unknown) => Promise.reject(toError(error, key)),
    );
  };

  // Expired rows are invisible at once; this removes the ones nobody touches again.
  const purger = setInterval(() => {
    if (!ready) return;
    run("purge", [Date.now()]).catch((error: unknown) => process.emitWarning(`stowage mysql: purging expired rows failed: ${String(error)}`));
    if (watchAcross) run("pruneChanges", [Date.now() - CHANGE_RETENTION]).catch((error: unknown) => process.emitWarning(`stowage mysql: pruning the change log failed: ${String(error)}`));
  }, purgeInterval).unref();
  const changes = new ChangePoller(
    async () => Number((await run<Row[]>("lastChange", []))[0]!.id),
    (id) => run<Row[]>("changesAfter", [id, 1000], undefined, pool, true),
    pollInterval,
  );

  /** Refuses before sending what the server would refuse: a statement above its max_allowed_packet. */
  const checkSize = (key: string, bytes: number) => {
    if (ready && bytes + Buffer.byteLength(key) + STATEMENT_OVERHEAD > maxPacket) {
      throw new StorageError("E_TOO_LARGE", `Value of ${bytes} bytes exceeds the server's max_allowed_packet (${maxPacket})`, {
        driver: DRIVER_NAME,
        key,
      });
    }
  };

  /**
   * Writes one value under the guards its options carry; E_CONFLICT when a
   * guard fails. An unguarded write is one statement, returned as it is: no
   * async frame of its own on the hottest write path.
   */
  const write = (key: string, value: string | Uint8Array, opts: SetOptions | undefined, db: Db = pool): Promise<unknown> => {
    checkKey(key);
    if (!ready) return ensureSchema().then(() => write(key, value, opts, db));
    const text = typeof value === "string" ? value : null;
    const bytes = text === null ? Buffer.from((value as Uint8Array).buffer, (value as Uint8Array).byteOffset, (value as Uint8Array).byteLength) : null;
    // 3 bytes per UTF-16 unit at most: a short text needs no exact count.
    if (text === null || (text.length + key.length) * 3 + STATEMENT_OVERHEAD > maxPacket) checkSize(key, text === null ? bytes!.byteLength : Buffer.byteLength(text));
    const now = Date.now();
    const expires = expiresAt(now, opts);
    const guard = guardOf(opts, DRIVER_NAME, key);
    if (guard.kind !== "none") return writeGuarded(key, text, bytes, now, expires, guard, db);
    if (text !== null && expires === null) return run("upsertText", [key, text, now], key, db);
    return run("upsert", [key, text, bytes, now, expires], key, db);
  };

  const writeGuarded = async (key: string, text: string | null, bytes: Buffer | null, now: number, expires: number | null, guard: Guard, db: Db) => {
    if (guard.kind === "match") {
      const version = guard.etag;
      if (!isVersionEtag(version) || (await run<ResultSetHeader>("updateIfVersion", [text, bytes, now, expires, key, version, now], key, db)).affectedRows === 0) {
        throw conflictError(DRIVER_NAME, key, "Stored version differs");
      }
      return;
    }
    // ifNoneMatch "*": an expired row counts as absent: it goes first, then the insert fails only on a live one.
    await run("dropExpired", [key, now], key, db);
    await run("insert", [key, text, bytes, now, expires], key, db).catch((error: StorageError) => {
      throw (error.cause as { code?: string })?.code === "ER_DUP_ENTRY" ? conflictError(DRIVER_NAME, key, "Key already exists") : error;
    });
  };

  const remove = async (key: string, opts: RemoveOptions | undefined, db: Db = pool) => {
    const guard = guardOf(opts, DRIVER_NAME, key);
    if (guard.kind !== "match") {
      await run("remove", [key], key, db);
      return;
    }
    const version = guard.etag;
    if (!isVersionEtag(version) || (await run<ResultSetHeader>("removeIfVersion", [key, version, Date.now()], key, db)).affectedRows === 0) {
      throw conflictError(DRIVER_NAME, key, "Stored version differs");
    }
  };

  const read = async (key: string): Promise<string | Buffer | null> => {
    const row = (await run<Row[]>("get", [key], key))[0];
    return row === undefined ? null : untag(row);
  };

  /** Runs `fn` in one transaction on one connection: COMMIT when it returns, ROLLBACK when it throws. */
  const inTransaction = async (fn: (db: Db) => Promise<void>) => {
    if (!ready) await ensureSchema();
    const connection = await pool.getConnection().catch((error: unknown) => Promise.reject(toError(error)));
    let broken = false;
    try {
      // Gap locks (REPEATABLE READ) are what keep a key checked as absent absent until COMMIT.
      await connection.query({ sql: "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", timeout });
      await connection.query({ sql: "START TRANSACTION", timeout });
      await fn(connection);
      await connection.query({ sql: "COMMIT", timeout });
    } catch (error) {
      broken = !(await connection.query({ sql: "ROLLBACK", timeout }).then(
        () => true,
        () => false, // the connection is unusable: it is destroyed below rather than returned to the pool
      ));
      throw toError(error);
    } finally {
      if (broken) connection.destroy();
      else connection.release();
    }
  };

  const check = async (db: Db, key: string, etag: string | null) => {
    const row = (await run<Row[]>("lock", [key], key, db))[0];
    if ((row !== undefined && alive(row) ? String(row.version) : null) !== etag) throw conflictError(DRIVER_NAME, key, "Stored version differs");
  };

  const commit = (operations: CommitOperation[]) =>
    inTransaction(async (db) => {
      for (const op of operations) {
        if (op.type === "check") await check(db, op.key, op.etag);
        else if (op.type === "remove") await remove(op.key, op.options, db);
        else await write(op.key, op.value, op.options, db);
      }
    });

  /**
   * A batch's rows as JSON arrays that each fit in max_allowed_packet (the
   * values go unescaped, as one parameter); rows too large for that once in
   * JSON are left to single prepared statements.
   */
  const plan = (batch: BatchItem[], common: SetOptions) => {
    const now = Date.now();
    const rows = batch.map((item): BatchRow => [item.key, item.value, expiresAt(now, item.options ?? common)]);
    const budget = maxPacket - STATEMENT_OVERHEAD;
    // JSON spends at most 6 bytes on a UTF-16 unit (`\u0000`): a batch within that bound is one statement, measured no further.
    let bound = 0;
    for (const item of batch) bound += (item.key.length + item.value.length) * 6 + 32;
    if (bound <= budget) return { now, statements: [batchJson(rows)], large: [] };
    const statements: string[] = [];
    const large: BatchItem[] = [];
    let group: BatchRow[] = [];
    let size = 2;
    rows.forEach((row, index) => {
      const rowSize = Buffer.byteLength(JSON.stringify(row)) + 1;
      if (rowSize > budget - 2) {
        large.push(batch[index]!);
        return;
      }
      if (size + rowSize > budget) {
        statements.push(batchJson(group));
        group = [];
        size = 2;
      }
      group.push(row);
      size += rowSize;
    });
    if (group.length > 0) statements.push(batchJson(group));
    return { now, statements, large };
  };

  const setItems = async (items: BatchItem[], common: SetOptions = {}) => {
    const batch = lastWriteEach(items);
    if (hasGuards(batch, common)) {
      await commit(batch.map(({ key, value, options }) => ({ type: "set", key, value, options: options ?? common })));
      return;
    }
    if (batch.length === 0) return;
    batch.forEach(({ key }) => checkKey(key));
    if (!ready) await ensureSchema();
    const { now, statements, large } = plan(batch, common);
    if (statements.length === 1 && large.length === 0) {
      await run("upsertMany", [now, statements[0]]);
      return;
    }
    // More than one statement: one transaction keeps the batch all-or-nothing.
    await inTransaction(async (db) => {
      for (const rows of statements) await run("upsertMany", [now, rows], undefined, db);
      for (const item of large) await write(item.key, item.value, item.options ?? common, db);
    });
  };

  const keysUnder = async (base: string): Promise<string[]> => {
    const now = Date.now();
    const rows = base ? await run<Row[]>("keysInRange", [Buffer.from(base), prefixEnd(base), now]) : await run<Row[]>("allKeys", [now]);
    return rows.map(keyOf);
  };

  return {
    name: DRIVER_NAME,
    // The key column is VARBINARY(3072), InnoDB's largest index key (3073 bytes: "Data too long"). One byte short, for the core's meta sidecar `key$`.
    keyLimits: { bytes: MAX_KEY_BYTES - 1, segments: DEFAULT_KEY_LIMITS.segments },
    options,
    flags: { maxDepth: true, ttl: true, cas: true, etag: "version", transactions: true, watch: watchAcross, clearBase: true, nestedKeys: true },
    getInstance: () => pool,
    watch: watchAcross ? (callback: WatchCallback) => changes.add(callback) : undefined,
    hasItem: async (key: string) => {
      const row = (await run<Row[]>("has", [key], key))[0];
      return row !== undefined && alive(row);
    },
    getItem: read,
    getItemRaw: read,
    getItems: async (items: { key: string }[]) => {
      const keys = items.map(({ key }) => key);
      if (keys.length === 0) return [];
      const rows = await run<Row[]>("getMany", [keys], undefined, pool, true);
      const found = new Map(rows.map((row) => [keyOf(row), untag(row)]));
      return keys.map((key) => ({ key, value: found.get(key) ?? null }));
    },
    // The statement's result header resolves these promises: callers of a void promise ignore it, and no `.then` is spent dropping it.
    setItem: (key: string, value: string, opts: SetOptions) => write(key, value, opts) as Promise<void>,
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => write(key, value, opts) as Promise<void>,
    setItems,
    removeItem: (key: string, opts: RemoveOptions) => remove(key, opts),
    getMeta: async (key: string): Promise<StorageMeta | null> => {
      const now = Date.now();
      const row = (await run<Row[]>("meta", [key, now], key))[0];
      if (row === undefined) return null;
      const meta: StorageMeta = { etag: String(row.version), mtime: new Date(Number(row.mtime)), size: Number(row.text_size ?? row.raw_size) };
      return describeExpiry(meta, row.expires_at === null ? undefined : Number(row.expires_at), now);
    },
    getKeys: async (base: string, opts: { maxDepth?: number }) => withinDepth(await keysUnder(base ?? ""), opts?.maxDepth),
    iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      const prefix = base ?? "";
      const to = prefix ? prefixEnd(prefix) : undefined;
      return keysetPages<Buffer>(Buffer.from(prefix), opts.batchSize ?? 1000, opts.maxDepth, async (after, limit) => {
        const now = Date.now();
        const rows =
          to === undefined
            ? await run<Row[]>("pageAll", [after, now, limit], undefined, pool, true)
            : await run<Row[]>("pageInRange", [after, to, now, limit], undefined, pool, true);
        return { keys: rows.map(keyOf), last: rows[rows.length - 1]?.key as Buffer };
      });
    },
    clear: async (base: string) => {
      if (base) await run("clearRange", [Buffer.from(base), prefixEnd(base)]);
      else await run("clearAll", []);
    },
    commit: (operations: CommitOperation[]) => commit(operations),
    dispose: async () => {
      if (!schema.dispose()) return;
      clearInterval(purger);
      changes.stop();
      deadlines.stop();
      await pool.end();
    },
  };
});
