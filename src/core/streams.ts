import { StorageError, toStorageError } from "./errors.js";
import { toBytes } from "./serializer.js";
import type { ItemStream, StorageMeta } from "./types.js";

/**
 * Streams of bytes in and out of the core: the checks on what a caller
 * hands setItemStream, and the forms getItemStream and setItemStream take
 * over a driver that reads and writes values whole.
 */

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown> | null)?.[Symbol.asyncIterator] === "function";
}

/** A caller's body as bytes, and how to let go of it. */
export interface Body {
  chunks: AsyncIterable<Uint8Array>;
  /**
   * Ends the caller's stream unless it was read to its end (a Node.js
   * stream is destroyed, a web stream cancelled, a generator returned), so
   * a write that fails before or while reading it leaves no file open. A
   * generator busy in an await ends when it next yields.
   */
  release(): Promise<void>;
  /**
   * What the caller's body itself threw while it was read, if it did (the
   * same object, in `error`): setItemStream rejects with it as it was
   * thrown, not with the driver's report of it, as transaction and update
   * hand back the caller's own errors.
   */
  failure(): { error: unknown } | undefined;
}

/**
 * The chunks of a caller's body as bytes: Buffers and Uint8Arrays as they
 * are, other views, ArrayBuffers and strings (a stream with an encoding
 * set) converted; anything else fails with E_INVALID_VALUE.
 */
export function bytesOf(body: unknown): Body {
  if (!isAsyncIterable(body)) {
    throw new StorageError("E_INVALID_VALUE", "setItemStream expects an async iterable of bytes (a Node.js or web stream, an async generator)");
  }
  const source = body[Symbol.asyncIterator]();
  let open = true;
  const release = async (): Promise<void> => {
    if (!open) return;
    open = false;
    // A Node.js stream's iterator, returned before it started, would leave the stream as it is.
    const stream = body as { destroy?: unknown; once?: (event: "error", listener: (error: unknown) => void) => unknown };
    if (typeof stream.destroy !== "function") {
      await source.return?.();
      return;
    }
    // A failure of its own after this (a file it was still opening) is reported, not thrown at the process.
    stream.once?.("error", (error) => process.emitWarning(`stowage: a stream let go after a failed setItemStream failed: ${String(error)}`));
    stream.destroy();
  };
  let failed: { error: unknown } | undefined;
  const pull = async (): Promise<IteratorResult<unknown>> => {
    try {
      return await source.next();
    } catch (error) {
      failed = { error };
      throw error;
    }
  };
  const chunks = (async function* () {
    try {
      for (let next = await pull(); !next.done; next = await pull()) {
        const chunk: unknown = next.value;
        if (chunk instanceof Uint8Array) yield chunk;
        else if (chunk !== null && chunk !== undefined) yield toBytes(chunk);
      }
      open = false;
    } finally {
      await release();
    }
  })();
  return { chunks, release, failure: () => failed };
}

/** Gathers a body whole, for a driver that cannot take it in chunks. */
export async function gather(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** What {@link destroyAndWait} needs of a Node.js stream. */
interface Destroyable {
  readonly closed: boolean;
  once(event: "close", listener: () => void): unknown;
  destroy(): unknown;
}

/** Destroys a Node.js stream and resolves once it has closed (at once if it has): an ItemStream's `close()`. */
export function destroyAndWait(stream: Destroyable): Promise<void> {
  if (stream.closed) return Promise.resolve();
  const closed = new Promise<void>((resolve) => stream.once("close", resolve));
  stream.destroy();
  return closed;
}

/** A value read whole, handed out as a stream of one chunk; its size is its length. */
export function wholeStream(bytes: Uint8Array, meta: StorageMeta): ItemStream {
  return {
    meta: { ...meta, size: bytes.byteLength },
    body: (async function* () {
      yield bytes;
    })(),
    close: () => Promise.resolve(),
  };
}

/** A driver's stream whose read failures come out as StorageErrors, as every other failure of the API does. */
export function withStorageErrors(opened: ItemStream, driver: string | undefined): ItemStream {
  const body = opened.body;
  return {
    ...opened,
    body: (async function* () {
      try {
        yield* body;
      } catch (error) {
        throw toStorageError(error, driver);
      }
    })(),
  };
}
