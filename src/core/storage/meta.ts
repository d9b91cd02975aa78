import { StorageError } from "../errors.js";
import { metaKeyOf } from "../keys.js";
import { chain, type MaybePromise } from "../maybePromise.js";
import { hasGuard } from "../guards.js";
import { expiresOf, readSidecar, withExpiry } from "../ttl.js";
import type { SetOptions, TransactionOptions } from "../types.js";
import { checkCallOptions, locate, NO_OPTIONS, readOnly, type StorageContext } from "./context.js";
import { needsCoreTtl } from "./expiry.js";

// setMeta and removeMeta: the user's meta lives in the key's sidecar, beside the expiry the core keeps there.

/** Meta has no version of its own: a guard on setMeta/removeMeta could only fail or be ignored, so it is refused. */
function refuseMetaGuard(method: string, opts: SetOptions): void {
  if (hasGuard(opts)) throw new StorageError("E_INVALID_OPTION", `${method} takes no ifMatch / ifNoneMatch: meta has no version of its own`);
}

export function setMetaStep(ctx: StorageContext, sync: boolean, key: string, value?: Record<string, unknown>, opts: SetOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  refuseMetaGuard("setMeta", opts);
  if (value === null || typeof value !== "object") throw new StorageError("E_INVALID_VALUE", "Meta must be an object");
  const loc = locate(ctx, key, sync, true);
  const driver = loc.mount.driver;
  if (!driver.setItem) throw readOnly(loc.mount, loc.key);
  const write = (meta: Record<string, unknown>) => driver.setItem!(metaKeyOf(loc.rel), ctx.serializer.serialize(meta), opts);
  if (!needsCoreTtl(loc)) return write(value);
  // The core's expiry lives in the same sidecar: keep it.
  return chain(readSidecar(loc.mount, loc.rel, ctx.serializer, opts), (current) => write(withExpiry(value, expiresOf(current)) ?? {}));
}

export function removeMetaStep(ctx: StorageContext, sync: boolean, key: string, opts: TransactionOptions = NO_OPTIONS): MaybePromise<void> {
  checkCallOptions(opts);
  refuseMetaGuard("removeMeta", opts);
  const loc = locate(ctx, key, sync, true);
  const driver = loc.mount.driver;
  if (!driver.removeItem) throw readOnly(loc.mount, loc.key);
  if (!needsCoreTtl(loc)) return driver.removeItem(metaKeyOf(loc.rel), opts);
  return chain(readSidecar(loc.mount, loc.rel, ctx.serializer, opts), (current) => {
    const keep = withExpiry(null, expiresOf(current));
    return keep ? driver.setItem!(metaKeyOf(loc.rel), ctx.serializer.serialize(keep), opts) : driver.removeItem!(metaKeyOf(loc.rel), opts);
  });
}
