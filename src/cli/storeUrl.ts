import { isStorageError, StorageError } from "../core/errors.js";
import type { Driver } from "../core/types.js";
import { DRIVERS, hasSchemes, type UrlDriver } from "../config/registry.js";

/** The store the CLI uses when `--store` names none: a Git repository at ./.stowage (a bare one is created there). */
export const DEFAULT_STORE = "git:./.stowage";

type DriverOpener = (scheme: string, location: string) => Promise<Driver>;

// Drivers load on demand, so the CLI pays only for the one it uses. Every part of a URL is used or refused: none is ignored.
// Keyed by the registry's drivers that have schemes, so a scheme added there without an opener here fails the type check.
const OPENERS: Record<UrlDriver["name"], DriverOpener> = {
  memory: async (scheme, rest) => (await import("../drivers/memory.js")).default(noLocation(scheme, rest)),
  fs: async (scheme, base) => (await import("../drivers/fs.js")).default({ base: fileLocation(scheme, base) }),
  "fs-lite": async (scheme, base) => (await import("../drivers/fs-lite.js")).default({ base: fileLocation(scheme, base) }),
  leveldb: async (scheme, path) => (await import("../drivers/leveldb.js")).default({ path: fileLocation(scheme, path) }),
  git: async (scheme, dir) => (await import("../drivers/git.js")).default({ dir: fileLocation(scheme, dir) }),
  "git-notes": async (scheme, rest) => {
    const { dir, options } = notesLocation(scheme, rest);
    await checkRepository(scheme, dir);
    return (await import("../drivers/git-notes.js")).default({ dir, ...options });
  },
  lmdb: async (scheme, path) => (await import("../drivers/lmdb.js")).default({ path: fileLocation(scheme, path) }),
  sqlite: async (scheme, path) => (await import("../drivers/sqlite.js")).default({ path: fileLocation(scheme, path) }),
  // Server stores take the whole URL, as their clients do, once its query holds only parameters the client reads.
  redis: async (scheme, rest) => (await import("../drivers/redis/index.js")).default({ url: redisUrl(scheme, rest) }),
  postgres: async (scheme, rest) => (await import("../drivers/postgres.js")).default({ url: checkedUrl(scheme, rest, POSTGRES_QUERY) }),
  mysql: async (scheme, rest) => (await import("../drivers/mysql.js")).default({ url: checkedUrl(scheme, rest, MYSQL_QUERY) }),
  http: async (scheme, rest) => (await import("../drivers/http.js")).default({ base: checkedUrl(scheme, rest, [], false) }),
  "nats-kv": async (scheme, rest) => {
    const { host, path } = serverLocation(scheme, rest);
    return (await import("../drivers/nats-kv.js")).default({ servers: host, bucket: path || undefined });
  },
  etcd: async (scheme, rest) => {
    const { host, path } = serverLocation(scheme, rest);
    return (await import("../drivers/etcd.js")).default({ hosts: `http://${host}`, prefix: path || undefined });
  },
};

/** Each scheme the registry lists, with the opener of its driver. */
const SCHEMES = new Map<string, DriverOpener>(DRIVERS.filter(hasSchemes).flatMap((entry) => entry.schemes.map((scheme) => [scheme, OPENERS[entry.name]] as const)));

/**
 * The query parameters each client reads from its URL (others it would
 * ignore). pg: what pg-connection-string sets and pg's connection
 * parameters read; mysql2: its driver sets connectTimeout itself, so only
 * `ssl`; ioredis: `family` (the path is the database number).
 */
const POSTGRES_QUERY = [
  "host", "db", "encoding", "ssl", "sslmode", "sslcert", "sslkey", "sslrootcert", "sslnegotiation", "uselibpqcompat",
  "application_name", "fallback_application_name", "client_encoding", "options", "binary", "replication",
  "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "query_timeout",
] as const;
const MYSQL_QUERY = ["ssl"] as const;
const REDIS_QUERY = ["family"] as const;

function invalidUrl(scheme: string, message: string, cause?: unknown): StorageError {
  return new StorageError("E_INVALID_OPTION", `The ${scheme}: store ${message}`, { cause });
}

/** `memory:` takes nothing after its colon. */
function noLocation(scheme: string, rest: string): Record<string, never> {
  if (rest !== "") throw invalidUrl(scheme, `takes nothing after ${scheme}:, got ${JSON.stringify(rest)}`);
  return {};
}

/**
 * A file store's path: all of what follows the colon, except that a `?` or
 * `#` (a query or fragment in a URL, which file stores do not take) and a
 * leading `//` (a host: `fs://data` would be the absolute path /data) are refused.
 */
function fileLocation(scheme: string, location: string): string {
  if (!location) throw invalidUrl(scheme, `needs a location, as in ${scheme}:./data`);
  if (/[?#]/.test(location)) throw invalidUrl(scheme, `takes a path without a query or fragment ("?" or "#"), got ${JSON.stringify(location)}`);
  if (location.startsWith("//")) throw invalidUrl(scheme, `takes a path, not a host: write ${scheme}:./dir or ${scheme}:/abs/dir, got ${JSON.stringify(location)}`);
  return location;
}

/** What a `git-notes:` URL's query may set: the driver's options of the same names. */
const NOTES_QUERY = ["ref", "namespace"] as const;
type NotesQueryOptions = Partial<Record<(typeof NOTES_QUERY)[number], string>>;

/**
 * `git-notes:<dir>[?ref=…&namespace=…]`: the path as a file store's, then a
 * query of the driver's `ref` and `namespace` (percent-decoded), each at most
 * once. The driver checks the ref name they make.
 */
function notesLocation(scheme: string, rest: string): { dir: string; options: NotesQueryOptions } {
  if (rest.includes("#")) throw invalidUrl(scheme, `takes no fragment ("#…"), got ${JSON.stringify(rest)}`);
  const question = rest.indexOf("?");
  if (question === -1) return { dir: fileLocation(scheme, rest), options: {} };
  const dir = fileLocation(scheme, rest.slice(0, question));
  const query = rest.slice(question + 1);
  if (query === "") throw invalidUrl(scheme, `has an empty query: give ${NOTES_QUERY.map((name) => name + "=…").join(" or ")} after "?", or no "?"`);
  const options: NotesQueryOptions = {};
  for (const [name, value] of new URLSearchParams(query)) {
    if (!(NOTES_QUERY as readonly string[]).includes(name)) throw invalidUrl(scheme, `does not take the query parameter ${JSON.stringify(name)} (known: ${NOTES_QUERY.join(", ")})`);
    const known = name as (typeof NOTES_QUERY)[number];
    if (options[known] !== undefined) throw invalidUrl(scheme, `takes ${known}= once, got it twice`);
    options[known] = value;
  }
  return { dir, options };
}

/**
 * Refuses a `git-notes:` directory that holds no Git repository, before the
 * driver opens it: the driver would create a bare repository there, so a
 * mistyped path would keep notes (receipts, locks) apart from the project's
 * commits without a word.
 *
 * @throws StorageError `E_INVALID_OPTION` when `dir` is no repository (what opening it threw is the cause)
 */
async function checkRepository(scheme: string, dir: string): Promise<void> {
  const { Repository } = await import("../git/repo/repository.js");
  try {
    Repository.open(dir).close();
  } catch (error) {
    if (!isStorageError(error, "E_NOT_FOUND")) throw error;
    throw invalidUrl(scheme, `needs an existing Git repository (a work tree's top directory, a .git directory or a bare repository): ${JSON.stringify(dir)} is none; run git init there first`, error);
  }
}

/**
 * A server URL checked part by part: no fragment, only the query parameters
 * its client reads, and credentials only where the client uses them.
 */
function checkedUrl(scheme: string, rest: string, query: readonly string[], credentials = true): string {
  const url = `${scheme}:${rest}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw invalidUrl(scheme, `cannot parse ${JSON.stringify(url)} as a URL`, error);
  }
  if (url.includes("#")) throw invalidUrl(scheme, `takes no fragment ("#…"), got ${JSON.stringify(url)}`);
  // An empty query (`http://h/?`) is a part too: the http driver would append keys after it.
  if (query.length === 0 && url.includes("?")) throw invalidUrl(scheme, `takes no query ("?…"), got ${JSON.stringify(url)}`);
  const unknown = [...new Set(parsed.searchParams.keys())].filter((name) => !query.includes(name));
  if (unknown.length > 0) {
    throw invalidUrl(scheme, `does not take the query parameter${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (known: ${query.join(", ")})`);
  }
  if (!credentials && (parsed.username !== "" || parsed.password !== "")) throw invalidUrl(scheme, "takes no credentials in the URL");
  return url;
}

/** A redis URL whose path, if any, is the database number. */
function redisUrl(scheme: string, rest: string): string {
  const url = checkedUrl(scheme, rest, REDIS_QUERY);
  const path = new URL(url).pathname;
  if (!/^\/?\d*$/.test(path)) throw invalidUrl(scheme, `takes a database number as its path (${scheme}://host:port/0), got ${JSON.stringify(path)}`);
  return url;
}

/**
 * `//host:port/name` → the host and the name after it (a bucket, a prefix).
 * A query, a fragment and credentials are refused: the clients would drop them.
 */
function serverLocation(scheme: string, rest: string): { host: string; path: string } {
  const match = /^\/\/([^/]+)\/?(.*)$/.exec(rest);
  if (!match) throw invalidUrl(scheme, `takes ${scheme}://host:port/name`);
  if (/[?#]/.test(rest)) throw invalidUrl(scheme, `takes no query or fragment ("?" or "#"; escape them in the name as %3F, %23), got ${JSON.stringify(rest)}`);
  if (match[1]!.includes("@")) throw invalidUrl(scheme, "takes no credentials in the URL");
  try {
    return { host: match[1]!, path: decodeURIComponent(match[2]!) };
  } catch (error) {
    throw new StorageError("E_INVALID_OPTION", `The ${scheme}: store's name has a malformed percent-escape: ${JSON.stringify(match[2])}`, { cause: error });
  }
}

/** Known store schemes, for help texts. */
export const STORE_SCHEMES = [...SCHEMES.keys()];

/** Opens the driver a store URL names: `<scheme>:<location>`, e.g. `fs:./data` or `memory:`. */
export async function driverFromUrl(url: string): Promise<Driver> {
  const colon = url.indexOf(":");
  const scheme = colon === -1 ? url : url.slice(0, colon);
  const open = SCHEMES.get(scheme);
  if (!open) {
    throw new StorageError("E_INVALID_OPTION", `Unknown store ${JSON.stringify(url)}; use one of ${STORE_SCHEMES.map((s) => s + ":").join(", ")}`);
  }
  try {
    return await open(scheme, colon === -1 ? "" : url.slice(colon + 1));
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
