import { StorageError, isStorageError } from "../core/errors.js";
import { normalizeItemBase, normalizeItemKey } from "../core/keys.js";
import type { StorageMeta } from "../core/types.js";

/**
 * unstorage's HTTP protocol, as its server (`unstorage/server`) and its http
 * driver speak it, plus stowage's ETags. See docs/server.md.
 */

/** The content type that marks raw bytes (Accept on GET, Content-Type on PUT). */
export const OCTET_STREAM = "application/octet-stream";
export const METHODS = "GET, HEAD, PUT, DELETE";
export const READ_METHODS = "GET, HEAD";

/** What a request path names: one key, or a base (path ending in `:` or `/`) to list or clear. */
export interface Target {
  key: string;
  base: boolean;
}

/**
 * Turns a request path (below the base path, query already cut off) into a
 * key: percent-decoded, separators normalized, and checked by the core's key
 * rules, so `..`, NUL and empty keys fail as E_INVALID_KEY.
 */
export function parseTarget(path: string): Target {
  let decoded = path;
  if (path.includes("%")) {
    try {
      decoded = decodeURIComponent(path);
    } catch (error) {
      throw new StorageError("E_INVALID_KEY", "Invalid key: malformed percent-encoding", { cause: error });
    }
  }
  const last = decoded.charCodeAt(decoded.length - 1);
  const base = last === 58 /* : */ || last === 47; /* / */
  // "/a/b" as "a:b" up front, so a plain key takes the core's fast path.
  const key = decoded.slice(1).replaceAll("/", ":");
  return { key: base ? normalizeItemBase(key) : normalizeItemKey(key), base };
}

/** The `x-ttl` header: seconds (unstorage's unit; may be fractional) to the core's milliseconds. */
export function ttlFromHeader(header: string | string[] | undefined): number | undefined {
  if (header === undefined || header === "") return undefined;
  const seconds = Number(header);
  if (typeof header !== "string" || !Number.isFinite(seconds) || seconds < 0) {
    throw new StorageError("E_INVALID_OPTION", `x-ttl must be a number of seconds, got ${JSON.stringify(header)}`);
  }
  // 0 means no expiry, as in unstorage's server.
  return seconds === 0 ? undefined : Math.max(1, Math.round(seconds * 1000));
}

/** An etag as an HTTP entity tag: quoted, its characters made safe for a header. */
export function formatEtag(etag: string): string {
  return `"${encodeURIComponent(etag)}"`;
}

/** A conditional header's value: `*`, one strong entity tag, or refused. */
export function parseCondition(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header.join(",") : header.trim();
  if (value === "*") return "*";
  const match = /^"([^",]*)"$/.exec(value);
  if (!match) {
    throw new StorageError("E_INVALID_OPTION", `${name} takes "*" or one strong entity tag in quotes, got ${JSON.stringify(value)}`);
  }
  try {
    return decodeURIComponent(match[1]!);
  } catch (error) {
    throw new StorageError("E_INVALID_OPTION", `${name}: malformed entity tag`, { cause: error });
  }
}

/** Response headers for an item's meta, as a flat `[name, value, ...]` list: unstorage's last-modified, x-ttl and cache-control, and an ETag. */
export function metaHeaders(meta: StorageMeta): (string | number)[] {
  const headers: (string | number)[] = [];
  if (meta.mtime) headers.push("last-modified", new Date(meta.mtime).toUTCString());
  if (typeof meta.ttl === "number" && meta.ttl > 0) {
    headers.push("x-ttl", String(meta.ttl / 1000), "cache-control", `max-age=${Math.floor(meta.ttl / 1000)}`);
  }
  if (typeof meta.etag === "string") headers.push("etag", formatEtag(meta.etag));
  return headers;
}

const STATUS_BY_CODE: Record<string, number> = {
  E_INVALID_KEY: 400,
  E_INVALID_VALUE: 400,
  E_INVALID_OPTION: 400,
  E_NOT_FOUND: 404,
  E_READONLY: 405,
  E_CONFLICT: 412,
  E_TOO_LARGE: 413,
  E_UNSUPPORTED: 501,
  E_UNAVAILABLE: 503,
};

/**
 * The HTTP status and JSON body for a failure. Never a stack trace; a 500
 * keeps its code but not its message, which may name files or internals
 * (the server's `onError` gets the whole error).
 */
export function errorResponse(error: unknown): { status: number; body: { code: string; message: string } } {
  const status = isStorageError(error) ? (STATUS_BY_CODE[error.code] ?? 500) : 500;
  const code = isStorageError(error) ? error.code : "E_DRIVER";
  return { status, body: { code, message: status === 500 ? "Internal server error" : (error as StorageError).message } };
}
