import type { IncomingHttpHeaders } from "node:http";
import { StorageError, isStorageError, type StorageErrorCode } from "../core/errors.js";
import { normalizeItemBase, normalizeItemKey } from "../core/keys.js";
import { FENCE_ACCEPTED_HEADER, FENCE_APPLIED_HEADER, FENCE_ID_HEADER, FENCE_TOKEN_HEADER, fenceOption } from "../core/fence.js";
import type { Fence, StorageMeta } from "../core/types.js";

/**
 * unstorage's HTTP protocol, as its server (`unstorage/server`) and its http
 * driver speak it, plus stowage's ETags. See docs/server.md.
 */

/** The content type that marks raw bytes (Accept on GET, Content-Type on PUT). */
export const OCTET_STREAM = "application/octet-stream";
export const METHODS = "GET, HEAD, PUT, DELETE";
export const READ_METHODS = "GET, HEAD";

/**
 * Errors the server raises itself about a request, whose message is safe to
 * send back (it names only what the client sent). Every other failure comes
 * from the store, whose messages may name server paths or internals: those
 * are answered with a message made from the code alone.
 */
const TOLD = new WeakSet<Error>();

/** Marks `error` as the server's own, its message fit for the answer. */
function told<E extends Error>(error: E): E {
  TOLD.add(error);
  return error;
}

/** A request error of the server's own: a StorageError whose message goes back to the client. */
export function requestError(code: StorageErrorCode, message: string, cause?: unknown): StorageError {
  return told(new StorageError(code, message, cause === undefined ? {} : { cause }));
}

/** What a request path names: one key, or a base (path ending in `:` or `/`) to list or clear. */
export interface Target {
  key: string;
  base: boolean;
}

/** A request target: the path (query cut off) and, in absolute form, the authority that stands for Host. */
export interface RequestTarget {
  path: string;
  authority: string | undefined;
  /** Whether the target carried a query (`?…`), which is never part of the key. */
  query: boolean;
}

const ABSOLUTE_FORM = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^#]*)$/i;

/**
 * Splits a request target (RFC 9112 §3.2): origin form (`/kv/x?q`), or
 * absolute form (`http://host/kv/x`), which a server must accept and whose
 * authority replaces the Host header. The query is not part of the key.
 */
export function splitTarget(url: string): RequestTarget {
  let path = url;
  let authority: string | undefined;
  if (!url.startsWith("/")) {
    const absolute = ABSOLUTE_FORM.exec(url);
    const scheme = absolute?.[1]!.toLowerCase();
    // userinfo is forbidden in http(s) URIs (RFC 9110 §4.2.4), and an empty authority names no host.
    if (!absolute || (scheme !== "http" && scheme !== "https") || absolute[2] === "" || absolute[2]!.includes("@")) {
      throw requestError("E_INVALID_KEY", "The request target must be a path (/key) or an absolute http URL");
    }
    authority = absolute[2]!;
    path = absolute[3] || "/";
    if (!path.startsWith("/")) path = "/" + path;
  }
  const query = path.indexOf("?");
  return { path: query === -1 ? path : path.slice(0, query), authority, query: query !== -1 };
}

/**
 * Percent-escapes of what the key rules treat as separators (`/`, `\`, `:`)
 * or strip (`?` and all after it). Decoded, they would let a key act on
 * another, wider one: `/a%3F` on `a`, `/%3F/` on the whole store, `/a%2F` on
 * the base `a:`. No client encodes them (both http drivers split keys on
 * separators and refuse `?`), so they are refused.
 */
const WIDENING_ESCAPE = /%(?:3f|2f|5c|3a)/i;

/**
 * Turns a request path (below the base path, query already cut off) into a
 * key: percent-decoded, separators normalized, and checked by the core's key
 * rules, so `..`, NUL and empty keys fail as E_INVALID_KEY.
 */
export function parseTarget(path: string): Target {
  let decoded = path;
  if (path.includes("%")) {
    if (WIDENING_ESCAPE.test(path)) {
      throw requestError("E_INVALID_KEY", "Invalid key: a percent-encoded ?, /, \\ or : would name a different key than the one sent");
    }
    try {
      decoded = decodeURIComponent(path);
    } catch (error) {
      throw requestError("E_INVALID_KEY", "Invalid key: malformed percent-encoding", error);
    }
  }
  const last = decoded.charCodeAt(decoded.length - 1);
  const base = last === 58 /* : */ || last === 47; /* / */
  // "/a/b" as "a:b" up front, so a plain key takes the core's fast path.
  const key = decoded.slice(1).replaceAll("/", ":");
  return { key: toldKey(() => (base ? normalizeItemBase(key) : normalizeItemKey(key))), base };
}

/** Runs a key check whose error names only the key it was given: that error is the server's own to tell. */
function toldKey(check: () => string): string {
  try {
    return check();
  } catch (error) {
    throw error instanceof Error ? told(error) : error;
  }
}

/** The `x-ttl` header: plain decimal seconds (unstorage's unit; a fraction of up to 3 digits carries milliseconds) to the core's milliseconds. */
export function ttlFromHeader(header: string | string[] | undefined): number | undefined {
  if (header === undefined || header === "") return undefined;
  // Plain digits only: Number() would also take "0x10", "1e3", " 5" and "Infinity".
  const match = typeof header === "string" ? /^(\d{1,12})(?:\.(\d{1,3}))?$/.exec(header) : null;
  if (!match) {
    throw requestError("E_INVALID_OPTION", `x-ttl must be plain decimal seconds (digits, at most 3 after a point), got ${JSON.stringify(header)}`);
  }
  const ms = Number(match[1]) * 1000 + Number((match[2] ?? "").padEnd(3, "0"));
  // 0 means no expiry, as in unstorage's server.
  return ms === 0 ? undefined : ms;
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
    throw requestError("E_INVALID_OPTION", `${name} takes "*" or one strong entity tag in quotes, got ${JSON.stringify(value)}`);
  }
  try {
    return decodeURIComponent(match[1]!);
  } catch (error) {
    throw requestError("E_INVALID_OPTION", `${name}: malformed entity tag`, error);
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

/** The fence headers, defined in core/fence.ts beside the fence (the http driver sends and checks the same ones). */
export { FENCE_ACCEPTED_HEADER, FENCE_APPLIED_HEADER, FENCE_ID_HEADER, FENCE_TOKEN_HEADER };
/** What the OPTIONS of the base path allows, with and without writes. */
export const BASE_METHODS = "GET, HEAD, PUT, DELETE, OPTIONS";
export const READ_BASE_METHODS = "GET, HEAD, OPTIONS";
/** A fenceId as sent: percent-encoded UTF-8 (encodeURIComponent's alphabet), at most this long. */
const FENCE_ID = /^[A-Za-z0-9\-_.!~*'()%]{1,4096}$/;
/** A token as sent: a positive decimal integer without leading zeros (checked to be a safe integer after). */
const FENCE_TOKEN = /^[1-9][0-9]{0,15}$/;

/**
 * The fence of a PUT or DELETE (`X-Fence-Id`, percent-encoded, and
 * `X-Fence-Token`, decimal), for the storage to check on its own data; or
 * undefined without either header. Hostile input is refused, never
 * stretched into a fence: both headers or neither, one of each (node joins
 * repeated headers with commas, which neither alphabet holds), well-formed.
 *
 * @throws StorageError `E_INVALID_OPTION` (400) for one header without the other, or a malformed one
 */
export function fenceFromHeaders(headers: IncomingHttpHeaders): Fence | undefined {
  const id = headers[FENCE_ID_HEADER];
  const token = headers[FENCE_TOKEN_HEADER];
  if (id === undefined && token === undefined) return undefined;
  if (typeof id !== "string" || typeof token !== "string") {
    throw requestError("E_INVALID_OPTION", "A fenced write sends one X-Fence-Id and one X-Fence-Token");
  }
  if (!FENCE_TOKEN.test(token)) throw requestError("E_INVALID_OPTION", "X-Fence-Token must be a positive decimal integer");
  if (!FENCE_ID.test(id)) throw requestError("E_INVALID_OPTION", "X-Fence-Id must be a percent-encoded fence id of at most 4096 characters");
  let fenceId: string;
  try {
    fenceId = decodeURIComponent(id);
  } catch (error) {
    throw requestError("E_INVALID_OPTION", "X-Fence-Id: malformed percent-encoding", error);
  }
  try {
    return fenceOption({ fence: { fenceId, token: Number(token) } });
  } catch (error) {
    throw requestError("E_INVALID_OPTION", `Malformed fence: ${(error as Error).message}`, error);
  }
}

const STATUS_BY_CODE: Record<string, number> = {
  E_INVALID_KEY: 400,
  E_INVALID_VALUE: 400,
  E_INVALID_OPTION: 400,
  E_NOT_FOUND: 404,
  E_READONLY: 405,
  E_CONFLICT: 412,
  /** A fenced write whose token is lower than one already used: the resource's state conflicts with the request. */
  E_FENCED: 409,
  E_TOO_LARGE: 413,
  E_UNSUPPORTED: 501,
  E_UNAVAILABLE: 503,
};

/** What an answer says for a failure of the store, whose own message stays on the server (it may name paths). */
const MESSAGE_BY_CODE: Record<string, string> = {
  E_INVALID_KEY: "The store refused the key",
  E_INVALID_VALUE: "The store refused the value",
  E_INVALID_OPTION: "The store refused the request's options",
  E_NOT_FOUND: "KV value not found",
  E_READONLY: "The store is read-only",
  E_CONFLICT: "The stored version differs",
  E_FENCED: "A later fence token has written here: this write is fenced out",
  E_TOO_LARGE: "The value is too large for the store",
  E_UNSUPPORTED: "The store does not support this request",
  E_UNAVAILABLE: "The store is unavailable",
};

/** A failure's answer: its status, its JSON body, and whether its message was withheld (then `onError` should hear of it). */
export interface ErrorAnswer {
  status: number;
  body: { code: string; message: string };
  withheld: boolean;
}

/**
 * The HTTP status and JSON body for a failure. Never a stack trace, and
 * never a message of the store's (it may name files or internals): only the
 * server's own errors about the request keep their message ({@link told});
 * any other failure gets one made from its code, and the server's `onError`
 * gets the whole error.
 */
export function errorResponse(error: unknown): ErrorAnswer {
  const status = isStorageError(error) ? (STATUS_BY_CODE[error.code] ?? 500) : 500;
  const code = isStorageError(error) ? error.code : "E_DRIVER";
  if (status !== 500 && TOLD.has(error as Error)) return { status, body: { code, message: (error as Error).message }, withheld: false };
  return { status, body: { code, message: MESSAGE_BY_CODE[code] ?? "Internal server error" }, withheld: true };
}
