import { randomBytes } from "node:crypto";

// One random stem per process plus a counter: unique without a random draw per file.
const stem = `${process.pid.toString(36)}_${randomBytes(4).toString("hex")}`;
let counter = 0;

/** A file name for staging, unique in this process and unlikely to clash with any other. */
export function tempName(prefix: string): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  return `${prefix}${stem}_${counter.toString(36)}`;
}
