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
}

/** Every driver stowage ships, in the order of package.json's exports. */
export const DRIVERS = [
  { name: "memory", peers: [], schemes: ["memory"] },
  { name: "fs", peers: [], schemes: ["fs"] },
  { name: "fs-lite", peers: [], schemes: ["fs-lite"] },
  { name: "sqlite", peers: ["better-sqlite3"], schemes: ["sqlite"] },
  { name: "leveldb", peers: ["classic-level"], schemes: ["leveldb"] },
  { name: "lmdb", peers: ["lmdb"], schemes: ["lmdb"] },
  { name: "overlay", peers: [], schemes: [] },
  { name: "queue", peers: [], schemes: [] },
  { name: "redis", peers: ["ioredis"], schemes: ["redis", "rediss"] },
  { name: "postgres", peers: ["pg"], schemes: ["postgres", "postgresql"] },
  { name: "mysql", peers: ["mysql2"], schemes: ["mysql"] },
  { name: "nats-kv", peers: ["@nats-io/transport-node", "@nats-io/jetstream", "@nats-io/kv"], schemes: ["nats"] },
  { name: "etcd", peers: ["etcd3"], schemes: ["etcd"] },
  { name: "http", peers: [], schemes: ["http", "https"] },
  { name: "git", peers: [], schemes: ["git"] },
  { name: "git-refs", peers: [], schemes: [] },
  { name: "git-notes", peers: [], schemes: [] },
  { name: "git-objects", peers: [], schemes: [] },
] as const satisfies readonly DriverEntry[];

/** The drivers a store URL can name. */
export type UrlDriver = Extract<(typeof DRIVERS)[number], { schemes: readonly [string, ...string[]] }>;

/** Whether a store URL can name `entry`. */
export function hasSchemes(entry: (typeof DRIVERS)[number]): entry is UrlDriver {
  return entry.schemes.length > 0;
}

/** Every peer package some driver needs, once each. */
export const DRIVER_PEERS: readonly string[] = [...new Set(DRIVERS.flatMap((entry) => entry.peers))];
