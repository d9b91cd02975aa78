import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Etcd3 } from "etcd3";
import mysqlClient from "mysql2/promise";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createLocks, lockStorage } from "../../src/coordination/index.js";
import etcd from "../../src/drivers/etcd.js";
import gitNotes from "../../src/drivers/git-notes.js";
import gitObjects from "../../src/drivers/git-objects.js";
import gitRefs from "../../src/drivers/git-refs.js";
import git from "../../src/drivers/git.js";
import http from "../../src/drivers/http.js";
import leveldb from "../../src/drivers/leveldb.js";
import lmdb from "../../src/drivers/lmdb.js";
import memory from "../../src/drivers/memory.js";
import mysql from "../../src/drivers/mysql.js";
import natsKv from "../../src/drivers/nats-kv.js";
import postgres from "../../src/drivers/postgres.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { createStorage, type Driver, type Storage } from "../../src/index.js";
import { testLocks } from "../../src/testing/index.js";
import { driverSource } from "../../tsup.config.js";
import { codeOf, finish } from "../helpers/checks.js";
import { runnable, scriptArgs } from "../helpers/programs.js";
import { serviceUp } from "../helpers/services.js";
import { runTables } from "../helpers/tableDrivers.js";
import { tempDir } from "../helpers/tempDir.js";
import { startServer } from "../server/helpers.js";

// One name per run of this file: parallel test files and earlier runs never meet in a shared server.
const RUN = `stowage-locks-${process.pid}-${Date.now().toString(36)}`;
const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
const postgresUrl = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const mysqlUrl = process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";
const natsServers = process.env.STOWAGE_NATS_SERVERS ?? "127.0.0.1:4222";
const etcdHosts = process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379";

const over = (driver: Driver) => () => createStorage({ driver });

// Stores on this machine: always run.
testLocks("memory", () => createStorage({ driver: memory() }));
testLocks("sqlite", () => over(sqlite({ path: join(tempDir("locks-sqlite"), "locks.db") }))());
testLocks("lmdb", () => over(lmdb({ path: join(tempDir("locks-lmdb"), "locks.mdb") }))());
testLocks("leveldb", () => over(leveldb({ path: join(tempDir("locks-leveldb"), "db") }))());
// Git stores: fewer racers, each a commit or ref update with Git's lock protocol.
testLocks("git", () => over(git({ dir: tempDir("locks-git") }))(), { contenders: 4 });
testLocks("git-refs", () => over(gitRefs({ dir: tempDir("locks-git-refs") }))(), { contenders: 4 });
testLocks("git-notes", () => over(gitNotes({ dir: tempDir("locks-git-notes") }))(), { contenders: 4 });
testLocks("git-objects", () => over(gitObjects({ dir: tempDir("locks-git-objects"), ref: "refs/stowage/objects" }))(), { contenders: 4 });
testLocks("http against a stowage server", async () => createStorage({ driver: http({ base: (await startServer()).url }) }));

if (await serviceUp("Redis", redisUrl)) {
  testLocks("redis", () => createStorage({ driver: redis({ url: redisUrl, base: `${RUN}:kit` }) }));
}

if (await serviceUp("PostgreSQL", postgresUrl)) {
  const { tables, fresh } = runTables();
  afterAll(async () => {
    const client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}"`);
    await client.end();
  });
  testLocks("postgres", () => createStorage({ driver: postgres({ url: postgresUrl, table: fresh("locks") }) }));
}

if (await serviceUp("MariaDB/MySQL", mysqlUrl)) {
  const { tables, fresh } = runTables();
  afterAll(async () => {
    const connection = await mysqlClient.createConnection(mysqlUrl);
    for (const table of tables) await connection.query(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_changes\``);
    await connection.end();
  });
  testLocks("mysql", () => createStorage({ driver: mysql({ url: mysqlUrl, table: fresh("locks") }) }));
}

if (await serviceUp("NATS", natsServers)) {
  const bucket = `${RUN}-locks`;
  afterAll(async () => {
    const nc = await connect({ servers: natsServers });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(`KV_${bucket}`).catch((error: unknown) => {
      // The suite may have stopped before opening the bucket.
      if (!/not found/i.test(String(error))) throw error;
    });
    await nc.close();
  });
  testLocks("nats-kv", () => createStorage({ driver: natsKv({ servers: natsServers, bucket }) }));
}

if (await serviceUp("etcd", etcdHosts)) {
  afterAll(async () => {
    const admin = new Etcd3({ hosts: etcdHosts });
    await admin.delete().prefix(`${RUN}/`);
    admin.close();
  });
  testLocks("etcd", () => createStorage({ driver: etcd({ hosts: etcdHosts, prefix: `${RUN}/` }) }));
}

describe("locks over a mount", () => {
  it("checks the cas flag per lock name, on the mount its record falls in", async () => {
    // A memory driver that does not declare cas, mounted beside one that does.
    const plain = { ...memory(), flags: { maxDepth: true } };
    const storage = createStorage({ driver: memory() }).mount("locks:plain", plain);
    const locks = createLocks(storage);
    expect(await codeOf(() => locks.acquire("plain:job"))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => locks.isLocked("plain:job"))).toBe("E_UNSUPPORTED");
    expect(await codeOf(() => lockStorage({ storage }).acquireLock("plain:job", "me"))).toBe("E_UNSUPPORTED");
    expect(await locks.acquire("cas:job")).not.toBeNull();
    await storage.dispose();
  });

  it("refuses a record that is not a lock's with E_CORRUPT", async () => {
    const storage = createStorage({ driver: memory() });
    await storage.setItem("locks:odd", { hello: "world" });
    expect(await codeOf(() => createLocks(storage).acquire("odd"))).toBe("E_CORRUPT");
    expect(await storage.getItem("locks:odd")).toEqual({ hello: "world" });
    await storage.dispose();
  });

  it("refuses unknown adapter options and a missing storage", () => {
    const storage = createStorage({ driver: memory() });
    expect(() => lockStorage({ storage, tll: 5 } as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    expect(() => lockStorage({} as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
  });
});

/**
 * Several processes take one lock in turn, each round a read, a pause and a
 * write of a shared counter (an increment lost if two held it at once), and
 * check that every holder's token is above the last one written.
 */
async function contend(driverName: string, options: Record<string, unknown>, open: () => Driver, processes: number, rounds: number): Promise<Storage> {
  const script = `import { createStorage } from ${JSON.stringify(runnable("src/index.ts"))};
import { createLocks } from ${JSON.stringify(runnable("src/coordination/index.ts"))};
import driver from ${JSON.stringify(runnable(driverSource(driverName)))};
const storage = createStorage({ driver: driver(${JSON.stringify(options)}) });
const locks = createLocks(storage, { ttl: 20000 });
for (let round = 0; round < ${rounds}; round++) {
  await locks.withLock("shared", async (lock) => {
    const last = (await storage.getItem("last-token")) ?? 0;
    if (lock.token <= last) throw new Error("token " + lock.token + " after " + last);
    const count = (await storage.getItem("counter")) ?? 0;
    await new Promise((resolve) => setTimeout(resolve, 2));
    await storage.setItem("counter", count + 1);
    await storage.setItem("last-token", lock.token);
  }, { wait: 60000, retryDelay: 5 });
}
await storage.dispose();
`;
  const results = await Promise.all(
    Array.from({ length: processes }, () => finish(spawn(process.execPath, scriptArgs(script), { stdio: ["ignore", "pipe", "inherit"] }), 90_000)),
  );
  expect(results.map(({ code }) => code)).toEqual(results.map(() => 0));
  return createStorage({ driver: open() });
}

describe("locks across processes", () => {
  const processes = 3;
  const rounds = 8;

  it("sqlite: a lock is exclusive across processes, tokens only grow", async () => {
    const path = join(tempDir("locks-multi"), "shared.db");
    await createStorage({ driver: sqlite({ path }) }).dispose(); // the schema exists before the processes race
    const storage = await contend("sqlite", { path }, () => sqlite({ path }), processes, rounds);
    expect(await storage.getItem("counter")).toBe(processes * rounds);
    expect(await storage.getItem("last-token")).toBe(processes * rounds);
    await storage.dispose();
  });

  it("redis: a lock is exclusive across processes, tokens only grow", async ({ skip }) => {
    if (!(await serviceUp("Redis", redisUrl))) skip("no Redis");
    const base = `${RUN}:multi:${randomUUID()}`;
    const storage = await contend("redis", { url: redisUrl, base }, () => redis({ url: redisUrl, base }), processes, rounds);
    expect(await storage.getItem("counter")).toBe(processes * rounds);
    expect(await storage.getItem("last-token")).toBe(processes * rounds);
    await storage.clear();
    await storage.dispose();
  });
});
