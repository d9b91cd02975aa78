/**
 * The driver registry: the one list of stowage's drivers. The build's entry
 * points (tsup.config.ts) and the CLI's store URL schemes (src/cli/storeUrl.ts)
 * are made from it, and test/config/registry.test.ts fails when package.json's
 * exports, the build's externals or the files in src/drivers/ disagree with it.
 * Adding a driver is its module plus one row here.
 *
 * Data only: it imports no driver, so the core, the build config and the CLI
 * read it without loading any backend's client.
 */

import type { DriverFlags } from "../core/types.js";

/** One driver of stowage's own. */
export interface DriverEntry {
  /**
   * The driver's name: its module is src/drivers/<name>.ts (or the folder
   * src/drivers/<name>/ with an index.ts) and users import it as `stowage/drivers/<name>`.
   */
  readonly name: string;
  /** The backend client packages the driver imports: optional peer dependencies of stowage, external to the build. */
  readonly peers: readonly string[];
  /** The store URL schemes (without the colon) that open this driver, e.g. `stowage get k --store redis://host`. */
  readonly schemes: readonly string[];
  /**
   * The capability flags ({@link DriverFlags}) an instance made with the default options declares; a flag
   * left out is not declared. test/config/registry.test.ts makes each driver with its defaults and fails
   * when its `flags` differ from these. Where an option changes a flag, the row holds the default and a
   * comment says which option. For a driver with `wraps`, the flags it sets whatever it wraps.
   */
  readonly flags: Readonly<DriverFlags>;
  /**
   * Set on a driver made of other drivers (`"driver"`: one, as queue; `"layers"`: several, as overlay):
   * it has no defaults of its own, and each flag not in `flags` is what it wraps declares.
   */
  readonly wraps?: "driver" | "layers";
}

/** The flags of the git drivers that keep one blob per key without history (git-refs, git-notes, git-objects). */
const GIT_BLOB_FLAGS = { maxDepth: true, sync: true, cas: true, etag: "content", transactions: true, clearBase: true, nestedKeys: true } as const;

/** Every driver stowage ships, in the order of package.json's exports. */
export const DRIVERS = [
  {
    name: "memory",
    peers: [],
    schemes: ["memory"],
    flags: { maxDepth: true, ttl: true, sync: true, cas: true, etag: "version", transactions: true, watch: true, clearBase: true, nestedKeys: true },
  },
  { name: "fs", peers: [], schemes: ["fs"], flags: { maxDepth: true, sync: true, watch: true, clearBase: true, nestedKeys: false } },
  { name: "fs-lite", peers: [], schemes: ["fs-lite"], flags: { maxDepth: true, sync: true, clearBase: true, nestedKeys: false } },
  {
    name: "sqlite",
    peers: ["better-sqlite3"],
    schemes: ["sqlite"],
    flags: { maxDepth: true, ttl: true, sync: true, cas: true, etag: "version", transactions: true, clearBase: true, nestedKeys: true },
  },
  {
    name: "leveldb",
    peers: ["classic-level"],
    schemes: ["leveldb"],
    flags: { maxDepth: true, ttl: true, cas: true, etag: "version", transactions: true, clearBase: true, nestedKeys: true },
  },
  {
    name: "lmdb",
    peers: ["lmdb"],
    schemes: ["lmdb"],
    flags: { maxDepth: true, ttl: true, sync: true, cas: true, etag: "version", transactions: true, clearBase: true, nestedKeys: true },
  },
  // Over its layers: sync, maxDepth and watch if every layer has them, ttl and nestedKeys the write layer's.
  { name: "overlay", peers: [], schemes: [], wraps: "layers", flags: { cas: false, transactions: false, history: false, clearBase: true } },
  // Over its driver: expiry, depth, clearBase and nesting stay the driver's; watch is this process's writes.
  { name: "queue", peers: [], schemes: [], wraps: "driver", flags: { sync: false, cas: false, transactions: false, history: false, watch: false } },
  {
    name: "redis",
    peers: ["ioredis"],
    schemes: ["redis", "rediss"],
    // transactions: in a cluster only with a hash tag in `prefix` or `clusterTransactions: true`; watch: none with `watch: "off"`.
    flags: { ttl: true, cas: true, etag: "content", transactions: true, watch: true, clearBase: true, nestedKeys: true },
  },
  {
    name: "postgres",
    peers: ["pg"],
    schemes: ["postgres", "postgresql"],
    // watch: none with `notify: false`.
    flags: { maxDepth: true, ttl: true, cas: true, etag: "version", transactions: true, watch: true, clearBase: true, nestedKeys: true },
  },
  {
    name: "mysql",
    peers: ["mysql2"],
    schemes: ["mysql"],
    // watch: across processes only with `watch: true` (triggers and a polled change log).
    flags: { maxDepth: true, ttl: true, cas: true, etag: "version", transactions: true, clearBase: true, nestedKeys: true },
  },
  {
    name: "nats-kv",
    peers: ["@nats-io/transport-node", "@nats-io/jetstream", "@nats-io/kv"],
    schemes: ["nats"],
    flags: { ttl: true, cas: true, etag: "version", history: true, watch: true, clearBase: true, nestedKeys: true },
  },
  {
    name: "etcd",
    peers: ["etcd3"],
    schemes: ["etcd"],
    flags: { ttl: true, cas: true, etag: "version", transactions: true, history: true, watch: true, clearBase: true, nestedKeys: true },
  },
  // The server's: these against a stowage server (the default); none with `server: "unstorage"`. etag: `"content"`
  // with `etag: "content"`, for a stowage server over redis or a git driver.
  { name: "http", peers: [], schemes: ["http", "https"], flags: { ttl: true, cas: true, etag: "version", clearBase: true, fence: true } },
  {
    name: "git",
    peers: [],
    schemes: ["git"],
    flags: { sync: true, cas: true, etag: "content", transactions: true, history: true, watch: true, maxDepth: true, clearBase: true, nestedKeys: true },
  },
  { name: "git-refs", peers: [], schemes: [], flags: GIT_BLOB_FLAGS },
  { name: "git-notes", peers: [], schemes: ["git-notes"], flags: GIT_BLOB_FLAGS },
  { name: "git-objects", peers: [], schemes: [], flags: GIT_BLOB_FLAGS },
] as const satisfies readonly DriverEntry[];

/** The drivers a store URL can name. */
export type UrlDriver = Extract<(typeof DRIVERS)[number], { schemes: readonly [string, ...string[]] }>;

/** Whether a store URL can name `entry`. */
export function hasSchemes(entry: (typeof DRIVERS)[number]): entry is UrlDriver {
  return entry.schemes.length > 0;
}

/** Every peer package some driver needs, once each. */
export const DRIVER_PEERS: readonly string[] = [...new Set(DRIVERS.flatMap((entry) => entry.peers))];
