import { Etcd3 } from "etcd3";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import mysqlClient from "mysql2/promise";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import etcd from "../../src/drivers/etcd.js";
import fs from "../../src/drivers/fs.js";
import git from "../../src/drivers/git.js";
import mysql from "../../src/drivers/mysql.js";
import natsKv from "../../src/drivers/nats-kv.js";
import postgres from "../../src/drivers/postgres.js";
import redis from "../../src/drivers/redis/index.js";
import { createStorage, type Driver, type Storage, type WatchEvent, type WatchInfo } from "../../src/index.js";
import { serviceUp } from "../helpers/services.js";
import { runTables } from "../helpers/tableDrivers.js";
import { tempDir } from "../helpers/tempDir.js";
import { runWorkers } from "../helpers/workers.js";

// The third argument of watch callbacks, per driver with a change feed of its own: two driver instances
// over one store stand for two processes (each instance is one client of the store); one test uses a
// real second process.

const postgresUrl = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const mysqlUrl = process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";
const etcdHosts = process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379";
const natsServers = process.env.STOWAGE_NATS_SERVERS ?? "127.0.0.1:4222";
const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = `stowage-watchinfo-${process.pid}-${Date.now().toString(36)}`;
const { tables, fresh: freshTable } = runTables();
const buckets: string[] = [];
const redisBases: string[] = [];
/** A fresh redis key prefix of this run. */
const redisBase = () => {
  const base = `${RUN}:${redisBases.length}`;
  redisBases.push(base);
  return base;
};

/** What a driver's feed tells: whether it knows the writer, and what `version` holds. */
interface Feed {
  name: string;
  /** [service name, address] when the backend is a server. */
  service?: [string, string];
  /** A function that makes driver instances over one fresh store. */
  store: () => () => Driver;
  /** The feed tells this instance's writes from others'. */
  origins: boolean;
  /** The feed carries the etag of an update. */
  etags: boolean;
  /** What `version` is: the etag (a revision), the newest history entry's version (git's commit), or absent. */
  version?: "etag" | "history";
}

const feeds: Feed[] = [
  {
    name: "postgres",
    service: ["PostgreSQL", postgresUrl],
    store: () => {
      const table = freshTable("watchinfo");
      return () => postgres({ url: postgresUrl, table });
    },
    origins: true,
    etags: true,
  },
  {
    name: "mysql (watch)",
    service: ["MariaDB/MySQL", mysqlUrl],
    store: () => {
      const table = freshTable("watchinfo");
      return () => mysql({ url: mysqlUrl, table, watch: true, pollInterval: 20 });
    },
    origins: false,
    etags: false,
  },
  {
    name: "etcd",
    service: ["etcd", etcdHosts],
    store: () => {
      const prefix = `${RUN}/${Math.random().toString(36).slice(2)}/`;
      return () => etcd({ hosts: etcdHosts, prefix });
    },
    origins: true,
    etags: true,
    version: "etag",
  },
  {
    name: "nats-kv",
    service: ["NATS", natsServers],
    store: () => {
      const bucket = `${RUN}-${buckets.length}`;
      buckets.push(bucket);
      return () => natsKv({ servers: natsServers, bucket });
    },
    origins: true,
    etags: true,
    version: "etag",
  },
  {
    name: "redis (pubsub)",
    service: ["Redis", redisUrl],
    store: () => {
      const base = redisBase();
      return () => redis({ url: redisUrl, base, watch: "pubsub", channel: `${base}:events` });
    },
    origins: true,
    etags: true,
  },
  {
    name: "redis (tracking)",
    service: ["Redis", redisUrl],
    store: () => {
      const base = redisBase();
      return () => redis({ url: redisUrl, base, watch: "tracking" });
    },
    origins: false,
    etags: false,
  },
  {
    name: "git",
    store: () => {
      const dir = tempDir("watchinfo-git");
      return () => git({ dir, pollInterval: 20 });
    },
    origins: true,
    etags: true,
    version: "history",
  },
  {
    name: "fs",
    store: () => {
      const base = tempDir("watchinfo-fs");
      return () => fs({ base });
    },
    origins: false,
    etags: false,
  },
];

afterAll(async () => {
  if (tables.length > 0 && (await serviceUp("PostgreSQL", postgresUrl))) {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}"`);
    await client.end();
  }
  if (tables.length > 0 && (await serviceUp("MariaDB/MySQL", mysqlUrl))) {
    const connection = await mysqlClient.createConnection(mysqlUrl);
    for (const table of tables) await connection.query(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_changes\``);
    await connection.end();
  }
  if (await serviceUp("etcd", etcdHosts)) {
    const admin = new Etcd3({ hosts: etcdHosts });
    await admin.delete().prefix(`${RUN}/`);
    admin.close();
  }
  if (redisBases.length > 0 && (await serviceUp("Redis", redisUrl))) {
    for (const base of redisBases) {
      const storage = createStorage({ driver: redis({ url: redisUrl, base, watch: "off" }) });
      await storage.clear();
      await storage.dispose();
    }
  }
  if (buckets.length > 0 && (await serviceUp("NATS", natsServers))) {
    const nc = await connect({ servers: natsServers });
    const jsm = await jetstreamManager(nc);
    for (const bucket of buckets) await jsm.streams.delete(`KV_${bucket}`);
    await nc.close();
  }
});

interface Seen {
  event: WatchEvent;
  key: string;
  info: WatchInfo;
}

/** Storage `watcher` watching everything, with what it heard. */
async function listen(watcher: Storage): Promise<Seen[]> {
  const seen: Seen[] = [];
  await watcher.watch((event, key, info) => void seen.push({ event, key, info }));
  return seen;
}

/** The first event heard for `key` of `event`, once it comes. */
async function heard(seen: Seen[], event: WatchEvent, key: string): Promise<WatchInfo> {
  await expect.poll(() => seen.some((entry) => entry.event === event && entry.key === key), { timeout: 5000 }).toBe(true);
  return seen.find((entry) => entry.event === event && entry.key === key)!.info;
}

/** What `info` must hold for an update of `key` that `writer` made, given the store's meta and history now. */
async function expectUpdate(feed: Feed, info: WatchInfo, reader: Storage, key: string, origin: "local" | "remote"): Promise<void> {
  expect(Object.isFrozen(info)).toBe(true);
  expect(info.origin).toBe(feed.origins ? origin : "unknown");
  const etag = (await reader.getMeta(key)).etag;
  expect(info.etag).toBe(feed.etags ? etag : undefined);
  if (feed.version === "etag") expect(info.version).toBe(etag);
  else if (feed.version === "history") expect(info.version).toBe((await reader.getHistory(key, { limit: 1 }))[0]!.version);
  else expect(info.version).toBeUndefined();
}

for (const feed of feeds) {
  const up = feed.service === undefined || (await serviceUp(...feed.service));
  describe.skipIf(!up)(`watch info over ${feed.name}`, () => {
    it("a write by another instance is remote, one by this instance local, each with the etag getMeta reports", async () => {
      const open = feed.store();
      const here = createStorage({ driver: open() });
      const there = createStorage({ driver: open() });
      try {
        const seen = await listen(here);
        await there.setItem("from:there", { n: 1 });
        await expectUpdate(feed, await heard(seen, "update", "from:there"), there, "from:there", "remote");
        await here.setItem("from:here", "x");
        await expectUpdate(feed, await heard(seen, "update", "from:here"), here, "from:here", "local");
        await there.setItems([{ key: "batch:a", value: 1 }, { key: "batch:b", value: 2 }]);
        await expectUpdate(feed, await heard(seen, "update", "batch:b"), there, "batch:b", "remote");

        await there.removeItem("from:there");
        const removed = await heard(seen, "remove", "from:there");
        expect(removed.origin).toBe(feed.origins ? "remote" : "unknown");
        expect(removed.etag).toBeUndefined();
        await here.removeItem("from:here");
        expect((await heard(seen, "remove", "from:here")).origin).toBe(feed.origins ? "local" : "unknown");
      } finally {
        await Promise.all([here.dispose(), there.dispose()]);
      }
    });

    it.skipIf(!feed.origins)("guarded writes and transactions of this instance are local, with the etag the next guard takes", async () => {
      const open = feed.store();
      const here = createStorage({ driver: open() });
      try {
        const seen = await listen(here);
        await here.setItem("k", 1, { ifNoneMatch: "*" });
        const created = await heard(seen, "update", "k");
        expect(created.origin).toBe("local");
        await here.setItem("k", 2, { ifMatch: created.etag });
        await expect.poll(() => seen.filter((entry) => entry.key === "k").length, { timeout: 5000 }).toBe(2);
        const updated = seen.filter((entry) => entry.key === "k")[1]!.info;
        await expectUpdate(feed, updated, here, "k", "local");
        // One commit, where the driver commits: both keys come with its one revision or commit.
        const batch = [{ key: "t:1", value: 1 }, { key: "t:2", value: 2 }];
        if (here.getMount().driver.flags?.transactions) await here.transaction(async (tx) => void (await Promise.all(batch.map(({ key, value }) => tx.setItem(key, value)))));
        else await here.setItems(batch);
        await expectUpdate(feed, await heard(seen, "update", "t:2"), here, "t:2", "local");
        expect((await heard(seen, "update", "t:1")).origin).toBe("local");
      } finally {
        await here.dispose();
      }
    });
  });
}

describe.skipIf(!(await serviceUp("PostgreSQL", postgresUrl)))("watch info across processes", () => {
  it("postgres: writes of another process are remote, with the etag getMeta reports", async () => {
    const table = freshTable("watchinfoproc");
    const here = createStorage({ driver: postgres({ url: postgresUrl, table }) });
    try {
      const seen = await listen(here);
      await runWorkers(1, ["postgres", table, "unique", "3"]);
      await expect.poll(() => seen.length, { timeout: 5000 }).toBe(3);
      for (const { event, key, info } of seen) {
        expect(event).toBe("update");
        expect(info.origin).toBe("remote");
        expect(info.etag).toBe((await here.getMeta(key)).etag);
      }
    } finally {
      await here.dispose();
    }
  });
});
