import { resolveClock } from "../clock.js";
import { MountTable, type FrontOf } from "../mounts.js";
import { resolveSerializer } from "../serializer.js";
import { ttlOfWrite } from "../ttl.js";
import type { CreateStorageOptions, Driver } from "../types.js";
import { Watchers } from "../watchers.js";
import type { StorageContext } from "./context.js";
import { expiryLayer } from "./expiry.js";

/**
 * The context of a new storage: its serializer, default ttl, watchers,
 * clock and mount table, whose mounts put the TTL layer in front of each
 * driver without TTL of its own.
 */
export function createContext(options: CreateStorageOptions & { driver: Driver }): StorageContext {
  const serializer = resolveSerializer(options.serializer);
  const clock = resolveClock(options.clock);
  const watchers = new Watchers(options.onWatchError);
  const front: FrontOf = (driver, mount) =>
    driver.flags?.ttl === true ? driver : expiryLayer(driver, { serializer, clock, purged: (rel) => watchers.report(mount, "remove", mount.base + rel) });
  return { serializer, defaultTtl: ttlOfWrite(options.ttl, undefined), table: new MountTable(options.driver, front), watchers, clock };
}
