import { StorageError } from "../core/errors.js";
import type { Driver } from "../core/types.js";

/** The store the CLI uses when `--store` names none: a Git repository at ./.stowage (a bare one is created there). */
export const DEFAULT_STORE = "git:./.stowage";

type DriverLoader = (location: string) => Promise<Driver>;

// Drivers load on demand, so the CLI pays only for the one it uses.
const SCHEMES: Record<string, DriverLoader> = {
  memory: async () => (await import("../drivers/memory.js")).default({}),
  fs: async (base) => (await import("../drivers/fs.js")).default({ base: requireLocation("fs", base) }),
  "fs-lite": async (base) => (await import("../drivers/fs-lite.js")).default({ base: requireLocation("fs-lite", base) }),
  leveldb: async (path) => (await import("../drivers/leveldb.js")).default({ path: requireLocation("leveldb", path) }),
  git: async (dir) => (await import("../drivers/git.js")).default({ dir: requireLocation("git", dir) }),
  lmdb: async (path) => (await import("../drivers/lmdb.js")).default({ path: requireLocation("lmdb", path) }),
  sqlite: async (path) => (await import("../drivers/sqlite.js")).default({ path: requireLocation("sqlite", path) }),
  // Server stores take the whole URL, as their clients do.
  redis: async (rest) => (await import("../drivers/redis.js")).default({ url: `redis:${rest}` }),
  rediss: async (rest) => (await import("../drivers/redis.js")).default({ url: `rediss:${rest}` }),
  postgres: async (rest) => (await import("../drivers/postgres.js")).default({ url: `postgres:${rest}` }),
  postgresql: async (rest) => (await import("../drivers/postgres.js")).default({ url: `postgresql:${rest}` }),
  mysql: async (rest) => (await import("../drivers/mysql.js")).default({ url: `mysql:${rest}` }),
  http: async (rest) => (await import("../drivers/http.js")).default({ base: `http:${rest}` }),
  https: async (rest) => (await import("../drivers/http.js")).default({ base: `https:${rest}` }),
  nats: async (rest) => {
    const { host, path } = serverLocation("nats", rest);
    return (await import("../drivers/nats-kv.js")).default({ servers: host, bucket: path || undefined });
  },
  etcd: async (rest) => {
    const { host, path } = serverLocation("etcd", rest);
    return (await import("../drivers/etcd.js")).default({ hosts: `http://${host}`, prefix: path || undefined });
  },
};

/** `//host:port/name` → the host and the name after it (a bucket, a prefix). */
function serverLocation(scheme: string, rest: string): { host: string; path: string } {
  const match = /^\/\/([^/]+)\/?(.*)$/.exec(rest);
  if (!match) throw new StorageError("E_INVALID_OPTION", `The ${scheme}: store takes ${scheme}://host:port/name`);
  try {
    return { host: match[1]!, path: decodeURIComponent(match[2]!) };
  } catch (error) {
    throw new StorageError("E_INVALID_OPTION", `The ${scheme}: store's name has a malformed percent-escape: ${JSON.stringify(match[2])}`, { cause: error });
  }
}

function requireLocation(scheme: string, location: string): string {
  if (!location) throw new StorageError("E_INVALID_OPTION", `The ${scheme}: store needs a location, as in ${scheme}:./data`);
  return location;
}

/** Known store schemes, for help texts. */
export const STORE_SCHEMES = Object.keys(SCHEMES);

/** Opens the driver a store URL names: `<scheme>:<location>`, e.g. `fs:./data` or `memory:`. */
export async function driverFromUrl(url: string): Promise<Driver> {
  const colon = url.indexOf(":");
  const scheme = colon === -1 ? url : url.slice(0, colon);
  const loader = SCHEMES[scheme];
  if (!loader) {
    throw new StorageError("E_INVALID_OPTION", `Unknown store ${JSON.stringify(url)}; use one of ${STORE_SCHEMES.map((s) => s + ":").join(", ")}`);
  }
  try {
    return await loader(colon === -1 ? "" : url.slice(colon + 1));
  } catch (error) {
    throw storeError(scheme, url, error);
  }
}

/** What opening a store URL threw, as a StorageError: a missing client library, or a URL its driver cannot take. */
function storeError(scheme: string, url: string, error: unknown): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if ((error as { code?: unknown }).code === "ERR_MODULE_NOT_FOUND") {
    return new StorageError("E_UNSUPPORTED", `The ${scheme}: store needs its client library installed (${message})`, { cause: error });
  }
  return new StorageError("E_INVALID_OPTION", `Invalid store URL ${JSON.stringify(url)}: ${message}`, { cause: error });
}
