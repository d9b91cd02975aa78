import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createStorage, isStorageError, type Storage } from "../../src/index.js";
import postgres, { MAX_KEY_BYTES } from "../../src/drivers/postgres.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { codeOf, freePort, rawKeysRoundTrip } from "../helpers/checks.js";
import { serviceUp } from "../helpers/services.js";
import { absentKeyHeldUntilCommit, casAcrossProcesses, exitsAfterDispose, runTables, unavailableWithinTimeout } from "../helpers/tableDrivers.js";
import { KIT_TTL } from "../helpers/clock.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

const url = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
// Tables unique to this run of this file, dropped at the end.
const { tables, fresh: freshTable } = runTables();

// The server binaries for the fault test's private cluster (Debian's layout by default).
const PG_BIN = process.env.STOWAGE_POSTGRES_BIN ?? "/usr/lib/postgresql/15/bin";
const canRunCluster = existsSync(join(PG_BIN, "initdb"));
if (!canRunCluster && process.env.STOWAGE_REQUIRE_SERVICES === "1") throw new Error(`No PostgreSQL server binaries at ${PG_BIN} (STOWAGE_POSTGRES_BIN)`);
if (!canRunCluster) console.warn(`[stowage tests] no PostgreSQL binaries at ${PG_BIN}: the postgres fault test is skipped`);

/** A PostgreSQL cluster of this test's own, which it may stop and start (the shared one stays up). */
async function privateCluster() {
  const dir = mkdtempSync(join(tmpdir(), "stowage-pg-"));
  // PostgreSQL refuses to run as root: as root, the cluster is the postgres user's.
  const root = process.getuid?.() === 0;
  if (root) {
    const { stdout: uid } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    chownSync(dir, Number(uid), Number(gid));
  }
  const data = join(dir, "data");
  const port = await freePort();
  const asPostgres = (command: string, args: string[]) =>
    root ? run("runuser", ["-u", "postgres", "--", join(PG_BIN, command), ...args]) : run(join(PG_BIN, command), args);
  await asPostgres("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync"]);
  const ctl = (args: string[]) => asPostgres("pg_ctl", ["-D", data, "-w", ...args]);
  const start = () => ctl(["-l", join(dir, "log"), "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, "start"]);
  await start();
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    start,
    stop: () => ctl(["-m", "immediate", "stop"]),
    async remove() {
      await ctl(["-m", "immediate", "stop"]).catch((error: unknown) => expect(String(error)).toMatch(/not running|No such file/i));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe("postgres options", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(postgres, { url, table: "t", max: 2 });
  });
});

if (await serviceUp("PostgreSQL", url)) {
  const kitTable = freshTable("kit");
  testDriver({ name: "postgres", driver: () => postgres({ url, table: kitTable }), ttl: KIT_TTL });
  // Without NOTIFY the writes are plain statements (no CTE): the kit's CAS and transactions hold there too.
  const quietKitTable = freshTable("kitquiet");
  testDriver({ name: "postgres (notify: false)", driver: () => postgres({ url, table: quietKitTable, notify: false }), ttl: KIT_TTL });

  afterAll(async () => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}"`);
    await client.end();
  });

  describe("postgres driver", () => {
    const open = (table = freshTable("t"), extra: Parameters<typeof postgres>[0] = {}): Storage =>
      createStorage({ driver: postgres({ url, table, ...extra }) });

    it("round-trips hostile keys, a 1 KB key and 10 MB values exactly; lists by range, not by pattern", async () => {
      const storage = open();
      const hostile = [`q'uote`, `d"ouble`, "per%cent", "under_score", "back\\slash", "star*", "quest\uff1f", "br[ack]et", "do.t", "ünï:cødé:🚀", "%:_"];
      for (const [index, key] of hostile.entries()) await storage.setItem(`h:${key}`, index);
      for (const [index, key] of hostile.entries()) expect(await storage.getItem(`h:${key}`)).toBe(index);
      // Below the core's key rules the driver takes any key as it is.
      await rawKeysRoundTrip(storage, [`a?b`, `c\\d`, `'; DROP TABLE x; --`, `$1`, `[*?]`]);
      await storage.setItem("h_x", "a LIKE 'h_%' would list this");
      await storage.setItem("h%x", "and this");
      await storage.setItem("%:_", "under a wildcard");
      expect((await storage.getKeys("h")).sort()).toEqual(hostile.map((key) => `h:${key}`.replaceAll("\\", ":")).sort());
      expect(await storage.getKeys("%")).toEqual(["%:_"]);

      const longKey = `long:${"k".repeat(1019)}`;
      const unicodeKey = `wide:${"é".repeat(1000)}`;
      await storage.setItem(longKey, "1 KB");
      await storage.setItem(unicodeKey, "2 KB of UTF-8");
      expect(await storage.getItem(longKey)).toBe("1 KB");
      expect(await storage.getItem(unicodeKey)).toBe("2 KB of UTF-8");
      expect(await codeOf(() => storage.setItem(`huge:${"🚀".repeat(MAX_KEY_BYTES / 4)}`, 1))).toBe("E_INVALID_KEY");

      const bytes = new Uint8Array(10 * 1024 * 1024).map((_, i) => (i * 7919) % 256);
      await storage.setItemRaw("big:raw", bytes);
      expect(Buffer.from((await storage.getItemRaw("big:raw"))!).equals(Buffer.from(bytes))).toBe(true);
      const text = "ü'\"\\%_".repeat(2 * 1024 * 1024);
      await storage.setItem("big:text", text);
      expect(await storage.getItem("big:text")).toBe(text);
      expect((await storage.getMeta("big:raw")).size).toBe(bytes.length);
      await storage.dispose();
    });

    it("purges expired rows from the table every purgeInterval", async () => {
      const table = freshTable("purge");
      const storage = open(table, { purgeInterval: 100 });
      await storage.setItem("gone", 1, { ttl: 50 });
      await storage.setItem("kept", 2);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await eventually(async () => expect((await client.query(`SELECT key FROM "${table}"`)).rows.map((row) => row.key)).toEqual(["kept"]));
      } finally {
        await client.end();
        await storage.dispose();
      }
    });

    it("keeps JSON readable and raw bytes exact in the table", async () => {
      const table = freshTable("layout");
      const storage = open(table);
      await storage.setItem("user:1", { name: "Ada", tags: ["x"] });
      await storage.setItemRaw("blob", new Uint8Array([0, 1, 254, 255]));
      await storage.setItem("temp", "soon", { ttl: 60_000 });
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const { rows } = await client.query(`SELECT key, value, value::jsonb AS json, raw, version, mtime, expires_at FROM "${table}" ORDER BY key`);
      await client.end();
      expect(rows.map((row) => row.key)).toEqual(["blob", "temp", "user:1"]);
      expect(rows[2].json).toEqual({ name: "Ada", tags: ["x"] });
      expect(rows[2].raw).toBeNull();
      expect([...rows[0].raw]).toEqual([0, 1, 254, 255]);
      expect(rows[0].value).toBeNull();
      expect(rows[1].expires_at).not.toBeNull();
      expect((await storage.getMeta("user:1")).etag).toBe(String(rows[2].version));
      await storage.dispose();
    });

    it("serves a prefix listing from the primary key index", async () => {
      const table = freshTable("plan");
      const storage = open(table);
      await storage.setItems(Array.from({ length: 5000 }, (_, i) => ({ key: `p${i % 50}:${i}`, value: i })));
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`ANALYZE "${table}"`);
      const { rows } = await client.query(
        `EXPLAIN SELECT key FROM "${table}" WHERE key >= $1 AND key < $2 AND (expires_at IS NULL OR expires_at > $3)`,
        ["p7:", "p7;", Date.now()],
      );
      await client.end();
      expect(rows.map((row) => row["QUERY PLAN"]).join("\n")).toMatch(new RegExp(`Index.*${table}_pkey`));
      expect((await storage.getKeys("p7")).length).toBe(100);
      const pages: number[] = [];
      for await (const batch of storage.iterateKeys("p7", { batchSize: 30 })) pages.push(batch.length);
      expect(pages).toEqual([30, 30, 30, 10]);
      await storage.dispose();
    });

    it("watch sees writes made through another storage object (LISTEN/NOTIFY)", async () => {
      const table = freshTable("watch");
      const watcher = open(table);
      const writer = open(table);
      const events: string[] = [];
      const unwatch = await watcher.watch((event, key) => events.push(`${event} ${key}`));
      await writer.setItem("w:a", 1);
      await writer.setItems([
        { key: "w:b", value: 2 },
        { key: "w:c", value: 3 },
      ]);
      // A batch arrives in notifications of many keys each: odd keys and more than one payload's worth.
      const many = Array.from({ length: 40 }, (_, i) => `m:${i}:9:é🚀:${"x".repeat(i * 50)}y`);
      await writer.setItems(many.map((key) => ({ key, value: 1 })));
      await eventually(() => expect(events.slice(3).sort()).toEqual(many.map((key) => `update ${key}`).sort()));
      await writer.clear("m");
      await eventually(() => expect(events.length).toBe(3 + 80));
      events.splice(3);
      await writer.transaction(async (tx) => tx.setItem("w:tx", 4));
      await writer.removeItem("w:a");
      await writer.clear("w");
      await eventually(() =>
        expect(events).toEqual(["update w:a", "update w:b", "update w:c", "update w:tx", "remove w:a", "remove w:b", "remove w:c", "remove w:tx"]),
      );
      await unwatch();
      await writer.setItem("w:after", 1);
      await sleep(300);
      expect(events).not.toContain("update w:after");
      await Promise.all([watcher.dispose(), writer.dispose()]);
    });

    it("notify: false sends no NOTIFY: not flagged watch, watchers see this process's writes only", async () => {
      const table = freshTable("quiet");
      const quiet = postgres({ url, table, notify: false });
      expect(quiet.flags?.watch).toBe(false);
      expect(quiet.watch).toBeUndefined();
      const storage = createStorage({ driver: quiet });
      const other = open(table);
      const listener = open(table);
      const events: string[] = [];
      const heard: string[] = [];
      await storage.watch((event, key) => events.push(`${event} ${key}`));
      await listener.watch((event, key) => heard.push(`${event} ${key}`));
      await storage.setItem("q:a", 1);
      await storage.setItems([{ key: "q:b", value: 2 }]);
      await other.setItem("q:other", 3);
      await storage.clear("q");
      await eventually(() => expect(heard).toContain("update q:other"));
      expect(events.slice(0, 2)).toEqual(["update q:a", "update q:b"]);
      expect(events.slice(2).sort()).toEqual(["remove q:a", "remove q:b", "remove q:other"]);
      expect(heard).toEqual(["update q:other"]);
      await Promise.all([storage.dispose(), other.dispose(), listener.dispose()]);
    });

    it("a transaction that read a key as absent fails if the key is created before it commits", async () => {
      const table = freshTable("tx");
      const storage = open(table);
      const other = open(table);
      await absentKeyHeldUntilCommit(storage, other);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM "${table}" WHERE expires_at = 0`);
      await client.end();
      expect(rows[0].n).toBe(0);
      await Promise.all([storage.dispose(), other.dispose()]);
    });

    it("several processes starting at once on a fresh table: schema made once, CAS increments lose nothing", async () => {
      await casAcrossProcesses("postgres", freshTable("procs"), (table) => open(table));
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

    it("dispose ends the pool and the LISTEN connection: the process exits by itself", async () => {
      await exitsAfterDispose(
        "postgres",
        { url, table: freshTable("exit") },
        `let seen;
const event = new Promise((resolve) => (seen = resolve));
await storage.watch((_event, key) => key === "child" && seen());
await storage.setItem("child", 1);
await event;`,
      );
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

    it("a server that refuses or never answers gives E_UNAVAILABLE within the timeout", async () => {
      const timeout = 1000;
      await unavailableWithinTimeout((port) => `postgres://postgres@127.0.0.1:${port}/test`, (at) => open(freshTable("down"), { url: at, timeout }), timeout);
    });

    it("refuses a bad table name and a table of another layout", async () => {
      expect(() => postgres({ url, table: `x"; DROP TABLE y; --` })).toThrow(/Invalid table name/);
      const table = freshTable("foreign");
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`CREATE TABLE "${table}" (id int primary key, body text)`);
      await client.end();
      const storage = open(table);
      expect(await codeOf(() => storage.getItem("a"))).toBe("E_INVALID_OPTION");
      await storage.dispose();
    });

    it.skipIf(!canRunCluster)("survives a server stop: E_UNAVAILABLE during the outage, back after restart, no acknowledged write lost", { timeout: 120_000 }, async () => {
      const cluster = await privateCluster();
      const timeout = 2000;
      const storage = createStorage({ driver: postgres({ url: cluster.url, table: "fault", timeout }) });
      const events: string[] = [];
      try {
        await storage.watch((event, key) => events.push(`${event} ${key}`));
        const acknowledged: number[] = [];
        const failures = new Set<string>();
        let writing = true;
        const writer = (async () => {
          for (let i = 0; writing; i++) {
            try {
              await storage.setItem(`key:${i}`, { i });
              acknowledged.push(i);
            } catch (error) {
              failures.add(isStorageError(error) ? error.code : String(error));
              await sleep(50);
            }
          }
        })();
        await eventually(() => expect(acknowledged.length).toBeGreaterThan(20));
        await cluster.stop();
        for (const action of [() => storage.getItem("key:0"), () => storage.setItem("during", 1), () => storage.getKeys()]) {
          const started = Date.now();
          expect(await codeOf(action)).toBe("E_UNAVAILABLE");
          expect(Date.now() - started).toBeLessThan(timeout + 1000);
        }
        const beforeRestart = acknowledged.length;
        await cluster.start();
        await eventually(() => expect(acknowledged.length).toBeGreaterThan(beforeRestart + 20));
        writing = false;
        await writer;
        expect([...failures]).toEqual(["E_UNAVAILABLE"]);
        const values = await storage.getItems(acknowledged.map((i) => `key:${i}`));
        expect(values.filter((entry) => entry.value === null)).toEqual([]);
        // The watch reconnects too.
        await eventually(async () => {
          await storage.setItem("after-restart", Date.now());
          expect(events).toContain("update after-restart");
        });
      } finally {
        await storage.dispose();
        await cluster.remove();
      }
    });
  });

  describe("postgres key limits and batched writes", () => {
    it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
      checkKeyLimit(createStorage({ driver: postgres({ url, table: freshTable("limit") }) })));

    it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: postgres({ url, table: freshTable("alone") }) })));
  });
}
