import { StorageError } from "./errors.js";
import { isMetaKey, normalizeItemBase, normalizeKey } from "./keys.js";
import { isPromise } from "./maybePromise.js";
import type { Mount } from "./mounts.js";
import type { Unwatch, WatchCallback, WatchErrorHandler, WatchEvent, WatchInfo } from "./types.js";

/** What the core knows of a write it reports itself: this process made it (its etag is not returned by the write). */
const LOCAL: WatchInfo = Object.freeze({ origin: "local" });
/** What a driver that passes no info (an unstorage driver) tells: nothing. */
const UNKNOWN: WatchInfo = Object.freeze({ origin: "unknown" });

/** A listener and the base it watches (`""`: every key). */
interface Listener {
  /** Normalized base ending in `:`, or `""`. */
  base: string;
  /** The base as a key: the key equal to the base is reported too. */
  key: string;
  callback: WatchCallback;
}

/** A listener's failure, where the storage's `onWatchError` is not given. */
function warn(error: unknown, event: WatchEvent, key: string): void {
  process.emitWarning(`stowage: a watch listener failed on ${event} ${key}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
}

/**
 * A driver's `info`, frozen for sharing among listeners: a copy, unless the
 * driver froze it, so a driver that reuses its object can still change it.
 * Without one (an unstorage driver calls `callback(event, key)`) the origin
 * is unknown. A `version` reaches listeners only from a driver flagged
 * `history`: elsewhere `getHistory` and version reads refuse it (a layer
 * such as overlay passes on what a git layer below it reports).
 */
function driverInfo(info: WatchInfo | undefined, history: boolean): WatchInfo {
  if (info === undefined) return UNKNOWN;
  if (info.version !== undefined && !history) {
    const { version: _version, ...rest } = info;
    return Object.freeze(rest);
  }
  return Object.isFrozen(info) ? info : Object.freeze({ ...info });
}

/**
 * The arguments of `watch(callback)` and `watch(base, callback)`, checked.
 *
 * @throws StorageError `E_INVALID_OPTION` when the callback is not a function; `E_INVALID_KEY` for a bad base
 */
export function watchArguments(first: unknown, second: unknown): { base: string; callback: WatchCallback } {
  const [base, callback] = typeof first === "function" && second === undefined ? [undefined, first] : [first, second];
  if (typeof callback !== "function") {
    throw new StorageError("E_INVALID_OPTION", `watch needs a listener function, got ${callback === null ? "null" : typeof callback}`);
  }
  return { base: normalizeItemBase(base), callback: callback as WatchCallback };
}

/**
 * The watch side of a storage: listeners, the drivers' own watchers while
 * anyone listens, and the events the core reports for drivers that have none.
 * A listener never makes a write fail: what it throws or rejects with goes
 * to `onError`.
 */
export class Watchers {
  private listeners: Listener[] = [];
  private unwatchers = new Map<Mount, Unwatch>();
  watching = false;

  constructor(private readonly onError: WatchErrorHandler = warn) {}

  /** Tells every listener whose base covers `key`; they share one frozen `info`, so none can change what the next sees. */
  emit(event: WatchEvent, key: string, info: WatchInfo): void {
    if (isMetaKey(key)) return;
    for (const listener of this.listeners) {
      if (listener.base && key !== listener.key && !key.startsWith(listener.base)) continue;
      this.call(listener.callback, event, key, info);
    }
  }

  private call(callback: WatchCallback, event: WatchEvent, key: string, info: WatchInfo): void {
    try {
      const result = callback(event, key, info);
      if (isPromise(result)) result.catch((error: unknown) => this.failed(error, event, key));
    } catch (error) {
      this.failed(error, event, key);
    }
  }

  /** Hands a listener's failure to the handler; a handler that fails itself is warned about, never thrown. */
  private failed(error: unknown, event: WatchEvent, key: string): void {
    try {
      this.onError(error, event, key);
    } catch (handlerError) {
      warn(handlerError, event, key);
    }
  }

  /** Reports a write the core made through a mount without a watch of its own: made here, so `origin: "local"`. */
  report(mount: Mount, event: WatchEvent, key: string): void {
    if (this.watching && mount.coreEvents) this.emit(event, key, LOCAL);
  }

  async add(base: string, callback: WatchCallback, mounts: Mount[]): Promise<Unwatch> {
    const listener: Listener = { base, key: base.slice(0, -1), callback };
    this.listeners.push(listener);
    if (!this.watching) {
      this.watching = true;
      await Promise.all(mounts.map((mount) => this.start(mount)));
    }
    return async () => {
      this.listeners = this.listeners.filter((other) => other !== listener);
      if (this.listeners.length === 0) await this.stop();
    };
  }

  /** Starts the driver's own watcher for a mount, when it has one and someone listens. */
  async start(mount: Mount): Promise<void> {
    if (!this.watching || !mount.driver.watch) return;
    const unwatch = await mount.driver.watch((event, key, info) => this.emit(event, mount.base + normalizeKey(key), driverInfo(info, mount.driver.flags?.history === true)));
    this.unwatchers.set(mount, unwatch);
  }

  async stopMount(mount: Mount): Promise<void> {
    const unwatch = this.unwatchers.get(mount);
    this.unwatchers.delete(mount);
    await unwatch?.();
  }

  async stop(): Promise<void> {
    this.listeners = [];
    this.watching = false;
    const unwatchers = [...this.unwatchers.values()];
    this.unwatchers.clear();
    await Promise.all(unwatchers.map((unwatch) => unwatch()));
  }
}
