import { appendFileSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { makeDirectories } from "../fileUtil.js";
import { corrupt, ioError, isErrno } from "../errors.js";
import type { ObjectId } from "../objects/objectId.js";
import { formatSignature, parseSignature, type Signature } from "../objects/signature.js";

/** One reflog line. */
export interface ReflogEntry {
  old: ObjectId;
  new: ObjectId;
  who: Signature;
  message: string;
}

/** Git's reflog line: `<old> <new> <name> <<email>> <unix-ts> <tz>\t<message>\n` (no tab when there is no message). */
export function formatReflogLine(entry: ReflogEntry): string {
  // Git folds a message onto one line.
  const message = entry.message.replace(/\s+/g, " ").trim();
  return `${entry.old} ${entry.new} ${formatSignature(entry.who)}${message === "" ? "" : `\t${message}`}\n`;
}

/** Appends one line to a reflog file, creating it (and its directories) when needed. */
export function appendReflog(path: string, entry: ReflogEntry): void {
  const line = formatReflogLine(entry);
  try {
    appendFileSync(path, line);
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw ioError(`Cannot append to ${path}`, error);
    makeDirectories(dirname(path));
    appendFileSync(path, line);
  }
}

/** Reads a reflog, oldest first; empty when there is none. */
export function readReflog(path: string): ReflogEntry[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR")) return [];
    throw ioError(`Cannot read ${path}`, error);
  }
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => {
      const tab = line.indexOf("\t");
      const head = tab < 0 ? line : line.slice(0, tab);
      if (head[40] !== " " || head[81] !== " ") throw corrupt(`Bad reflog line in ${path}`);
      return { old: head.slice(0, 40), new: head.slice(41, 81), who: parseSignature(head.slice(82)), message: tab < 0 ? "" : line.slice(tab + 1) };
    });
}
