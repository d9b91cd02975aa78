/**
 * A second process for driver tests: `tsx storeWorker.ts <driver> <path> <mode> <count>`.
 * mode "increment": `count` CAS increments of the key "counter", printing each value it wrote.
 * mode "write": writes key:0, key:1, … and prints each index once its write returned.
 * mode "unique": writes w<pid>:0, w<pid>:1, … (keys no other worker writes).
 * mode "exercise": opens a watch, writes with and without a ttl, lists and reads history where the
 * driver has it, printing each index as "write" does: what a process does before it must exit by itself.
 */
import { createStorage, type Driver } from "../../src/index.js";

const [driverName, path, mode, countText] = process.argv.slice(2);
const drivers: Record<string, () => Promise<Driver>> = {
  sqlite: async () => (await import("../../src/drivers/sqlite.js")).default({ path: path! }),
  // For the server drivers, <path> names the table.
  postgres: async () =>
    (await import("../../src/drivers/postgres.js")).default({ url: process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test", table: path! }),
  mysql: async () => (await import("../../src/drivers/mysql.js")).default({ url: process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test", table: path! }),
  // Server drivers: `path` is the key prefix (etcd) or the bucket (nats-kv); servers from the tests' env.
  etcd: async () => (await import("../../src/drivers/etcd.js")).default({ hosts: process.env.STOWAGE_ETCD_HOSTS, prefix: path! }),
  "nats-kv": async () => (await import("../../src/drivers/nats-kv.js")).default({ servers: process.env.STOWAGE_NATS_SERVERS, bucket: path! }),
  leveldb: async () => (await import("../../src/drivers/leveldb.js")).default({ path: path! }),
  "git-notes": async () => (await import("../../src/drivers/git-notes.js")).default({ dir: path! }),
  "git-refs": async () => (await import("../../src/drivers/git-refs.js")).default({ dir: path! }),
  lmdb: async () => (await import("../../src/drivers/lmdb.js")).default({ path: path! }),
  git: async () => (await import("../../src/drivers/git.js")).default({ dir: path! }),
  redis: async () => (await import("../../src/drivers/redis/index.js")).default({ url: process.env.STOWAGE_REDIS_URL, base: path! }),
};
const storage = createStorage({ driver: await drivers[driverName!]!() });
const count = Number(countText);

if (mode === "increment") {
  for (let i = 0; i < count; i++) process.stdout.write(`${await storage.update<number>("counter", (n) => (n ?? 0) + 1, { retries: 10_000 })}\n`);
} else if (mode === "unique") {
  for (let i = 0; i < count; i++) await storage.setItem(`w${process.pid}:${i}`, i);
} else if (mode === "exercise") {
  await storage.watch(() => undefined);
  await storage.setItem("short", 1, { ttl: 60_000 });
  for (let i = 0; i < count; i++) {
    await storage.setItem(`key:${i}`, { i });
    process.stdout.write(`${i}\n`);
  }
  await storage.getKeys("key");
  if (storage.getMount().driver.flags?.history) await storage.getHistory("key:0");
} else if (mode === "write") {
  for (let i = 0; i < count; i++) {
    await storage.setItem(`key:${i}`, { i, padding: "x".repeat(200) });
    process.stdout.write(`${i}\n`);
  }
}
await storage.dispose();
