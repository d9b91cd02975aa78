import mysql2 from "mysql2/promise";
import { afterAll, describe, expect, it } from "vitest";
import { createStorage, type Storage } from "../../src/index.js";
import mysql, { MAX_KEY_BYTES } from "../../src/drivers/mysql.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { codeOf, rawKeysRoundTrip } from "../helpers/checks.js";
import { serviceUp } from "../helpers/services.js";
import { absentKeyHeldUntilCommit, casAcrossProcesses, exitsAfterDispose, runTables, unavailableWithinTimeout } from "../helpers/tableDrivers.js";
import { KIT_TTL } from "../helpers/clock.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

const url = process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test";
// Tables unique to this run of this file, dropped at the end.
const { tables, fresh: freshTable } = runTables();

async function sql(statement: string, values: unknown[] = []) {
  const connection = await mysql2.createConnection({ uri: url });
  try {
    const [rows] = await connection.query(statement, values);
    return rows as Record<string, unknown>[];
  } finally {
    await connection.end();
  }
}

describe("mysql options", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(mysql, { url, table: "t", connectionLimit: 2 });
  });
});

if (await serviceUp("MariaDB/MySQL", url)) {
  const kitTable = freshTable("kit");
  testDriver({ name: "mysql", driver: () => mysql({ url, table: kitTable }), ttl: KIT_TTL });
  // With the watch option the kit's watch tests run against the polled change log.
  const watchKitTable = freshTable("kitwatch");
  testDriver({ name: "mysql (watch)", driver: () => mysql({ url, table: watchKitTable, watch: true, pollInterval: 20 }), ttl: KIT_TTL });

  afterAll(async () => {
    for (const table of tables) await sql(`DROP TABLE IF EXISTS \`${table}\`, \`${table}_changes\``);
  });

  describe("mysql driver", () => {
    const open = (table = freshTable("t"), extra: Parameters<typeof mysql>[0] = {}): Storage => createStorage({ driver: mysql({ url, table, ...extra }) });

    it("purges expired rows from the table every purgeInterval", async () => {
      const table = freshTable("purge");
      const storage = open(table, { purgeInterval: 100 });
      try {
        await storage.setItem("gone", 1, { ttl: 50 });
        await storage.setItem("kept", 2);
        await eventually(async () => expect(((await sql(`SELECT CONVERT(\`key\` USING utf8mb4) AS k FROM \`${table}\``)) as { k: string }[]).map((row) => row.k)).toEqual(["kept"]));
      } finally {
        await storage.dispose();
      }
    });

    it("round-trips hostile keys, long and 4-byte unicode keys and 10 MB values exactly; lists by range", async () => {
      const storage = open();
      const hostile = [`q'uote`, `d"ouble`, "per%cent", "under_score", "star*", "br[ack]et", "do.t", "ünï:cødé:🚀", "`tick`"];
      for (const [index, key] of hostile.entries()) await storage.setItem(`h:${key}`, index);
      for (const [index, key] of hostile.entries()) expect(await storage.getItem(`h:${key}`)).toBe(index);
      await storage.setItem("h_x", "a LIKE 'h_%' would list this");
      await storage.setItem("%:_", "under a wildcard");
      expect((await storage.getKeys("h")).sort()).toEqual(hostile.map((key) => `h:${key}`).sort());
      expect(await storage.getKeys("%")).toEqual(["%:_"]);
      // Below the core's key rules the driver takes any key as it is.
      await rawKeysRoundTrip(storage, [`a?b`, `c\\d`, `'; DROP TABLE x; --`, `[*?]`]);

      // 1 KB of characters, 4 bytes each, does not fit InnoDB's 3072-byte key: refused clearly; the declared
      // limit fits (one byte short of it, for the meta sidecar).
      const limit = storage.getMount().driver.keyLimits!.bytes;
      const widest = `w:${"🚀".repeat(Math.floor((limit - 2) / 4))}${"a".repeat((limit - 2) % 4)}`;
      expect(Buffer.byteLength(widest)).toBe(MAX_KEY_BYTES - 1);
      await storage.setItem(widest, "fits");
      expect(await storage.getItem(widest)).toBe("fits");
      expect(await storage.getKeys("w")).toEqual([widest]);
      expect(await codeOf(() => storage.setItem(`w:${"🚀".repeat(1024)}`, 1))).toBe("E_INVALID_KEY");
      await storage.setItem(`k:${"k".repeat(1022)}`, "1 KB");
      expect(await storage.getItem(`k:${"k".repeat(1022)}`)).toBe("1 KB");

      const bytes = new Uint8Array(10 * 1024 * 1024).map((_, i) => (i * 7919) % 256);
      await storage.setItemRaw("big:raw", bytes);
      expect(Buffer.from((await storage.getItemRaw("big:raw"))!).equals(Buffer.from(bytes))).toBe(true);
      const text = "ü'\"\\%_\u0000".repeat(1024 * 1024);
      await storage.setItem("big:text", text);
      expect(await storage.getItem("big:text")).toBe(text);
      expect((await storage.getMeta("big:raw")).size).toBe(bytes.length);
      await storage.dispose();
    });

    it("setItems carries hostile keys and values, per-item expiry, and lone surrogates as setItem does", async () => {
      const storage = open();
      const hostile: Record<string, string> = { "b:q'uote": `"\\'`, "b:nul": "a\u0000b", "b:ünï:🚀": "🚀ü", "b:ctl": "\u0001\u001f\n\t", "b:lone": "x\ud800y" };
      await storage.setItems(Object.entries(hostile).map(([key, value]) => ({ key, value })));
      for (const [key, value] of Object.entries(hostile)) expect(await storage.getItem(key)).toBe(value);
      await storage.setItems([
        { key: "b:ttl", value: 1, options: { ttl: 60_000 } },
        { key: "b:none", value: 2 },
      ]);
      expect((await storage.getMeta("b:ttl")).ttl).toBeGreaterThan(0);
      expect((await storage.getMeta("b:none")).ttl).toBeUndefined();
      // Below the core a lone surrogate reaches the driver as it is: a batch stores U+FFFD for it, as a single write does.
      const driver = storage.getMount().driver;
      await driver.setItems!([{ key: "lone:\ud800", value: "v\udc00" }], {});
      await driver.setItem!("single:\ud800", "v\udc00", {});
      expect(await driver.getItem("lone:\ufffd", {})).toBe("v\ufffd");
      expect(await driver.getItem("single:\ufffd", {})).toBe("v\ufffd");
      await storage.dispose();
    });

    it("refuses a value above max_allowed_packet with E_TOO_LARGE; splits a large batch into statements that fit", async () => {
      const storage = open();
      const [{ size }] = (await sql("SELECT @@max_allowed_packet AS size")) as [{ size: number }];
      await storage.getItem("warm-up");
      expect(await codeOf(() => storage.setItemRaw("too:big", new Uint8Array(Number(size) + 1)))).toBe("E_TOO_LARGE");
      expect(await storage.hasItem("too:big")).toBe(false);
      // Together far above one packet, each well below it.
      const part = "x".repeat(Math.floor(Number(size) / 5));
      const items = Array.from({ length: 8 }, (_, i) => ({ key: `batch:${i}`, value: `${i}${part}` }));
      await storage.setItems(items);
      expect((await storage.getItems(items.map((item) => item.key))).map((entry) => entry.value)).toEqual(items.map((item) => item.value));
      await storage.dispose();
    });

    it("keeps JSON readable and raw bytes exact in the table, and lists from the primary key", async () => {
      const table = freshTable("layout");
      const storage = open(table);
      await storage.setItem("user:1", { name: "Ada", tags: ["x"] });
      await storage.setItemRaw("blob", new Uint8Array([0, 1, 254, 255]));
      await storage.setItem("temp", "soon", { ttl: 60_000 });
      const rows = await sql(`SELECT CAST(\`key\` AS CHAR) AS k, value, JSON_VALUE(value, '$.name') AS name, raw, version, expires_at FROM \`${table}\` ORDER BY \`key\``);
      expect(rows.map((row) => row.k)).toEqual(["blob", "temp", "user:1"]);
      expect(rows[2]!.name).toBe("Ada");
      expect(JSON.parse(rows[2]!.value as string)).toEqual({ name: "Ada", tags: ["x"] });
      expect([...(rows[0]!.raw as Buffer)]).toEqual([0, 1, 254, 255]);
      expect(rows[1]!.expires_at).not.toBeNull();
      expect((await storage.getMeta("user:1")).etag).toBe(String(rows[2]!.version));
      const plan = await sql(`EXPLAIN SELECT \`key\` FROM \`${table}\` WHERE \`key\` >= ? AND \`key\` < ? AND (expires_at IS NULL OR expires_at > ?)`, [
        Buffer.from("user:"),
        Buffer.from("user;"),
        Date.now(),
      ]);
      expect(plan[0]!.key).toBe("PRIMARY");
      expect(plan[0]!.type).toBe("range");
      await storage.dispose();
    });

    it("every write moves the etag by one, the same value again too: setItem, setItemRaw, setItems, ifMatch, a transaction", async () => {
      const table = freshTable("version");
      const storage = open(table);
      const stored = async () => Number((await sql(`SELECT version FROM \`${table}\` WHERE \`key\` = 'same'`))[0]!.version);
      const etags: string[] = [];
      const write = async (step: () => Promise<unknown>) => {
        await step();
        const { etag } = await storage.getMeta("same");
        expect(etag).toBe(String(await stored()));
        etags.push(etag as string);
      };
      await write(() => storage.setItem("same", { v: 1 }));
      await write(() => storage.setItem("same", { v: 1 }));
      await write(() => storage.setItems([{ key: "same", value: { v: 1 } }]));
      await write(() => storage.setItem("same", { v: 1 }, { ifMatch: etags.at(-1) }));
      await write(() => storage.transaction(async (tx) => tx.setItem("same", { v: 1 })));
      await write(() => storage.setItemRaw("same", new Uint8Array([1])));
      await write(() => storage.setItemRaw("same", new Uint8Array([1])));
      expect(etags.map(Number)).toEqual(etags.map((_, i) => Number(etags[0]) + i));
      // A guard read before a rewrite of the same value no longer holds.
      expect(await codeOf(() => storage.setItemRaw("same", new Uint8Array([1]), { ifMatch: etags[0] }))).toBe("E_CONFLICT");
      expect(await codeOf(() => storage.removeItem("same", { ifMatch: etags.at(-2) }))).toBe("E_CONFLICT");
      expect(await stored()).toBe(Number(etags.at(-1)));
      await storage.dispose();
    });

    it("lists a prefix in pages", async () => {
      const storage = open();
      await storage.setItems(Array.from({ length: 2500 }, (_, i) => ({ key: `${i % 2 ? "odd" : "even"}:${i}`, value: i })));
      const pages: number[] = [];
      for await (const batch of storage.iterateKeys("odd", { batchSize: 500 })) pages.push(batch.length);
      expect(pages).toEqual([500, 500, 250]);
      expect((await storage.getKeys("even")).length).toBe(1250);
      await storage.dispose();
    });

    it("a transaction that read a key as absent fails if the key is created before it commits", async () => {
      const table = freshTable("tx");
      const storage = open(table);
      const other = open(table);
      await absentKeyHeldUntilCommit(storage, other);
      await Promise.all([storage.dispose(), other.dispose()]);
    });

    it("several processes starting at once on a fresh table: schema made once, CAS increments lose nothing", async () => {
      await casAcrossProcesses("mysql", freshTable("procs"), (table) => open(table));
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

    it("watch option: writes by another storage object and by any client reach watchers, removals and purged expiries too", async () => {
      const table = freshTable("watch");
      const watcher = open(table, { watch: true, pollInterval: 50, purgeInterval: 100 });
      const writer = open(table);
      expect(watcher.getMount().driver.flags?.watch).toBe(true);
      expect(writer.getMount().driver.flags?.watch).toBeFalsy();
      try {
        const events: string[] = [];
        const unwatch = await watcher.watch((event, key) => events.push(`${event} ${key}`));
        await writer.setItem("w:a", 1);
        await writer.setItems([
          { key: "w:b", value: 2 },
          { key: "w:c", value: 3 },
        ]);
        await writer.removeItem("w:a");
        await sql(`INSERT INTO \`${table}\` (\`key\`, value, version, mtime) VALUES ('by:sql', '"x"', 1, 0)`);
        await writer.clear("w");
        await writer.setItem("short", 1, { ttl: 50 });
        await eventually(() =>
          expect(events).toEqual(["update w:a", "update w:b", "update w:c", "remove w:a", "update by:sql", "remove w:b", "remove w:c", "update short", "remove short"]),
        );
        await unwatch();
        await writer.setItem("after", 1);
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(events).not.toContain("update after");
      } finally {
        await Promise.all([watcher.dispose(), writer.dispose()]);
      }
    });

    it("watch option: a change logged after a rolled-back one still arrives (the cursor passes the unused id)", async () => {
      const table = freshTable("gap");
      const watcher = open(table, { watch: true, pollInterval: 50 });
      const connection = await mysql2.createConnection({ uri: url });
      try {
        const events: string[] = [];
        await watcher.watch((event, key) => events.push(`${event} ${key}`));
        await watcher.setItem("first", 1);
        await eventually(() => expect(events).toEqual(["update first"]));
        await connection.beginTransaction();
        await connection.query(`INSERT INTO \`${table}\` (\`key\`, value, version, mtime) VALUES ('never', '1', 1, 0)`);
        await connection.rollback();
        await watcher.setItem("second", 2);
        await watcher.setItem("third", 3);
        await eventually(() => expect(events).toEqual(["update first", "update second", "update third"]));
      } finally {
        await connection.end();
        await watcher.dispose();
      }
    });

    it("dispose ends the pool: the process exits by itself", async () => {
      await exitsAfterDispose(
        "mysql",
        { url, table: freshTable("exit") },
        `await storage.watch(() => undefined);
await storage.setItem("child", 1);
await storage.transaction(async (tx) => tx.setItem("child", 2));`,
      );
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s

    it("a server that refuses or never answers gives E_UNAVAILABLE within the timeout", async () => {
      const timeout = 1000;
      await unavailableWithinTimeout((port) => `mysql://root@127.0.0.1:${port}/test`, (at) => open(freshTable("down"), { url: at, timeout }), timeout);
    });

    it("a statement that waits past the timeout (its row locked by another session) fails with E_UNAVAILABLE", async () => {
      const table = freshTable("locked");
      const storage = open(table, { timeout: 500 });
      await storage.setItem("held", 1);
      const holder = await mysql2.createConnection({ uri: url });
      try {
        await holder.query("START TRANSACTION");
        await holder.query(`SELECT * FROM \`${table}\` WHERE \`key\` = ? FOR UPDATE`, [Buffer.from("held")]);
        const started = Date.now();
        expect(await codeOf(() => storage.setItem("held", 2))).toBe("E_UNAVAILABLE");
        expect(Date.now() - started).toBeLessThan(500 + 2000);
        expect(await storage.getItem("other")).toBeNull();
      } finally {
        await holder.query("ROLLBACK");
        await holder.end();
      }
      await storage.dispose();
    });

    it("refuses a bad table name and a table of another layout", async () => {
      expect(() => mysql({ url, table: "x`; DROP TABLE y; --" })).toThrow(/Invalid table name/);
      const table = freshTable("foreign");
      await sql(`CREATE TABLE \`${table}\` (id int primary key, body text)`);
      const storage = open(table);
      expect(await codeOf(() => storage.getItem("a"))).toBe("E_INVALID_OPTION");
      await storage.dispose();
    });
  });

  describe("mysql key limits and batched writes", () => {
    it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
      checkKeyLimit(createStorage({ driver: mysql({ url, table: freshTable("limit") }) })));

    it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: mysql({ url, table: freshTable("alone") }) })));
  });
}
