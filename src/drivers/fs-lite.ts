import { defineDriver } from "../core/defineDriver.js";
import { FileStore } from "./support/fs/fileStore.js";
import { fileMethods } from "./support/fs/fileMethods.js";
import { checkFileOptions } from "./support/fs/options.js";

export interface FsLiteOptions {
  /** Directory that holds the keys. Required. */
  base: string;
  /**
   * Refuse every write with E_READONLY.
   * @default false
   */
  readOnly?: boolean;
  /**
   * Refuse clear() with E_READONLY.
   * @default false
   */
  noClear?: boolean;
  /**
   * fsync each write before it is renamed into place.
   * @default false
   */
  fsync?: boolean;
  /** Leaves a path out of listings and clear, and refuses keys there (E_INVALID_KEY); gets the absolute path, as unstorage's fs-lite does. */
  ignore?: (path: string) => boolean;
}

/**
 * One file per key, without a file watcher (no chokidar): the core reports
 * writes made through this process. Everything else is the fs driver's.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing base, a base in a Git repository's own files, an unknown option or one of the wrong type
 */
export default defineDriver((options: FsLiteOptions) => {
  checkFileOptions("fs-lite", options, ["base", "readOnly", "noClear", "fsync", "ignore"], "function");
  const ignore = options?.ignore;
  const files = new FileStore("fs-lite", { ...options, ignore: ignore ? (_relative, absolute) => ignore(absolute) : undefined });
  return {
    name: "fs-lite",
    options,
    flags: { maxDepth: true, sync: true, clearBase: true, nestedKeys: false },
    keyLimits: files.keyLimits,
    ...fileMethods(files),
  };
});
