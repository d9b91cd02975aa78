import { isMetaKey, normalizeKey } from "./keys.js";
import type { Mount } from "./mounts.js";
import type { Unwatch, WatchCallback, WatchEvent } from "./types.js";

/**
 * The watch side of a storage: listeners, the drivers' own watchers while
 * anyone listens, and the events the core reports for drivers that have none.
 */
export class Watchers {
  private listeners: WatchCallback[] = [];
  private unwatchers = new Map<Mount, Unwatch>();
  watching = false;

  emit(event: WatchEvent, key: string): void {
    if (isMetaKey(key)) return;
    for (const listener of this.listeners) listener(event, key);
  }

  /** Reports a write the core made through a mount without a watch of its own. */
  report(mount: Mount, event: WatchEvent, key: string): void {
    if (this.watching && mount.coreEvents) this.emit(event, key);
  }

  async add(callback: WatchCallback, mounts: Mount[]): Promise<Unwatch> {
    this.listeners.push(callback);
    if (!this.watching) {
      this.watching = true;
      await Promise.all(mounts.map((mount) => this.start(mount)));
    }
    return async () => {
      this.listeners = this.listeners.filter((listener) => listener !== callback);
      if (this.listeners.length === 0) await this.stop();
    };
  }

  /** Starts the driver's own watcher for a mount, when it has one and someone listens. */
  async start(mount: Mount): Promise<void> {
    if (!this.watching || !mount.driver.watch) return;
    const unwatch = await mount.driver.watch((event, key) => this.emit(event, mount.base + normalizeKey(key)));
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
