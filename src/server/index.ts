import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { StorageError } from "../core/errors.js";
import { richSerializer, type Serializer } from "../core/serializer.js";
import type { Storage } from "../core/types.js";
import { checkOptions } from "../core/options.js";
import { capturingRequests } from "./body.js";
import { checkAllowedHosts, isLoopback } from "./hosts.js";
import { isBearerToken } from "../core/bearerToken.js";
import { createHandler, type AuthorizeRequest, type RequestHandler } from "./handler.js";

export type { AuthorizeRequest } from "./handler.js";

type Handler = (request: IncomingMessage, response: ServerResponse) => void | Promise<void>;

/** The last request in flight on a connection, on the socket itself (no map lookup per request). */
const TAIL = Symbol("stowage.tail");
type OrderedSocket = Socket & { [TAIL]?: Promise<void> };

/**
 * Runs requests pipelined on one connection one after the other, as HTTP
 * orders them: a GET sent right behind a PUT must see the PUT's value, not
 * race its body. A request with nothing in flight before it runs at once.
 * What it returns settles once the request is answered and never rejects
 * (a rejection would stop every request behind it): a failure is answered
 * by the handler's `fail`, and should that throw too, reported to `onError`,
 * which must not throw (see {@link guardedOnError}).
 */
function inConnectionOrder(handler: RequestHandler, onError: (error: unknown, request: IncomingMessage) => void): Handler {
  return (request, response) => {
    const socket = request.socket as OrderedSocket;
    const before = socket[TAIL];
    let result: void | Promise<void>;
    if (before === undefined) {
      try {
        result = handler.serve(request, response);
      } catch (failure) {
        // serve answers its own failures; this is one answering them threw.
        cutConnection(response, failure, request, onError);
        return undefined;
      }
    } else {
      result = before.then(() => handler.serve(request, response));
    }
    if (result === undefined) return undefined;
    const release = (): void => {
      if (socket[TAIL] === tail) socket[TAIL] = undefined;
    };
    // One promise both orders the requests and answers a failure, before the next request on the connection runs.
    const tail: Promise<void> = result.then(release, (error: unknown) => {
      release();
      try {
        handler.fail(request, response, error);
      } catch (failure) {
        onError(error, request);
        cutConnection(response, failure, request, onError);
      }
    });
    socket[TAIL] = tail;
    return tail;
  };
}

/** No answer could be sent: cuts the connection rather than leave the client waiting, and reports why. */
function cutConnection(response: ServerResponse, failure: unknown, request: IncomingMessage, onError: (error: unknown, request: IncomingMessage) => void): void {
  response.destroy();
  onError(failure, request);
}

export interface StorageServerOptions {
  /**
   * Interface to listen on; the default accepts connections from this machine only.
   * @default "127.0.0.1"
   */
  host?: string;
  /**
   * Port (0 picks a free one).
   * @default 8787
   */
  port?: number;
  /**
   * A bearer token every request must carry (`Authorization: Bearer <token>`);
   * 401 otherwise. A non-empty string of visible characters (an empty one is
   * refused: it would not mean "no authentication").
   */
  token?: string;
  /**
   * Host names (no port) a request's `Host` may name besides loopback ones
   * (`localhost`, `127.x.x.x`, `[::1]`); others are answered 421. Checked
   * whenever given, and always without a `token` on loopback, so a web page
   * cannot reach a local server through DNS rebinding.
   */
  allowedHosts?: string[];
  /**
   * Lets the server listen on a non-loopback address without a token (refused
   * otherwise: anyone who can reach the port could read and write the store),
   * and turns off the Host check a loopback server without a token makes.
   * @default false
   */
  insecure?: boolean;
  /** Decides each request after the token check: `false` answers 403. */
  authorize?: (request: AuthorizeRequest) => boolean | Promise<boolean>;
  /**
   * Refuse PUT and DELETE with 405.
   * @default false
   */
  readOnly?: boolean;
  /**
   * Largest request body in bytes; larger ones get 413.
   * @default 16 MiB
   */
  maxBodySize?: number;
  /**
   * URL path the keys live under, e.g. `/storage/`.
   * @default "/"
   */
  basePath?: string;
  /**
   * How values travel as text (the rich serializer: JSON, tagged where JSON cannot carry a value).
   * @default the rich serializer
   */
  serializer?: Serializer;
  /**
   * How long a whole request may take to arrive, body included, in ms
   * (0 for no limit). Raise it to accept streamed uploads
   * larger than a slow link carries in that time.
   * @default 120_000
   */
  requestTimeout?: number;
  /**
   * A raw download whose client takes no byte for this long is cut off, in
   * ms (0 never), releasing the value being sent.
   * @default 60_000
   */
  idleTimeout?: number;
  /**
   * How long `close()` lets in-flight requests run before cutting their connections, in ms.
   * @default 10_000
   */
  shutdownTimeout?: number;
  /**
   * Called with every failure whose message the answer withholds: every 5xx,
   * and every failure of the store (its messages may name server paths) but a
   * failed condition (412). If the handler throws or rejects, both errors go to stderr.
   * @default one line on stderr
   */
  onError?: (error: unknown, request: IncomingMessage) => void;
}

export interface StorageServer {
  /**
   * Starts listening; resolves with the server's URL.
   * @throws StorageError `E_IO` when the address cannot be bound (in use, not permitted)
   */
  listen(): Promise<string>;
  /**
   * Stops accepting connections, lets in-flight requests finish, closes idle keep-alive connections.
   * @throws StorageError `E_IO` when node:http fails to close
   */
  close(): Promise<void>;
  /** The request handler, to mount in a server of your own (`http.createServer(server.handle)`). */
  handle(request: IncomingMessage, response: ServerResponse): Promise<void>;
  /** The URL it listens on (with the base path), once listening. */
  readonly url: string | undefined;
  /** The bound address, once listening. */
  readonly address: AddressInfo | undefined;
  /** The underlying node:http server. */
  readonly server: Server;
}

const DEFAULT_PORT = 8787;
/** What `handle` resolves to for a request answered within the call. */
const DONE: Promise<void> = Promise.resolve();
const DEFAULT_MAX_BODY = 16 * 1024 * 1024;
const DEFAULT_HOST = "127.0.0.1";
const OPTION_NAMES: (keyof StorageServerOptions)[] = [
  "host",
  "port",
  "token",
  "allowedHosts",
  "insecure",
  "authorize",
  "readOnly",
  "maxBodySize",
  "basePath",
  "serializer",
  "requestTimeout",
  "idleTimeout",
  "shutdownTimeout",
  "onError",
];

function normalizeBasePath(basePath: string | undefined): string {
  const path = (basePath ?? "").replace(/^\/+|\/+$/g, "");
  return path ? `/${path}/` : "/";
}

function checkMs(value: number | undefined, name: string, fallback: number): number {
  const ms = value ?? fallback;
  if (!Number.isSafeInteger(ms) || ms < 0) throw new StorageError("E_INVALID_OPTION", `${name} must be a number of ms, got ${String(value)}`);
  return ms;
}

/** A token must be something a client can send and the server compare: visible ASCII, no spaces (the header is trimmed). */
function checkToken(token: unknown): string | undefined {
  if (token === undefined) return undefined;
  if (!isBearerToken(token)) {
    throw new StorageError(
      "E_INVALID_OPTION",
      `[server] token must be a non-empty string of visible ASCII characters without spaces${token === "" ? " (an empty token is not \"no authentication\": leave token out for that)" : ""}`,
    );
  }
  return token;
}

/** A server without a token is refused anywhere but loopback, unless `insecure` says so. */
function checkExposure(host: string, token: string | undefined, insecure: boolean): void {
  if (token !== undefined || insecure || isLoopback(host)) return;
  throw new StorageError(
    "E_INVALID_OPTION",
    `[server] refusing to listen on ${host} without a token: anyone who can reach it could read and write the store. Set a token, or insecure: true to serve it unauthenticated`,
  );
}

function checkFlag(value: unknown, name: string): boolean {
  if (value !== undefined && typeof value !== "boolean") throw new StorageError("E_INVALID_OPTION", `[server] ${name} must be true or false, got ${String(value)}`);
  return value === true;
}

function checkPort(port: unknown): number {
  if (port === undefined) return DEFAULT_PORT;
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new StorageError("E_INVALID_OPTION", `[server] port must be an integer from 0 to 65535, got ${String(port)}`);
  }
  return port;
}

function checkSize(maxBodySize: number | undefined): number {
  const size = maxBodySize ?? DEFAULT_MAX_BODY;
  if (!Number.isSafeInteger(size) || size < 0) throw new StorageError("E_INVALID_OPTION", `maxBodySize must be a byte count, got ${String(maxBodySize)}`);
  return size;
}

/**
 * The caller's `onError`, made safe to call: one that throws, or returns a
 * promise that rejects, is reported on stderr instead, never thrown into a
 * request nor left an unhandled rejection.
 */
function guardedOnError(onError: StorageServerOptions["onError"]): (error: unknown, request: IncomingMessage) => void {
  if (onError === undefined) return logError;
  return (error, request) => {
    // Both go to stderr: the failure the hook was handed, and what the hook threw.
    const hookFailed = (failure: unknown): void => {
      logError(error, request);
      logError(failure, request);
    };
    try {
      const returned: unknown = onError(error, request);
      if (returned instanceof Promise) returned.catch(hookFailed);
    } catch (failure) {
      hookFailed(failure);
    }
  };
}

function logError(error: unknown, request: IncomingMessage): void {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`stowage server: ${request.method ?? "?"} ${request.url ?? "?"}: ${message}\n`);
}

/**
 * An HTTP server for a storage, speaking unstorage's protocol (so
 * unstorage's `http` driver and stowage's both talk to it) plus ETags,
 * conditional writes, auth, read-only mode, body limits and graceful
 * shutdown. See docs/server.md.
 * @example
 * const server = createStorageServer(storage, { port: 8787, token: process.env.TOKEN });
 * console.log(await server.listen());
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option or one of the wrong type or range, a token that is empty or not visible ASCII, a non-loopback `host` without a `token` (unless `insecure`)
 */
export function createStorageServer(storage: Storage, options: StorageServerOptions = {}): StorageServer {
  checkOptions("server", options, OPTION_NAMES);
  const host = options.host ?? DEFAULT_HOST;
  if (typeof host !== "string" || host === "") throw new StorageError("E_INVALID_OPTION", `[server] host must be a host name or address, got ${String(host)}`);
  const port = checkPort(options.port);
  const token = checkToken(options.token);
  const insecure = checkFlag(options.insecure, "insecure");
  checkExposure(host, token, insecure);
  const allowedHosts = checkAllowedHosts(options.allowedHosts);
  const basePath = normalizeBasePath(options.basePath);
  const maxBodySize = checkSize(options.maxBodySize);
  let closing = false;
  const onError = guardedOnError(options.onError);
  const serve = inConnectionOrder(createHandler({
    storage,
    serializer: options.serializer ?? richSerializer,
    token,
    checkHost: allowedHosts !== undefined || (token === undefined && !insecure),
    allowedHosts,
    authorize: options.authorize,
    readOnly: checkFlag(options.readOnly, "readOnly"),
    maxBodySize,
    idleTimeout: checkMs(options.idleTimeout, "idleTimeout", 60_000),
    basePath,
    onError,
    closing: () => closing,
  }), onError);
  const handle = (request: IncomingMessage, response: ServerResponse): Promise<void> => serve(request, response) ?? DONE;
  // serve() never rejects; a request answered in one turn (a sync driver) makes no promise at all.
  const requestTimeout = checkMs(options.requestTimeout, "requestTimeout", 120_000);
  const server = createServer({ headersTimeout: Math.min(20_000, requestTimeout || 20_000), requestTimeout, IncomingMessage: capturingRequests(maxBodySize) }, serve);

  const address = (): AddressInfo | undefined => {
    const bound = server.address();
    return bound !== null && typeof bound === "object" ? bound : undefined;
  };

  return {
    handle,
    server,
    get address() {
      return address();
    },
    get url() {
      const bound = address();
      if (!bound) return undefined;
      const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
      return `http://${host}:${bound.port}${basePath}`;
    },
    listen() {
      return new Promise((resolve, reject) => {
        const failed = (error: Error) => reject(new StorageError("E_IO", `Cannot listen on ${host}:${port}: ${error.message}`, { cause: error }));
        server.once("error", failed);
        server.listen(port, host, () => {
          server.off("error", failed);
          resolve(this.url!);
        });
      });
    },
    close() {
      closing = true;
      return new Promise((resolve, reject) => {
        if (!server.listening) return resolve();
        const force = setTimeout(() => server.closeAllConnections(), options.shutdownTimeout ?? 10_000).unref();
        server.close((error) => {
          clearTimeout(force);
          if (error) reject(new StorageError("E_IO", `Closing the server failed: ${error.message}`, { cause: error }));
          else resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}
