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
import { createStorage, StorageError, type Driver, type LockTakingDriver, type Storage } from "../../src/index.js";
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
// A storage-wide ttl must not expire lock records (their tokens would start over): they are written with ttl Infinity.
testLocks("memory with a storage ttl of 20 ms", () => createStorage({ driver: memory(), ttl: 20 }));
testLocks("sqlite with a storage ttl of 20 ms (the core's TTL layer)", () => createStorage({ driver: sqlite({ path: join(tempDir("locks-sqlite-ttl"), "locks.db") }), ttl: 20 }));
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
  testLocks("redis, generic path", () => createStorage({ driver: generic(redis({ url: redisUrl, base: `${RUN}:kit-generic` })) }));
  fastPathInterop("redis", () => redis({ url: redisUrl, base: `${RUN}:interop` }));
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
  testLocks("etcd, generic path", () => createStorage({ driver: generic(etcd({ hosts: etcdHosts, prefix: `${RUN}/generic/` })) }));
  fastPathInterop("etcd", () => etcd({ hosts: etcdHosts, prefix: `${RUN}/interop/` }));
}

/** The same driver without its fast path (takeLock): locks over it take the generic path, on the same client and keys. */
function generic(driver: Driver): Driver {
  return { ...driver, takeLock: undefined } as Driver;
}

/**
 * A driver's fast path (takeLock) against the generic path on the same keys:
 * one store, two Locks (one each way, one manual clock), so every step below
 * is a fast-path holder meeting a generic one or the other way round.
 */
function fastPathInterop(name: string, open: () => Driver): void {
  describe(`locks: ${name} fast path and generic path together`, () => {
    const driver = open() as LockTakingDriver;
    const storage = createStorage({ driver });
    const plain = createStorage({ driver: generic(driver) });
    let now = Date.UTC(2026, 0, 1);
    const clock = { now: () => now };
    let takes = 0;
    const take = driver.takeLock.bind(driver);
    driver.takeLock = (key, holder, at) => {
      takes++;
      return take(key, holder, at);
    };
    // Releases the driver made itself (releaseLock, where it has one: redis).
    let releases = 0;
    const releaseLock = driver.releaseLock?.bind(driver);
    if (releaseLock) {
      driver.releaseLock = async (key, taken, released) => {
        const done = await releaseLock(key, taken, released);
        if (done) releases++;
        return done;
      };
    }
    let made = 0;
    const pair = () => {
      const prefix = `interop:${made++}`;
      return { prefix, fast: createLocks(storage, { clock, prefix }), slow: createLocks(plain, { clock, prefix }) };
    };
    afterAll(async () => {
      await storage.clear("interop");
      await storage.dispose();
    });

    it("takes the lock through the driver, writing the record the generic path reads", async () => {
      const { prefix, fast, slow } = pair();
      // The first record of a name is written through the serializer: the take declines it.
      await (await fast.acquire("job", { owner: "first", ttl: 1000 }))!.release();
      const before = takes;
      const lock = (await fast.acquire("job", { owner: "fast", ttl: 1000 }))!;
      expect(takes).toBe(before + 1);
      const first = now * 1000;
      expect(lock.token).toBe(first + 1);
      expect(await storage.getItem(`${prefix}:job`)).toEqual({ token: first + 1, holder: { owner: "fast", acquiredAt: now, expiresAt: now + 1000, pid: process.pid, host: expect.any(String) } });
      expect((await slow.info("job"))?.owner).toBe("fast");
      expect(await slow.acquire("job")).toBeNull();
      const released = releases;
      await lock.release();
      // On a driver with releaseLock the release is its one script; the record is the one the generic path writes.
      expect(releases).toBe(released + (releaseLock ? 1 : 0));
      expect(await storage.getItem(`${prefix}:job`)).toEqual({ token: first + 1, holder: null });
      expect(await slow.acquire("job")).not.toBeNull();
    });

    it("racing acquires, half on each path: exactly one wins, and tokens only grow as the paths alternate", async () => {
      const { fast, slow } = pair();
      let last = 0;
      for (let round = 0; round < 6; round++) {
        const results = await Promise.all(Array.from({ length: 8 }, (_, index) => (index % 2 === 0 ? fast : slow).acquire("race", { owner: `racer-${index}`, ttl: 60_000 })));
        const winners = results.filter((lock) => lock !== null);
        expect(winners).toHaveLength(1);
        expect(winners[0]!.token).toBeGreaterThan(last);
        last = winners[0]!.token;
        // Released by the other path's Locks on every second round: the record one wrote is the one the other judges.
        const other = results.indexOf(winners[0]!) % 2 === 0 ? slow : fast;
        if (round % 2 === 0) await winners[0]!.release();
        else await other.release("race", winners[0]!.owner);
      }
    });

    it("an expired holder is taken over by either path, its release is E_LOCK_LOST, and its fenced write E_FENCED", async () => {
      const { prefix, fast, slow } = pair();
      const first = (await slow.acquire("lease", { ttl: 1000 }))!;
      now += 1000;
      const second = (await fast.acquire("lease", { ttl: 1000 }))!;
      expect(second.token).toBe(first.token + 1);
      await expectLost(first.release());
      now += 1000;
      const third = (await slow.acquire("lease", { ttl: 1000 }))!;
      expect(third.token).toBe(second.token + 1);
      // The fast-path holder's release first tries its remembered etag: the record moved, so it reads, judges and refuses.
      const released = releases;
      await expectLost(second.release());
      expect(releases).toBe(released);
      expect((await storage.getItem<{ holder: { owner: string } }>(`${prefix}:lease`))!.holder.owner).toBe(third.owner);
      if (driver.flags?.transactions === true) {
        await storage.setItem("interop:fenced", "third", { fence: third });
        expect(await codeOf(() => storage.setItem("interop:fenced", "late", { fence: second }))).toBe("E_FENCED");
        expect(await storage.getItem("interop:fenced")).toBe("third");
      }
    });

    it("a fast release is reported to watchers of the storage as an ordinary write", async () => {
      const { prefix, fast } = pair();
      await (await fast.acquire("watched", { ttl: 1000 }))!.release();
      const lock = (await fast.acquire("watched", { ttl: 1000 }))!;
      let reported!: () => void;
      const seen = new Promise<void>((resolve) => (reported = resolve));
      const unwatch = await storage.watch((event, key) => {
        if (key === `${prefix}:watched` && event === "update") reported();
      });
      await lock.release();
      await seen;
      await unwatch();
    });

    it("a live holder is held on the fast path; release or renew by another owner is E_NOT_OWNER and changes nothing", async () => {
      const { prefix, fast, slow } = pair();
      const lock = (await fast.acquire("owned", { owner: "me", ttl: 1000 }))!;
      expect(await fast.acquire("owned", { owner: "you" })).toBeNull();
      const record = await storage.getItem(`${prefix}:owned`);
      expect(await codeOf(() => slow.release("owned", "you"))).toBe("E_NOT_OWNER");
      expect(await codeOf(() => fast.renew("owned", "you"))).toBe("E_NOT_OWNER");
      expect(await storage.getItem(`${prefix}:owned`)).toEqual(record);
      // A renewal rewrites the record: the release after it goes by the generic path and still succeeds.
      now += 500;
      await lock.renew(1000);
      await lock.release();
      expect(await slow.isLocked("owned")).toBe(false);
    });

    it("a lock lost after the fast take (expired, not yet taken over) is E_LOCK_LOST on release, and changes nothing", async () => {
      const { prefix, fast } = pair();
      const lock = (await fast.acquire("gone", { ttl: 1000 }))!;
      now += 1000;
      const record = await storage.getItem(`${prefix}:gone`);
      await expectLost(lock.release());
      expect(await storage.getItem(`${prefix}:gone`)).toEqual(record);
    });

    it("a record in another form is declined to the generic path, which reads it through the serializer or refuses it as E_CORRUPT", async () => {
      const { prefix, fast } = pair();
      // Same record, other spacing: not the text JSON.stringify writes, so the take declines and the generic path reads it.
      await storage.setItemRaw(`${prefix}:spaced`, new TextEncoder().encode('{ "token": 41, "holder": null }'));
      const before = takes;
      const lock = (await fast.acquire("spaced"))!;
      expect(takes).toBe(before + 1);
      expect(lock.token).toBe(42);
      await storage.setItem(`${prefix}:odd`, { hello: "world" });
      expect(await codeOf(() => fast.acquire("odd"))).toBe("E_CORRUPT");
      expect(await storage.getItem(`${prefix}:odd`)).toEqual({ hello: "world" });
    });

    it("on a storage with a serializer of its own, every record stays in that serializer's form", async () => {
      const { prefix } = pair();
      const wrapping = { name: "wrapping", serialize: (value: unknown) => JSON.stringify({ wrapped: value }), deserialize: (text: unknown) => (JSON.parse(String(text)) as { wrapped: unknown }).wrapped };
      const own = createStorage({ driver, serializer: wrapping });
      const locks = createLocks(own, { clock, prefix });
      for (let round = 1; round <= 3; round++) {
        const lock = (await locks.acquire("wrapped", { ttl: 1000 }))!;
        expect(lock.token).toBe(now * 1000 + round - 1);
        expect(JSON.parse(new TextDecoder().decode((await own.getItemRaw(`${prefix}:wrapped`))!))).toHaveProperty("wrapped.token", lock.token);
        await lock.release();
      }
    });

    it("is not used on a driver whose watch is off (the core reports those writes, and takeLock would bypass it)", async () => {
      const { prefix } = pair();
      const before = takes;
      const layered = createStorage({ driver: { ...driver, flags: { ...driver.flags, watch: false } } as Driver });
      const lock = (await createLocks(layered, { clock, prefix }).acquire("plain"))!;
      expect(takes).toBe(before);
      await lock.release();
    });
  });
}

async function expectLost(action: Promise<unknown>): Promise<void> {
  expect(await codeOf(() => action)).toBe("E_LOCK_LOST");
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

  it("a signal first read after the lease ended is aborted at once; one first read after release is not", async () => {
    let now = Date.UTC(2026, 0, 1);
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage, { clock: { now: () => now } });
    const expired = (await locks.acquire("late", { ttl: 1000 }))!;
    now += 1000;
    expect(expired.signal.aborted).toBe(true);
    expect((expired.signal.reason as { code?: string }).code).toBe("E_LOCK_LOST");
    const released = (await locks.acquire("done", { ttl: 1000 }))!;
    await released.release();
    now += 1000;
    expect(released.signal.aborted).toBe(false);
    await storage.dispose();
  });

  it("withLock's signal exists before fn runs: a listener fn adds after a stall past the lease still hears of the loss", async () => {
    // The CLI's flake (issue #17): `stowage lock` paused (SIGSTOP) between the spawn and its first read of lock.signal.
    // A signal made at that read was aborted already, so its listener never fired and the command ran on unlocked.
    let now = Date.UTC(2026, 0, 1);
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage, { clock: { now: () => now } });
    const outcome = locks.withLock(
      "stalled",
      async (lock) => {
        now += 1000; // the stall: the clock moves past the 300 ms lease before fn looks at the signal
        expect(lock.signal.aborted).toBe(false);
        // The next renewal (real timers, ttl/3) or the expiry timer finds the lease over and aborts it.
        const reason = await new Promise((resolve) => lock.signal.addEventListener("abort", () => resolve(lock.signal.reason), { once: true }));
        expect(reason).toMatchObject({ code: "E_LOCK_LOST" });
      },
      { ttl: 300 },
    );
    // fn returned with the lock lost: the release says so.
    expect(await codeOf(() => outcome)).toBe("E_LOCK_LOST");
    await storage.dispose();
  }, 10_000);

  it("withLock does not call fn when the lock is lost before fn could start", async () => {
    // A clock that moves a whole lease on each reading: the lease the acquire wrote has ended when withLock looks again.
    let now = Date.UTC(2026, 0, 1);
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage, { clock: { now: () => (now += 1000) } });
    let called = false;
    const outcome = locks.withLock("stalled-before", () => {
      called = true;
    }, { ttl: 300 });
    expect(await codeOf(() => outcome)).toBe("E_LOCK_LOST");
    expect(called).toBe(false);
    await storage.dispose();
  });

  it("null options are no options, an undefined name is refused by the locks' own check, and a renew racing a release leaves the signal alone", async () => {
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage);
    expect(await codeOf(() => createLocks(storage).acquire(undefined as unknown as string))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => createLocks(storage).info(undefined as unknown as string))).toBe("E_INVALID_KEY");
    const lock = (await locks.acquire("nullable", null as unknown as undefined))!;
    expect(lock).not.toBeNull();
    const [released, renewed] = await Promise.allSettled([lock.release(), lock.renew()]);
    expect(released.status).toBe("fulfilled");
    expect(renewed.status === "rejected" && (renewed.reason as { code?: string }).code).toBe("E_LOCK_LOST");
    expect(lock.signal.aborted).toBe(false);
    expect(await locks.withLock("nullable", () => "ran", null as unknown as undefined)).toBe("ran");
    await storage.dispose();
  });

  it("a release retried after its answer was lost (but the write landed) succeeds and leaves the signal alone", async () => {
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage);
    const lock = (await locks.acquire("lossy"))!;
    void lock.signal;
    const setItem = storage.setItem.bind(storage);
    let loseNextAnswer = true;
    storage.setItem = async (key, value, opts) => {
      await setItem(key, value, opts);
      if (loseNextAnswer) {
        loseNextAnswer = false;
        throw new StorageError("E_UNAVAILABLE", "the answer was lost on the way back");
      }
    };
    expect(await codeOf(() => lock.release())).toBe("E_UNAVAILABLE");
    expect(await storage.getItem("locks:lossy")).toMatchObject({ token: lock.token, holder: null });
    await lock.release();
    expect(lock.signal.aborted).toBe(false);
    expect(await locks.isLocked("lossy")).toBe(false);
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
    // Tokens run on from the first one (the clock in ms × 1000), one per holding: the last written is the record's.
    expect(await storage.getItem("last-token")).toBe(((await storage.getItem("locks:shared")) as { token: number }).token);
    await storage.dispose();
  });

  it("redis: a lock is exclusive across processes, tokens only grow", async ({ skip }) => {
    if (!(await serviceUp("Redis", redisUrl))) skip("no Redis");
    const base = `${RUN}:multi:${randomUUID()}`;
    const storage = await contend("redis", { url: redisUrl, base }, () => redis({ url: redisUrl, base }), processes, rounds);
    expect(await storage.getItem("counter")).toBe(processes * rounds);
    // Tokens run on from the first one (the clock in ms × 1000), one per holding: the last written is the record's.
    expect(await storage.getItem("last-token")).toBe(((await storage.getItem("locks:shared")) as { token: number }).token);
    await storage.clear();
    await storage.dispose();
  });
});

describe("locks refuse what would break them", () => {
  it("a ttl above 2^31-1 ms (setTimeout's limit: it would fire after 1 ms, renewing in a busy loop) is E_INVALID_OPTION", async () => {
    const storage = createStorage({ driver: memory() });
    const huge = 2 ** 31 + 1000;
    expect(() => createLocks(storage, { ttl: huge })).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    const locks = createLocks(storage);
    expect(await codeOf(() => locks.acquire("big", { ttl: huge }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => locks.withLock("big", () => 1, { ttl: huge }))).toBe("E_INVALID_OPTION");
    const lock = (await locks.acquire("big", { owner: "me" }))!;
    expect(await codeOf(() => lock.renew(huge))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => locks.renew("big", "me", huge))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => locks.acquire("big", { retryDelay: huge }))).toBe("E_INVALID_OPTION");
    await storage.dispose();
  });

  it("an abort while a try is in flight rejects at once, not after the backoff", async () => {
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage);
    await locks.acquire("busy", { ttl: 600_000 });
    const controller = new AbortController();
    // The first try is reading the record when the signal aborts; the backoff after it would be minutes.
    const waiting = locks.acquire("busy", { wait: 600_000, retryDelay: 600_000, signal: controller.signal });
    controller.abort(new Error("stop"));
    await expect(waiting).rejects.toThrow("stop");
    await storage.dispose();
  });

  it("two concurrent releases of one Lock both resolve, and its signal is not aborted", async () => {
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage);
    const lock = (await locks.acquire("twice"))!;
    await Promise.all([lock.release(), lock.release()]);
    expect(lock.signal.aborted).toBe(false);
    const disposed = (await locks.acquire("twice"))!;
    await Promise.all([disposed.release(), disposed[Symbol.asyncDispose]()]);
    expect(disposed.signal.aborted).toBe(false);
    expect(await locks.isLocked("twice")).toBe(false);
    await storage.dispose();
  });

  it("a record that keeps changing with no live holder ends in E_CONFLICT after bounded tries", async () => {
    // The real memory driver, with a writer that rewrites the lock record (expired holder) just before every guarded write of it.
    const inner = memory();
    const expired = JSON.stringify({ token: 5, holder: { owner: "gone", acquiredAt: 0, expiresAt: 1, pid: 1, host: "h" } });
    let writes = 0;
    const driver: Driver = {
      ...inner,
      name: "restless",
      setItem(key, value, opts) {
        if (key === "locks:moving" && (opts?.ifMatch !== undefined || opts?.ifNoneMatch !== undefined)) {
          writes++;
          inner.setItem!(key, expired, {});
        }
        return inner.setItem!(key, value, opts);
      },
    };
    const storage = createStorage({ driver });
    const locks = createLocks(storage);
    expect(await codeOf(() => locks.acquire("moving"))).toBe("E_CONFLICT");
    expect(writes).toBe(16);
    expect(await codeOf(() => locks.cleanup())).toBe("E_CONFLICT");
    await storage.dispose();
  });

  it("records with a negative or exhausted token are refused; list and cleanup skip a non-lock value and report it", async () => {
    const storage = createStorage({ driver: memory() });
    const reported: string[] = [];
    const locks = createLocks(storage, { onCorrupt: (key, error) => reported.push(`${key} ${error.code}`) });
    await storage.setItem("locks:negative", { token: -7, holder: null });
    expect(await codeOf(() => locks.acquire("negative"))).toBe("E_CORRUPT");
    await storage.setItem("locks:last", { token: Number.MAX_SAFE_INTEGER, holder: null });
    expect(await codeOf(() => locks.acquire("last"))).toBe("E_TOO_LARGE");
    expect(await storage.getItem("locks:last")).toEqual({ token: Number.MAX_SAFE_INTEGER, holder: null });
    await storage.setItem("locks:last", { token: Number.MAX_SAFE_INTEGER - 1, holder: null });
    expect((await locks.acquire("last"))!.token).toBe(Number.MAX_SAFE_INTEGER);
    await storage.setItem("locks:stray", "not a lock");
    const now = Date.now();
    await storage.setItem("locks:ended", { token: 3, holder: { owner: "x", acquiredAt: now - 2000, expiresAt: now - 1000, pid: 1, host: "h" } });
    expect((await locks.list()).map((info) => info.name)).toEqual(["last"]);
    expect(await locks.cleanup()).toBe(1);
    expect(reported.sort()).toEqual(["locks:negative E_CORRUPT", "locks:negative E_CORRUPT", "locks:stray E_CORRUPT", "locks:stray E_CORRUPT"]);
    expect(() => createLocks(storage, { onCorrupt: 5 as never })).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    await storage.dispose();
  });

  it("a record lost and made again (clear(), another lock store) starts above the tokens its predecessor issued", async () => {
    let now = Date.UTC(2026, 0, 1);
    const storage = createStorage({ driver: memory() });
    const locks = createLocks(storage, { clock: { now: () => now } });
    let last = 0;
    for (let round = 0; round < 50; round++) {
      last = (await locks.acquire("job", { ttl: 1 }))!.token;
      now += 1;
    }
    await storage.clear();
    now += 1;
    expect((await locks.acquire("job"))!.token).toBeGreaterThan(last);
    await storage.dispose();
  });
});
