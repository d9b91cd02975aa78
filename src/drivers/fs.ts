import { watch as chokidarWatch, type ChokidarOptions } from "chokidar";
import picomatch from "picomatch";
import { defineDriver } from "../core/defineDriver.js";
import { StorageError } from "../core/errors.js";
import type { WatchCallback } from "../core/types.js";
import { FileStore } from "../fs/fileStore.js";
import { fileMethods } from "../fs/fileMethods.js";

export interface FsOptions {
  /** Directory that holds the keys. Required. */
  base: string;
  /** Globs (relative to base) left out of listings and watch events. Default: node_modules and .git. */
  ignore?: string[];
  /** Refuse every write with E_READONLY. */
  readOnly?: boolean;
  /** Refuse clear() with E_READONLY. */
  noClear?: boolean;
  /** fsync each write before it is renamed into place. */
  fsync?: boolean;
  /** Passed on to chokidar's watch(). */
  watchOptions?: ChokidarOptions;
}

const DEFAULT_IGNORE = ["**/node_modules/**", "**/.git/**"];

/**
 * One file per key under `base`: keys' segments are directories, writes are
 * atomic (temp file + rename), every method is synchronous (flag `sync`), and
 * `watch` follows changes from any process through chokidar.
 */
export default defineDriver((options: FsOptions) => {
  const matches = picomatch(options?.ignore ?? DEFAULT_IGNORE, { dot: true });
  const files = new FileStore("fs", { ...options, ignore: (relative) => matches(relative) });

  async function watch(callback: WatchCallback) {
    const watcher = chokidarWatch(files.base, { ignoreInitial: true, ...options.watchOptions });
    const forward = (event: "update" | "remove") => (path: string) => {
      const key = files.keyOfPath(path);
      if (key !== undefined) callback(event, key);
    };
    watcher.on("add", forward("update")).on("change", forward("update")).on("unlink", forward("remove"));
    await new Promise<void>((resolve, reject) => {
      watcher.once("ready", resolve);
      watcher.once("error", (error) => reject(new StorageError("E_IO", `Cannot watch ${files.base}`, { driver: "fs", cause: error })));
    });
    return () => watcher.close();
  }

  return {
    name: "fs",
    options,
    flags: { maxDepth: true, sync: true, watch: true, clearBase: true, nestedKeys: false },
    ...fileMethods(files),
    watch,
  };
});
