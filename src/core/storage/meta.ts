import { StorageError } from "../errors.js";
import { metaKeyOf } from "../keys.js";
import type { MaybePromise } from "../maybePromise.js";
import { hasGuard } from "../guards.js";
import type { SetOptions, TransactionOptions } from "../types.js";
import { checkCallOptions, locate, NO_OPTIONS, readOnly, type StorageContext } from "./context.js";
// setMeta and removeMeta: the user's meta lives in the key's sidecar, written through the mount's store
// (the TTL layer keeps the expiry it records in the same sidecar: storage/expiry.ts).

/** Meta has no version of its own: a guard on setMeta/removeMeta could only fail or be ignored, so it is refused. */
function refuseMetaGuard(method: string, opts: SetOptions): void {
  if (hasGuard(opts)) throw new StorageError("E_INVALID_OPTION", `${method} takes no ifMatch / ifNoneMatch: meta has no version of its own`);
}

export function setMetaStep(ctx: StorageContext, sync: boolean, key: string, value?: Record<string, unknown>, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  refuseMetaGuard("setMeta", opts);
  if (value === null || typeof value !== "object") throw new StorageError("E_INVALID_VALUE", "Meta must be an object");
  const loc = locate(ctx, key, sync, true);
  const driver = loc.mount.store;
  if (!driver.setItem) throw readOnly(loc.mount, loc.key);
  return driver.setItem(metaKeyOf(loc.rel), ctx.serializer.serialize(value), opts);
}

export function removeMetaStep(ctx: StorageContext, sync: boolean, key: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  refuseMetaGuard("removeMeta", opts);
  const loc = locate(ctx, key, sync, true);
  const driver = loc.mount.store;
  if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
  return driver.removeItem(metaKeyOf(loc.rel), opts);
}
