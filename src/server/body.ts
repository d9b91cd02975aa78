import { IncomingMessage, type ServerResponse } from "node:http";
import { StorageError } from "../core/errors.js";
import { gather } from "../core/streams.js";
import { requestError } from "./protocol.js";

/** Responses larger than this are written in chunks of this size, following the socket's backpressure. */
const CHUNK = 64 * 1024;
/** Body bytes a request keeps before anyone reads it (node's own request buffer size); past it the socket pauses. */
const HIGH_WATER = 16 * 1024;

function tooLarge(limit: number): StorageError {
  return requestError("E_TOO_LARGE", `Request body exceeds the limit of ${limit} bytes`);
}

const EMPTY = Buffer.alloc(0);

/**
 * The storage server's request class (node:http's `IncomingMessage` option).
 * node:http's parser hands a request's body to `push`, which a plain
 * request passes through the Readable machinery (listeners, flowing mode,
 * `end` a tick later). Most bodies are read whole, so here `push` keeps the
 * chunks and the body is handed over the moment the parser finishes the
 * message (docs/server.md has the measurements); a large raw upload is
 * taken chunk by chunk instead ({@link stream}). The stream itself still
 * ends, so node:http's own bookkeeping is as for any request; it just
 * carries no data. Once the body kept and not yet taken holds
 * {@link HIGH_WATER} bytes, the socket pauses until a reader takes it or
 * the body is whole, as it would for a plain request's full buffer.
 */
export class CapturingRequest extends IncomingMessage {
  /** The largest body kept; a larger one fails the capture and pauses the socket. */
  static limit = Infinity;
  // Plain fields, set only when used: a GET, with no body, allocates nothing here.
  /** Chunks received and not yet handed over. */
  private chunks: Buffer[] | undefined;
  private kept = 0;
  /** Bytes received in all. */
  private size = 0;
  private ended = false;
  private failure: StorageError | undefined;
  /** A reader of the whole body, waiting for its end. */
  private waiting: { use: (body: Buffer) => void; reject: (error: StorageError) => void } | undefined;
  /** A reader of chunks, waiting for the next one (null at the end). */
  private reader: { resolve: (chunk: Buffer | null) => void; reject: (error: StorageError) => void } | undefined;
  private streaming = false;
  private stalled = false;

  // The parser pushes Buffers, then null at the end of the message.
  override push(chunk: Buffer | null): boolean {
    if (chunk === null) {
      // The body is whole: what follows on the socket is the next request's, which decides for itself.
      this.ended = true;
      this.unstall();
      if (this.streaming) this.handOver();
      else this.finish();
      return super.push(null);
    }
    if (this.failure) return false;
    const limit = (this.constructor as typeof CapturingRequest).limit;
    // A declared length over the limit is refused at the first chunk, whether or not anyone reads the body yet.
    if (this.size === 0 && Number(this.headers["content-length"]) > limit) {
      this.refuse(tooLarge(limit));
      return false;
    }
    this.size += chunk.length;
    if (this.size > limit) {
      // false stops the parser reading the socket: the caller answers 413 and closes the connection.
      this.refuse(tooLarge(limit));
      return false;
    }
    (this.chunks ??= []).push(chunk);
    this.kept += chunk.length;
    if (this.streaming) this.handOver();
    // false pauses the socket until a reader takes the body (deliver, or the stream's next chunk): a body waiting for a reader stays bounded.
    if (this.waiting === undefined && this.kept >= HIGH_WATER) this.stalled = true;
    return !this.stalled;
  }

  // A client that goes away mid-upload: node:http destroys its request, and the body fails.
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.complete) this.refuse(requestError("E_UNAVAILABLE", "The client disconnected before the body was complete", error ?? undefined));
    super._destroy(error, callback);
  }

  /** Calls `use` with the whole body once the parser has finished the message (at once if it has), or `reject` if the body fails. */
  deliver(use: (body: Buffer) => void, reject: (error: StorageError) => void): void {
    this.unstall();
    if (this.failure) reject(this.failure);
    else if (this.ended) use(this.whole());
    else this.waiting = { use, reject };
  }

  /**
   * The body chunk by chunk, as the parser hands it over: at most
   * {@link HIGH_WATER} bytes wait for the reader before the socket pauses.
   * Fails as the body does (too large, the client gone).
   */
  async *stream(): AsyncGenerator<Buffer> {
    this.streaming = true;
    for (let chunk = await this.nextChunk(); chunk !== null; chunk = await this.nextChunk()) yield chunk;
  }

  private nextChunk(): Promise<Buffer | null> {
    return new Promise((resolve, reject) => {
      this.reader = { resolve, reject };
      this.handOver();
    });
  }

  /** Gives a waiting reader the next chunk, the end, or the failure. */
  private handOver(): void {
    const reader = this.reader;
    if (reader === undefined) return;
    if (this.failure) {
      this.reader = undefined;
      reader.reject(this.failure);
      return;
    }
    const chunk = this.chunks?.shift();
    if (chunk === undefined && !this.ended) return;
    this.reader = undefined;
    if (chunk === undefined) {
      reader.resolve(null);
      return;
    }
    this.kept -= chunk.length;
    if (this.kept < HIGH_WATER) this.unstall();
    reader.resolve(chunk);
  }

  private finish(): void {
    if (this.failure || this.waiting === undefined) return;
    this.waiting.use(this.whole());
  }

  /** The body kept, as one Buffer. */
  private whole(): Buffer {
    const chunks = this.chunks;
    this.chunks = undefined;
    this.kept = 0;
    return chunks === undefined ? EMPTY : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  private unstall(): void {
    if (!this.stalled) return;
    this.stalled = false;
    // node:http's server re-pauses a socket it paused itself (a client not reading its responses).
    this.socket.resume();
  }

  /** Fails the body with `error` (also before any of it is read): nothing more is kept, and the socket pauses at the next chunk. */
  refuse(error: StorageError): void {
    if (this.failure || this.ended) return;
    this.chunks = undefined;
    this.kept = 0;
    this.failure = error;
    this.waiting?.reject(error);
    this.handOver();
  }
}

/** A request class for a server whose bodies may be at most `limit` bytes. */
export function capturingRequests(limit: number): typeof CapturingRequest {
  return class extends CapturingRequest {
    static override limit = limit;
  };
}

/**
 * Reads a request body and hands it to `use`; the promise settles as `use`
 * returns (one promise for both). The body is refused as soon as it passes
 * `limit`: a declared Content-Length over the limit fails before a byte is
 * read, a chunked body fails at the chunk that crosses it. The rest is left
 * unread (paused); the caller answers 413 and closes the connection. A
 * {@link CapturingRequest} is handed its body by the parser; any other
 * request (the handler mounted in a server of the caller's own) is read as a
 * stream.
 */
export function readBody<T>(request: IncomingMessage, limit: number, use: (body: Buffer) => T | PromiseLike<T>): Promise<T> {
  const refused = refuseDeclared(request, limit);
  if (refused) return Promise.reject(refused);
  if (request instanceof CapturingRequest) {
    return new Promise<T>((resolve, reject) => {
      request.deliver((body) => {
        try {
          resolve(use(body));
        } catch (error) {
          reject(error);
        }
      }, reject);
    });
  }
  return gather(countedChunks(request, limit)).then(use);
}

/** A declared Content-Length over `limit` fails the body before a byte of it is read: the error, else undefined. */
function refuseDeclared(request: IncomingMessage, limit: number): StorageError | undefined {
  if (!(Number(request.headers["content-length"]) > limit)) return undefined;
  const error = tooLarge(limit);
  if (request instanceof CapturingRequest) request.refuse(error);
  else request.pause();
  return error;
}

/**
 * A request body as chunks, read as the consumer takes them (the socket
 * pauses while it does not), under the same `limit` as {@link readBody}:
 * the iteration fails with E_TOO_LARGE at the chunk that crosses it (or at
 * once for a declared length over it), and with E_UNAVAILABLE when the
 * client goes away first.
 */
export function streamBody(request: IncomingMessage, limit: number): AsyncIterable<Buffer> {
  const refused = refuseDeclared(request, limit);
  if (refused) return failing(refused);
  if (request instanceof CapturingRequest) return request.stream();
  return countedChunks(request, limit);
}

// eslint-disable-next-line require-yield -- a body that fails before its first chunk
async function* failing(error: StorageError): AsyncGenerator<Buffer> {
  throw error;
}

/** A plain request's chunks, counted against `limit`; breaking off leaves the request paused, not destroyed, so it can still be answered. */
async function* countedChunks(request: IncomingMessage, limit: number): AsyncGenerator<Buffer> {
  let size = 0;
  try {
    for await (const chunk of request.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw tooLarge(limit);
      yield chunk;
    }
  } catch (error) {
    request.pause();
    if (error instanceof StorageError) throw error;
    throw requestError("E_UNAVAILABLE", "Reading the request body failed", error);
  }
}

/** Waits until the socket takes more data, or the response is gone (at once when it is gone already: no event would come). */
export function drained(response: ServerResponse): Promise<boolean> {
  if (response.destroyed || response.writableEnded) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      response.off("drain", onDrain);
      response.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    response.once("drain", onDrain);
    response.once("close", onClose);
  });
}

/** Ends a response with `body`; a large one goes out in chunks, so a slow client never makes a second copy pile up. */
export async function sendBody(response: ServerResponse, body: Uint8Array): Promise<void> {
  if (body.byteLength <= CHUNK) {
    response.end(body);
    return;
  }
  if (await writeChunked(response, body)) response.end();
}

/** Writes `bytes` in chunks, following the socket's backpressure; false when the response went away first. */
async function writeChunked(response: ServerResponse, bytes: Uint8Array): Promise<boolean> {
  for (let offset = 0; offset < bytes.byteLength; offset += CHUNK) {
    if (response.destroyed) return false;
    const chunk = bytes.subarray(offset, Math.min(offset + CHUNK, bytes.byteLength));
    if (!response.write(chunk) && !(await drained(response))) return false;
  }
  return true;
}

/**
 * Ends a response with the chunks of `body` as they come, following the
 * socket's backpressure. A client gone first stops the reading (breaking
 * off releases the stream). Bytes that do not add up to the `length` the
 * head announced (a file changed in place meanwhile) cut the connection,
 * so the client sees a broken answer, never a short or overlong one; a
 * failing stream rejects, after its first bytes too, for the caller to cut it.
 */
export async function sendStream(response: ServerResponse, body: AsyncIterable<Uint8Array>, length: number | undefined): Promise<void> {
  let sent = 0;
  for await (const bytes of body) {
    sent += bytes.byteLength;
    if ((length !== undefined && sent > length) || !(await writeChunked(response, bytes))) break;
  }
  if (length !== undefined && sent !== length) response.destroy();
  else response.end();
}
