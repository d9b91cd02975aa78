import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStorage as createUnstorage } from "unstorage";
import unstorageFsLite from "unstorage/drivers/fs-lite";
import unstorageMemory from "unstorage/drivers/memory";
import { createStorage } from "../src/index.js";
import fsDriver from "../src/drivers/fs.js";
import fsLite from "../src/drivers/fs-lite.js";
import memory from "../src/drivers/memory.js";

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
  close(): void;
}

function target(name: string, peer: string | undefined, api: KeyValueApi, close: () => void = () => undefined): Target {
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

export function makeTargets(): Target[] {
  const stowageMemory = createStorage({ driver: memory() });
  const stowageMemorySync = createStorage({ driver: memory() });
  const fsDir = tempBase("fs");
  const fsLiteDir = tempBase("fs-lite");
  const unstorageFsDir = tempBase("unstorage-fs-lite");
  const stowageFs = createStorage({ driver: fsDriver({ base: fsDir.base }) });
  const stowageFsLite = createStorage({ driver: fsLite({ base: fsLiteDir.base }) });
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
  ];
}
