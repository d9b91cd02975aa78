import { spawn, spawnSync } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { Redis } from "ioredis";
import { createStorage as createUnstorage, type Driver as UnstorageDriver } from "unstorage";
import unstorageRedis from "unstorage/drivers/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, isStorageError, normalizeKey, type Storage, type WatchEvent } from "../../src/index.js";
import redis, { type RedisDriverOptions } from "../../src/drivers/redis/index.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";
import { runWorkers } from "../helpers/workers.js";
import { codeOf, finish, freePort, rawKeysRoundTrip } from "../helpers/checks.js";
import { privateServer } from "../helpers/outage.js";
import { KIT_TTL } from "../helpers/clock.js";
import { runnable, scriptArgs } from "../helpers/programs.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

const url = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
// One prefix per run of this file: parallel test files and earlier runs never see each other's keys.
const RUN = `stowage-test:${randomUUID()}`;
let made = 0;
const freshBase = () => `${RUN}:${made++}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function redisCli(port: number, args: string[]): string {
  const result = spawnSync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { encoding: "utf8" });
  return result.status === 0 ? result.stdout.trim() : "";
}

/** A private redis-server on a free loopback port with its own directory: ours to kill and restart. */
async function privateRedis(extra: string[] = [], port?: number, directory?: string) {
  port ??= await freePort();
  const dir = directory ?? tempDir("redis-private");
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--daemonize", "no", ...extra];
  // PONG only once the dataset (the AOF) is loaded.
  const server = privateServer("redis-server", "redis-server", args, () => redisCli(port, ["ping"]) === "PONG");
  return { port, dir, url: `redis://127.0.0.1:${port}`, start: server.start, kill: server.stop };
}

/** A loopback port that is free, and whose cluster bus port (+10000) is free too. */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 30_000);
    if ((await portFree(port)) && (await portFree(port + 10_000))) return port;
  }
}

function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    // A port in use is the answer the probe asks for, not a failure of it.
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** Three private cluster-enabled redis-servers joined into one cluster (no replicas). */
async function privateCluster() {
  const servers: Awaited<ReturnType<typeof privateRedis>>[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freeClusterPort();
    const dir = tempDir("redis-cluster");
    const args = ["--cluster-enabled", "yes", "--cluster-config-file", join(dir, "nodes.conf"), "--cluster-node-timeout", "2000"];
    servers.push(await privateRedis(args, port, dir));
  }
  await Promise.all(servers.map((server) => server.start()));
  const addresses = servers.map((server) => `127.0.0.1:${server.port}`);
  const created = spawnSync("redis-cli", ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"], { encoding: "utf8" });
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stderr}${created.stdout}`);
  const deadline = Date.now() + 30_000;
  while (!servers.every((server) => redisCli(server.port, ["cluster", "info"]).includes("cluster_state:ok"))) {
    if (Date.now() > deadline) throw new Error("the private cluster did not become ready");
    await sleep(100);
  }
  return {
    nodes: servers.map((server) => ({ host: "127.0.0.1", port: server.port })),
    ports: servers.map((server) => server.port),
    stop: () => Promise.all(servers.map((server) => server.kill())),
  };
}

/** Events a storage's watcher has seen, as "event key" lines. */
async function recordEvents(storage: Storage) {
  const events: string[] = [];
  const unwatch = await storage.watch((event: WatchEvent, key: string) => events.push(`${event} ${key}`));
  return { events, unwatch };
}

/** Whether the tests that run servers of their own can: redis-server and redis-cli on PATH. */
function canRunPrivateServers(): boolean {
  const found = ["redis-server", "redis-cli"].every((command) => spawnSync(command, ["--version"]).status === 0);
  if (found) return true;
  if (process.env.STOWAGE_REQUIRE_SERVICES === "1") throw new Error("redis-server and redis-cli are required (STOWAGE_REQUIRE_SERVICES=1)");
  console.warn("[stowage tests] redis-server / redis-cli not found: the private-server and cluster tests are skipped");
  return false;
}

// Options are checked when the driver is made, before any connection: no server needed.
describe("redis driver options", () => {
  it("refuses ioredis's keyPrefix, retries, offline queue and resends (as options or in the URL), a bad timeout and an unknown watch mode", async () => {
    expect(() => redis({ url, client: { keyPrefix: "x:" } })).toThrow(/base option/);
    expect(() => redis({ url: `${url}?keyPrefix=x:` })).toThrow(/base option/);
    expect(() => redis({ url, client: { maxRetriesPerRequest: 3 } })).toThrow(/maxRetriesPerRequest must stay 0/);
    expect(() => redis({ url, client: { maxRetriesPerRequest: null } })).toThrow(/maxRetriesPerRequest/);
    expect(() => redis({ url: `${url}?maxRetriesPerRequest=5` })).toThrow(/maxRetriesPerRequest/);
    expect(() => redis({ url, client: { enableOfflineQueue: true } })).toThrow(/enableOfflineQueue/);
    expect(() => redis({ url: `${url}?enableOfflineQueue=true` })).toThrow(/enableOfflineQueue/);
    expect(() => redis({ url, cluster: [{ port: 7000 }], clusterOptions: { redisOptions: { autoResendUnfulfilledCommands: true } } })).toThrow(/autoResend/);
    expect(() => redis({ url, cluster: [{ port: 7000 }], clusterOptions: { enableOfflineQueue: true } })).toThrow(/enableOfflineQueue/);
    expect(() => redis({ url, timeout: -1 })).toThrow(/timeout/);
    expect(() => redis({ url, watch: "poll" as never })).toThrow(/watch must be/);
    const accepted = redis({ url, client: { maxRetriesPerRequest: 0, enableOfflineQueue: false } });
    await accepted.dispose?.();
  });
});

describe("redis database number", () => {
  it("refuses one ioredis would SELECT wrongly (from the URL's path, its ?db= or client.db) with E_INVALID_OPTION at open", async () => {
    const refused: RedisDriverOptions[] = [
      // NaN: its SELECT failed outside any caller and ended the process.
      { url: `${url}/abc` },
      { url: `${url}/-1` },
      // ioredis's parseInt would take these as 1 and 3.
      { url: `${url}/1abc` },
      { url: `${url}?db=3x` },
      { url: `${url}/%31` },
      { url, client: { db: -1 } },
      { url, client: { db: 1.5 } },
      { url, client: { db: "2b" as never } },
      { url, client: { db: 2, enableReadyCheck: false } },
      { cluster: [{ port: 7000 }], client: { db: 2 } },
      { cluster: [{ port: 7000 }], clusterOptions: { redisOptions: { db: 1 } } },
      { url: "redis://[::1" },
    ];
    for (const options of refused) expect(await codeOf(() => redis(options)), JSON.stringify(options)).toBe("E_INVALID_OPTION");
    for (const options of [{ url: `${url}/15` }, { url: `${url}?db=2` }, { url, client: { db: 0 } }, { url: `${url}/` }]) await redis(options).dispose?.();
  });
});

describe("redis options", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(redis, { url, base: "b", scanCount: 10 });
  });
});

if (await serviceUp("Redis", url)) {
  const privateServers = canRunPrivateServers();
  const make = (extra: Partial<RedisDriverOptions> = {}) => redis({ url, base: freshBase(), ...extra });

  afterAll(async () => {
    const cleanup = createStorage({ driver: redis({ url, base: RUN, watch: "off" }) });
    await cleanup.clear();
    await cleanup.dispose();
  });

  testDriver({ name: "redis", driver: () => redis({ url, base: `${RUN}:kit` }), ttl: KIT_TTL });

  describe("redis driver", () => {
    it("stores plain values under base:key, readable by any Redis client", async () => {
      const base = freshBase();
      const storage = createStorage({ driver: redis({ url, base }) });
      const raw = new Redis(url);
      try {
        await storage.setItem("user:1", { name: "ada" });
        await storage.setItem("note", "hello");
        await storage.setItemRaw("bin", new Uint8Array([0, 255, 10]));
        await storage.setItem("short", 1, { ttl: 60_000 });
        expect(await raw.get(`${base}:user:1`)).toBe('{"name":"ada"}');
        expect(await raw.get(`${base}:note`)).toBe('"hello"');
        expect([...(await raw.getBuffer(`${base}:bin`))!]).toEqual([0, 255, 10]);
        expect(await raw.pttl(`${base}:short`)).toBeGreaterThan(59_000);
        expect((await raw.keys(`${base}:*`)).sort()).toEqual([`${base}:bin`, `${base}:note`, `${base}:short`, `${base}:user:1`]);
        // The etag is the SHA-1 of the stored bytes.
        expect((await storage.getMeta("note")).etag).toBe(await raw.eval("return redis.sha1hex(redis.call('GET', KEYS[1]))", 1, `${base}:note`));
      } finally {
        raw.disconnect();
        await storage.dispose();
      }
    });

    it("hostile keys and 10 MB values round-trip exactly; glob characters in a base match nothing else", async () => {
      const storage = createStorage({ driver: make() });
      try {
        const keys = [
          "k".repeat(1024),
          "ü".repeat(600),
          "ключ:日本語:🚀✨",
          `quotes'and"double"`,
          "''''\"\"\"\"",
          "100%_done_%%__",
          "star*bracket[x]",
          "***[[[]]]",
          "dots.in.the.key.",
          "a*",
          "[ab]",
          "back\\slash",
        ];
        for (const [index, key] of keys.entries()) await storage.setItem(key, { index, key });
        for (const [index, key] of keys.entries()) expect(await storage.getItem(key)).toEqual({ index, key });
        // Key rules apply first (`\\` separates); the driver stores what they leave.
        expect((await storage.getKeys()).sort()).toEqual([...new Set(keys.map(normalizeKey))].sort());
        // `?`, which writes refuse, reaches the driver only directly: SCAN MATCH must not take it as a pattern either.
        await rawKeysRoundTrip(storage, ["star*question?bracket[x]", "***???[[[]]]", "a?"]);

        // Under a glob-like base, SCAN MATCH must not treat the base as a pattern.
        await storage.setItems([
          { key: "g:a*:1", value: 1 },
          { key: "g:abc:2", value: 2 },
          { key: "g:[ab]:5", value: 5 },
          { key: "g:a:6", value: 6 },
        ]);
        expect(await storage.getKeys("g:a*")).toEqual(["g:a*:1"]);
        expect(await storage.getKeys("g:[ab]")).toEqual(["g:[ab]:5"]);
        await storage.clear("g:a*");
        expect((await storage.getKeys("g")).sort()).toEqual(["g:[ab]:5", "g:a:6", "g:abc:2"]);

        const bytes = randomBytes(10 * 1024 * 1024);
        await storage.setItemRaw("big:raw", bytes);
        expect(Buffer.from((await storage.getItemRaw("big:raw"))!).equals(bytes)).toBe(true);
        const text = "ä🚀'\"\\%_*?[.\n\0".repeat(800_000);
        await storage.setItem("big:text", text);
        expect(await storage.getItem("big:text")).toBe(text);
      } finally {
        await storage.clear();
        await storage.dispose();
      }
    });

    it("a base option full of glob characters lists and clears only its own keys", async () => {
      const root = freshBase();
      const bases = [`${root}:a*?[x]\\`, `${root}:ab?[x]\\`, `${root}:a*?[x]\\z`, `${root}:aa?x\\`];
      const stores = bases.map((base) => createStorage({ driver: redis({ url, base }) }));
      try {
        for (const [index, storage] of stores.entries()) await storage.setItems([{ key: "k", value: index }, { key: "deep:k", value: index }]);
        for (const storage of stores) expect((await storage.getKeys()).sort()).toEqual(["deep:k", "k"]);
        await stores[0]!.clear();
        expect(await stores[0]!.getKeys()).toEqual([]);
        for (const [index, storage] of stores.entries()) if (index > 0) expect(await storage.getItem("deep:k")).toBe(index);
      } finally {
        await Promise.all(stores.map((storage) => storage.dispose()));
      }
    });

    for (const mode of ["tracking", "pubsub"] as const) {
      it(`watch (${mode}) sees writes made through another connection: set, setItems, remove, clear, transaction`, async () => {
        const base = freshBase();
        const writer = createStorage({ driver: redis({ url, base, watch: mode }) });
        const reader = createStorage({ driver: redis({ url, base, watch: mode }) });
        const elsewhere = createStorage({ driver: redis({ url, base: freshBase(), watch: mode }) });
        const raw = new Redis(url);
        const { events, unwatch } = await recordEvents(reader);
        const expected: string[] = [];
        // One step at a time: tracking learns an event's kind by looking at the key afterwards, and
        // names the keys of one atomic write in its own order.
        const step = async (action: () => Promise<unknown>, ...seen: string[]) => {
          await action();
          expected.push(...seen);
          await eventually(() => expect([...events].sort()).toEqual([...expected].sort()));
        };
        try {
          await step(() => writer.setItem("a", 1), "update a");
          await step(() => elsewhere.setItem("a", "another base: not ours"));
          await step(() => writer.setItems([{ key: "b", value: 2 }, { key: "c:d", value: 3 }]), "update b", "update c:d");
          await step(() => writer.removeItem("a"), "remove a");
          await step(() => writer.removeItem("never-there"));
          await step(() => writer.transaction(async (tx) => {
            await tx.setItem("t", 1);
            await tx.removeItem("b");
          }), "update t", "remove b");
          await step(() => writer.clear("c"), "remove c:d");
          if (mode === "tracking") {
            // Tracking sees every client and the server's own expirations.
            await step(() => raw.set(`${base}:by-redis-cli`, "1"), "update by-redis-cli");
            // Long enough that tracking finds the key still there when it looks, on a loaded machine too.
            await step(() => writer.setItem("short", 1, { ttl: 1500 }), "update short");
            await step(() => sleep(0), "remove short");
          }
          await sleep(200);
          expect([...events].sort()).toEqual([...expected].sort());
        } finally {
          raw.disconnect();
          await unwatch();
          await Promise.all([writer.dispose(), reader.dispose(), elsewhere.dispose()]);
        }
      });
    }

    it("ifMatch together with ifNoneMatch never holds: E_CONFLICT on writes, batches and transactions, and nothing is written", async () => {
      const storage = createStorage({ driver: redis({ url, base: freshBase(), watch: "off" }) });
      await storage.setItem("held", 1);
      const both = { ifMatch: (await storage.getMeta("held")).etag!, ifNoneMatch: "*" as const };
      await expect(storage.setItem("held", 2, both)).rejects.toMatchObject({ code: "E_CONFLICT" });
      await expect(storage.setItem("absent", 2, both)).rejects.toMatchObject({ code: "E_CONFLICT" });
      await expect(storage.setItems([{ key: "absent", value: 2, options: both }])).rejects.toMatchObject({ code: "E_CONFLICT" });
      await expect(storage.transaction((tx) => tx.setItem("absent", 2, both))).rejects.toMatchObject({ code: "E_CONFLICT" });
      expect(await storage.getItem("held")).toBe(1);
      expect(await storage.hasItem("absent")).toBe(false);
      await storage.dispose();
    });

    it("concurrent CAS increments from three processes lose nothing", async () => {
      const base = freshBase();
      const processes = 3;
      const rounds = 30;
      await runWorkers(processes, ["redis", base, "increment", String(rounds)], { STOWAGE_REDIS_URL: url });
      const storage = createStorage({ driver: redis({ url, base }) });
      expect(await storage.getItem("counter")).toBe(processes * rounds);
      await storage.dispose();
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

    it("dispose closes every connection: a process that watched, wrote and disposed exits on its own", async () => {
      const base = freshBase();
      const source = (path: string) => JSON.stringify(runnable(path));
      const script = [
        `import { createStorage } from ${source("src/index.ts")};`,
        `import redis from ${source("src/drivers/redis/index.ts")};`,
        `const storage = createStorage({ driver: redis({ url: ${JSON.stringify(url)}, base: ${JSON.stringify(base)} }) });`,
        `await storage.watch(() => undefined);`,
        `await storage.setItem("child", { written: true });`,
        `await storage.getKeys();`,
        `await storage.dispose();`,
      ].join("\n");
      const child = spawn(process.execPath, scriptArgs(script), { stdio: "inherit" });
      expect((await finish(child, 15_000)).code).toBe(0);
      const storage = createStorage({ driver: redis({ url, base }) });
      expect(await storage.getItem("child")).toEqual({ written: true });
      await storage.dispose();
    });

    it("shares its layout with unstorage's redis driver, and mounts in unstorage", async () => {
      const base = freshBase();
      const theirs = createUnstorage({ driver: unstorageRedis({ url, base }) });
      const ours = createStorage({ driver: redis({ url, base }) });
      const mounted = createUnstorage({ driver: redis({ url, base: freshBase() }) as unknown as UnstorageDriver });
      try {
        await theirs.setItem("u:obj", { x: 1 });
        await theirs.setItem("u:text", "plain text");
        await theirs.setItem("u:n", 456);
        expect(await ours.getItems(["u:obj", "u:text", "u:n"])).toEqual([
          { key: "u:obj", value: { x: 1 } },
          { key: "u:text", value: "plain text" },
          { key: "u:n", value: 456 },
        ]);
        await ours.setItem("s:obj", { y: [2] });
        await ours.setItem("s:text", "456");
        expect(await theirs.getItem("s:obj")).toEqual({ y: [2] });
        expect(await theirs.getItem("s:text")).toBe("456");
        expect((await theirs.getKeys("s")).sort()).toEqual(["s:obj", "s:text"]);

        await mounted.setItem("m:a", { z: 3 });
        await mounted.setItemRaw("m:raw", new Uint8Array([0, 1, 255]));
        expect(await mounted.getItem("m:a")).toEqual({ z: 3 });
        expect([...((await mounted.getItemRaw("m:raw")) as Uint8Array)]).toEqual([0, 1, 255]);
        expect((await mounted.getKeys("m")).sort()).toEqual(["m:a", "m:raw"]);
        await mounted.clear();
        expect(await mounted.getKeys()).toEqual([]);
      } finally {
        await theirs.clear();
        await Promise.all([theirs.dispose(), ours.dispose(), mounted.dispose()]);
      }
    });

    it("a server that accepts connections but never answers gives E_UNAVAILABLE, not a hang", async () => {
      const sockets = new Set<import("node:net").Socket>();
      const silent: Server = createServer((socket) => sockets.add(socket));
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
      const { port } = silent.address() as { port: number };
      const storage = createStorage({ driver: redis({ url: `redis://127.0.0.1:${port}`, timeout: 300 }) });
      try {
        expect(await codeOf(() => storage.getItem("x"))).toBe("E_UNAVAILABLE");
        expect(await codeOf(() => storage.setItem("x", 1))).toBe("E_UNAVAILABLE");
        expect(await codeOf(() => storage.getKeys())).toBe("E_UNAVAILABLE");
      } finally {
        await storage.dispose();
        for (const socket of sockets) socket.destroy();
        await new Promise((resolve) => silent.close(resolve));
      }
    });

    it("a database the server refuses (past its databases) fails every operation with E_INVALID_OPTION, writes nothing into database 0, and stays closed", async () => {
      const key = `${freshBase()}:probe`;
      const database0 = new Redis(url);
      try {
        for (const target of [`${url}/99999`, `${url}?db=16`]) {
          const driver = redis({ url: target, watch: "pubsub" });
          const storage = createStorage({ driver });
          const operations = [() => storage.setItem(key, 1), () => storage.getItem(key), () => storage.getKeys(), () => storage.watch(() => undefined)];
          for (const operation of operations) expect(await codeOf(operation)).toBe("E_INVALID_OPTION");
          // Issued together before the connection was ready: they all wait for it, and all fail.
          const again = createStorage({ driver: redis({ url: target, watch: "off" }) });
          const codes = await Promise.all(Array.from({ length: 10 }, (_, i) => codeOf(() => again.setItem(`${key}:${i}`, i))));
          expect(new Set(codes)).toEqual(new Set(["E_INVALID_OPTION"]));
          // Closed for good: ioredis does not reconnect it into database 0.
          await eventually(() => expect(driver.getInstance!().status).toBe("end"));
          await Promise.all([storage.dispose(), again.dispose()]);
        }
        expect(await database0.keys(`${key}*`)).toEqual([]);
      } finally {
        database0.disconnect();
      }
    });

    it("nothing listening gives E_UNAVAILABLE with the connection error as cause", async () => {
      const storage = createStorage({ driver: redis({ url: `redis://127.0.0.1:${await freePort()}`, timeout: 500 }) });
      try {
        const error = await storage.getItem("x").catch((caught: unknown) => caught);
        expect(isStorageError(error, "E_UNAVAILABLE")).toBe(true);
        expect(String((error as Error).message)).toMatch(/ECONNREFUSED|not ready/);
      } finally {
        await storage.dispose();
      }
    });
  });

  describe.runIf(privateServers)("redis driver with a private server", () => {
    it("lists and clears with SCAN and UNLINK (never KEYS), and batches with MGET and MSET", async () => {
      const server = await privateRedis();
      await server.start();
      const storage = createStorage({ driver: redis({ url: server.url, base: "cmds", watch: "off" }) });
      try {
        const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
        await storage.setItems(keys.map((key, i) => ({ key, value: i })));
        expect((await storage.getItems(keys)).map((entry) => entry.value)).toEqual(keys.map((_, i) => i));
        expect((await storage.getKeys()).length).toBe(50);
        await storage.clear();
        expect(await storage.getKeys()).toEqual([]);
        // The server's own count of each command it ran.
        const ran = new Set([...redisCli(server.port, ["info", "commandstats"]).matchAll(/^cmdstat_(\w+):calls=/gm)].map((match) => match[1]));
        expect(ran.has("keys")).toBe(false);
        for (const command of ["scan", "unlink", "mget", "mset"]) expect(ran.has(command), command).toBe(true);
      } finally {
        await storage.dispose();
        await server.kill();
      }
    });

    it("a server killed mid-run: operations fail fast with E_UNAVAILABLE, recover after restart, and lose no acknowledged write", async () => {
      const server = await privateRedis(["--appendonly", "yes", "--appendfsync", "always"]);
      await server.start();
      const timeout = 1000;
      const storage = createStorage({ driver: redis({ url: server.url, base: "fault", timeout }) });
      const watching = createStorage({ driver: redis({ url: server.url, base: "fault", timeout }) });
      const { events, unwatch } = await recordEvents(watching);
      try {
        // A writer runs until the kill; every write it saw acknowledged must survive.
        const acknowledged: number[] = [];
        let failures = 0;
        let stop = false;
        const writer = (async () => {
          for (let i = 0; !stop; i++) {
            try {
              await storage.setItem(`key:${i}`, { i });
              acknowledged.push(i);
            } catch (error) {
              if (!isStorageError(error, "E_UNAVAILABLE")) throw error;
              failures++;
              await sleep(20);
            }
          }
        })();
        await eventually(() => expect(acknowledged.length).toBeGreaterThan(200));
        await server.kill();
        await eventually(() => expect(failures).toBeGreaterThan(0));

        // During the outage every kind of operation fails with E_UNAVAILABLE within the timeout.
        for (const action of [() => storage.getItem("key:0"), () => storage.setItem("x", 1), () => storage.getKeys(), () => storage.getMeta("key:0")]) {
          const started = Date.now();
          expect(await codeOf(action)).toBe("E_UNAVAILABLE");
          expect(Date.now() - started).toBeLessThan(timeout + 1000);
        }

        await server.start();
        // The same storage object works again once the client has reconnected.
        await eventually(async () => expect(await storage.getItem("key:0")).toEqual({ i: 0 }));
        stop = true;
        await writer;
        const values = await storage.getItems(acknowledged.map((i) => `key:${i}`));
        expect(values.filter((entry) => entry.value === null)).toEqual([]);
        // The watcher's connections came back too, and tracking was set up again on them.
        await eventually(async () => {
          await storage.setItem("after-restart", Date.now());
          expect(events).toContain("update after-restart");
        });
      } finally {
        await unwatch();
        await watching.dispose();
        await storage.dispose();
        await server.kill();
      }
    });

    it('watch: "tracking" where the server refuses CLIENT (an ACL) is E_UNSUPPORTED; "pubsub" still works there', async () => {
      const server = await privateRedis();
      await server.start();
      redisCli(server.port, ["acl", "setuser", "limited", "on", ">secret", "~*", "&*", "+@all", "-client"]);
      const limitedUrl = `redis://limited:secret@127.0.0.1:${server.port}`;
      const tracking = createStorage({ driver: redis({ url: limitedUrl, base: "acl" }) });
      const pubsub = createStorage({ driver: redis({ url: limitedUrl, base: "acl", watch: "pubsub" }) });
      try {
        await tracking.setItem("a", 1);
        expect(await codeOf(() => tracking.watch(() => undefined))).toBe("E_UNSUPPORTED");
        const { events, unwatch } = await recordEvents(pubsub);
        await pubsub.setItem("a", 2);
        await eventually(() => expect(events).toEqual(["update a"]));
        await unwatch();
      } finally {
        await Promise.all([tracking.dispose(), pubsub.dispose()]);
        await server.kill();
      }
    });

    it("a server that stops answering a ready connection: commands fail with E_UNAVAILABLE within the timeout, and work again once it answers", async () => {
      const server = await privateRedis();
      await server.start();
      const timeout = 400;
      const storage = createStorage({ driver: redis({ url: server.url, base: "hang", timeout }) });
      try {
        await storage.setItem("k", "before");
        // CLIENT PAUSE holds every client's commands unanswered, as a hung server would.
        expect(redisCli(server.port, ["client", "pause", "2500", "ALL"])).toBe("OK");
        const started = Date.now();
        const results = await Promise.all([codeOf(() => storage.getItem("k")), codeOf(() => storage.setItem("other", "during")), codeOf(() => storage.hasItem("k"))]);
        const waited = Date.now() - started;
        expect(results).toEqual(["E_UNAVAILABLE", "E_UNAVAILABLE", "E_UNAVAILABLE"]);
        // The timeout, plus at most two watchdog ticks (100 ms each) and some slack for a loaded machine.
        expect(waited).toBeGreaterThanOrEqual(timeout - 50);
        expect(waited).toBeLessThan(timeout + 600);
        redisCli(server.port, ["client", "unpause"]);
        await eventually(async () => expect(await storage.getItem("k")).toBe("before"));
        await storage.setItem("k", "after");
        expect(await storage.getItem("k")).toBe("after");
      } finally {
        await storage.dispose();
        await server.kill();
      }
    });

    it("a server that answers, but each command slowly: a command queued behind them still fails within its timeout", async () => {
      const server = await privateRedis();
      await server.start();
      const timeout = 400;
      const storage = createStorage({ driver: redis({ url: server.url, base: "slow", timeout }) });
      const client = storage.getMount("").driver.getInstance!() as Redis;
      // Keeps the server busy for 300 ms (under the timeout) and then answers.
      const busy = "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - s > 300000 return 1";
      try {
        await storage.setItem("k", "before");
        // Redis answers commands that arrive in one read of its socket together, which looks hung, not slow. Each
        // script carries 20 KB, more than Redis reads at once (16 KB), so it runs them and answers one by one.
        const pad = "x".repeat(20_000);
        const slow = [1, 2, 3, 4].map(() => client.eval(busy, 0, pad).then(() => "answered", () => "failed"));
        const started = Date.now();
        const behind = await codeOf(() => storage.getItem("k"));
        const waited = Date.now() - started;
        expect(behind).toBe("E_UNAVAILABLE");
        // The scripts ahead of it take until 1,200 ms; it fails at its timeout plus at most two ticks (100 ms each) and slack.
        expect(waited).toBeLessThan(timeout + 400);
        // The first script was answered in time; the connection was cut under a later one.
        const answers = await Promise.all(slow);
        expect(answers[0]).toBe("answered");
        expect(answers.slice(1)).toContain("failed");
        await eventually(async () => expect(await storage.getItem("k")).toBe("before"));
      } finally {
        await storage.dispose();
        await server.kill();
      }
    });

    it('watch: "keyspace" reports writes by any client and expirations; it refuses a server without notifications', async () => {
      const server = await privateRedis(["--notify-keyspace-events", "KEA"]);
      const plain = await privateRedis();
      await Promise.all([server.start(), plain.start()]);
      const storage = createStorage({ driver: redis({ url: server.url, base: "ks", watch: "keyspace" }) });
      const unwatched = createStorage({ driver: redis({ url: plain.url, base: "ks", watch: "keyspace" }) });
      const raw = new Redis(server.url);
      try {
        const { events, unwatch } = await recordEvents(storage);
        await raw.set("ks:by-redis-cli", "1");
        await storage.setItem("short", 1, { ttl: 50 });
        await raw.set("other:key", "1");
        await storage.removeItem("by-redis-cli");
        await eventually(() => expect([...events].sort()).toEqual(["remove by-redis-cli", "remove short", "update by-redis-cli", "update short"]));
        await unwatch();
        expect(await codeOf(() => unwatched.watch(() => undefined))).toBe("E_UNSUPPORTED");
      } finally {
        raw.disconnect();
        await Promise.all([storage.dispose(), unwatched.dispose()]);
        await Promise.all([server.kill(), plain.kill()]);
      }
    });
  });

  describe.runIf(privateServers)("redis cluster (three private nodes)", () => {
    let cluster: Awaited<ReturnType<typeof privateCluster>> | undefined;
    const nodes: { host: string; port: number }[] = [];
    beforeAll(async () => {
      cluster = await privateCluster();
      nodes.push(...cluster.nodes);
    }, 60_000);
    afterAll(async () => {
      await cluster?.stop();
    });

    // A base that is a hash tag puts every key in one slot: the whole contract holds, transactions included.
    testDriver({ name: "redis cluster, one hash tag", driver: () => redis({ cluster: nodes, base: "{kit}" }), ttl: KIT_TTL });
    // Keys spread over the nodes: no transactions flag (keys of one transaction may sit in different slots), the rest holds.
    testDriver({ name: "redis cluster, sharded", driver: () => redis({ cluster: nodes, base: "sharded" }), ttl: KIT_TTL });

    it("spreads keys over the nodes; atomic writes across slots are E_UNSUPPORTED, within a hash tag they work", async () => {
      const storage = createStorage({ driver: redis({ cluster: nodes, base: "spread", clusterTransactions: true }) });
      try {
        await storage.setItems(Array.from({ length: 300 }, (_, i) => ({ key: `k:${i}`, value: i })));
        const perNode = cluster!.ports.map((port) => Number(redisCli(port, ["dbsize"])));
        expect(perNode.every((count) => count > 0)).toBe(true);
        expect(perNode.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(300);
        expect((await storage.getKeys("k")).length).toBe(300);
        expect((await storage.getItems(["k:1", "k:299", "k:none"])).map((entry) => entry.value)).toEqual([1, 299, null]);

        const across = storage.transaction(async (tx) => {
          await tx.setItem("x:1", 1);
          await tx.setItem("y:2", 2);
        });
        expect(await codeOf(() => across)).toBe("E_UNSUPPORTED");
        expect(await storage.getItems(["x:1", "y:2"])).toEqual([
          { key: "x:1", value: null },
          { key: "y:2", value: null },
        ]);
        await storage.transaction(async (tx) => {
          await tx.setItem("{order-7}:head", { total: 3 });
          await tx.setItem("{order-7}:line:1", "apple");
        });
        expect(await storage.getItem("{order-7}:line:1")).toBe("apple");

        // CAS is per key, so it works wherever the key lives.
        const { etag } = await storage.getMeta("k:5");
        await storage.setItem("k:5", "changed", { ifMatch: etag });
        expect(await codeOf(() => storage.setItem("k:5", "again", { ifMatch: etag }))).toBe("E_CONFLICT");

        await storage.clear();
        expect(await storage.getKeys()).toEqual([]);
      } finally {
        await storage.dispose();
      }
    });
  });

  describe("redis key limits and batched writes", () => {
    it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
      checkKeyLimit(createStorage({ driver: redis({ url, base: freshBase() }) })));

    it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: redis({ url, base: freshBase() }) })));
  });
}
