import type { IncomingMessage, ServerResponse } from "node:http";
import { StorageError } from "../core/errors.js";

/** Responses larger than this are written in chunks of this size, following the socket's backpressure. */
const CHUNK = 64 * 1024;

function tooLarge(limit: number): StorageError {
  return new StorageError("E_TOO_LARGE", `Request body exceeds the limit of ${limit} bytes`);
}

/**
 * Reads a request body, refusing it as soon as it passes `limit`: a declared
 * Content-Length over the limit fails before a byte is read, a chunked body
 * fails at the chunk that crosses it. The rest is left unread (paused); the
 * caller answers 413 and closes the connection.
 */
export function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(request.headers["content-length"]);
  if (declared > limit) {
    request.pause();
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (error: StorageError) => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.pause();
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) stop(tooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = () => {
      request.off("close", onClose);
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // A client that goes away mid-upload: nothing is written, nobody is answered.
    const onClose = () => {
      if (!request.complete) stop(new StorageError("E_UNAVAILABLE", "The client disconnected before the body was complete"));
    };
    request.on("data", onData);
    request.once("end", onEnd);
    request.once("close", onClose);
    request.once("error", (error) => stop(new StorageError("E_UNAVAILABLE", "Reading the request body failed", { cause: error })));
  });
}

/** Waits until the socket takes more data, or the response is gone. */
export function drained(response: ServerResponse): Promise<boolean> {
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
  for (let offset = 0; offset < body.byteLength; offset += CHUNK) {
    const chunk = body.subarray(offset, Math.min(offset + CHUNK, body.byteLength));
    if (!response.write(chunk) && !(await drained(response))) return;
  }
  response.end();
}
