import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";

/** A plain Node-style error with an errno code, for a caller to wrap. */
function errnoError(code: string, message: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}, '${path}'`), { code, path });
}

/** Makes one directory; one that another process made meanwhile is as good. */
function makeOne(dir: string): void {
  try {
    mkdirSync(dir);
  } catch (error) {
    const exists = (error as NodeJS.ErrnoException).code === "EEXIST";
    if (exists && statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return;
    throw error;
  }
}

/**
 * Creates a directory and its missing parents with one `mkdir` per missing
 * level, so it ends after as many steps as the path has. Node's
 * `mkdirSync(dir, { recursive: true })` (Node 20.20) never returns where a
 * parent exists but cannot hold the child: under `/proc`, `mkdir /proc/x`
 * fails with ENOENT and `mkdir /proc` with EEXIST, and it tries again forever
 * at full CPU.
 *
 * @throws the Node error of the level that failed (ENOENT, EACCES, EEXIST for
 *   a dangling symlink, ENOTDIR for a parent that is a file): callers wrap it
 */
export function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let current = dir; ; current = dirname(current)) {
    const found = statSync(current, { throwIfNoEntry: false });
    if (found?.isDirectory()) break;
    if (found) throw errnoError("ENOTDIR", "not a directory", current);
    missing.push(current);
    // A root that does not exist (a missing drive): its mkdir below says why.
    if (dirname(current) === current) break;
  }
  for (const each of missing.reverse()) makeOne(each);
}
