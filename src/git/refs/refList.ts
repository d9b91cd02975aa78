import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ioError, isErrno } from "../errors.js";
import type { RefStore } from "./refs.js";

/**
 * Names of the refs under `prefix` (ending in `/`), loose and packed, without
 * reading their values: the loose walk starts at the prefix's directory, so
 * a listing costs what lies under it, not every ref of the repository.
 */
export function listRefNames(refs: RefStore, prefix: string): string[] {
  const names = new Set<string>();
  for (const name of refs.packedRefs().keys()) if (name.startsWith(prefix)) names.add(name);
  walk(join(refs.commonDir, prefix), prefix, names);
  return [...names];
}

function walk(dir: string, prefix: string, into: Set<string>): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR")) return;
    throw ioError(`Cannot list ${dir}`, error);
  }
  for (const entry of entries) {
    // Locks of writers at work are not refs.
    if (entry.name.endsWith(".lock")) continue;
    if (entry.isDirectory()) walk(join(dir, entry.name), `${prefix}${entry.name}/`, into);
    else if (entry.isFile()) into.add(`${prefix}${entry.name}`);
  }
}
