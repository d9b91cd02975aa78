import type { Driver, StorageMeta } from "../core/types.js";
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
    removeItem: (key: string) => files.remove(key),
    getMeta: (key: string): StorageMeta | null => files.meta(key),
    getKeys: (base: string, opts: { maxDepth?: number }) => files.keys(base ?? "", opts?.maxDepth),
    async *iterateKeys(base: string, opts: { maxDepth?: number; batchSize?: number }) {
      yield* files.walk(base ?? "", opts.maxDepth, opts.batchSize ?? 1000);
    },
    clear: (base: string) => files.clear(base ?? ""),
  };
}
