import pg from "pg";
import mysql2 from "mysql2/promise";
import mysql from "stowage/drivers/mysql";
import postgres from "stowage/drivers/postgres";
import { createStorage } from "stowage";
import { reachable } from "../test/helpers/services.js";
import { target, type Target } from "./targets.js";

/**
 * Server drivers in the main bench: each entry connects stowage's driver and
 * the raw client (its peer) to a server on loopback. A server that does not
 * answer is left out with a notice, so the bench runs wherever it is started.
 */
interface ServerBench {
  name: string;
  /** `host:port` or a URL, probed before connecting. */
  address: string;
  targets: () => Promise<Target[]>;
}

const SERVERS: ServerBench[] = [
  {
    name: "PostgreSQL",
    address: process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    targets: async () => {
      // pg used by hand as well as it goes (named prepared statements, as the driver's), doing what the driver must per write: a key/value table whose upsert also bumps a
      // version (the etag), sets mtime and clears an expiry; reads skip expired rows; one multi-row
      // INSERT ... ON CONFLICT for setItems. Both sides leave out NOTIFY (notify: false): its cost is the
      // server's, measured apart in docs/postgres.md.
      const url = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
      const raw = new pg.Pool({ connectionString: url });
      const kv = `bench_raw_kv_${process.pid}`;
      await raw.query(`CREATE TABLE ${kv} (key text COLLATE "C" PRIMARY KEY, value text NOT NULL, version bigint NOT NULL, mtime bigint NOT NULL, expires_at bigint)`);
      const upsert = `ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = ${kv}.version + 1, mtime = excluded.mtime, expires_at = NULL`;
      const alive = "(expires_at IS NULL OR expires_at > $2)";
      const parse = (row: { value: string } | undefined) => (row ? JSON.parse(row.value) : null);
      const stowage = createStorage({ driver: postgres({ url, table: `bench_stowage_${process.pid}`, notify: false }) });
      const stowagePool = stowage.getMount().driver.getInstance!() as pg.Pool;
      const warn = (error: unknown) => console.warn(`bench: dropping a PostgreSQL table failed: ${String(error)}`);
      return [
        target("pg (raw)", undefined, {
          setItem: (key, value) =>
            raw.query({ name: `${kv}_set`, text: `INSERT INTO ${kv} (key, value, version, mtime) VALUES ($1, $2, 1, $3) ${upsert}`, values: [key, JSON.stringify(value), Date.now()] }),
          getItem: async (key) => parse((await raw.query({ name: `${kv}_get`, text: `SELECT value FROM ${kv} WHERE key = $1 AND ${alive}`, values: [key, Date.now()] })).rows[0]),
          hasItem: async (key) => (await raw.query({ name: `${kv}_has`, text: `SELECT 1 FROM ${kv} WHERE key = $1 AND ${alive}`, values: [key, Date.now()] })).rowCount! > 0,
          getKeys: async () =>
            (await raw.query({ name: `${kv}_keys`, text: `SELECT key FROM ${kv} WHERE expires_at IS NULL OR expires_at > $1`, values: [Date.now()] })).rows.map((row) => row.key),
          // One statement per batch size: left unnamed, as a program writing batches of any size would.
          setItems: (items) =>
            raw.query(
              `INSERT INTO ${kv} (key, value, version, mtime) VALUES ${items.map((_, i) => `($${2 * i + 2}, $${2 * i + 3}, 1, $1)`).join(", ")} ${upsert}`,
              [Date.now(), ...items.flatMap(({ key, value }) => [key, JSON.stringify(value)])],
            ),
          getItems: async (keys) => {
            const { rows } = await raw.query({ name: `${kv}_many`, text: `SELECT key, value FROM ${kv} WHERE key = ANY($1) AND ${alive}`, values: [keys, Date.now()] });
            const found = new Map(rows.map((row) => [row.key, parse(row)]));
            return keys.map((key) => ({ key, value: found.get(key) ?? null }));
          },
        }, () => raw.query(`DROP TABLE ${kv}`).then(() => raw.end(), warn)),
        target("stowage postgres", "pg (raw)", stowage, () => stowagePool.query(`DROP TABLE IF EXISTS bench_stowage_${process.pid}`).then(() => stowage.dispose(), warn)),
      ];
    },
  },
  {
    // stowage's redis driver against ioredis used by hand (same GET/SET/MGET/MSET with JSON) and against unstorage's redis driver.
    name: "Redis",
    address: process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379",
    targets: async () => {
      const url = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
      const [{ Redis }, { createStorage }, { default: redis }, { createStorage: createUnstorage }, { default: unstorageRedis }] = await Promise.all([
        import("ioredis"),
        import("stowage"),
        import("stowage/drivers/redis"),
        import("unstorage"),
        import("unstorage/drivers/redis"),
      ]);
      const run = `stowage-bench:${process.pid}`;
      const raw = new Redis(url);
      const rawPrefix = `${run}:raw:`;
      const parse = (text: string | null) => (text === null ? null : JSON.parse(text));
      const rawKeys = async () => {
        const keys: string[] = [];
        let cursor = "0";
        do {
          const [next, page] = await raw.scan(cursor, "MATCH", `${rawPrefix}*`, "COUNT", 1000);
          cursor = next;
          for (const key of page) keys.push(key.slice(rawPrefix.length));
        } while (cursor !== "0");
        return keys;
      };
      const stowage = createStorage({ driver: redis({ url, base: `${run}:stowage` }) });
      const stowageVsUnstorage = createStorage({ driver: redis({ url, base: `${run}:stowage-u` }) });
      const unstorage = createUnstorage({ driver: unstorageRedis({ url, base: `${run}:unstorage` }) });
      const drop = (storage: { clear(): Promise<void>; dispose(): Promise<void> }) => () => void storage.clear().then(() => storage.dispose());
      return [
        target("ioredis (raw)", undefined, {
          setItem: (key, value) => raw.set(rawPrefix + key, JSON.stringify(value)),
          getItem: async (key) => parse(await raw.get(rawPrefix + key)),
          hasItem: async (key) => (await raw.exists(rawPrefix + key)) === 1,
          getKeys: rawKeys,
          setItems: (items) => raw.mset(items.flatMap(({ key, value }) => [rawPrefix + key, JSON.stringify(value)])),
          getItems: async (keys) => (await raw.mget(keys.map((key) => rawPrefix + key))).map((text, index) => ({ key: keys[index], value: parse(text) })),
        }, () => rawKeys().then(async (keys) => {
          for (let i = 0; i < keys.length; i += 1000) await raw.unlink(keys.slice(i, i + 1000).map((key) => rawPrefix + key));
          await raw.quit();
        })),
        target("stowage redis", "ioredis (raw)", stowage, drop(stowage)),
        target("unstorage redis", undefined, unstorage, drop(unstorage)),
        target("stowage redis (vs unstorage)", "unstorage redis", stowageVsUnstorage, drop(stowageVsUnstorage)),
      ];
    },
  },
  {
    // stowage's nats-kv driver against @nats-io/kv used by hand: put/get of JSON, puts published concurrently for setItems.
    // Both buckets keep one version per key: with more, NATS 2.9's file store slows down by up to 50x once keys
    // hold their full history (nats-server#4043, docs/nats-kv.md), which the bench's many writes per key reach
    // mid-workload, so a ratio would tell which side crossed that line first rather than what the driver costs.
    name: "NATS",
    address: process.env.STOWAGE_NATS_SERVERS ?? "127.0.0.1:4222",
    targets: async () => {
      const servers = process.env.STOWAGE_NATS_SERVERS ?? "127.0.0.1:4222";
      const [{ connect }, { Kvm }, { createStorage }, { default: natsKv }, { target }] = await Promise.all([
        import("@nats-io/transport-node"),
        import("@nats-io/kv"),
        import("stowage"),
        import("stowage/drivers/nats-kv"),
        import("./targets.js"),
      ]);
      // The client at its best, as the driver runs it: no Error made ahead of each request for its stack.
      const nc = await connect({ servers, noAsyncTraces: true });
      const raw = await new Kvm(nc).create(`bench-raw-${process.pid}`, { history: 1 });
      const natsKey = (key: string) => key.replaceAll(":", ".");
      const read = async (key: string) => {
        const entry = await raw.get(natsKey(key));
        return entry?.operation === "PUT" ? entry.json() : null;
      };
      const stowage = createStorage({ driver: natsKv({ servers, bucket: `bench-stowage-${process.pid}`, history: 1 }) });
      const warn = (error: unknown) => console.warn(`bench: removing a NATS bucket failed: ${String(error)}`);
      return [
        target("@nats-io/kv (raw)", undefined, {
          setItem: (key, value) => raw.put(natsKey(key), JSON.stringify(value)),
          getItem: read,
          hasItem: async (key) => (await raw.get(natsKey(key)))?.operation === "PUT",
          getKeys: async () => {
            const keys: string[] = [];
            for await (const key of await raw.keys()) keys.push(key);
            return keys;
          },
          setItems: (items) => Promise.all(items.map(({ key, value }) => raw.put(natsKey(key), JSON.stringify(value)))),
          getItems: (keys) => Promise.all(keys.map(async (key) => ({ key, value: await read(key) }))),
        }, () => raw.destroy().then(() => nc.close(), warn)),
        target("stowage nats-kv", "@nats-io/kv (raw)", stowage, () => {
          // The driver connects on first use: a run that never touched it has no bucket to remove.
          const instance = stowage.getMount().driver.getInstance!() as { kv: { destroy(): Promise<boolean> } } | undefined;
          void (instance ? instance.kv.destroy() : Promise.resolve(true)).then(() => stowage.dispose(), warn);
        }),
      ];
    },
  },
  {
    // stowage's etcd driver against etcd3 used by hand: put/get of JSON, setItems as txns of 128 puts (etcd's default --max-txn-ops).
    name: "etcd",
    address: process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379",
    targets: async () => {
      const hosts = process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379";
      const [{ Etcd3 }, { createStorage }, { default: etcd }, { target }] = await Promise.all([
        import("etcd3"),
        import("stowage"),
        import("stowage/drivers/etcd"),
        import("./targets.js"),
      ]);
      const client = new Etcd3({ hosts });
      const rawPrefix = `stowage-bench-raw-${process.pid}/`;
      const stowagePrefix = `stowage-bench-${process.pid}/`;
      const raw = client.namespace(rawPrefix);
      const groups = <T>(items: T[]) => Array.from({ length: Math.ceil(items.length / 128) }, (_, i) => items.slice(i * 128, (i + 1) * 128));
      const read = async (key: string) => {
        const text = await raw.get(key).string();
        return text === null ? null : JSON.parse(text);
      };
      const stowage = createStorage({ driver: etcd({ hosts, prefix: stowagePrefix }) });
      const warn = (error: unknown) => console.warn(`bench: removing etcd keys failed: ${String(error)}`);
      return [
        target("etcd3 (raw)", undefined, {
          setItem: (key, value) => raw.put(key).value(JSON.stringify(value)),
          getItem: read,
          hasItem: (key) => raw.get(key).exists(),
          getKeys: () => raw.getAll().keys(),
          setItems: (items) =>
            Promise.all(
              groups(items).map((group) =>
                client.kv.txn({
                  compare: [],
                  success: group.map(({ key, value }) => ({ request_put: { key: Buffer.from(rawPrefix + key), value: Buffer.from(JSON.stringify(value)) } })),
                  failure: [],
                }),
              ),
            ),
          getItems: async (keys) => {
            const results = await Promise.all(
              groups(keys).map((group) =>
                client.kv.txn({ compare: [], success: group.map((key) => ({ request_range: { key: Buffer.from(rawPrefix + key) } })), failure: [] }),
              ),
            );
            const values = results.flatMap((result) => result.responses.map((response) => response.response_range.kvs[0]?.value.toString() ?? null));
            return keys.map((key, index) => ({ key, value: values[index] === null ? null : JSON.parse(values[index]!) }));
          },
        }, () => client.delete().prefix(rawPrefix).then(() => client.close(), warn)),
        target("stowage etcd", "etcd3 (raw)", stowage, () => {
          // The raw target closes its own client first; stowage's client cleans up its prefix.
          const own = stowage.getMount().driver.getInstance!() as InstanceType<typeof Etcd3>;
          void own.delete().prefix(stowagePrefix).then(() => stowage.dispose(), warn);
        }),
      ];
    },
  },
  {
    name: "MariaDB/MySQL",
    address: process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test",
    targets: async () => {
      // mysql2 used by hand as well as it goes (prepared statements, no stack capture per statement), doing
      // what the driver must per write: the upsert also bumps a version (the etag), sets mtime and clears an
      // expiry; reads skip expired rows; one multi-row INSERT ... ON DUPLICATE KEY UPDATE for setItems.
      const url = process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";
      const raw = mysql2.createPool({ uri: url, trace: false });
      const kv = `bench_raw_kv_${process.pid}`;
      await raw.query(`CREATE TABLE ${kv} (\`key\` VARBINARY(3072) PRIMARY KEY, value LONGTEXT NOT NULL, version BIGINT NOT NULL, mtime BIGINT NOT NULL, expires_at BIGINT NULL)`);
      const upsert = "ON DUPLICATE KEY UPDATE value = VALUES(value), version = version + 1, mtime = VALUES(mtime), expires_at = NULL";
      const alive = "(expires_at IS NULL OR expires_at > ?)";
      type Rows = (mysql2.RowDataPacket & { key: Buffer; value: string })[];
      const stowage = createStorage({ driver: mysql({ url, table: `bench_stowage_${process.pid}` }) });
      const stowagePool = stowage.getMount().driver.getInstance!() as mysql2.Pool;
      const warn = (error: unknown) => console.warn(`bench: dropping a MariaDB table failed: ${String(error)}`);
      return [
        target("mysql2 (raw)", undefined, {
          setItem: (key, value) =>
            raw.execute(`INSERT INTO ${kv} (\`key\`, value, version, mtime) VALUES (?, ?, 1, ?) ${upsert}`, [key, JSON.stringify(value), Date.now()]),
          getItem: async (key) => {
            const [rows] = await raw.execute<Rows>(`SELECT value FROM ${kv} WHERE \`key\` = ? AND ${alive}`, [key, Date.now()]);
            return rows[0] ? JSON.parse(rows[0].value) : null;
          },
          hasItem: async (key) => (await raw.execute<Rows>(`SELECT 1 FROM ${kv} WHERE \`key\` = ? AND ${alive}`, [key, Date.now()]))[0].length > 0,
          getKeys: async () => (await raw.query<Rows>(`SELECT \`key\` FROM ${kv} WHERE ${alive}`, [Date.now()]))[0].map((row) => row.key.toString()),
          setItems: (items) => {
            const now = Date.now();
            return raw.query(`INSERT INTO ${kv} (\`key\`, value, version, mtime) VALUES ? ${upsert}`, [items.map(({ key, value }) => [key, JSON.stringify(value), 1, now])]);
          },
          getItems: async (keys) => {
            const [rows] = await raw.query<Rows>(`SELECT \`key\`, value FROM ${kv} WHERE \`key\` IN (?) AND ${alive}`, [keys, Date.now()]);
            const found = new Map(rows.map((row) => [row.key.toString(), JSON.parse(row.value)]));
            return keys.map((key) => ({ key, value: found.get(key) ?? null }));
          },
        }, () => raw.query(`DROP TABLE ${kv}`).then(() => raw.end(), warn)),
        target("stowage mysql", "mysql2 (raw)", stowage, () => stowagePool.query(`DROP TABLE IF EXISTS bench_stowage_${process.pid}`).then(() => stowage.dispose(), warn)),
      ];
    },
  },
];

export async function serverTargets(): Promise<Target[]> {
  const targets: Target[] = [];
  for (const server of SERVERS) {
    if (!(await reachable(server.address))) {
      console.warn(`bench: ${server.name} is not reachable at ${server.address}; left out`);
      continue;
    }
    targets.push(...(await server.targets()));
  }
  return targets;
}
