import { fstatSync, readSync } from "node:fs";
import { Command, Option } from "commander";
import { StorageError } from "../core/errors.js";
import { normalizeItemBase } from "../core/keys.js";
import { createCoreStorage } from "../core/storage.js";
import type { Driver, ItemStream, Storage } from "../core/types.js";
import { findLayer } from "../core/wrapDriver.js";
import type { Maintainable } from "../git/repo/autoMaintenance.js";
import { checkAllowedHosts, isLoopback } from "../server/hosts.js";
import { createStorageServer } from "../server/index.js";
import { isBearerToken } from "../core/bearerToken.js";
import { DEFAULT_STORE, STORE_SCHEMES, driverFromUrl } from "./storeUrl.js";
import { registerCoordination } from "./coordination.js";
import { registerSync } from "./sync.js";

/** Where the CLI reads and writes, so tests and embedders can swap them. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  /** The exit code a command chose (`stowage lock` passes its child's on), success or failure; unset: 0, or 1 on a failure. */
  exitCode?: number;
}

interface StoreOptions {
  store: string;
}

/**
 * stdin, checked to be something that holds bytes before anything is stored
 * from it: node gives a directory on fd 0 (`stowage set k < /`) as an empty
 * stream, which would store an empty value. Streams without a descriptor
 * (tests, embedders) are taken as they are.
 *
 * @throws StorageError `E_IO` for a directory or a descriptor that cannot be inspected
 */
function checkedStdin(stream: NodeJS.ReadableStream): NodeJS.ReadableStream {
  const fd = (stream as { fd?: unknown }).fd;
  if (typeof fd !== "number") return stream;
  const problem = stdinProblem(fd);
  if (problem !== undefined) throw new StorageError("E_IO", `Cannot read stdin: ${problem.message}`, { cause: problem });
  return stream;
}

/** What reading descriptor `fd` fails with (EISDIR for a directory: the system's own error), or undefined when it holds bytes. */
function stdinProblem(fd: number): Error | undefined {
  try {
    if (!fstatSync(fd).isDirectory()) return undefined;
    readSync(fd, Buffer.alloc(1));
    return new Error("it is a directory");
  } catch (error) {
    return error as Error;
  }
}

/** All of stdin (checked by {@link checkedStdin}). */
async function readAll(input: NodeJS.ReadableStream): Promise<Buffer> {
  const stream = checkedStdin(input);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

/** Text as the user typed it: JSON when it parses as JSON, the text itself otherwise. */
function parseValue(text: string, asString: boolean): unknown {
  if (asString) return text;
  try {
    return JSON.parse(text);
  } catch {
    // Not JSON: the value is the text itself (documented in docs/cli.md).
    return text;
  }
}

/** Strings print as themselves, everything else as JSON. */
function formatValue(value: unknown): string {
  if (typeof value === "string") return value;
  return formatJsonLine(value);
}

/** JSON on one line; BigInts as their digits, which JSON cannot carry. */
function formatJsonLine(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item));
}

export function write(io: CliIo, data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) =>
    io.stdout.write(data, (error) => (error ? reject(new StorageError("E_IO", `Cannot write to stdout: ${error.message}`, { cause: error })) : resolve())),
  );
}

function notFound(key: string): StorageError {
  return new StorageError("E_NOT_FOUND", `No value at ${JSON.stringify(key)}`, { key });
}

/** `get --raw`: the bytes chunk by chunk, as the store reads them (a large file is never held whole). */
async function printStream(io: CliIo, key: string, opened: ItemStream | null): Promise<void> {
  if (opened === null) throw notFound(key);
  try {
    for await (const chunk of opened.body) await write(io, chunk);
  } finally {
    await opened.close();
  }
}

/** Opens the store `--store` names, runs `action` on it, and closes it however the action ends. */
export async function withStorage<T>(options: StoreOptions, action: (storage: Storage) => Promise<T>): Promise<T> {
  const storage = createCoreStorage({ driver: await driverFromUrl(options.store) });
  try {
    return await action(storage);
  } finally {
    await storage.dispose();
  }
}

function parseMs(value: string): number {
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms <= 0) throw new StorageError("E_INVALID_OPTION", `--ttl takes milliseconds > 0, got ${value}`);
  return ms;
}

function parseDepth(value: string): number {
  const depth = Number(value);
  if (!Number.isInteger(depth) || depth < 0) throw new StorageError("E_INVALID_OPTION", `--max-depth takes an integer >= 0, got ${value}`);
  return depth;
}

function parseLimit(value: string): number {
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1) throw new StorageError("E_INVALID_OPTION", `--limit takes an integer >= 1, got ${value}`);
  return limit;
}

/** `--prune`: milliseconds, or `now` as in `git gc --prune=now`. */
function parseGrace(value: string): number {
  if (value === "now") return 0;
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0) throw new StorageError("E_INVALID_OPTION", `--prune takes milliseconds >= 0 or "now", got ${value}`);
  return ms;
}

function parseBytes(value: string): number {
  const bytes = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(bytes) || bytes < 1) {
    throw new StorageError("E_INVALID_OPTION", `--max-body-size takes a byte count >= 1, got ${JSON.stringify(value)}`);
  }
  return bytes;
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new StorageError("E_INVALID_OPTION", `--port takes 0-65535, got ${value}`);
  return port;
}

/** Resolves on the first SIGINT or SIGTERM, and stops listening for them. */
function interrupted(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

interface ServeOptions extends StoreOptions {
  host: string;
  port: number;
  token?: string;
  readOnly?: boolean;
  maxBodySize?: number;
  insecure?: boolean;
  allowedHost?: string[];
}

/** `--token`, else `$STOWAGE_TOKEN`; an empty one is refused, never taken for "no token". */
function serveToken(options: ServeOptions): string | undefined {
  const fromEnv = options.token === undefined;
  const token = options.token ?? process.env.STOWAGE_TOKEN;
  if (token !== undefined && !isBearerToken(token)) {
    const source = fromEnv ? "$STOWAGE_TOKEN" : "--token";
    throw new StorageError("E_INVALID_OPTION", `${source} must be non-empty visible ASCII without spaces${token === "" ? " (to serve without a token, leave it unset)" : ""}`);
  }
  return token;
}

/**
 * Refuses to serve a non-loopback address without a token, before the store
 * is opened (opening the default store creates it): anyone who can reach the
 * port could read and write the store.
 */
function checkExposure(options: ServeOptions, token: string | undefined): void {
  if (token !== undefined || options.insecure || isLoopback(options.host)) return;
  throw new StorageError(
    "E_INVALID_OPTION",
    `refusing to serve on ${options.host} without a token: anyone who can reach it could read and write the store. Give --token (or $STOWAGE_TOKEN), or --insecure to serve it unauthenticated`,
  );
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `stowage serve`: the store over HTTP until SIGINT or SIGTERM, then a graceful shutdown. */
async function serve(io: CliIo, options: ServeOptions): Promise<void> {
  const token = serveToken(options);
  checkExposure(options, token);
  checkAllowedHosts(options.allowedHost);
  const signal = interrupted();
  await withStorage(options, async (storage) => {
    const server = createStorageServer(storage, {
      host: options.host,
      port: options.port,
      token,
      insecure: options.insecure === true,
      allowedHosts: options.allowedHost,
      readOnly: options.readOnly === true,
      maxBodySize: options.maxBodySize,
    });
    const url = await server.listen();
    if (token === undefined && !isLoopback(options.host)) {
      process.stderr.write(`stowage: warning: serving without a token (--insecure): anyone who can reach ${url} can read and write ${options.store}\n`);
    }
    await write(io, `stowage: serving ${options.store} at ${url}${token ? " (bearer token required)" : ""}${options.readOnly ? " (read-only)" : ""}\n`);
    await signal;
    await server.close();
  });
}

/** `stowage watch`: one JSON line per change under `base`, until SIGINT or SIGTERM. */
async function watchChanges(io: CliIo, base: string | undefined, options: StoreOptions): Promise<void> {
  const signal = interrupted();
  // Checked as any base is (a "?" or ".." refused), so the watch never covers more than was named.
  const prefix = normalizeItemBase(base);
  await withStorage(options, async (storage) => {
    const { driver } = storage.getMount("");
    if (!driver.flags?.watch) {
      throw new StorageError("E_UNSUPPORTED", `${options.store} has no change feed (its driver is not flagged "watch"); watch an fs: store, for instance`);
    }
    let lines = Promise.resolve();
    const unwatch = await storage.watch((event, key) => {
      if (prefix && !key.startsWith(prefix)) return;
      lines = lines.then(() => write(io, JSON.stringify({ event, key }) + "\n"));
    });
    process.stderr.write(`stowage: watching ${options.store}${prefix ? ` under ${prefix}` : ""}\n`);
    // A change feed need not hold the event loop open; the command runs until it is interrupted.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    await signal;
    clearInterval(keepAlive);
    await unwatch();
    await lines;
  });
}

function isMaintainable(driver: Driver): driver is Driver & Maintainable {
  return typeof (driver as Partial<Maintainable>).maintenance === "function";
}

/** `stowage gc`: the store's own maintenance, printed as JSON. */
async function collectGarbage(io: CliIo, options: StoreOptions & { prune?: number }): Promise<void> {
  await withStorage(options, async (storage) => {
    // The store's own driver may sit under layers (wrapDriver): its maintenance is found through them.
    const driver = findLayer(storage.getMount("").driver, isMaintainable);
    if (!driver) throw new StorageError("E_UNSUPPORTED", `${options.store} has no maintenance to run (gc packs and prunes git: stores)`);
    const result = driver.maintenance({ all: true, prune: true, grace: options.prune });
    await write(io, JSON.stringify(result) + "\n");
  });
}

/** The `stowage` command: get, set, del, keys, meta, log, gc, serve, watch, sync, lock, locks and receipts against a store URL. */
export function buildProgram(io: CliIo): Command {
  const program = new Command("stowage")
    .description("Read and write a stowage store from the shell.")
    // Commander's own error output goes: main prints every failure as one line. Help still goes to stdout.
    .configureOutput({ writeErr: () => undefined })
    .exitOverride();
  const store = () => new Option("-s, --store <url>", `store URL (${STORE_SCHEMES.map((s) => s + ":").join(", ")})`).default(DEFAULT_STORE);

  program
    .command("get <key>")
    .description("print a value: strings as text, anything else as JSON")
    .addOption(store())
    .option("-r, --raw", "write the stored bytes to stdout as they are")
    .action((key: string, options: StoreOptions & { raw?: boolean }) =>
      withStorage(options, async (storage) => {
        if (options.raw) return printStream(io, key, await storage.getItemStream(key));
        const value = await storage.getItem(key);
        if (value === null) throw notFound(key);
        await write(io, formatValue(value) + "\n");
      }),
    );

  program
    .command("set <key> [value]")
    .description("store a value (JSON if it parses as JSON, text otherwise); without a value, read stdin")
    .addOption(store())
    .option("-r, --raw", "store stdin's bytes as they are")
    .option("--string", "store the value as a string even if it parses as JSON")
    .option("--ttl <ms>", "expire the value after this many milliseconds", parseMs)
    .action((key: string, value: string | undefined, options: StoreOptions & { raw?: boolean; string?: boolean; ttl?: number }) =>
      withStorage(options, async (storage) => {
        const setOptions = options.ttl === undefined ? {} : { ttl: options.ttl };
        if (options.raw) {
          if (value !== undefined) throw new StorageError("E_INVALID_OPTION", "--raw reads the value from stdin; give no value argument");
          await storage.setItemStream(key, checkedStdin(io.stdin), setOptions);
          return;
        }
        const text = value ?? (await readAll(io.stdin)).toString("utf8");
        await storage.setItem(key, parseValue(text, options.string === true), setOptions);
      }),
    );

  program
    .command("del <key>")
    .alias("rm")
    .description("remove a value")
    .addOption(store())
    .action((key: string, options: StoreOptions) => withStorage(options, (storage) => storage.removeItem(key)));

  program
    .command("keys [base]")
    .description("list keys, one per line")
    .addOption(store())
    .option("-d, --max-depth <n>", "only keys at most this many separators deep", parseDepth)
    .action((base: string | undefined, options: StoreOptions & { maxDepth?: number }) =>
      withStorage(options, async (storage) => {
        for await (const batch of storage.iterateKeys(base, { maxDepth: options.maxDepth })) {
          if (batch.length > 0) await write(io, batch.join("\n") + "\n");
        }
      }),
    );

  program
    .command("meta <key>")
    .description("print a key's metadata as JSON")
    .addOption(store())
    .action((key: string, options: StoreOptions) =>
      withStorage(options, async (storage) => {
        if (!(await storage.hasItem(key))) throw new StorageError("E_NOT_FOUND", `No value at ${JSON.stringify(key)}`, { key });
        await write(io, JSON.stringify(await storage.getMeta(key)) + "\n");
      }),
    );

  program
    .command("log <key>")
    .description("print a key's history, newest first, one JSON line per version (stores with history: git, etcd, nats)")
    .addOption(store())
    .option("-n, --limit <n>", "at most this many versions", parseLimit)
    .action((key: string, options: StoreOptions & { limit?: number }) =>
      withStorage(options, async (storage) => {
        for (const entry of await storage.getHistory(key, { limit: options.limit })) {
          const line = { version: entry.version, date: entry.date.toISOString(), author: entry.author, message: entry.message, value: entry.value };
          await write(io, formatJsonLine(line) + "\n");
        }
      }),
    );

  program
    .command("gc")
    .description("pack the store's objects into one pack and prune unreachable ones (git: stores)")
    .addOption(store())
    .option("--prune <ms|now>", "prune unreachable objects older than this (default two weeks, as git gc)", parseGrace)
    .action((options: StoreOptions & { prune?: number }) => collectGarbage(io, options));

  program
    .command("serve")
    .description("serve the store over HTTP (unstorage's protocol; see docs/server.md) until SIGINT or SIGTERM")
    .addOption(store())
    .option("--host <host>", "interface to listen on", "127.0.0.1")
    .option("-p, --port <port>", "port (0 picks a free one)", parsePort, 8787)
    .option("--token <token>", "require Authorization: Bearer <token> (default: $STOWAGE_TOKEN)")
    .option("--allowed-host <name>", "also answer requests whose Host is this name (repeatable; default: loopback names only without a token)", collect)
    .option("--insecure", "serve a non-loopback --host without a token (anyone who can reach it can read and write)")
    .option("--read-only", "refuse PUT and DELETE")
    .option("--max-body-size <bytes>", "largest request body in bytes (default 16 MiB)", parseBytes)
    .action((options: ServeOptions) => serve(io, options));

  program
    .command("watch [base]")
    .description("print changes under base as JSON lines until SIGINT or SIGTERM")
    .addOption(store())
    .action((base: string | undefined, options: StoreOptions) => watchChanges(io, base, options));

  registerSync(program, io);
  registerCoordination(program, io);
  return program;
}
