import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStorage as createUnstorage } from "unstorage";
import unstorageFsLite from "unstorage/drivers/fs-lite";
import unstorageMemory from "unstorage/drivers/memory";
import { createStorage } from "stowage";
import fsDriver from "stowage/drivers/fs";
import Database from "better-sqlite3";
import { ClassicLevel } from "classic-level";
import { open as openLmdb } from "lmdb";
import fsLite from "stowage/drivers/fs-lite";
import memory from "stowage/drivers/memory";
import leveldb from "stowage/drivers/leveldb";
import lmdb from "stowage/drivers/lmdb";
import sqlite from "stowage/drivers/sqlite";
import { serverTargets } from "./servers.js";

/** The operations every benchmarked store offers, sync or async. */
interface KeyValueApi {
  setItem(key: string, value: unknown): unknown;
  getItem(key: string): unknown;
  hasItem(key: string): unknown;
  getKeys(): unknown;
  setItems(items: { key: string; value: unknown }[]): unknown;
  getItems(keys: string[]): unknown;
}

export interface Target extends KeyValueApi {
  name: string;
  /** The target whose numbers this one is compared with. */
  peer?: string;
  /** Drops what the target wrote and closes it; the suites start once every close has settled. */
  close(): unknown;
}

export function target(name: string, peer: string | undefined, api: KeyValueApi, close: () => unknown = () => undefined): Target {
  return { name, peer, ...api, close };
}

function tempBase(label: string): { base: string; remove: () => void } {
  const base = mkdtempSync(join(tmpdir(), `stowage-bench-${label}-`));
  return { base, remove: () => rmSync(base, { recursive: true, force: true }) };
}

/** The plain Map + JSON ceiling: no key rules, no checks, nothing but the work itself. */
function mapCeiling(): Target {
  const map = new Map<string, string>();
  return target("Map + JSON", undefined, {
    setItem: (key, value) => void map.set(key, JSON.stringify(value)),
    getItem: (key) => JSON.parse(map.get(key) ?? "null"),
    hasItem: (key) => map.has(key),
    getKeys: () => [...map.keys()],
    setItems: (items) => items.forEach(({ key, value }) => map.set(key, JSON.stringify(value))),
    getItems: (keys) => keys.map((key) => ({ key, value: JSON.parse(map.get(key) ?? "null") })),
  });
}

/** better-sqlite3 used by hand the plain way: one key/value table, WAL, prepared statements, JSON. */
function rawSqlite(path: string): Target {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.exec("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID");
  const put = db.prepare<[string, string]>("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  const get = db.prepare<[string], { value: string }>("SELECT value FROM kv WHERE key = ?");
  const has = db.prepare<[string], { one: number }>("SELECT 1 AS one FROM kv WHERE key = ?");
  const keys = db.prepare<[], { key: string }>("SELECT key FROM kv").pluck();
  const putMany = db.transaction((items: { key: string; value: unknown }[]) => {
    for (const { key, value } of items) put.run(key, JSON.stringify(value));
  });
  const read = (key: string) => {
    const row = get.get(key);
    return row ? JSON.parse(row.value) : null;
  };
  return target("better-sqlite3 (raw)", undefined, {
    setItem: (key, value) => put.run(key, JSON.stringify(value)),
    getItem: read,
    hasItem: (key) => has.get(key) !== undefined,
    getKeys: () => keys.all(),
    setItems: (items) => putMany(items),
    getItems: (keys) => keys.map((key) => ({ key, value: read(key) })),
  }, () => db.close());
}

/** classic-level used by hand: JSON values, batches for setItems, getMany for getItems. */
function rawLevel(path: string): Target {
  const db = new ClassicLevel<string, string>(path, { valueEncoding: "utf8" });
  const parse = (text: string | undefined) => (text === undefined ? null : JSON.parse(text));
  return target("classic-level (raw)", undefined, {
    setItem: (key, value) => db.put(key, JSON.stringify(value)),
    getItem: async (key) => parse(await db.get(key)),
    hasItem: async (key) => (await db.get(key)) !== undefined,
    getKeys: () => db.keys().all(),
    setItems: (items) => db.batch(items.map(({ key, value }) => ({ type: "put" as const, key, value: JSON.stringify(value) }))),
    getItems: async (keys) => (await db.getMany(keys)).map((text, index) => ({ key: keys[index], value: parse(text) })),
  }, () => void db.close());
}

/** lmdb-js used by hand: JSON text values, awaited puts, one transaction for setItems. */
function rawLmdb(path: string): Target {
  const root = openLmdb({ path, noSubdir: true });
  const db = root.openDB<string, string>({ name: "kv" });
  const parse = (text: string | undefined) => (text === undefined ? null : JSON.parse(text));
  return target("lmdb (raw)", undefined, {
    setItem: (key, value) => db.put(key, JSON.stringify(value)),
    getItem: (key) => parse(db.get(key)),
    hasItem: (key) => db.doesExist(key),
    getKeys: () => Array.from(db.getKeys()),
    setItems: (items) => db.transaction(() => items.forEach(({ key, value }) => db.putSync(key, JSON.stringify(value)))),
    getItems: (keys) => keys.map((key) => ({ key, value: parse(db.get(key)) })),
  }, () => void root.close());
}

export async function makeTargets(): Promise<Target[]> {
  const stowageMemory = createStorage({ driver: memory() });
  const stowageMemorySync = createStorage({ driver: memory() });
  const fsDir = tempBase("fs");
  const fsLiteDir = tempBase("fs-lite");
  const unstorageFsDir = tempBase("unstorage-fs-lite");
  const stowageFs = createStorage({ driver: fsDriver({ base: fsDir.base }) });
  const stowageFsLite = createStorage({ driver: fsLite({ base: fsLiteDir.base }) });
  const sqliteDir = tempBase("sqlite");
  const stowageSqlite = createStorage({ driver: sqlite({ path: join(sqliteDir.base, "stowage.db") }) });
  const levelDir = tempBase("leveldb");
  const stowageLevel = createStorage({ driver: leveldb({ path: join(levelDir.base, "stowage") }) });
  const lmdbDir = tempBase("lmdb");
  const stowageLmdb = createStorage({ driver: lmdb({ path: join(lmdbDir.base, "stowage.mdb") }) });
  return [
    mapCeiling(),
    target("unstorage memory", undefined, createUnstorage({ driver: unstorageMemory() })),
    target("stowage memory", "unstorage memory", stowageMemory),
    target("stowage memory (sync API)", "Map + JSON", {
      setItem: (key, value) => stowageMemorySync.setItemSync(key, value),
      getItem: (key) => stowageMemorySync.getItemSync(key),
      hasItem: (key) => stowageMemorySync.hasItemSync(key),
      getKeys: () => stowageMemorySync.getKeysSync(),
      setItems: (items) => stowageMemorySync.setItemsSync(items),
      getItems: (keys) => stowageMemorySync.getItemsSync(keys),
    }),
    target("unstorage fs-lite", undefined, createUnstorage({ driver: unstorageFsLite({ base: unstorageFsDir.base }) }), unstorageFsDir.remove),
    target("stowage fs", "unstorage fs-lite", stowageFs, fsDir.remove),
    target("stowage fs-lite", "unstorage fs-lite", stowageFsLite, fsLiteDir.remove),
    rawSqlite(join(sqliteDir.base, "raw.db")),
    target("stowage sqlite", "better-sqlite3 (raw)", stowageSqlite, () => {
      void stowageSqlite.dispose().then(sqliteDir.remove);
    }),
    rawLevel(join(levelDir.base, "raw")),
    target("stowage leveldb", "classic-level (raw)", stowageLevel, () => {
      void stowageLevel.dispose().then(levelDir.remove);
    }),
    rawLmdb(join(lmdbDir.base, "raw.mdb")),
    target("stowage lmdb", "lmdb (raw)", stowageLmdb, () => {
      void stowageLmdb.dispose().then(lmdbDir.remove);
    }),
    ...(await serverTargets()),
  ];
}
