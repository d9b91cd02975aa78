import { randomUUID } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { createReceipts, MAX_RECEIPT_BYTES, type Receipt } from "../../src/coordination/index.js";
import gitNotes from "../../src/drivers/git-notes.js";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import postgres from "../../src/drivers/postgres.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { createStorage, defineDriver, type Storage } from "../../src/index.js";
import { git as gitCli, gitFails } from "../git/gitCli.js";
import { codeOf } from "../helpers/checks.js";
import { manualClock } from "../helpers/clock.js";
import { serviceUp } from "../helpers/services.js";
import { runTables } from "../helpers/tableDrivers.js";
import { tempDir } from "../helpers/tempDir.js";

// This machine's disk takes ~1 ms per file created: repositories go to tmpfs where there is one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const START = Date.UTC(2026, 0, 10, 12, 30);
const pgUrl = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
const RUN = `stowage-test:${randomUUID()}`;
const { tables, fresh } = runTables();

let bomb: Buffer | undefined;
/** gzip of more bytes than a receipt may have (about 20 KiB compressed), made once. */
function gzipBomb(): Buffer {
  bomb ??= gzipSync(Buffer.alloc(MAX_RECEIPT_BYTES + 1024, 0x20), { level: 9 });
  return bomb;
}

function receipt(id: string, timestamp: number, extra: Partial<Receipt> = {}): Receipt {
  return { id, command: "build", timestamp, duration: 12.5, exitCode: 0, output: `ran ${id}\n`, metadata: { host: "ci", tags: ["a"] }, ...extra };
}

interface Backend {
  name: string;
  make: () => Storage;
}

const backends: Backend[] = [
  { name: "memory", make: () => createStorage({ driver: memory() }) },
  { name: "sqlite", make: () => createStorage({ driver: sqlite({ path: join(tempDir("receipts-sqlite"), "db.sqlite") }) }) },
  { name: "git-notes", make: () => createStorage({ driver: gitNotes({ dir: tempDir("receipts-notes") }) }) },
  { name: "git", make: () => createStorage({ driver: git({ dir: tempDir("receipts-git") }) }) },
];
let pgTables = 0;
if (await serviceUp("PostgreSQL", pgUrl)) backends.push({ name: "postgres", make: () => createStorage({ driver: postgres({ url: pgUrl, table: fresh(`receipts${pgTables++}`) }) }) });
let redisBases = 0;
if (await serviceUp("Redis", redisUrl)) backends.push({ name: "redis", make: () => createStorage({ driver: redis({ url: redisUrl, base: `${RUN}:${redisBases++}`, watch: "off" }) }) });

const opened: Storage[] = [];
const open = (backend: Backend): Storage => {
  const storage = backend.make();
  opened.push(storage);
  return storage;
};

afterAll(async () => {
  if (redisBases > 0) {
    const cleanup = createStorage({ driver: redis({ url: redisUrl, base: RUN, watch: "off" }) });
    await cleanup.clear();
    await cleanup.dispose();
  }
  for (const storage of opened.splice(0)) await storage.dispose();
  if (tables.length > 0) {
    const client = new pg.Client({ connectionString: pgUrl });
    await client.connect();
    for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}"`);
    await client.end();
  }
});

describe.each(backends)("receipts on $name", (backend) => {
  it("stores, gets, lists recent ones newest first, finds by any field, removes", async () => {
    const storage = open(backend);
    const receipts = createReceipts(storage);
    // Spread over three hour buckets, stored out of order.
    const all = [
      receipt("r1", START),
      receipt("r2", START + HOUR, { command: "test", exitCode: 1, error: "failed" }),
      receipt("r3", START + 2 * HOUR + 5, { metadata: { host: "laptop", tags: ["a"] } }),
      receipt("r4", START + HOUR + 10, { command: "test" }),
      receipt("r5", START + 2 * HOUR + 5),
    ];
    for (const one of all) await receipts.store(one);
    expect(await receipts.get("r2")).toEqual(all[1]);
    expect(await receipts.get("nope")).toBeNull();

    expect((await receipts.recent()).map((one) => one.id)).toEqual(["r3", "r5", "r4", "r2", "r1"]);
    expect((await receipts.recent(2)).map((one) => one.id)).toEqual(["r3", "r5"]);
    expect((await receipts.find({ command: "test" })).map((one) => one.id)).toEqual(["r4", "r2"]);
    expect((await receipts.find({ exitCode: 1 })).map((one) => one.id)).toEqual(["r2"]);
    expect((await receipts.find({ error: "failed" })).map((one) => one.id)).toEqual(["r2"]);
    expect((await receipts.find({ metadata: { host: "laptop" } })).map((one) => one.id)).toEqual(["r3"]);
    expect((await receipts.find({ metadata: { tags: ["a"] } })).length).toBe(5);
    expect((await receipts.find({ command: "build" }, { since: START + HOUR, until: START + 2 * HOUR + 5 })).map((one) => one.id)).toEqual(["r3", "r5"]);
    expect((await receipts.find({}, { since: START + 1, until: START + 2 * HOUR, limit: 1 })).map((one) => one.id)).toEqual(["r4"]);
    expect((await receipts.find({ id: "r1", timestamp: START })).map((one) => one.id)).toEqual(["r1"]);

    expect(await receipts.remove("r4")).toBe(true);
    expect(await receipts.remove("r4")).toBe(false);
    expect(await receipts.get("r4")).toBeNull();
    expect((await receipts.find({ command: "test" })).map((one) => one.id)).toEqual(["r2"]);
  });

  it("cleanup removes receipts older than maxAge by the clock, with their index, and says how many", async () => {
    const storage = open(backend);
    const clock = manualClock(START);
    const receipts = createReceipts(storage, { clock, prefix: "jobs:receipts" });
    for (let day = 0; day < 9; day++) await receipts.store(receipt(`d${day}`, START - day * DAY));
    clock.advance(30 * 60_000);
    expect(await receipts.cleanup()).toBe(2); // d8 and d7 lie past 7 days; d7 is 7 days and 30 min old
    expect((await receipts.recent(100)).map((one) => one.id)).toEqual(["d0", "d1", "d2", "d3", "d4", "d5", "d6"]);
    expect(await receipts.cleanup(DAY + 60 * 60_000)).toBe(5);
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["d0", "d1"]);
    // Index, markers and receipts of the removed ones are gone: only two receipts' keys are left.
    expect((await storage.getKeys("jobs:receipts")).length).toBe(2 * 2 + 2);
    expect(await receipts.cleanup()).toBe(0);
  });

  it("reads compressed and uncompressed receipts whatever its own setting", async () => {
    const storage = open(backend);
    const packed = createReceipts(storage);
    const plain = createReceipts(storage, { compression: false });
    const big = receipt("big", START, { output: "line of output\n".repeat(200) });
    const tiny = receipt("tiny", START + 1, { output: "", metadata: {} });
    await packed.store(big);
    await packed.store(tiny);
    await plain.store(receipt("plain", START + 2, { output: "x".repeat(3000) }));
    const bytes = (id: string) => storage.getItemRaw(`receipts:r:${id}`).then((value) => Buffer.from(value!));
    expect([...(await bytes("big")).subarray(0, 2)]).toEqual([0x1f, 0x8b]);
    expect((await bytes("big")).length).toBeLessThan(3000 / 4);
    // gzip would be larger than this little JSON: stored as JSON.
    expect((await bytes("tiny")).toString("utf8")).toBe(JSON.stringify(tiny));
    expect((await bytes("plain")).toString("utf8").startsWith("{")).toBe(true);
    for (const reader of [packed, plain]) {
      expect(await reader.get("big")).toEqual(big);
      expect((await reader.recent()).map((one) => one.id)).toEqual(["plain", "tiny", "big"]);
    }
  });

  it("a failed store leaves neither receipt nor index entry; find by command reads the index, not the receipts", async () => {
    const storage = open(backend);
    const receipts = createReceipts(storage);
    await receipts.store(receipt("same", START));
    const before = (await storage.getKeys("receipts")).sort();
    // Same id, another hour: the receipt's create-only write fails at commit, and the index entry with it.
    expect(await codeOf(() => receipts.store(receipt("same", START + 5 * HOUR, { command: "other" })))).toBe("E_CONFLICT");
    expect((await storage.getKeys("receipts")).sort()).toEqual(before);
    expect(await receipts.find({ command: "other" })).toEqual([]);
    expect((await receipts.get("same"))?.timestamp).toBe(START);

    // A receipt whose bytes are damaged: finding another command never reads it; reading it is E_CORRUPT;
    // recent skips it (one bad receipt does not fail every query) and check reports it.
    await receipts.store(receipt("deploy", START + HOUR, { command: "deploy" }));
    await storage.setItemRaw("receipts:r:same", new Uint8Array([0x1f, 0x8b, 1, 2, 3]));
    expect((await receipts.find({ command: "deploy" })).map((one) => one.id)).toEqual(["deploy"]);
    expect(await codeOf(() => receipts.get("same"))).toBe("E_CORRUPT");
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["deploy"]);
    expect((await receipts.check()).corrupt).toEqual(["receipts:r:same"]);
  });

  it("an index entry without its receipt is skipped by recent/find, reported by check, removed by cleanup with empty hours' markers", async () => {
    const storage = open(backend);
    const receipts = createReceipts(storage, { clock: manualClock(START + HOUR) });
    for (const [id, at] of [["r1", START], ["r2", START + HOUR], ["r3", START + 2 * HOUR], ["r4", START + 2 * HOUR + 1]] as const) await receipts.store(receipt(id, at));
    // A foreign writer (or a sync deciding entry and receipt differently) leaves r2's and r4's entries without receipt.
    await storage.removeItem("receipts:r:r2");
    await storage.removeItem("receipts:r:r4");
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["r3", "r1"]);
    expect((await receipts.recent(2)).map((one) => one.id)).toEqual(["r3", "r1"]);
    expect((await receipts.find({ command: "build" }, { limit: 1 })).map((one) => one.id)).toEqual(["r3"]);
    expect((await receipts.find({ metadata: { host: "ci" } })).map((one) => one.id)).toEqual(["r3", "r1"]);
    const hour = (at: number) => new Date(at).toISOString().slice(0, 13).replace(/[-T]/g, "");
    // An hour marked without entries, and r1's hour with its marker gone (recent misses r1 until cleanup puts it back).
    await storage.setItem("receipts:h:2026011000", 1);
    await storage.removeItem(`receipts:h:${hour(START)}`);
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["r3"]);
    const report = await receipts.check();
    expect(report.entries).toBe(4);
    expect(report.dangling.sort()).toEqual([(await storage.getKeys(`receipts:t:${hour(START + HOUR)}`))[0], (await storage.getKeys(`receipts:t:${hour(START + 2 * HOUR)}`)).find((key) => key.endsWith("-r4"))].sort());
    expect(report.emptyHours).toEqual(["2026011000"]);
    expect(report.unmarkedHours).toEqual([hour(START)]);

    expect(await receipts.cleanup()).toBe(0);
    expect(await receipts.check()).toEqual({ entries: 2, dangling: [], emptyHours: [], unmarkedHours: [], corrupt: [] });
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["r3", "r1"]);
    expect((await storage.getKeys("receipts")).length).toBe(2 * 3);
  });

  it("a receipt stored into an old hour while cleanup runs keeps its marker (or goes with the hour): index and receipts agree", async () => {
    const storage = open(backend);
    const clock = manualClock(START);
    const receipts = createReceipts(storage, { clock });
    const old = START - 10 * DAY;
    const hour = new Date(old).toISOString().slice(0, 13).replace(/[-T]/g, "");
    await receipts.store(receipt("old1", old));
    // Stores land right after cleanup has listed the index and right after it has listed the old hour.
    const late: Record<string, string> = { "receipts:t": "late1", [`receipts:t:${hour}`]: "late2" };
    const getKeys = storage.getKeys.bind(storage);
    storage.getKeys = (async (base?: string, ...rest: unknown[]) => {
      const keys = await getKeys(base as string, ...(rest as []));
      const id = late[base ?? ""];
      if (id !== undefined) {
        delete late[base as string];
        await receipts.store(receipt(id, old + 1000));
      }
      return keys;
    }) as Storage["getKeys"];
    await receipts.cleanup();
    storage.getKeys = getKeys;
    const listed = new Set((await receipts.recent()).map((one) => one.id));
    for (const id of ["old1", "late1", "late2"]) expect(listed.has(id), id).toBe((await receipts.get(id)) !== null);
    expect(late).toEqual({});
    expect(await receipts.check()).toMatchObject({ dangling: [], unmarkedHours: [] });
    expect(await receipts.get("old1")).toBeNull();
  });

  it("a gzip bomb stored as a receipt is E_TOO_LARGE, inflated no further; store refuses a receipt over the limit; recent skips it, check reports it", async () => {
    const storage = open(backend);
    const receipts = createReceipts(storage, { clock: manualClock(START + HOUR) });
    await receipts.store(receipt("good", START));
    await receipts.store(receipt("bomb", START + 1));
    // A foreign writer (or a notes sync) puts ~20 KiB that inflate past the limit where the receipt was.
    await storage.setItemRaw("receipts:r:bomb", gzipBomb());
    expect(await codeOf(() => receipts.get("bomb"))).toBe("E_TOO_LARGE");
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["good"]);
    expect((await receipts.find({ command: "build" })).map((one) => one.id)).toEqual(["good"]);
    expect((await receipts.check()).corrupt).toEqual(["receipts:r:bomb"]);

    const huge = receipt("huge", START + 2, { output: "x".repeat(MAX_RECEIPT_BYTES) });
    expect(await codeOf(() => receipts.store(huge))).toBe("E_TOO_LARGE");
    expect(await codeOf(() => receipts.storeMany([huge]))).toBe("E_TOO_LARGE");
    expect(await receipts.get("huge")).toBeNull();

    // remove takes an unreadable receipt away with its entry, which it finds by listing the index.
    expect(await receipts.remove("bomb")).toBe(true);
    expect(await receipts.check()).toEqual({ entries: 1, dangling: [], emptyHours: [], unmarkedHours: [], corrupt: [] });
  });

  it("a stored receipt claiming another id or timestamp than its key is corrupt: remove touches only its own key's entry, find does not trust it", async () => {
    const storage = open(backend);
    const receipts = createReceipts(storage, { compression: false, clock: manualClock(START + 3 * HOUR) });
    for (const one of [receipt("x", START), receipt("y", START + HOUR), receipt("z", START + 2 * HOUR)]) await receipts.store(one);
    // Hand-written hostile values: at r:x a receipt claiming to be y; at r:z one claiming five hours later than its entry.
    await storage.setItemRaw("receipts:r:x", Buffer.from(JSON.stringify(receipt("y", START + HOUR))));
    await storage.setItemRaw("receipts:r:z", Buffer.from(JSON.stringify(receipt("z", START + 7 * HOUR))));
    expect(await codeOf(() => receipts.get("x"))).toBe("E_CORRUPT");
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["y"]);
    // z's entry lies in this range, its receipt does not: not returned.
    expect(await receipts.find({}, { since: START + 2 * HOUR, until: START + 3 * HOUR })).toEqual([]);
    const zEntry = (await storage.getKeys("receipts:t")).find((key) => key.endsWith("-z"));
    expect((await receipts.check()).corrupt).toEqual(["receipts:r:x", zEntry].sort());

    // remove(x) removes x's receipt, never y's entry.
    expect(await receipts.remove("x")).toBe(true);
    expect((await receipts.find({ id: "y" })).map((one) => one.id)).toEqual(["y"]);
    expect(await receipts.get("y")).toEqual(receipt("y", START + HOUR));
    // x's own entry went with it (found by listing the index), and z's, which its receipt misnames, goes with z.
    expect(await receipts.check()).toMatchObject({ entries: 2, dangling: [], corrupt: [zEntry] });
    expect(await receipts.remove("z")).toBe(true);
    // remove leaves hours' markers (another receipt may share the hour); cleanup takes the empty ones.
    expect(await receipts.check()).toMatchObject({ entries: 1, dangling: [], emptyHours: [expect.any(String), expect.any(String)], corrupt: [] });
    await receipts.cleanup();
    expect(await receipts.check()).toEqual({ entries: 1, dangling: [], emptyHours: [], unmarkedHours: [], corrupt: [] });
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["y"]);
  });

  it("storeMany writes receipts in one transaction: all or none", async () => {
    const storage = open(backend);
    const receipts = createReceipts(storage);
    const batch = Array.from({ length: 30 }, (_, i) => receipt(`m${String(i).padStart(2, "0")}`, START + i * 10 * 60_000));
    await receipts.storeMany(batch);
    expect((await receipts.recent(3)).map((one) => one.id)).toEqual(["m29", "m28", "m27"]);
    const keys = (await storage.getKeys("receipts")).sort();
    // m05 exists: the whole batch fails, and m90 (in the batch before it) is not written either.
    expect(await codeOf(() => receipts.storeMany([receipt("m90", START), receipt("m05", START + DAY)]))).toBe("E_CONFLICT");
    expect(await codeOf(() => receipts.storeMany([receipt("m91", START), receipt("m91", START + 1)]))).toBe("E_INVALID_VALUE");
    expect((await storage.getKeys("receipts")).sort()).toEqual(keys);
    await receipts.storeMany([]);
  });

  it("refuses hostile ids, malformed receipts, unknown fields and options", async () => {
    const receipts = createReceipts(open(backend));
    for (const id of ["", "a:b", "a/b", "..", ".hidden", "-x", "a?b", "a b", "é", "x".repeat(201), 42]) {
      expect(await codeOf(() => receipts.store(receipt(id as string, START))), JSON.stringify(id)).toBe("E_INVALID_VALUE");
      expect(await codeOf(() => receipts.get(id as string)), JSON.stringify(id)).toBe("E_INVALID_VALUE");
    }
    const bad: unknown[] = [
      null,
      [],
      { ...receipt("a", START), extra: 1 },
      { ...receipt("a", START), timestamp: 1.5 },
      { ...receipt("a", START), timestamp: -1 },
      { ...receipt("a", START), timestamp: 1e16 },
      { ...receipt("a", START), duration: Number.NaN },
      { ...receipt("a", START), exitCode: "0" },
      { ...receipt("a", START), command: "" },
      { ...receipt("a", START), error: 5 },
      { ...receipt("a", START), metadata: { when: new Date() } },
      { ...receipt("a", START), metadata: { gone: undefined } },
      { ...receipt("a", START), metadata: [] },
      { id: "a", command: "x", timestamp: START },
    ];
    for (const value of bad) expect(await codeOf(() => receipts.store(value as Receipt)), JSON.stringify(value)).toBe("E_INVALID_VALUE");
    expect(await codeOf(() => receipts.store(receipt("a", START), { commit: "HEAD", sign: true } as never))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => receipts.find({ colour: "red" } as never))).toBe("E_INVALID_VALUE");
    expect(await codeOf(() => receipts.find({}, { since: "yesterday" } as never))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => receipts.find({}, { after: 1 } as never))).toBe("E_INVALID_OPTION");
    for (const limit of [0, -1, 1.5, Number.NaN]) expect(await codeOf(() => receipts.recent(limit))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => receipts.cleanup(-1))).toBe("E_INVALID_OPTION");
    expect(await receipts.recent()).toEqual([]);
  });
});

describe("receipts options", () => {
  it("refuses unknown options, an empty prefix, a bad compression or clock", () => {
    const storage = createStorage({ driver: memory() });
    expect(() => createReceipts(storage, { ttl: 5 } as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    expect(() => createReceipts(storage, { prefix: ":" })).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    expect(() => createReceipts(storage, { prefix: 5 } as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    expect(() => createReceipts(storage, { compression: "yes" } as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    expect(() => createReceipts(storage, { clock: {} } as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
  });

  it("refuses a driver without transactions, and a mount below the prefix, with E_UNSUPPORTED", async () => {
    const plain = defineDriver((_options: void) => {
      const map = new Map<string, string>();
      return { name: "plain", hasItem: (key: string) => map.has(key), getItem: (key: string) => map.get(key) ?? null, getKeys: () => [...map.keys()] };
    });
    expect(() => createReceipts(createStorage({ driver: plain() }))).toThrow(expect.objectContaining({ code: "E_UNSUPPORTED" }));
    const split = createStorage({ driver: memory() }).mount("receipts:t", memory());
    expect(() => createReceipts(split)).toThrow(expect.objectContaining({ code: "E_UNSUPPORTED" }));
    await split.dispose();
  });

  it("store(…, { commit }) is E_UNSUPPORTED off git-notes", async () => {
    const receipts = createReceipts(createStorage({ driver: memory() }));
    expect(await codeOf(() => receipts.store(receipt("a", START), { commit: "HEAD" }))).toBe("E_UNSUPPORTED");
    expect(await receipts.get("a")).toBeNull();
  });
});

describe("receipts on git-notes annotate commits", () => {
  it("a store whose note fails after its receipt landed rejects, and a retry of the same receipt writes the note and resolves", async () => {
    const dir = tempDir("receipts-note-fails");
    gitCli(dir, ["init", "-q", "-b", "main"]);
    gitCli(dir, ["commit", "-q", "--allow-empty", "-m", "first"]);
    const storage = createStorage({ driver: gitNotes({ dir, namespace: "receipts" }) });
    opened.push(storage);
    const receipts = createReceipts(storage);
    const ran = receipt("deploy-1", START, { error: undefined });
    // Right after the receipt's transaction commits, another process takes the notes ref's lock (as stock git does while it writes).
    const lock = join(dir, ".git", "refs", "notes", "stowage-receipts.lock");
    const transaction = storage.transaction.bind(storage);
    storage.transaction = (async (...args: Parameters<Storage["transaction"]>) => {
      const result = await transaction(...args);
      writeFileSync(lock, "");
      return result;
    }) as Storage["transaction"];
    expect(await codeOf(() => receipts.store(ran, { commit: "HEAD" }))).toBe("E_UNAVAILABLE");
    storage.transaction = transaction;
    rmSync(lock);
    expect(await receipts.get("deploy-1")).toEqual(receipt("deploy-1", START));
    expect(gitFails(dir, ["notes", "--ref=refs/notes/stowage-receipts", "show", "HEAD"]).stderr).toMatch(/no note found/);

    await receipts.store(ran, { commit: "HEAD" });
    expect(JSON.parse(gitCli(dir, ["notes", "--ref=refs/notes/stowage-receipts", "show", "HEAD"]))).toEqual(receipt("deploy-1", START));
    // Only the same content is a retry: other content under the id stays E_CONFLICT.
    expect(await codeOf(() => receipts.store(receipt("deploy-1", START, { exitCode: 2 }), { commit: "HEAD" }))).toBe("E_CONFLICT");
    expect((await receipts.recent()).map((one) => one.id)).toEqual(["deploy-1"]);
  });

  it("git notes show <commit> prints the receipt; a commit naming nothing stores nothing", async () => {
    const dir = tempDir("receipts-commit");
    gitCli(dir, ["init", "-q", "-b", "main"]);
    gitCli(dir, ["commit", "-q", "--allow-empty", "-m", "first"]);
    const head = gitCli(dir, ["rev-parse", "HEAD"]);
    const storage = createStorage({ driver: gitNotes({ dir, namespace: "receipts" }) });
    opened.push(storage);
    const receipts = createReceipts(storage);
    const ran = receipt("deploy-1", START, { output: "ok\n".repeat(100) });
    await receipts.store(ran, { commit: "main" });
    expect(JSON.parse(gitCli(dir, ["notes", "--ref=refs/notes/stowage-receipts", "show", head]))).toEqual(ran);
    expect(await receipts.get("deploy-1")).toEqual(ran);
    expect(await codeOf(() => receipts.store(receipt("deploy-2", START), { commit: "no-such-branch" }))).toBe("E_NOT_FOUND");
    expect(await receipts.get("deploy-2")).toBeNull();
    gitCli(dir, ["fsck", "--strict", "--no-progress"]);
  });

  it("receipts written in two clones all survive syncing both ways, removals too", async () => {
    const origin = tempDir("receipts-origin");
    gitCli(origin, ["init", "-q", "--bare", "-b", "main"]);
    const first = tempDir("receipts-a");
    gitCli(first, ["init", "-q", "-b", "main"]);
    gitCli(first, ["commit", "-q", "--allow-empty", "-m", "first"]);
    gitCli(first, ["remote", "add", "origin", origin]);
    gitCli(first, ["push", "-q", "origin", "main"]);
    const second = join(tempDir("receipts-b"), "clone");
    gitCli(origin, ["clone", "-q", origin, second]);
    const side = (dir: string) => {
      const driver = gitNotes({ dir, namespace: "receipts" });
      const storage = createStorage({ driver });
      opened.push(storage);
      return { driver, receipts: createReceipts(storage) };
    };
    const [a, b] = [side(first), side(second)];
    await a.receipts.store(receipt("a1", START), { commit: "HEAD" });
    await a.receipts.store(receipt("old", START - 3 * DAY));
    await b.receipts.store(receipt("b1", START + HOUR));
    await b.receipts.store(receipt("b2", START + 5));

    expect(await a.driver.sync("origin")).toMatchObject({ pushed: true, merged: false });
    const merged = await b.driver.sync("origin");
    expect(merged).toMatchObject({ pushed: true, merged: true, conflicts: [] });
    expect(await a.driver.sync("origin")).toMatchObject({ fastForwarded: true, pushed: false });
    for (const { receipts } of [a, b]) expect((await receipts.recent()).map((one) => one.id)).toEqual(["b1", "b2", "a1", "old"]);
    const head = gitCli(first, ["rev-parse", "HEAD"]);
    expect(JSON.parse(gitCli(second, ["notes", "--ref=refs/notes/stowage-receipts", "show", head])).id).toBe("a1");

    // A removal on one side and a new receipt on the other both carry over.
    expect(await b.receipts.remove("old")).toBe(true);
    await a.receipts.store(receipt("a2", START + 2 * HOUR));
    await b.driver.sync("origin");
    await a.driver.sync("origin");
    await b.driver.sync("origin");
    for (const { receipts } of [a, b]) expect((await receipts.recent()).map((one) => one.id)).toEqual(["a2", "b1", "b2", "a1"]);
    for (const dir of [first, second, origin]) gitCli(dir, ["fsck", "--strict", "--no-progress"]);
  });

  it("sync: a key both clones changed goes to the policy and is reported; bad options are refused", async () => {
    const origin = tempDir("notes-origin");
    gitCli(origin, ["init", "-q", "--bare"]);
    const [one, two] = [tempDir("notes-one"), tempDir("notes-two")];
    const open2 = (dir: string) => {
      gitCli(dir, ["init", "-q"]);
      gitCli(dir, ["remote", "add", "origin", origin]);
      const driver = gitNotes({ dir });
      const storage = createStorage({ driver });
      opened.push(storage);
      return { driver, storage };
    };
    const [a, b] = [open2(one), open2(two)];
    await a.storage.setItem("shared", "base");
    await a.driver.sync("origin");
    await b.driver.sync("origin");
    await a.storage.setItem("shared", "from a");
    await b.storage.setItem("shared", "from b");
    await a.driver.sync("origin");
    const result = await b.driver.sync("origin", { policy: "theirs" });
    expect(result).toMatchObject({ merged: true, pushed: true });
    expect(result.conflicts).toEqual([gitCli(two, ["hash-object", "--stdin"], "shared")]);
    await a.driver.sync("origin");
    for (const { storage } of [a, b]) expect(await storage.getItem("shared")).toBe("from a");
    expect(await codeOf(() => a.driver.sync("origin", { policy: "latest" } as never))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => a.driver.sync("origin", { retries: -1 }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => a.driver.sync("origin", { force: true } as never))).toBe("E_INVALID_OPTION");
  });
});
