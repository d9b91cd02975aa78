import { Option, type Command } from "commander";
import { StorageError } from "../core/errors.js";
import type { GitDriver } from "../drivers/git.js";
import type { CliIo } from "./program.js";
import { DEFAULT_STORE, driverFromUrl } from "./storeUrl.js";

interface SyncCommandOptions {
  store: string;
  policy: "latest" | "ours" | "theirs";
}

/** `stowage sync`: one sync of a git: store with a remote, its result printed as one JSON line. */
async function syncStore(io: CliIo, remote: string, options: SyncCommandOptions): Promise<void> {
  // Refused before opening: opening a git: path that holds nothing creates a repository there.
  if (!options.store.startsWith("git:")) throw new StorageError("E_UNSUPPORTED", `sync works on git: stores only, not ${options.store}`);
  const driver = (await driverFromUrl(options.store)) as GitDriver;
  try {
    const result = await driver.sync(remote, { policy: options.policy });
    await new Promise<void>((resolve, reject) => io.stdout.write(JSON.stringify(result) + "\n", (error) => (error ? reject(error) : resolve())));
  } finally {
    await driver.dispose?.();
  }
}

/**
 * Registers `stowage sync <remote> [--policy latest|ours|theirs] [--store git:<dir>]`:
 * fetch the store's ref from the remote (a configured remote, a URL or a
 * path), merge it per key, push the result (docs/git.md, "Sync").
 */
export function registerSync(program: Command, io: CliIo): void {
  program
    .command("sync <remote>")
    .description("fetch the remote's copy of the store's ref, merge it per key, push the result (git: stores)")
    .addOption(new Option("-s, --store <url>", "the git: store to sync").default(DEFAULT_STORE))
    .addOption(new Option("-p, --policy <policy>", "who wins a key both sides changed").choices(["latest", "ours", "theirs"]).default("latest"))
    .action((remote: string, options: SyncCommandOptions) => syncStore(io, remote, options));
}
