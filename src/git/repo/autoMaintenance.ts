import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ioError, isErrno, StorageError } from "../errors.js";
import { maintain, type MaintenanceOptions, type MaintenanceResult } from "./maintenance.js";
import type { Repository } from "./repository.js";

/** Git's `gc.auto`: past about this many loose objects, `git gc --auto` packs them. */
export const DEFAULT_LOOSE_LIMIT = 6700;

/** Writes between two estimates of the loose objects (an estimate lists one directory). */
const CHECK_EVERY = 64;

/**
 * Keeps a store that writes loose objects (git-refs, git-notes,
 * git-objects) from piling up loose files: every {@link CHECK_EVERY} writes
 * it estimates the loose objects the way `git gc --auto` does (the entries
 * of `objects/17`, times 256) and, past the limit, packs them and prunes
 * unreachable ones older than two weeks — what `git gc --auto` would do.
 */
export class AutoMaintenance {
  private writes = 0;
  /** Loose objects a run left (unreachable but young): not counted again, so they do not trigger a run per check. */
  private floor = 0;

  /** `limit` 0 turns the automatic run off; {@link run} still works. */
  constructor(
    private readonly repo: Repository,
    private readonly limit = DEFAULT_LOOSE_LIMIT,
  ) {}

  /** Counts writes that may have left loose objects; runs maintenance when they pile up. */
  wrote(count = 1): void {
    if (this.limit <= 0) return;
    this.writes += count;
    if (this.writes < CHECK_EVERY) return;
    this.writes = 0;
    try {
      if (estimateLoose(this.repo.objectsDir) - this.floor <= this.limit) return;
      maintain(this.repo, { prune: true });
      this.floor = estimateLoose(this.repo.objectsDir);
    } catch (error) {
      // The write that triggered this is done; its objects stay loose until the next run.
      process.emitWarning(`stowage git: packing loose objects failed (the data is intact, it stays loose): ${String(error)}`);
    }
  }

  /** Maintenance by hand: packs loose objects, merges packs, prunes (see {@link maintain}). */
  run(options: MaintenanceOptions = {}): MaintenanceResult {
    return maintain(this.repo, { prune: true, ...options });
  }
}

/** A driver that packs and prunes its repository by hand. */
export interface Maintainable {
  /** Packs loose objects, merges packs, prunes unreachable objects older than `grace` (docs/git-engine.md). */
  maintenance(options?: MaintenanceOptions): MaintenanceResult;
}

/** A driver's `looseLimit` option, checked: an integer >= 0 (default {@link DEFAULT_LOOSE_LIMIT}). */
export function looseLimitOption(value: number | undefined, driver: string): number {
  if (value === undefined) return DEFAULT_LOOSE_LIMIT;
  if (!Number.isInteger(value) || value < 0) throw new StorageError("E_INVALID_OPTION", `looseLimit must be an integer >= 0, got ${value}`, { driver });
  return value;
}

/** Loose objects, estimated from one of the 256 fan-out directories as git does. */
export function estimateLoose(objectsDir: string): number {
  try {
    return readdirSync(join(objectsDir, "17")).length * 256;
  } catch (error) {
    if (isErrno(error, "ENOENT")) return 0;
    throw ioError(`Cannot list ${objectsDir}/17`, error);
  }
}
