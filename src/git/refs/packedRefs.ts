import { readFileSync, statSync } from "node:fs";
import { corrupt, ioError, isErrno } from "../errors.js";
import { stableStamp } from "../fileStamp.js";
import { isObjectId, type ObjectId } from "../objects/objectId.js";

/** One line of `packed-refs`, with the peeled id of an annotated tag when Git recorded it (`^` line). */
export interface PackedRef {
  id: ObjectId;
  peeled?: ObjectId;
}

/** Parses `packed-refs`: an optional `# pack-refs with:` header, `<id> <name>` lines, `^<id>` peeled lines. */
export function parsePackedRefs(text: string): Map<string, PackedRef> {
  const refs = new Map<string, PackedRef>();
  let last: PackedRef | undefined;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("^")) {
      const peeled = line.slice(1).trimEnd();
      if (last === undefined || !isObjectId(peeled)) throw corrupt(`Bad peeled line in packed-refs: ${JSON.stringify(line)}`);
      last.peeled = peeled;
      continue;
    }
    const id = line.slice(0, 40);
    if (!isObjectId(id) || line[40] !== " ") throw corrupt(`Bad line in packed-refs: ${JSON.stringify(line)}`);
    last = { id };
    refs.set(line.slice(41).trimEnd(), last);
  }
  return refs;
}

/** `packed-refs` without `name` (and its peeled line); the header and all other lines verbatim. */
export function removeFromPackedRefs(text: string, name: string): string {
  const lines = text.split("\n");
  const kept: string[] = [];
  let dropping = false;
  for (const line of lines) {
    if (line.startsWith("^") && dropping) continue;
    dropping = line.length > 41 && line.slice(41).trimEnd() === name && !line.startsWith("#");
    if (!dropping) kept.push(line);
  }
  return kept.join("\n");
}

/**
 * `packed-refs`, parsed once and re-read only when the file changed (its
 * inode, size or nanosecond mtime: Git replaces the file by rename).
 */
export class PackedRefsCache {
  /** The parsed file's stamp: "" for no file, undefined when it was racy (not to be trusted again). */
  private stamp: string | undefined = "";
  private refs = new Map<string, PackedRef>();

  constructor(private readonly path: string) {}

  /** The current packed refs (empty when there is no file). */
  read(): Map<string, PackedRef> {
    const stamp = this.currentStamp();
    if (stamp !== undefined && stamp === this.stamp) return this.refs;
    let text: string;
    try {
      text = stamp === "" ? "" : readFileSync(this.path, "utf8");
    } catch (error) {
      if (!isErrno(error, "ENOENT")) throw ioError(`Cannot read ${this.path}`, error);
      text = "";
    }
    this.refs = parsePackedRefs(text);
    this.stamp = stamp;
    return this.refs;
  }

  /** The file's raw text, read fresh (for rewriting under `packed-refs.lock`). */
  readText(): string {
    try {
      return readFileSync(this.path, "utf8");
    } catch (error) {
      if (isErrno(error, "ENOENT")) return "";
      throw ioError(`Cannot read ${this.path}`, error);
    }
  }

  /** "" when there is no file; undefined when it is racy (see {@link stableStamp}). */
  private currentStamp(): string | undefined {
    try {
      return stableStamp(statSync(this.path, { bigint: true }));
    } catch (error) {
      if (isErrno(error, "ENOENT")) return "";
      throw ioError(`Cannot stat ${this.path}`, error);
    }
  }
}
