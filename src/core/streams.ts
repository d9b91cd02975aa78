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

/**
 * The chunks of a caller's body as bytes: Buffers and Uint8Arrays as they
 * are, other views, ArrayBuffers and strings (a stream with an encoding
 * set) converted; anything else fails with E_INVALID_VALUE.
 */
export function bytesOf(body: unknown): AsyncIterable<Uint8Array> {
  if (!isAsyncIterable(body)) {
    throw new StorageError("E_INVALID_VALUE", "setItemStream expects an async iterable of bytes (a Node.js or web stream, an async generator)");
  }
  return (async function* () {
    for await (const chunk of body) {
      if (chunk instanceof Uint8Array) yield chunk;
      else if (chunk !== null && chunk !== undefined) yield toBytes(chunk);
    }
  })();
}

/** Gathers a body whole, for a driver that cannot take it in chunks. */
export async function gather(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  if (chunks.length === 1) return chunks[0]!;
  const whole = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    whole.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return whole;
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
