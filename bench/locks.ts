import { rmSync } from "node:fs";
import { join } from "node:path";
import { createStorage, type Storage } from "stowage";
import { createLocks } from "stowage/coordination";
import memory from "stowage/drivers/memory";
import sqlite from "stowage/drivers/sqlite";
import gitRefs from "stowage/drivers/git-refs";
import { reachable } from "../test/helpers/services.js";
import { benchDir } from "./helpers.js";
import { format, measure, printWorkload, type Measured } from "./slices.js";

/**
 * `npm run bench -- locks`: uncontended acquire + release of one lock, per
 * second, for stowage's locks on memory, sqlite, git-refs, redis, postgres
 * and etcd, and side by side (same slices, same run) with
 * `@sesamecare-oss/redlock` on one redis server and with etcd3's own
 * `client.lock(name)`; prints stowage-redis/redlock and stowage-etcd/etcd3.
 * A server that does not answer is left out with a notice.
 */

interface LockTarget extends Measured {
  /** One acquire, then its release. */
  cycle(): Promise<void>;
  close(): Promise<void>;
}

/** Cycles per sample: one cycle is a few round trips, too short to time alone. */
const ROUND = 20;
const TTL = 30_000;
const NAME = "bench-lock";

const REDIS_URL = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
const POSTGRES_URL = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const ETCD_HOSTS = process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379";

/** stowage's locks over `storage`, named `stowage <label>`; `close` clears what they wrote. */
function stowageTarget(label: string, storage: Storage, peer?: string, dispose: () => Promise<void> = () => storage.dispose()): LockTarget {
  const locks = createLocks(storage, { ttl: TTL });
  return {
    name: `stowage ${label}`,
    peer,
    async cycle() {
      const lock = await locks.acquire(NAME);
      if (!lock) throw new Error(`stowage ${label}: an uncontended acquire failed`);
      await lock.release();
    },
    async close() {
      await storage.clear();
      await dispose();
    },
  };
}

async function embeddedTargets(dir: string): Promise<LockTarget[]> {
  return [
    stowageTarget("memory", createStorage({ driver: memory() })),
    stowageTarget("sqlite", createStorage({ driver: sqlite({ path: join(dir, "locks.sqlite") }) })),
    stowageTarget("git-refs", createStorage({ driver: gitRefs({ dir: join(dir, "refs") }) })),
  ];
}

/** stowage on redis against redlock with one ioredis client on the same server. */
async function redisTargets(): Promise<LockTarget[]> {
  const [{ Redis }, { Redlock }, { default: redis }] = await Promise.all([import("ioredis"), import("@sesamecare-oss/redlock"), import("stowage/drivers/redis")]);
  const run = `stowage-bench-locks:${process.pid}`;
  const client = new Redis(REDIS_URL);
  // retryCount 0: try once, as stowage's acquire does without `wait`.
  const redlock = new Redlock([client], { retryCount: 0 });
  const peer: LockTarget = {
    name: "redlock (1 server)",
    async cycle() {
      const lock = await redlock.acquire([`${run}:redlock`], TTL);
      await lock.release();
    },
    async close() {
      await client.del(`${run}:redlock`);
      client.disconnect();
    },
  };
  return [peer, stowageTarget("redis", createStorage({ driver: redis({ url: REDIS_URL, base: `${run}:stowage` }) }), peer.name)];
}

async function postgresTargets(): Promise<LockTarget[]> {
  const { default: postgres } = await import("stowage/drivers/postgres");
  const table = `bench_locks_${process.pid}`;
  const storage = createStorage({ driver: postgres({ url: POSTGRES_URL, table, notify: false }) });
  const pool = storage.getMount().driver.getInstance!() as { query(text: string): Promise<unknown> };
  return [stowageTarget("postgres", storage, undefined, async () => {
    await pool.query(`DROP TABLE IF EXISTS ${table}`);
    await storage.dispose();
  })];
}

/** stowage on etcd against etcd3's lock (a lease, a create-only put under it; release deletes and revokes). */
async function etcdTargets(): Promise<LockTarget[]> {
  const [{ Etcd3 }, { default: etcd }] = await Promise.all([import("etcd3"), import("stowage/drivers/etcd")]);
  const client = new Etcd3({ hosts: ETCD_HOSTS });
  const prefix = `stowage-bench-locks-${process.pid}/`;
  const peer: LockTarget = {
    name: "etcd3 lock",
    async cycle() {
      const lock = await client.lock(`${prefix}etcd3`).ttl(TTL / 1000).acquire();
      await lock.release();
    },
    async close() {
      await client.delete().prefix(`${prefix}etcd3`);
      client.close();
    },
  };
  return [peer, stowageTarget("etcd", createStorage({ driver: etcd({ hosts: ETCD_HOSTS, prefix: `${prefix}stowage/` }) }), peer.name)];
}

const SERVERS: { name: string; address: string; targets: () => Promise<LockTarget[]> }[] = [
  { name: "Redis", address: REDIS_URL, targets: redisTargets },
  { name: "PostgreSQL", address: POSTGRES_URL, targets: postgresTargets },
  { name: "etcd", address: ETCD_HOSTS, targets: etcdTargets },
];

export async function runLocks(): Promise<Record<string, number>> {
  const dir = benchDir("locks");
  const targets = await embeddedTargets(dir);
  for (const server of SERVERS) {
    if (await reachable(server.address)) targets.push(...(await server.targets()));
    else console.warn(`bench: ${server.name} is not reachable at ${server.address}: its lock targets are left out`);
  }
  try {
    const workload = { name: "lock acquire+release (uncontended)", ops: ROUND, run: async (target: LockTarget) => {
      for (let n = 0; n < ROUND; n++) await target.cycle();
    } };
    const results = await measure(workload, targets);
    printWorkload(workload.name, targets, results);
    for (const target of targets.filter((t) => t.peer !== undefined)) {
      const ratio = results[target.name]! / results[target.peer!]!;
      console.log(`  ratio ${target.name} / ${target.peer}: ${ratio.toFixed(2)}x (${format(results[target.name]!)} / ${format(results[target.peer!]!)} ops/s; goal >= 1.0x)`);
      results[`${target.name} / ${target.peer}`] = ratio;
    }
    return results;
  } finally {
    for (const target of targets) {
      await target.close().catch((error: unknown) => console.warn(`bench: closing ${target.name} failed: ${String(error)}`));
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
