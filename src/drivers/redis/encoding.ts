import { guardOf } from "../../core/guards.js";
import type { RemoveOptions, SetOptions } from "../../core/types.js";
import { DRIVER_NAME } from "./errors.js";

/** How keys, options and values become Redis arguments. */

/** A prefix written into a SCAN MATCH or PSUBSCRIBE pattern: glob characters escaped. */
export function globEscape(text: string): string {
  return text.replace(/[\\*?[\]]/g, "\\$&");
}

/** PX of a ttl in ms; Redis takes whole milliseconds. */
export function pxOf(opts: SetOptions | undefined): string {
  return opts?.ttl === undefined ? "" : String(Math.max(1, Math.round(opts.ttl)));
}

/** The guard of a write as the scripts take it: "" none, "*" create-only, else the etag the stored value must have. */
export function scriptGuard(opts: SetOptions | RemoveOptions | undefined, key: string): string {
  const guard = guardOf(opts, DRIVER_NAME, key);
  return guard.kind === "match" ? guard.etag : guard.kind === "absent" ? "*" : "";
}

/** Bytes as a Buffer view (ioredis sends only Buffers as binary), without a copy. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
