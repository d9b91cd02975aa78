import { Agent as HttpAgent, request as httpRequest, validateHeaderName, validateHeaderValue, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { defineDriver } from "../core/defineDriver.js";
import { StorageError, type StorageErrorCode } from "../core/errors.js";
import { isMetaKey, normalizeKey } from "../core/keys.js";
import { FENCE_ACCEPTED_HEADER, FENCE_APPLIED_HEADER, FENCE_ID_HEADER, FENCE_TOKEN_HEADER, refuseUnfenceable } from "../core/fence.js";
import { checkOptions } from "../core/options.js";
import { destroyAndWait } from "../core/streams.js";
import { isBearerToken } from "../core/bearerToken.js";
import type { DriverFlags, ItemStream, RemoveOptions, SetOptions, StorageMeta, TransactionOptions } from "../core/types.js";

export interface HttpOptions {
  /** URL the keys live under, e.g. `http://127.0.0.1:8787/` (a stowage or unstorage storage server). Required. */
  base: string;
  /** Headers sent with every request. */
  headers?: Record<string, string>;
  /** Bearer token, sent as `Authorization: Bearer <token>`. */
  token?: string;
  /**
   * How long one call may take, retries included, in ms; then `E_UNAVAILABLE`.
   * @default 10_000
   */
  timeout?: number;
  /**
   * How many times a failed request is tried again; see docs/http.md for which ones are.
   * @default 2
   */
  retries?: number;
  /**
   * What answers at `base`: a stowage server keeps TTL,
   * etags and base-scoped clears, so the driver declares `ttl`, `cas` and
   * `clearBase`; against `"unstorage"`'s server it declares none of them.
   * @default "stowage"
   */
  server?: "stowage" | "unstorage";
  /**
   * What the stowage server's store's etags are (the server hands them on
   * as they are): `"content"` for a server over redis or a git driver,
   * `"version"` for the others (each driver's `flags.etag`). Declared as the driver's `etag`
   * flag; refused with `E_INVALID_OPTION` against unstorage's server, which
   * has no etags.
   * @default "version"
   */
  etag?: "version" | "content";
  /**
   * Requests in flight at once for getItems and setItems.
   * @default 16
   */
  concurrency?: number;
  /**
   * Largest answer body read whole, in bytes (at most
   * 512 MiB): a value, a raw value, a key listing. A larger one fails with
   * `E_TOO_LARGE` as soon as its length is known or its bytes pass the
   * limit, and its connection is closed. `getItemStream` is not bounded:
   * its body streams. Error answers are read up to 64 KiB.
   * @default 64 MiB
   */
  maxBodySize?: number;
}

const DRIVER_NAME = "http";
const OCTET_STREAM = "application/octet-stream";
const TEXT = "text/plain; charset=utf-8";
/** Answers that say the server did not do the work and may do it if asked again. */
const RETRY_STATUSES = new Set([502, 503, 504]);
/** Network failures that happen before a request reaches the server, so any request may be sent again. */
const CONNECT_ERRORS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN"]);
/** Keep-alive connections per server; more requests wait for one. */
const MAX_SOCKETS = 32;

/** `fence`: a stowage server fences writes on its own storage (X-Fence-Id / X-Fence-Token), where that storage can. */
const STOWAGE_FLAGS: DriverFlags = { ttl: true, cas: true, clearBase: true, fence: true };
const OPTION_NAMES: (keyof HttpOptions)[] = ["base", "headers", "token", "timeout", "retries", "server", "concurrency", "maxBodySize", "etag"];
const DEFAULT_MAX_BODY = 64 * 1024 * 1024;
/** Past this a body cannot become one string (V8's limit is about 512 Mi characters). */
const MAX_BODY_LIMIT = 512 * 1024 * 1024;
/** Error answers say why in a few words; more than this is not read. */
const ERROR_BODY: BodyLimit = { bytes: 64 * 1024, past: "drop" };
/**
 * Keys travel in the request line, each UTF-8 byte percent-encoded as at most
 * 3 characters: 4,096 bytes are at most 12 KiB of URL, within node:http's
 * 16 KiB limit for a request's head (stowage's server answers 431 past it)
 * with room left for the base path and headers.
 */
const KEY_LIMITS = Object.freeze({ bytes: 4096, segments: 1024 });

const CODE_BY_STATUS: Record<number, StorageErrorCode> = {
  400: "E_INVALID_OPTION",
  405: "E_READONLY",
  409: "E_FENCED",
  412: "E_CONFLICT",
  413: "E_TOO_LARGE",
  501: "E_UNSUPPORTED",
  502: "E_UNAVAILABLE",
  503: "E_UNAVAILABLE",
  504: "E_UNAVAILABLE",
};

const KNOWN_CODES = new Set<string>([
  "E_INVALID_KEY",
  "E_INVALID_VALUE",
  "E_INVALID_OPTION",
  "E_READONLY",
  "E_NOT_FOUND",
  "E_CONFLICT",
  "E_FENCED",
  "E_UNSUPPORTED",
  "E_TOO_LARGE",
  "E_UNAVAILABLE",
  "E_CORRUPT",
  "E_IO",
  "E_DRIVER",
]);

interface Call {
  method: "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS";
  path: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** A conditional write: after an ambiguous failure it may have happened, so it is not sent again. */
  conditional?: boolean;
  /** Every final answer comes back (retried 502-504 aside), for the caller to judge: a probe. */
  anyAnswer?: boolean;
}

/** The fence the probe sends (its id percent-encoded as a fenced write's is): only a server that reads it echoes its token. */
const PROBE_FENCE = { [FENCE_ID_HEADER]: "stowage%3Aprobe", [FENCE_TOKEN_HEADER]: "1" };

/** A base as a URL path ending in `/`, which asks for a listing (or a clear); `""` for the root. */
function basePath(base: string): string {
  const path = keyPath(base);
  return path ? path + "/" : "";
}

/** A key as a URL path: each segment percent-encoded, `/` between them (unstorage's encoding). */
function keyPath(key: string): string {
  return key
    .split(":")
    .filter(Boolean)
    .map((segment) => encodeURIComponent(segment))
    .join("/");
}

/** One answer, its body read whole (the server bounds bodies; large values are what the caller asked for), or left to stream. */
interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** A successful answer whose body is left unread, for getItemStream. */
  stream?: IncomingMessage;
}

const EMPTY = Buffer.alloc(0);

function tooLarge(limit: number, what: string): StorageError {
  return new StorageError("E_TOO_LARGE", `The server's answer is larger than maxBodySize (${limit} bytes): ${what}`, { driver: DRIVER_NAME });
}

/** How much of an answer's body is read, and what happens past it. */
interface BodyLimit {
  bytes: number;
  /** `fail`: E_TOO_LARGE (a value); `drop`: the body is dropped and the status alone speaks (an error answer). */
  past: "fail" | "drop";
}

/**
 * Reads an answer's body whole, up to `limit.bytes`: a declared length over
 * it is refused before a byte is read, a body that grows past it at the
 * chunk that crosses it. Either way the response is destroyed, which closes
 * its connection instead of reading the rest.
 */
function readAnswer(res: IncomingMessage, limit: BodyLimit, head = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const answer = (body: Buffer): Answer => ({ status: res.statusCode ?? 0, headers: res.headers, body });
    const over = (what: string) => {
      res.destroy();
      if (limit.past === "fail") reject(tooLarge(limit.bytes, what));
      else resolve(answer(EMPTY));
    };
    // A HEAD's Content-Length is the value's, with no body behind it.
    const declared = head ? 0 : Number(res.headers["content-length"]);
    if (declared > limit.bytes) return over(`it declares ${declared} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit.bytes) over("its body passed the limit");
      else chunks.push(chunk);
    });
    res.on("end", () => resolve(answer(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))));
    res.on("error", reject);
  });
}

/**
 * A ttl in ms as `x-ttl`: seconds, as unstorage has it, in the plain decimal
 * a stowage server takes (no exponent, at most 3 digits after the point, so
 * whole milliseconds keep their precision; a fraction of one rounds up).
 */
function ttlHeader(ttl: number): string {
  const ms = Math.ceil(ttl);
  const seconds = Math.floor(ms / 1000).toFixed(0);
  const rest = ms % 1000;
  return rest === 0 ? seconds : `${seconds}.${String(rest).padStart(3, "0").replace(/0+$/, "")}`;
}

/** The headers option: an object of string values, each one a header node:http can send. */
function checkHeaders(headers: unknown): Record<string, string> {
  if (headers === undefined) return {};
  if (headers === null || typeof headers !== "object" || Array.isArray(headers)) {
    throw new StorageError("E_INVALID_OPTION", "[http] headers must be an object of header names to string values", { driver: DRIVER_NAME });
  }
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    try {
      if (typeof value !== "string") throw new TypeError(`its value is ${typeof value}, not a string`);
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch (error) {
      throw new StorageError("E_INVALID_OPTION", `[http] header ${JSON.stringify(name)} cannot be sent: ${(error as Error).message}`, { driver: DRIVER_NAME, cause: error });
    }
    out[name] = value;
  }
  return out;
}

/** Refuses what is not a whole number in `[min, max]`. */
function checkCount(name: keyof HttpOptions, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new StorageError("E_INVALID_OPTION", `[http] ${name} must be an integer from ${min} to ${max}, got ${String(value)}`, { driver: DRIVER_NAME });
  }
  return value;
}

function networkCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** An entity tag from a header, back to the store's etag (the server percent-encodes it). */
function parseEtag(value: string | undefined): string | undefined {
  const match = value ? /^(?:W\/)?"(.*)"$/.exec(value) : null;
  if (!match) return undefined;
  try {
    return decodeURIComponent(match[1]!);
  } catch (error) {
    throw new StorageError("E_CORRUPT", `Malformed ETag from the server: ${value}`, { driver: DRIVER_NAME, cause: error });
  }
}

/**
 * Sets a write's conditions as headers: its guard (If-Match / If-None-Match)
 * and its fence (X-Fence-Id, percent-encoded, and X-Fence-Token), which the
 * server applies on its own storage. Returns whether the write is guarded.
 */
function conditionHeaders(headers: Record<string, string>, opts: SetOptions | RemoveOptions | undefined): boolean {
  if (opts?.fence !== undefined) {
    headers[FENCE_ID_HEADER] = encodeURIComponent(opts.fence.fenceId);
    headers[FENCE_TOKEN_HEADER] = String(opts.fence.token);
  }
  if (opts?.ifMatch !== undefined) headers["if-match"] = `"${encodeURIComponent(opts.ifMatch)}"`;
  if ((opts as SetOptions | undefined)?.ifNoneMatch === "*") headers["if-none-match"] = "*";
  return opts?.ifMatch !== undefined || (opts as SetOptions | undefined)?.ifNoneMatch === "*";
}

/** The `{ code, message }` of an error answer (h3 sends `statusMessage`); a body that is not JSON says nothing. */
function errorBody(body: Buffer): { code?: unknown; message?: unknown; statusMessage?: unknown } | undefined {
  const text = body.toString("utf8");
  if (!text.startsWith("{")) return undefined;
  return parseJson(body) as { code?: unknown; message?: unknown; statusMessage?: unknown };
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new StorageError("E_CORRUPT", "The server answered with malformed JSON", { driver: DRIVER_NAME, cause: error });
  }
}

/** Runs `task` over `items` with at most `limit` in flight, results in order. */
async function mapLimited<T, R>(items: T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The `etag` option: one of the two kinds, and only for a stowage server (unstorage's keeps no etags). */
function checkEtagKind(etag: HttpOptions["etag"], stowage: boolean): "version" | "content" {
  if (etag === undefined) return "version";
  if (!stowage) throw new StorageError("E_INVALID_OPTION", "[http] etag is for a stowage server: unstorage's server keeps no etags", { driver: DRIVER_NAME });
  if (etag !== "version" && etag !== "content") {
    throw new StorageError("E_INVALID_OPTION", `[http] etag is "version" or "content", got ${JSON.stringify(etag)}`, { driver: DRIVER_NAME });
  }
  return etag;
}

/**
 * A store behind an HTTP storage server: stowage's (`stowage serve`,
 * `stowage/server`) or unstorage's. Speaks unstorage's protocol over
 * node:http with keep-alive connections, adds timeouts, retries for requests
 * that are safe to repeat, and ETag-based CAS. See docs/http.md.
 *
 * @throws StorageError `E_INVALID_OPTION` (from the factory) for a missing or non-http(s) `base`, an unknown option, one of the wrong type or range, a token that is not visible ASCII
 * @throws StorageError (from operations) `E_UNAVAILABLE` when the server cannot be reached or does not answer within `timeout`; `E_TOO_LARGE` for an answer above `maxBodySize`; `E_CORRUPT` for a malformed answer; `E_UNSUPPORTED` for setMeta against a stowage server
 */
export default defineDriver((options: HttpOptions) => {
  checkOptions(DRIVER_NAME, options, OPTION_NAMES);
  if (!options?.base) throw new StorageError("E_INVALID_OPTION", "The http driver needs a base URL", { driver: DRIVER_NAME });
  let base: URL;
  try {
    base = new URL(options.base.replace(/\/*$/, "/"));
  } catch (error) {
    throw new StorageError("E_INVALID_OPTION", `Invalid base URL: ${options.base}`, { driver: DRIVER_NAME, cause: error });
  }
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new StorageError("E_INVALID_OPTION", `The http driver speaks http: and https:, not ${base.protocol}`, { driver: DRIVER_NAME });
  }
  const secure = base.protocol === "https:";
  const agent = secure ? new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }) : new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS });
  const send = secure ? httpsRequest : httpRequest;
  const timeout = checkCount("timeout", options.timeout, 10_000, 1);
  const retries = checkCount("retries", options.retries, 2, 0, 100);
  const concurrency = checkCount("concurrency", options.concurrency, 16, 1);
  const maxBodySize = checkCount("maxBodySize", options.maxBodySize, DEFAULT_MAX_BODY, 1, MAX_BODY_LIMIT);
  const server = options.server ?? "stowage";
  if (server !== "stowage" && server !== "unstorage") {
    throw new StorageError("E_INVALID_OPTION", `[http] server is "stowage" or "unstorage", got ${JSON.stringify(server)}`, { driver: DRIVER_NAME });
  }
  const valueBody: BodyLimit = { bytes: maxBodySize, past: "fail" };
  const stowage = server === "stowage";
  const etag = checkEtagKind(options.etag, stowage);
  const common = checkHeaders(options.headers);
  if (options.token !== undefined) {
    if (!isBearerToken(options.token)) {
      throw new StorageError("E_INVALID_OPTION", "[http] token must be a non-empty string of visible ASCII characters without spaces", { driver: DRIVER_NAME });
    }
    common.authorization = `Bearer ${options.token}`;
  }
  const disposed = new AbortController();

  const unavailable = (call: Call, why: string, cause?: unknown) =>
    new StorageError("E_UNAVAILABLE", `${call.method} ${base.href}${call.path}: ${why}`, { driver: DRIVER_NAME, cause });

  /** Turns an error answer into a StorageError, keeping the server's code when it sent one. */
  function failure(call: Call, answer: Answer): StorageError {
    let code: StorageErrorCode = CODE_BY_STATUS[answer.status] ?? "E_DRIVER";
    let message = `${answer.status}`;
    if (header(answer.headers, "content-type")?.startsWith("application/json")) {
      const body = errorBody(answer.body);
      if (typeof body?.code === "string" && KNOWN_CODES.has(body.code)) code = body.code as StorageErrorCode;
      const text = body?.message ?? body?.statusMessage;
      if (typeof text === "string") message += `: ${text}`;
    }
    if (answer.status === 401 || answer.status === 403) message += " (check the token)";
    if (answer.status === 421) message += " (the server does not answer for this host name: see its allowedHosts)";
    return new StorageError(code, `${call.method} ${base.href}${call.path}: ${message}`, { driver: DRIVER_NAME });
  }

  /** One request and its whole answer; the signal bounds both. */
  function exchange(call: Call, signal: AbortSignal): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const headers = { ...common, ...call.headers };
      const req = send(new URL(call.path, base), { method: call.method, headers, agent, signal }, (res) =>
        readAnswer(res, (res.statusCode ?? 0) >= 300 ? ERROR_BODY : valueBody, call.method === "HEAD").then(resolve, reject),
      );
      req.on("error", reject);
      req.end(call.body);
    });
  }

  /**
   * One request whose successful answer's body is left to stream: the
   * signal bounds the wait for the answer's head only, then the body may take
   * as long as it keeps coming (see {@link idleTimeout}).
   */
  function exchangeStreaming(call: Call, signal: AbortSignal): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = send(new URL(call.path, base), { method: call.method, headers: { ...common, ...call.headers }, agent });
      const abort = () => req.destroy(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
      const settle = () => signal.removeEventListener("abort", abort);
      signal.addEventListener("abort", abort, { once: true });
      req.on("response", (res) => {
        // An error answer is read whole, still within the signal.
        if ((res.statusCode ?? 0) >= 300) return void readAnswer(res, ERROR_BODY).then(resolve, reject).finally(settle);
        settle();
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: EMPTY, stream: res });
      });
      req.on("error", (error) => {
        settle();
        reject(error);
      });
      req.end();
    });
  }

  /** A stream that stops moving for `timeout` ms fails with E_UNAVAILABLE, rather than hang. */
  function idleTimeout(stream: IncomingMessage | ClientRequest, call: Call): void {
    stream.setTimeout(timeout, () => stream.destroy(unavailable(call, `no data moved for ${timeout} ms`)));
  }

  // Calls beyond MAX_SOCKETS wait here, and their timeout starts when they leave: a burst of
  // many calls against a busy server is slow, not failed. When the server stopped answering,
  // a call that already waited `timeout` fails at once, so a burst against a dead server drains.
  const waiting: (() => void)[] = [];
  let active = 0;
  let answering = true;

  async function acquire(call: Call): Promise<void> {
    const queued = Date.now();
    if (active < MAX_SOCKETS) active++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    if (disposed.signal.aborted || (!answering && Date.now() - queued > timeout)) {
      release();
      throw unavailable(call, disposed.signal.aborted ? "the driver was disposed" : `the server has not answered for ${timeout} ms`);
    }
  }

  function release(): void {
    const next = waiting.shift();
    if (next) next();
    else active--;
  }

  /** Sends a call, retrying what is safe to retry, all within `timeout`. 404 is an answer, not a failure. */
  async function request(call: Call, send = exchange): Promise<Answer> {
    await acquire(call);
    let answer: Answer | undefined;
    try {
      answer = await attempts(call, send);
      answering = true;
      return answer;
    } catch (error) {
      answering = !(error instanceof StorageError && error.code === "E_UNAVAILABLE");
      throw error;
    } finally {
      // A streaming answer holds its connection, and so its place, until its body closes.
      if (answer?.stream) answer.stream.once("close", release);
      else release();
    }
  }

  async function attempts(call: Call, send: typeof exchange): Promise<Answer> {
    const signal = AbortSignal.any([AbortSignal.timeout(timeout), disposed.signal]);
    for (let attempt = 0; ; attempt++) {
      let answer: Answer;
      try {
        answer = await send(call, signal);
      } catch (error) {
        // The driver's own verdict on an answer (too large): asking again gets the same one.
        if (error instanceof StorageError) throw error;
        if (signal.aborted) throw unavailable(call, disposed.signal.aborted ? "the driver was disposed" : `no answer within ${timeout} ms`, error);
        const safe = !call.conditional || CONNECT_ERRORS.has(networkCode(error) ?? "");
        if (!safe || attempt >= retries) throw unavailable(call, `request failed (${networkCode(error) ?? String(error)})`, error);
        await backoff(attempt, signal, call);
        continue;
      }
      if (answer.status < 300 || answer.status === 404) return answer;
      if (RETRY_STATUSES.has(answer.status) && !call.conditional && attempt < retries) {
        await backoff(attempt, signal, call);
        continue;
      }
      if (call.anyAnswer) return answer;
      throw failure(call, answer);
    }
  }

  async function backoff(attempt: number, signal: AbortSignal, call: Call): Promise<void> {
    const delay = Math.min(1000, 50 * 2 ** attempt) * (0.5 + Math.random() / 2);
    try {
      await sleep(delay, undefined, { signal });
    } catch (error) {
      throw unavailable(call, `no answer within ${timeout} ms`, error);
    }
  }

  /**
   * A stowage server keeps a key's meta sidecar (`key$`) out of clients'
   * reach (meta travels as X-TTL and the other meta headers): it answers a
   * read with 404 and refuses a write, so there is nothing to remove either. Against
   * unstorage's server the sidecars are ordinary keys, where the core keeps
   * TTL and meta.
   */
  const unreachable = (key: string): boolean => stowage && isMetaKey(key);

  function refuseMeta(key: string): never {
    throw new StorageError("E_UNSUPPORTED", `A stowage server keeps meta beyond X-TTL out of clients' reach (setMeta): ${key}`, { driver: DRIVER_NAME, key });
  }

  async function get(key: string, headers?: Record<string, string>): Promise<Buffer | null> {
    const answer = await request({ method: "GET", path: keyPath(key), headers });
    return answer.status === 404 ? null : answer.body;
  }

  async function getText(key: string): Promise<string | null> {
    return (await get(key))?.toString("utf8") ?? null;
  }

  /**
   * Whether the server fences writes, asked once (OPTIONS of the base path
   * with a probe fence) before the first fenced write: a server that does
   * echoes the probe's token as X-Fence-Accepted. An older stowage server,
   * unstorage's, or a proxy that drops X-Fence-* headers does not, and the
   * fenced write is refused before it is sent. A failed probe is asked again
   * by the next fenced write.
   */
  let fencing: Promise<void> | undefined;

  function ensureFencing(): Promise<void> {
    fencing ??= probeFencing().catch((error: unknown) => {
      fencing = undefined;
      throw error;
    });
    return fencing;
  }

  async function probeFencing(): Promise<void> {
    const call: Call = { method: "OPTIONS", path: "", headers: PROBE_FENCE, anyAnswer: true };
    const answer = await request(call);
    if (answer.status < 300 && header(answer.headers, FENCE_ACCEPTED_HEADER) === PROBE_FENCE[FENCE_TOKEN_HEADER]) return;
    // Not let in (token, host): that is the answer to report, not a missing feature.
    if (answer.status === 401 || answer.status === 403 || answer.status === 421) throw failure(call, answer);
    throw new StorageError(
      "E_UNSUPPORTED",
      `${base.href}: the server does not fence writes (OPTIONS answered ${answer.status} without X-Fence-Accepted): an older stowage server, unstorage's, or a proxy that drops X-Fence-* headers. The fenced write was not sent`,
      { driver: DRIVER_NAME },
    );
  }

  /**
   * A fenced write's answer must echo its token (X-Fence-Applied): a server
   * or proxy that changed since the probe and dropped the fence would
   * otherwise pass an unfenced write for a fenced one.
   *
   * @throws StorageError `E_DRIVER` without the echo (the write may have landed unfenced)
   */
  function checkApplied(call: Call, answer: Answer, opts: SetOptions | RemoveOptions | undefined): void {
    if (opts?.fence === undefined) return;
    if (answer.status < 300 && header(answer.headers, FENCE_APPLIED_HEADER) === String(opts.fence.token)) return;
    throw new StorageError(
      "E_DRIVER",
      `${call.method} ${base.href}${call.path}: the server answered ${answer.status} without X-Fence-Applied: ${opts.fence.token}, so the write may have landed unfenced (a proxy that drops X-Fence-* headers, or another server behind ${base.href} since it said it fences)`,
      { driver: DRIVER_NAME },
    );
  }

  async function put(key: string, body: string | Uint8Array, type: string, opts: SetOptions | undefined): Promise<void> {
    if (unreachable(key)) refuseMeta(key);
    if (opts?.fence !== undefined) await ensureFencing();
    const headers: Record<string, string> = { "content-type": type };
    const conditional = conditionHeaders(headers, opts);
    if (opts?.ttl !== undefined) headers["x-ttl"] = ttlHeader(opts.ttl);
    const call: Call = { method: "PUT", path: keyPath(key), headers, body, conditional };
    checkApplied(call, await request(call), opts);
  }

  const head = (key: string) => request({ method: "HEAD", path: keyPath(key) });

  /** A raw GET whose body comes as the server sends it: retried like any GET until its head arrives. */
  async function getStream(key: string): Promise<ItemStream | null> {
    const call: Call = { method: "GET", path: keyPath(key), headers: { accept: OCTET_STREAM } };
    const answer = await request(call, exchangeStreaming);
    if (answer.status === 404) return null;
    const body = answer.stream!;
    idleTimeout(body, call);
    return { meta: metaOf(answer), body, close: () => destroyAndWait(body) };
  }

  /**
   * A raw PUT whose body is sent as `body` yields it (chunked): sent once,
   * never retried, since the body cannot be read again. A body that fails
   * aborts the request, so the server stores nothing.
   */
  async function putStream(key: string, body: AsyncIterable<Uint8Array>, opts: SetOptions | undefined): Promise<void> {
    refuseUnfenceable(opts, "setItemStream");
    if (unreachable(key)) refuseMeta(key);
    const headers: Record<string, string> = { ...common, "content-type": OCTET_STREAM };
    conditionHeaders(headers, opts);
    if (opts?.ttl !== undefined) headers["x-ttl"] = ttlHeader(opts.ttl);
    const call: Call = { method: "PUT", path: keyPath(key), conditional: true };
    await acquire(call);
    try {
      const req = send(new URL(call.path, base), { method: "PUT", headers, agent, signal: disposed.signal });
      idleTimeout(req, call);
      const answered = new Promise<Answer>((resolve, reject) => {
        let responded = false;
        req.on("response", (res) => {
          responded = true;
          readAnswer(res, ERROR_BODY).then(resolve, reject);
        });
        req.on("error", reject);
        // pipeline aborts the request when the body fails, which closes it without an error.
        req.on("close", () => responded || reject(new Error("the request was aborted")));
      });
      let bodyFailure: { error: unknown } | undefined;
      const chunks = (async function* () {
        try {
          yield* body;
        } catch (error) {
          bodyFailure = { error };
          throw error;
        }
      })();
      // Whatever stops the upload (the body, the idle timeout, the network) fails the request and so `answered`.
      const sending = pipeline(chunks, req);
      sending.catch(() => undefined);
      let answer: Answer;
      try {
        answer = await answered;
      } catch (error) {
        if (bodyFailure) throw bodyFailure.error;
        if (error instanceof StorageError) throw error;
        throw unavailable(call, disposed.signal.aborted ? "the driver was disposed" : `request failed (${networkCode(error) ?? String(error)})`, error);
      }
      // A server that refuses the body early (413) answers before the upload ends: its answer says why, and the upload stops.
      if (answer.status >= 300) {
        req.destroy();
        throw failure(call, answer);
      }
      await sending;
    } finally {
      release();
    }
  }

  function metaOf(answer: Answer): StorageMeta {
    const meta: StorageMeta = {};
    const modified = header(answer.headers, "last-modified");
    if (modified) meta.mtime = new Date(modified);
    const ttl = Number(header(answer.headers, "x-ttl"));
    if (ttl > 0) {
      meta.ttl = Math.round(ttl * 1000);
      meta.expires = new Date(Date.now() + meta.ttl);
    }
    const etag = parseEtag(header(answer.headers, "etag"));
    if (etag !== undefined) meta.etag = etag;
    const length = header(answer.headers, "content-length");
    if (stowage && length !== undefined) meta.size = Number(length);
    return meta;
  }

  async function listKeys(prefix: string): Promise<string[]> {
    const answer = await request({ method: "GET", path: basePath(prefix) });
    const keys = answer.status === 404 ? [] : parseJson(answer.body);
    // A listing that is not an array of strings is the server's error, not an empty store.
    if (!Array.isArray(keys) || !keys.every((key) => typeof key === "string")) {
      throw new StorageError("E_CORRUPT", `GET ${base.href}${basePath(prefix)}: the listing is not a JSON array of keys`, { driver: DRIVER_NAME });
    }
    return keys.map((key) => normalizeKey(key));
  }

  return {
    name: DRIVER_NAME,
    options,
    flags: stowage ? { ...STOWAGE_FLAGS, etag } : {},
    keyLimits: KEY_LIMITS,
    getInstance: () => agent,
    hasItem: async (key: string) => (await head(key)).status !== 404,
    getItem: (key: string) => getText(key),
    async getItemRaw(key: string) {
      const body = await get(key, { accept: OCTET_STREAM });
      return body === null ? null : new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
    },
    getItemStream: (key: string) => getStream(key),
    setItemStream: (key: string, body: AsyncIterable<Uint8Array>, opts: SetOptions) => putStream(key, body, opts),
    getItems: (items: { key: string }[]) => mapLimited(items, concurrency, async ({ key }) => ({ key, value: await getText(key) })),
    setItem: (key: string, value: string, opts: SetOptions) => put(key, value, TEXT, opts),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) => put(key, value, OCTET_STREAM, opts),
    async setItems(items: { key: string; value: string; options?: SetOptions }[], commonOptions?: SetOptions) {
      await mapLimited(items, concurrency, ({ key, value, options: own }) => put(key, value, TEXT, own ?? commonOptions));
    },
    async removeItem(key: string, opts: RemoveOptions & TransactionOptions) {
      if (unreachable(key)) return;
      if (opts?.fence !== undefined) await ensureFencing();
      const headers: Record<string, string> = {};
      const conditional = conditionHeaders(headers, opts);
      const call: Call = { method: "DELETE", path: keyPath(key), headers, conditional };
      const answer = await request(call);
      checkApplied(call, answer, opts);
      // A conditional delete of an absent key: the etag cannot match.
      if (answer.status === 404 && conditional) throw new StorageError("E_CONFLICT", `No value at ${key}`, { driver: DRIVER_NAME, key });
    },
    async getMeta(key: string) {
      const answer = await head(key);
      return answer.status === 404 ? null : metaOf(answer);
    },
    getKeys: (prefix: string) => listKeys(prefix ?? ""),
    async clear(prefix: string) {
      await request({ method: "DELETE", path: basePath(prefix ?? "") });
    },
    dispose() {
      disposed.abort();
      for (const next of waiting.splice(0)) next();
      agent.destroy();
    },
  };
});
