import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Options } from "tsup";
import { describe, expect, it } from "vitest";
import buildConfig, { driverSource } from "../../tsup.config.js";
import { STORE_SCHEMES } from "../../src/cli/storeUrl.js";
import { DRIVERS, DRIVER_PEERS, type DriverEntry } from "../../src/config/registry.js";
import type { Driver, DriverFlags } from "../../src/core/types.js";
import etcd from "../../src/drivers/etcd.js";
import fsLite from "../../src/drivers/fs-lite.js";
import fsDriver from "../../src/drivers/fs.js";
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
import overlay from "../../src/drivers/overlay.js";
import postgres from "../../src/drivers/postgres.js";
import queue from "../../src/drivers/queue.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";

// The registry is the one list of drivers; every other place that lists them must agree with it.

const ROOT = join(import.meta.dirname, "../..");
const NAMES = DRIVERS.map((entry) => entry.name);
/** The rows as the interface has them, so optional fields read on every row. */
const ENTRIES: readonly DriverEntry[] = DRIVERS;

interface PackageJson {
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
  exports: Record<string, unknown>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageJson;

function tsupOptions(): Options {
  expect(typeof buildConfig).toBe("object");
  expect(Array.isArray(buildConfig)).toBe(false);
  return buildConfig as Options;
}

/** The package names a driver's own files import (node: builtins and relative paths left out). */
function importedPackages(name: string): Set<string> {
  const source = join(ROOT, driverSource(name));
  const files = source.endsWith("/index.ts") ? readdirSync(join(source, "..")).map((file) => join(source, "..", file)) : [source];
  const packages = new Set<string>();
  for (const file of files.filter((path) => path.endsWith(".ts"))) {
    for (const [, specifier] of readFileSync(file, "utf8").matchAll(/(?:from|import\()\s*"([^".][^"]*)"/g)) {
      if (specifier!.startsWith("node:")) continue;
      const parts = specifier!.split("/");
      packages.add(specifier!.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!);
    }
  }
  return packages;
}

type DriverName = (typeof DRIVERS)[number]["name"];

/** How each driver is made with its default options; `server` is where its backend answers (checked with serviceUp first). */
interface DefaultInstance {
  make: () => Driver;
  server?: { name: string; address: string };
}

const SERVERS = {
  redis: { name: "Redis", address: process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379" },
  postgres: { name: "PostgreSQL", address: process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test" },
  mysql: { name: "MariaDB/MySQL", address: process.env.STOWAGE_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test" },
  nats: { name: "NATS", address: process.env.STOWAGE_NATS_SERVERS ?? "127.0.0.1:4222" },
  etcd: { name: "etcd", address: process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379" },
};

// Keyed by the registry's names, so a row added without a way to make its driver fails the type check.
// The wrappers go over memory, which declares every flag but history: what they narrow shows.
const DEFAULTS: Record<DriverName, DefaultInstance> = {
  memory: { make: () => memory() },
  fs: { make: () => fsDriver({ base: tempDir("registry-fs") }) },
  "fs-lite": { make: () => fsLite({ base: tempDir("registry-fs-lite") }) },
  sqlite: { make: () => sqlite({ path: join(tempDir("registry-sqlite"), "store.db") }) },
  leveldb: { make: () => leveldb({ path: join(tempDir("registry-leveldb"), "db") }) },
  lmdb: { make: () => lmdb({ path: join(tempDir("registry-lmdb"), "store.mdb") }) },
  overlay: { make: () => overlay({ layers: [memory()] }) },
  queue: { make: () => queue({ driver: memory() }) },
  redis: { make: () => redis({ url: SERVERS.redis.address }), server: SERVERS.redis },
  postgres: { make: () => postgres({ url: SERVERS.postgres.address }), server: SERVERS.postgres },
  mysql: { make: () => mysql({ url: SERVERS.mysql.address }), server: SERVERS.mysql },
  "nats-kv": { make: () => natsKv({ servers: SERVERS.nats.address }), server: SERVERS.nats },
  etcd: { make: () => etcd({ hosts: SERVERS.etcd.address }), server: SERVERS.etcd },
  // The driver's flags are the server kind's it is told (it asks nothing at construction): no server needed.
  http: { make: () => http({ base: "http://127.0.0.1:1/" }) },
  git: { make: () => git({ dir: tempDir("registry-git") }) },
  "git-refs": { make: () => gitRefs({ dir: tempDir("registry-git-refs") }) },
  "git-notes": { make: () => gitNotes({ dir: tempDir("registry-git-notes") }) },
  "git-objects": { make: () => gitObjects({ dir: tempDir("registry-git-objects") }) },
};

const BOOLEAN_FLAGS = ["maxDepth", "ttl", "sync", "cas", "transactions", "history", "watch", "clearBase", "nestedKeys"] as const;

/**
 * What flags mean, whichever way they are written: a flag left out is false, except `nestedKeys`, which is
 * false only when declared so (as the kit reads it), and the etag kind counts with `cas` only.
 */
function meaning(flags: Readonly<DriverFlags> | undefined): Record<string, boolean | string | undefined> {
  const declared = flags ?? {};
  const booleans = BOOLEAN_FLAGS.map((flag) => [flag, flag === "nestedKeys" ? declared[flag] !== false : declared[flag] === true]);
  return { ...Object.fromEntries(booleans), etag: declared.cas === true ? declared.etag : undefined };
}

/** The flags the registry says a default instance of `entry` declares: a wrapper's over memory's. */
function registered(entry: DriverEntry): Readonly<DriverFlags> {
  return entry.wraps ? { ...memory().flags, ...entry.flags } : entry.flags;
}

/** README's driver table, each row's cells by column name. */
function readmeTable(): Map<string, Record<string, string>> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const lines = readme.slice(readme.indexOf("| driver | import |")).split("\n");
  const cells = (line: string) => line.split("|").slice(1, -1).map((cell) => cell.trim());
  const columns = cells(lines[0]!);
  const rows = new Map<string, Record<string, string>>();
  for (const line of lines.slice(2).filter((row) => row.startsWith("| ["))) {
    const row = Object.fromEntries(cells(line).map((cell, index) => [columns[index]!, cell]));
    rows.set(/^\[([^\]]+)\]/.exec(row.driver!)![1]!, row);
  }
  return rows;
}

describe("the driver registry's flags", () => {
  for (const entry of DRIVERS) {
    const instance = DEFAULTS[entry.name];
    const row: DriverEntry = entry;
    it(`${entry.name}: a default instance declares the flags of its row`, async () => {
      if (instance.server && !(await serviceUp(instance.server.name, instance.server.address))) return;
      const driver = instance.make();
      try {
        expect(meaning(driver.flags)).toEqual(meaning(registered(row)));
      } finally {
        await driver.dispose?.();
      }
    });
  }

  // README's table says each flag in words: "yes…" and "native…" are declared, "no", "core" and "this process" are
  // not. Its maxDepth
  // column says whether listings honour maxDepth, which nats-kv and etcd do without the flag (the core filters again).
  it("agree with README's driver table", () => {
    const table = readmeTable();
    const columns: [string, keyof DriverFlags][] = [["sync", "sync"], ["ttl", "ttl"], ["cas", "cas"], ["transactions", "transactions"], ["watch", "watch"], ["nested keys", "nestedKeys"]];
    for (const entry of ENTRIES) {
      const row = table.get(entry.name)!;
      expect(row, entry.name).toBeDefined();
      const flags = meaning(entry.flags);
      for (const [column, flag] of columns) {
        const cell = row[column]!;
        // Cells naming what another store does (a wrapped driver, a layer, the server behind http) hold no flag's value.
        if (/^(server's|wrapped driver's|write layer's|if every layer)/.test(cell)) continue;
        const declared = /^(yes|native)/.test(cell);
        expect(declared, `${entry.name}, ${column}: "${cell}"`).toBe(flags[flag]);
      }
    }
  });

  it("agree with README's list of drivers with history", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const sentence = /History \(`getHistory`.*?`\) is on ([^.]*)\./.exec(readme.replace(/\s+/g, " "))![1]!;
    const named = DRIVERS.filter((entry) => new RegExp(`\\b${entry.name}\\b(?!-)`).test(sentence)).map((entry) => entry.name);
    expect(named.sort()).toEqual(ENTRIES.filter((entry) => entry.flags.history === true).map((entry) => entry.name).sort());
  });
});

describe("the driver registry", () => {
  it("lists each driver once", () => {
    expect(new Set(NAMES).size).toBe(NAMES.length);
    const schemes = DRIVERS.flatMap((entry) => [...entry.schemes]);
    expect(new Set(schemes).size).toBe(schemes.length);
  });

  it("matches the modules in src/drivers/: a <name>.ts file or a <name>/ folder with an index.ts each", () => {
    const modules = readdirSync(join(ROOT, "src/drivers"))
      .filter((entry) => entry !== "support")
      .map((entry) => {
        if (statSync(join(ROOT, "src/drivers", entry)).isDirectory()) {
          expect(existsSync(join(ROOT, "src/drivers", entry, "index.ts")), `src/drivers/${entry}/index.ts`).toBe(true);
          return entry;
        }
        expect(entry).toMatch(/\.ts$/);
        return entry.replace(/\.ts$/, "");
      });
    expect(modules.sort()).toEqual([...NAMES].sort());
  });

  it("matches package.json's driver exports, in order", () => {
    const exported = Object.entries(pkg.exports).filter(([path]) => path.startsWith("./drivers/"));
    expect(exported).toEqual(NAMES.map((name) => [`./drivers/${name}`, { types: `./dist/drivers/${name}.d.ts`, import: `./dist/drivers/${name}.js` }]));
  });

  it("gives tsup one entry per driver, from its module", () => {
    const entry = tsupOptions().entry as Record<string, string>;
    const drivers = Object.entries(entry).filter(([output]) => output.startsWith("drivers/"));
    expect(drivers).toEqual(NAMES.map((name) => [`drivers/${name}`, driverSource(name)]));
    for (const [, source] of drivers) expect(existsSync(join(ROOT, source)), source).toBe(true);
  });

  it("names each driver's client packages: what its files import beyond stowage's dependencies, each an optional peer kept out of the build", () => {
    const dependencies = Object.keys(pkg.dependencies);
    for (const { name, peers } of DRIVERS) {
      const imported = [...importedPackages(name)].filter((specifier) => !dependencies.includes(specifier));
      expect(imported.sort(), name).toEqual([...peers].sort());
    }
    const external = tsupOptions().external;
    for (const peer of DRIVER_PEERS) {
      expect(external, peer).toContain(peer);
      expect(pkg.peerDependencies[peer], peer).toBeDefined();
      expect(pkg.peerDependenciesMeta[peer]?.optional, peer).toBe(true);
    }
  });

  it("gives the CLI its store URL schemes", () => {
    expect(STORE_SCHEMES).toEqual(DRIVERS.flatMap((entry) => [...entry.schemes]));
  });

  it("has a docs page and a row in README's driver table for each driver", () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    for (const name of NAMES) {
      expect(existsSync(join(ROOT, "docs", `${name}.md`)), `docs/${name}.md`).toBe(true);
      expect(readme, name).toContain(`| [${name}](docs/${name}.md) | \`stowage/drivers/${name}\` |`);
    }
  });
});
