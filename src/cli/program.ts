import { Command, Option } from "commander";
import { StorageError } from "../core/errors.js";
import { createCoreStorage } from "../core/storage.js";
import type { Storage } from "../core/types.js";
import { DEFAULT_STORE, STORE_SCHEMES, driverFromUrl } from "./storeUrl.js";

/** Where the CLI reads and writes, so tests and embedders can swap them. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
}

interface StoreOptions {
  store: string;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
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
  return JSON.stringify(value, (_key, item: unknown) => (typeof item === "bigint" ? item.toString() : item));
}

function write(io: CliIo, data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => io.stdout.write(data, (error) => (error ? reject(error) : resolve())));
}

async function withStorage<T>(options: StoreOptions, action: (storage: Storage) => Promise<T>): Promise<T> {
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

/** The `stowage` command: get, set, del, keys and meta against a store URL. */
export function buildProgram(io: CliIo): Command {
  const program = new Command("stowage")
    .description("Read and write a stowage store from the shell.")
    .showHelpAfterError()
    .exitOverride();
  const store = () => new Option("-s, --store <url>", `store URL (${STORE_SCHEMES.map((s) => s + ":").join(", ")})`).default(DEFAULT_STORE);

  program
    .command("get <key>")
    .description("print a value: strings as text, anything else as JSON")
    .addOption(store())
    .option("-r, --raw", "write the stored bytes to stdout as they are")
    .action((key: string, options: StoreOptions & { raw?: boolean }) =>
      withStorage(options, async (storage) => {
        const value = options.raw ? await storage.getItemRaw(key) : await storage.getItem(key);
        if (value === null) throw new StorageError("E_NOT_FOUND", `No value at ${JSON.stringify(key)}`, { key });
        await write(io, options.raw ? (value as Uint8Array) : formatValue(value) + "\n");
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
          await storage.setItemRaw(key, await readAll(io.stdin), setOptions);
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

  return program;
}
