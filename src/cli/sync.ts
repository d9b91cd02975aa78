import { Option, type Command } from "commander";
import { StorageError } from "../core/errors.js";
import type { Driver } from "../core/types.js";
import type { GitDriver } from "../drivers/git.js";
import type { GitNotesDriver } from "../drivers/git-notes.js";
import type { SyncResult } from "../git/remote/fetchCheck.js";
import { write, type CliIo } from "./program.js";
import { DEFAULT_STORE, driverFromUrl } from "./storeUrl.js";

type Policy = "latest" | "ours" | "theirs";

interface SyncCommandOptions {
  store: string;
  /** Unset: the store's own default (`latest` on git:, `ours` on git-notes:). */
  policy?: Policy;
}

/** How `stowage sync` syncs one kind of store: the policies it takes (the first is its default) and the driver's sync. */
interface SyncKind {
  policies: readonly [Policy, ...Policy[]];
  /** Why a policy outside `policies` is refused. */
  why?: string;
  sync(driver: Driver, remote: string, policy: Policy): Promise<SyncResult>;
}

/** The stores `stowage sync` takes, by URL scheme. */
const SYNCABLE: Readonly<Record<string, SyncKind>> = {
  git: { policies: ["latest", "ours", "theirs"], sync: (driver, remote, policy) => (driver as GitDriver).sync(remote, { policy }) },
  "git-notes": {
    policies: ["ours", "theirs"],
    why: "the git-notes driver's sync settles a note both sides changed by taking one side, ours or theirs; it has no \"latest\"",
    sync: (driver, remote, policy) => (driver as GitNotesDriver).sync(remote, { policy: policy as "ours" | "theirs" }),
  },
};

/**
 * The scheme of `url` and how it syncs, with the policy to use (`--policy`,
 * else the store's default). Refused before the store is opened: opening a
 * git: path that holds nothing creates a repository there.
 *
 * @throws StorageError `E_UNSUPPORTED` for a store that is neither git: nor git-notes:; `E_INVALID_OPTION` for a policy the store does not take
 */
function syncPlan(url: string, given: Policy | undefined): { kind: SyncKind; policy: Policy } {
  const scheme = url.slice(0, Math.max(0, url.indexOf(":")));
  const kind = Object.hasOwn(SYNCABLE, scheme) ? SYNCABLE[scheme] : undefined;
  if (!kind) throw new StorageError("E_UNSUPPORTED", `sync works on git: and git-notes: stores only, not ${url}`);
  const policy = given ?? kind.policies[0];
  if (!kind.policies.includes(policy)) {
    throw new StorageError("E_INVALID_OPTION", `${scheme}: stores sync with --policy ${kind.policies.join(" or ")} (default ${kind.policies[0]}), not ${policy}: ${kind.why}`);
  }
  return { kind, policy };
}

/** `stowage sync`: one sync of a git: or git-notes: store with a remote, its result printed as one JSON line. */
async function syncStore(io: CliIo, remote: string, options: SyncCommandOptions): Promise<void> {
  const { kind, policy } = syncPlan(options.store, options.policy);
  const driver = await driverFromUrl(options.store);
  try {
    await write(io, JSON.stringify(await kind.sync(driver, remote, policy)) + "\n");
  } finally {
    await driver.dispose?.();
  }
}

/**
 * Registers `stowage sync <remote> [--policy latest|ours|theirs] [--store git:<dir>|git-notes:<dir>]`:
 * fetch the store's ref from the remote (a configured remote, a URL or a
 * path), merge it per key (per note on git-notes:), push the result
 * (docs/cli.md, docs/git.md "Sync", docs/git-notes.md "Sharing notes").
 */
export function registerSync(program: Command, io: CliIo): void {
  program
    .command("sync <remote>")
    .description("fetch the remote's copy of the store's ref, merge it per key, push the result (git: and git-notes: stores)")
    .addOption(new Option("-s, --store <url>", "the git: or git-notes: store to sync").default(DEFAULT_STORE))
    .addOption(
      new Option("-p, --policy <policy>", 'who wins a key both sides changed (default: "latest" on git:, "ours" on git-notes:, which refuses "latest")').choices([
        "latest",
        "ours",
        "theirs",
      ]),
    )
    .action((remote: string, options: SyncCommandOptions) => syncStore(io, remote, options));
}
