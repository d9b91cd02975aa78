import { destroyAndWait, wholeStream } from "../../../core/streams.js";
import type { Driver, ItemStream, StorageMeta } from "../../../core/types.js";
import type { FileStore } from "./fileStore.js";

/** The Driver methods the fs and fs-lite drivers share: each maps onto the file engine. */
export function fileMethods(files: FileStore): Omit<Driver<unknown, FileStore>, "name" | "flags" | "options" | "watch"> {
  return {
    getInstance: () => files,
    hasItem: (key: string) => files.has(key),
    getItem: (key: string) => files.readText(key),
    getItemRaw: (key: string) => files.read(key),
    setItem: (key: string, value: string) => files.write(key, value),
    setItemRaw: (key: string, value: Uint8Array) => files.write(key, value),
    getItemStream: (key: string) => openStream(files, key),
    setItemStream: (key: string, body: AsyncIterable<Uint8Array>) => files.writeStream(key, body),
    removeItem: (key: string) => files.remove(key),
    getMeta: (key: string): StorageMeta | null => files.meta(key),
    getKeys: (base: string, opts: { maxDepth?: number }) => files.keys(base ?? "", opts?.maxDepth),
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      yield* files.walk(base ?? "", opts.maxDepth, opts.batchSize ?? 1000);
    },
    clear: (base: string) => files.clear(base ?? ""),
  };
}

/**
 * A key's file opened as an ItemStream: node's file stream over the opened
 * handle, which it closes when it ends or is destroyed. It reads the size
 * the meta reports and no further, should another process append to the
 * file in place (a file cut short in place still yields fewer bytes).
 */
async function openStream(files: FileStore, key: string): Promise<ItemStream | null> {
  const opened = await files.openRead(key);
  if (opened === null) return null;
  const size = opened.meta.size ?? 0;
  if (size === 0) {
    // node's file streams take no empty range: an empty file reads as no chunks.
    await opened.handle.close();
    return wholeStream(new Uint8Array(0), opened.meta);
  }
  // In node's default chunks of 64 KiB: a value is never held whole.
  const body = opened.handle.createReadStream({ start: 0, end: size - 1 });
  return { meta: opened.meta, body, close: () => destroyAndWait(body) };
}
