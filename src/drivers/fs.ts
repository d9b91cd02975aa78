import { watch as chokidarWatch, type ChokidarOptions } from "chokidar";
import picomatch from "picomatch";
import { defineDriver } from "../core/defineDriver.js";
import { StorageError } from "../core/errors.js";
import type { WatchCallback } from "../core/types.js";
import { FileStore } from "./support/fs/fileStore.js";
import { fileMethods } from "./support/fs/fileMethods.js";
import { checkFileOptions } from "./support/fs/options.js";

export interface FsOptions {
  /** Directory that holds the keys. Required. */
  base: string;
  /**
   * Globs (relative to base) left out of listings, clear and watch events; keys there are refused (E_INVALID_KEY).
   * @default node_modules and .git directories, at any depth
   */
  ignore?: string[];
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
  /** Passed on to chokidar's watch(), except `followSymlinks` (always off) and `cwd` (refused). */
  watchOptions?: ChokidarOptions;
}

const DEFAULT_IGNORE = ["**/node_modules/**", "**/.git/**"];

/**
 * One file per key under `base`: keys' segments are directories, writes are
 * atomic (temp file + rename), every method is synchronous (flag `sync`), and
 * `watch` follows changes from any process through chokidar.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing base, a base in a Git repository's own files, an unknown option or one of the wrong type
 */
export default defineDriver((options: FsOptions) => {
  checkFileOptions("fs", options, ["base", "ignore", "readOnly", "noClear", "fsync", "watchOptions"], "globs");
  checkWatchOptions(options?.watchOptions);
  const matches = picomatch(options?.ignore ?? DEFAULT_IGNORE, { dot: true });
  const files = new FileStore("fs", { ...options, ignore: (relative) => matches(relative) });

  async function watch(callback: WatchCallback) {
    // The watcher never follows a link, so it sees nothing outside base; links to files inside it are checked per event.
    const watcher = chokidarWatch(files.watchRoot(), { ignoreInitial: true, ...options.watchOptions, followSymlinks: false });
    const forward = (event: "update" | "remove") => (path: string) => {
      const key = files.keyOfPath(path, event === "update");
      // A file event does not say which process wrote the file.
      if (key !== undefined) callback(event, key, { origin: "unknown" });
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
    keyLimits: files.keyLimits,
    ...fileMethods(files),
    watch,
  };
});

/** chokidar options that would take the watcher out of base or make its paths unreadable are refused. */
function checkWatchOptions(watchOptions: ChokidarOptions | undefined): void {
  if (watchOptions === undefined) return;
  const refuse = (message: string) => new StorageError("E_INVALID_OPTION", `[fs] ${message}`, { driver: "fs" });
  if (watchOptions === null || typeof watchOptions !== "object" || Array.isArray(watchOptions)) throw refuse("watchOptions must be an object");
  if (watchOptions.followSymlinks === true) throw refuse("watchOptions.followSymlinks cannot be true: a link would lead the watcher out of base");
  if (watchOptions.cwd !== undefined) throw refuse("watchOptions.cwd is not supported: events must carry absolute paths");
}
