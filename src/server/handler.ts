import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { StorageError } from "../core/errors.js";
import { isMetaKey } from "../core/keys.js";
import { isPromise, type MaybePromise } from "../core/maybePromise.js";
import { BASE64_PREFIX, hasOwnMarker, RICH_MARKER, richSerializer, type Serializer } from "../core/serializer.js";
import { getDirectAccess, type StoredEntry } from "../core/storage.js";
import type { Fence, ItemStream, RemoveOptions, SetOptions, Storage, StorageMeta } from "../core/types.js";
import { drained, readBody, sendBody, sendStream, streamBody } from "./body.js";
import { flatHeaders, sendHead } from "./respond.js";
import {
  METHODS,
  OCTET_STREAM,
  READ_BASE_METHODS,
  READ_METHODS,
  BASE_METHODS,
  errorResponse,
  FENCE_ACCEPTED_HEADER,
  FENCE_APPLIED_HEADER,
  fenceFromHeaders,
  formatEtag,
  metaHeaders,
  parseCondition,
  parseTarget,
  requestError,
  splitTarget,
  ttlFromHeader,
  type RequestTarget,
  type Target,
} from "./protocol.js";
import { hostName, isLoopback } from "./hosts.js";

/** What an `authorize` hook learns about a request. */
export interface AuthorizeRequest {
  /** `"read"` for GET and HEAD, `"write"` for PUT and DELETE (unstorage's names). */
  type: "read" | "write";
  method: "GET" | "HEAD" | "PUT" | "DELETE";
  /** The normalized key, or for a listing or clear the base (`"a:b:"`, `""` for everything). */
  key: string;
  /** Whether `key` is a base. */
  base: boolean;
  /** The Node.js request, for headers, the socket's address and so on. */
  request: IncomingMessage;
}

/** The settings a handler runs with; see {@link StorageServerOptions} for their meaning. */
export interface HandlerSettings {
  storage: Storage;
  serializer: Serializer;
  token: string | undefined;
  authorize: ((request: AuthorizeRequest) => boolean | Promise<boolean>) | undefined;
  readOnly: boolean;
  maxBodySize: number;
  /** ms a raw download may go without the client taking a byte. */
  idleTimeout: number;
  basePath: string;
  /** Whether the Host a request names is checked: only loopback names and `allowedHosts` pass. */
  checkHost: boolean;
  /** Host names accepted besides loopback ones, lower case. */
  allowedHosts: ReadonlySet<string> | undefined;
  onError: (error: unknown, request: IncomingMessage) => void;
  /** True once the server shuts down: requests still arriving are refused. */
  closing: () => boolean;
}

type Method = AuthorizeRequest["method"];

const TEXT = "text/plain; charset=utf-8";
const JSON_TYPE = "application/json; charset=utf-8";
const NO_SNIFF = "nosniff";
/** getMeta without the user's meta sidecar: the headers need only native meta and expiry. */
const NATIVE_ONLY = { nativeOnly: true } as const;
/** Text values longer than this are sent as bytes in chunks, like raw ones. */
const LARGE_TEXT = 64 * 1024;
/** Raw uploads longer than this (or of no declared length) are stored as they arrive, never held whole. */
const STREAMED_UPLOAD = 64 * 1024;

/** A refusal decided by the protocol itself (status, code, extra headers). */
class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: OutgoingHttpHeaders = {},
  ) {
    super(message);
  }
}

function isMethod(method: string | undefined): method is Method {
  return method === "GET" || method === "HEAD" || method === "PUT" || method === "DELETE";
}

/** SHA-256 of both sides first, so the comparison takes the same time whatever the length. */
function sameToken(given: string, expected: Buffer): boolean {
  return timingSafeEqual(createHash("sha256").update(given).digest(), expected);
}

function bearer(header: string | undefined): string | undefined {
  if (!header || !/^bearer /i.test(header)) return undefined;
  return header.slice(7).trim();
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  const all = { ...headers, "content-type": JSON_TYPE, "content-length": Buffer.byteLength(text), "x-content-type-options": NO_SNIFF };
  sendHead(response, status, flatHeaders(all), response.req.method === "HEAD" ? undefined : text);
}

/** The answer to every successful write, made once. */
const OK_HEADERS = ["content-type", TEXT, "content-length", 2, "x-content-type-options", NO_SNIFF];

/** The answer to a successful write; a fenced one echoes its token, so the client knows the fence was applied. */
function sendOk(response: ServerResponse, fence?: Fence): void {
  sendHead(response, 200, fence ? [...OK_HEADERS, FENCE_APPLIED_HEADER, String(fence.token)] : OK_HEADERS, "OK");
}

/**
 * Whether `text` is JSON and not a tagged envelope at its top: then a GET
 * can answer with it as stored and a PUT can store it as sent, since the
 * rich serializer decodes it to the same value as the text it would make
 * from that value. An envelope still takes the serializer, which checks it.
 */
function isPlainJson(text: string): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Not JSON: a bare string, which the serializer turns into JSON.
    return false;
  }
  return !hasOwnMarker(parsed);
}

const SPACE = /\s/;

/**
 * Whether `text`, stored as it is, certainly reads back as the value the
 * serializer makes of it, with no need to parse it first (parsing was a
 * tenth of a PUT's CPU). The rich serializer reads stored text exactly as it
 * reads a body: JSON as JSON, anything else as unstorage reads a string it
 * stored verbatim (destr). Only an envelope (its marker, perhaps spelled
 * with \u escapes) and destr's short literals (`undefined` means a removal)
 * need the serializer to look, and text a store would not keep as it is.
 */
function readsBackAsSent(text: string): boolean {
  return (
    text.length >= 16 &&
    // Padding could hide a short literal ("  undefined  " is a removal): destr trims before it looks.
    !SPACE.test(text[0]!) &&
    !SPACE.test(text[text.length - 1]!) &&
    !text.includes(RICH_MARKER) &&
    !text.includes("\\u") &&
    // A NUL is refused by some stores' text columns (the serializer escapes it), and raw reads take base64: text for bytes.
    !text.includes("\0") &&
    !text.startsWith(BASE64_PREFIX)
  );
}

/** Whether a request comes with a body (a request without one is not complete yet while it is served in the parser's turn). */
function carriesBody(request: IncomingMessage): boolean {
  const length = request.headers["content-length"];
  return request.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/**
 * `key$` holds the core's TTL and meta sidecar of `key`: clients reach a
 * key's meta only through the meta headers. A read finds no user value there
 * (404, so unstorage's client, which reads `key$` for meta, still works); a
 * write is refused, since it would change another key's expiry.
 */
function refuseMetaKey(method: Method, key: string): never {
  if (method === "GET" || method === "HEAD") throw notFound();
  throw requestError("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)} ends in "$", which names a key's meta (set it with X-TTL)`);
}

/** The request's one Host header (node:http keeps the first of several; a second one is refused here). */
function onlyHost(request: IncomingMessage): string | undefined {
  // rawHeaders, not headersDistinct, which builds an array for every header of every request.
  const raw = request.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== 4 || name.toLowerCase() !== "host") continue;
    if (value !== undefined) throw requestError("E_INVALID_OPTION", "A request carries one Host header");
    value = raw[i + 1];
  }
  return value;
}

function notFound(): HttpRefusal {
  return new HttpRefusal(404, "E_NOT_FOUND", "KV value not found");
}

/** A request handler in two parts, so the caller can fold the failure path into a promise it makes anyway. */
export interface RequestHandler {
  /**
   * Answers a request: returns nothing when it was answered within the call
   * (a sync driver), else a promise that settles once it is. A failure thrown
   * or rejected here must be passed to `fail`, which answers it.
   */
  serve(request: IncomingMessage, response: ServerResponse): void | Promise<void>;
  /** Answers a failed request with its status (or cuts the connection if the answer had begun). */
  fail(request: IncomingMessage, response: ServerResponse, error: unknown): void;
}

/**
 * Builds the request handler: unstorage's protocol on a stowage Storage,
 * with ETags and conditional writes, auth, read-only mode and body limits.
 */
export function createHandler(settings: HandlerSettings): RequestHandler {
  const { storage, serializer } = settings;
  const tokenDigest = settings.token === undefined ? undefined : createHash("sha256").update(settings.token).digest();

  let acceptedHost: string | undefined;

  /**
   * The Host a request names (an absolute-form target's authority stands for
   * it) must be a loopback name or an allowed one: a page that rebinds its
   * own DNS name to this machine sends that name, and is refused with 421.
   */
  function checkHost(request: IncomingMessage, authority: string | undefined): void {
    const value = authority ?? onlyHost(request);
    // Clients send the same Host on every request: the last one accepted skips the parsing.
    if (value === acceptedHost) return;
    const name = value === undefined ? undefined : hostName(value);
    if (name === undefined) throw requestError("E_INVALID_OPTION", `Malformed Host: ${JSON.stringify(value ?? "")}`);
    if (!isLoopback(name) && !settings.allowedHosts?.has(name)) {
      throw new HttpRefusal(421, "E_MISDIRECTED", `This server answers only requests for a loopback host${settings.allowedHosts ? " or an allowed host" : ""}, not ${JSON.stringify(name)} (see allowedHosts)`);
    }
    acceptedHost = value;
  }

  /** The request's target, once its Host and token pass. */
  function admitTarget(request: IncomingMessage): RequestTarget {
    const target = splitTarget(request.url ?? "/");
    if (settings.checkHost) checkHost(request, target.authority);
    if (tokenDigest && !sameToken(bearer(request.headers.authorization) ?? "", tokenDigest)) {
      throw new HttpRefusal(401, "E_UNAUTHORIZED", "A valid bearer token is required", { "www-authenticate": 'Bearer realm="stowage"' });
    }
    return target;
  }

  /**
   * OPTIONS of the base path: what the server offers. A request carrying a
   * fence (X-Fence-Id/X-Fence-Token) gets its token back as X-Fence-Accepted,
   * which tells the client both that this server fences writes and that the
   * headers reach it. It touches no key, so `authorize` is not asked. Keys
   * take no OPTIONS (405).
   */
  function describeServer(request: IncomingMessage, response: ServerResponse): void {
    const { path } = admitTarget(request);
    if (path !== settings.basePath) throw new HttpRefusal(405, "E_METHOD", "OPTIONS is answered at the base path only", { allow: METHODS });
    const fence = fenceFromHeaders(request.headers);
    const headers: (string | number)[] = ["allow", settings.readOnly ? READ_BASE_METHODS : BASE_METHODS, "content-length", 0];
    if (fence) headers.push(FENCE_ACCEPTED_HEADER, String(fence.token));
    sendHead(response, 204, headers, undefined);
  }

  /** Checks everything that decides whether the request may run at all; returns its target. */
  function admit(request: IncomingMessage, method: Method): Target | Promise<Target> {
    const { path, query } = admitTarget(request);
    // A read may carry a query (a cache-buster); a write never does in this protocol, and one that does may mean another key (`PUT /q?x`, `DELETE /?x`).
    if (query && (method === "PUT" || method === "DELETE")) {
      throw requestError("E_INVALID_KEY", "A PUT or DELETE takes no query: the key is the path (a ? cannot be part of a key)");
    }
    if (!path.startsWith(settings.basePath)) throw notFound();
    const target = parseTarget(path.slice(settings.basePath.length - 1));
    if (target.base && (method === "HEAD" || method === "PUT")) {
      throw requestError("E_INVALID_KEY", `Invalid key: ${method} is not allowed on a base key`);
    }
    if (!target.base && isMetaKey(target.key)) refuseMetaKey(method, target.key);
    const type = method === "GET" || method === "HEAD" ? "read" : "write";
    if (type === "write" && settings.readOnly) {
      throw new HttpRefusal(405, "E_READONLY", "This server is read-only", { allow: READ_METHODS });
    }
    if (!settings.authorize) return target;
    return Promise.resolve(settings.authorize({ type, method, key: target.key, base: target.base, request })).then((allowed) => {
      if (!allowed) throw new HttpRefusal(403, "E_FORBIDDEN", "Not allowed");
      return target;
    });
  }

  const direct = getDirectAccess(storage);
  /** Stored text goes out as it is, and sent text is stored as it is, where the server's serializer is the storage's own rich one. */
  const passThrough = direct !== undefined && direct.serializer === serializer && serializer === richSerializer;

  /** The stored text and its meta: through the storage's direct path where it has one, in one turn when its driver is sync. */
  function readEntry(key: string): MaybePromise<StoredEntry | null> {
    if (direct) return direct.read(key, false);
    // Meta before value: a write in between leaves a stale etag, which fails a later If-Match instead of passing it.
    return storage.getMeta(key, NATIVE_ONLY).then(async (meta) => {
      const stored = await storage.getItem(key);
      return stored === null ? null : { stored: serializer.serialize(stored), meta };
    });
  }

  /** The response text for a stored entry's text. */
  function textOf(stored: unknown): string {
    if (!direct) return stored as string;
    if (passThrough && typeof stored === "string" && isPlainJson(stored)) return stored;
    return serializer.serialize(direct.serializer.deserialize(stored));
  }

  function getValue(request: IncomingMessage, response: ServerResponse, key: string): void | Promise<void> {
    if (request.headers.accept === OCTET_STREAM) return storage.getItemStream(key).then((opened) => sendBytes(request, response, opened));
    const entry = readEntry(key);
    if (isPromise(entry)) return entry.then((found) => sendValue(request, response, found));
    return sendValue(request, response, entry);
  }

  /** Whether the client's If-None-Match names the stored version: 304, no body. */
  function unchanged(request: IncomingMessage, meta: StorageMeta): boolean {
    const wanted = request.headers["if-none-match"];
    return wanted !== undefined && typeof meta.etag === "string" && wanted === formatEtag(meta.etag);
  }

  /** A raw value goes out as the store reads it, chunk by chunk; its length is known when the store reports its size. */
  async function sendBytes(request: IncomingMessage, response: ServerResponse, opened: ItemStream | null): Promise<void> {
    if (opened === null) throw notFound();
    const headers = metaHeaders(opened.meta);
    try {
      if (unchanged(request, opened.meta)) return sendHead(response, 304, headers, undefined);
      headers.push("x-content-type-options", NO_SNIFF, "content-type", OCTET_STREAM);
      const length = typeof opened.meta.size === "number" ? opened.meta.size : undefined;
      if (length !== undefined) headers.push("content-length", length);
      response.writeHead(200, headers);
      // Only while it streams: a socket timer costs every other request a refresh per read and write.
      // node:http destroys a socket that times out with nobody to handle it.
      response.socket?.setTimeout(settings.idleTimeout);
      await sendStream(response, opened.body, length);
    } finally {
      response.socket?.setTimeout(0);
      await opened.close();
    }
  }

  function sendValue(request: IncomingMessage, response: ServerResponse, entry: StoredEntry | null): void | Promise<void> {
    if (entry === null) throw notFound();
    const headers = metaHeaders(entry.meta);
    if (unchanged(request, entry.meta)) return sendHead(response, 304, headers, undefined);
    headers.push("x-content-type-options", NO_SNIFF);
    const text = textOf(entry.stored);
    headers.push("content-type", TEXT, "content-length", Buffer.byteLength(text));
    // Text goes out as a string, in the same write as the head.
    if (text.length <= LARGE_TEXT) return sendHead(response, 200, headers, text);
    response.writeHead(200, headers);
    return sendBody(response, Buffer.from(text));
  }

  /** A listing streams out batch by batch; only a failure before the first byte still gets a status. */
  async function listKeys(response: ServerResponse, base: string): Promise<void> {
    const batches = storage.iterateKeys(base, { batchSize: 1000 });
    let next = await batches.next();
    response.writeHead(200, { "content-type": JSON_TYPE, "x-content-type-options": NO_SNIFF });
    let first = true;
    let text = "[";
    while (!next.done) {
      for (const key of next.value) {
        text += (first ? "" : ",") + JSON.stringify(key.replaceAll(":", "/"));
        first = false;
      }
      if (!response.write(text) && !(await drained(response))) {
        await batches.return?.(undefined);
        return;
      }
      text = "";
      next = await batches.next();
    }
    response.end(text + "]");
  }

  function head(response: ServerResponse, key: string): void | Promise<void> {
    return storage.hasItem(key).then(async (has) => sendMeta(response, has ? await storage.getMeta(key, NATIVE_ONLY) : null));
  }

  function sendMeta(response: ServerResponse, meta: StorageMeta | null): void {
    if (meta === null) throw notFound();
    const headers = metaHeaders(meta);
    // Without a length or chunked framing node:http closes the connection after a HEAD.
    if (typeof meta.size === "number") headers.push("content-length", meta.size);
    else headers.push("transfer-encoding", "chunked");
    sendHead(response, 200, headers, undefined);
  }

  /** If-Match: `*` needs the current etag; a store without etags cannot answer it. */
  async function currentEtag(key: string): Promise<string> {
    const { etag } = await storage.getMeta(key, NATIVE_ONLY);
    if (typeof etag === "string") return etag;
    if (await storage.hasItem(key)) throw requestError("E_UNSUPPORTED", "This store keeps no etags: conditional requests need a driver flagged cas");
    throw requestError("E_CONFLICT", `No value at ${key}`);
  }

  async function conditions(request: IncomingMessage, key: string): Promise<{ ifMatch?: string; ifNoneMatch?: "*" }> {
    const ifMatch = parseCondition(request.headers["if-match"], "If-Match");
    const ifNoneMatch = parseCondition(request.headers["if-none-match"], "If-None-Match");
    if (ifNoneMatch !== undefined && ifNoneMatch !== "*") throw requestError("E_INVALID_OPTION", 'If-None-Match on a write only takes "*"');
    const out: { ifMatch?: string; ifNoneMatch?: "*" } = {};
    if (ifMatch !== undefined) out.ifMatch = ifMatch === "*" ? await currentEtag(key) : ifMatch;
    if (ifNoneMatch) out.ifNoneMatch = "*";
    return out;
  }

  function put(request: IncomingMessage, response: ServerResponse, key: string): Promise<void> {
    const headers = request.headers;
    const fence = fenceFromHeaders(headers);
    if (headers["if-match"] !== undefined || headers["if-none-match"] !== undefined) {
      return conditions(request, key).then((options) => store(request, response, key, fence ? { ...options, fence } : options));
    }
    return store(request, response, key, fence ? { fence } : {});
  }

  /** Reads a PUT's body and stores it; one promise (the body's) when the driver is sync. A large raw body is stored as it arrives. */
  function store(request: IncomingMessage, response: ServerResponse, key: string, options: SetOptions): Promise<void> {
    const ttl = ttlFromHeader(request.headers["x-ttl"]);
    if (ttl !== undefined) options.ttl = ttl;
    const type = request.headers["content-type"];
    const raw = type !== undefined && type.split(";")[0]!.trim() === OCTET_STREAM;
    // A fenced write is one commit with its fence record, which a stream cannot join: its body is read whole.
    if (raw && !options.fence && !(Number(request.headers["content-length"]) <= STREAMED_UPLOAD)) {
      return storage.setItemStream(key, streamBody(request, settings.maxBodySize), options).then(() => sendOk(response));
    }
    return readBody(request, settings.maxBodySize, (body) => {
      const written = raw ? storage.setItemRaw(key, body, options) : writeText(key, body.toString("utf8"), options);
      if (isPromise(written)) return written.then(() => sendOk(response, options.fence));
      sendOk(response, options.fence);
    });
  }

  /** Stores a PUT's text: as sent where it reads back as the value it stands for, else as the value the serializer reads from it. */
  function writeText(key: string, text: string, options: SetOptions): MaybePromise<void> {
    if (passThrough && (readsBackAsSent(text) || isPlainJson(text))) return direct!.writeText(key, text, options);
    return storage.setItem(key, valueOf(text), options);
  }

  /** The value a PUT's text stands for: text the serializer cannot read is the client's error (400), not a corrupt store. */
  function valueOf(text: string): unknown {
    try {
      return serializer.deserialize(text);
    } catch (error) {
      if (error instanceof StorageError && error.code === "E_CORRUPT") {
        throw requestError("E_INVALID_VALUE", `The body is not a value: ${error.message}`, error);
      }
      throw error;
    }
  }

  async function remove(request: IncomingMessage, response: ServerResponse, target: Target): Promise<void> {
    const fence = fenceFromHeaders(request.headers);
    if (target.base) {
      if (request.headers["if-match"] !== undefined || request.headers["if-none-match"] !== undefined || fence) {
        throw requestError("E_INVALID_OPTION", "Conditional and fence headers apply to one key, not to a base");
      }
      await storage.clear(target.key);
    } else {
      // If-None-Match: * deletes nothing, so no fenced commit would run and a stale token would pass unchecked.
      if (fence && request.headers["if-none-match"] !== undefined) {
        throw requestError("E_INVALID_OPTION", "A fenced DELETE takes no If-None-Match: it would delete nothing, and so check no fence");
      }
      const { ifMatch, ifNoneMatch } = await conditions(request, target.key);
      // If-None-Match: * on a delete: go ahead only when there is nothing to delete.
      if (ifNoneMatch && (await storage.hasItem(target.key))) throw requestError("E_CONFLICT", `A value exists at ${target.key}`);
      const options: RemoveOptions = ifMatch === undefined ? {} : { ifMatch };
      if (fence) options.fence = fence;
      if (!ifNoneMatch) await storage.removeItem(target.key, options);
    }
    sendOk(response, fence);
  }

  function route(request: IncomingMessage, response: ServerResponse): void | Promise<void> {
    const method = request.method;
    if (settings.closing()) {
      throw new HttpRefusal(503, "E_UNAVAILABLE", "The server is shutting down", { connection: "close", "retry-after": "1" });
    }
    if (method === "OPTIONS") return describeServer(request, response);
    if (!isMethod(method)) throw new HttpRefusal(405, "E_METHOD", `Method not allowed: ${method ?? ""}`, { allow: METHODS });
    const target = admit(request, method);
    if (target instanceof Promise) return target.then((admitted) => dispatch(request, response, method, admitted));
    return dispatch(request, response, method, target);
  }

  function dispatch(request: IncomingMessage, response: ServerResponse, method: Method, target: Target): void | Promise<void> {
    // A fence guards writes only: on a read it would be ignored, so it is refused.
    if ((method === "GET" || method === "HEAD") && fenceFromHeaders(request.headers)) throw requestError("E_INVALID_OPTION", "A read takes no fence");
    if (method === "GET") return target.base ? listKeys(response, target.key) : getValue(request, response, target.key);
    if (method === "HEAD") return head(response, target.key);
    if (method === "PUT") return put(request, response, target.key);
    return remove(request, response, target);
  }

  function fail(request: IncomingMessage, response: ServerResponse, error: unknown): void {
    if (response.headersSent) {
      // Too late for a status: cut the connection so the client sees a broken response, not a short one.
      settings.onError(error, request);
      response.destroy();
      return;
    }
    const refusal = error instanceof HttpRefusal ? error : undefined;
    const answer = refusal ? { status: refusal.status, body: { code: refusal.code, message: refusal.message }, withheld: false } : errorResponse(error);
    // What the answer withholds goes to onError; a failed condition is an answer the client asked for.
    if (answer.withheld && answer.body.code !== "E_CONFLICT" && answer.body.code !== "E_FENCED") settings.onError(error, request);
    const headers: OutgoingHttpHeaders = { ...refusal?.headers };
    // An unread body (too large, or refused before reading) would otherwise be drained: close instead.
    if (!request.complete && carriesBody(request)) headers.connection = "close";
    sendJson(response, answer.status, answer.body, headers);
  }

  const serve = (request: IncomingMessage, response: ServerResponse): void | Promise<void> => {
    if (settings.closing()) response.shouldKeepAlive = false;
    try {
      return route(request, response);
    } catch (error) {
      fail(request, response, error);
    }
  };
  return { serve, fail };
}
