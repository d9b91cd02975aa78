import { StorageError } from "../errors.js";
import { commitFenced, fenceRoute, refuseFence, withoutFence } from "../fence.js";
import { withoutGuards } from "../guards.js";
import type { Located, Mount } from "../mounts.js";
import { ttlOfWrite } from "../ttl.js";
import { planCommit, type BufferedWrite, type TransactionContext } from "../transaction.js";
import type { Fence, SetOptions } from "../types.js";
import { locate, type Payload, type StorageContext } from "./context.js";
import type { Step } from "./forms.js";

/*
 * The fenced forms of setItem, setItemRaw, removeItem and setItems on a
 * mount whose driver has atomic commits: the writes are planned as a
 * transaction plans its own (guards as checks, expiries in sidecars on
 * drivers without native TTL), and committed with the fence record by
 * core/fence.ts. A driver that applies fences itself (flag `fence`) never
 * gets here: the write goes to it with `options.fence`.
 */

/** What planning a transaction's commit needs of a storage. */
export function transactionContextOf(ctx: StorageContext): TransactionContext {
  return {
    serializer: ctx.serializer,
    locate: (key: string, write?: boolean) => locate(ctx, key, false, write),
    report: (mount: Mount, event: "update" | "remove", key: string) => ctx.watchers.report(mount, event, key),
    checkTtl: (ttl: unknown) => ttlOfWrite(ttl, ctx.defaultTtl),
    now: () => ctx.clock.now(),
    root: () => ctx.table.root,
  };
}

/**
 * Writes `writes` (checked, all in `mount`) in one commit fenced by `fence` (as {@link fenceRoute} checked it), then
 * reports each as a write without a fence would be reported. No writes:
 * the commit checks (and raises) the fence alone.
 *
 * @throws StorageError `E_FENCED`, `E_CONFLICT` (see {@link commitFenced});
 *   `E_UNSUPPORTED` for writes in more than one mount
 */
export async function writeFenced(ctx: StorageContext, fence: Fence, writes: BufferedWrite[], common: SetOptions, mount: Mount = writes[0]!.loc.mount): Promise<void> {
  if (writes.some((write) => write.loc.mount !== mount)) {
    throw new StorageError("E_UNSUPPORTED", "A fenced setItems stays within one mount: its fence record is kept in the mount it writes");
  }
  const planned = writes.map((write) => ({ ...write, options: withoutFence(write.options) }) as BufferedWrite);
  const context = transactionContextOf(ctx);
  // The commit's own options: what the caller passed for the driver, less what the core applies (guards, fence, ttl).
  const { ttl: _ttl, ...shared } = withoutGuards(withoutFence(common));
  await commitFenced(mount, mount.writer, fence, () => planCommit(context, mount, new Map(), planned), shared);
  for (const write of writes) ctx.watchers.report(mount, write.type === "remove" ? "remove" : "update", write.loc.key);
}

/** A fenced setItem or setItemRaw, whose payload is text (serialized) or bytes (raw). */
export function writeOneFenced(ctx: StorageContext, fence: Fence, loc: Located, payload: Payload, opts: SetOptions): Promise<void> {
  const write: BufferedWrite = typeof payload === "string" ? { loc, type: "set", value: payload, options: opts } : { loc, type: "setRaw", value: payload, options: opts };
  return writeFenced(ctx, fence, [write], opts);
}

/**
 * A setItems with a fence among its common options (checked entries; `text`
 * undefined removes the key): one fenced commit for all of them.
 *
 * @throws StorageError as {@link writeFenced}, and as {@link fenceRoute} for the mount and the sync API
 */
export function writeItemsFenced(ctx: StorageContext, sync: boolean, entries: { loc: Located; text: string | undefined; options: SetOptions }[], common: SetOptions): Promise<void> {
  // No entries, no key: the fence is still checked, on the root mount (a caller asking whether its token still holds).
  const mount = entries.length === 0 ? ctx.table.root : entries[0]!.loc.mount;
  const { fence } = fenceRoute(mount, sync, common, false);
  const writes = entries.map(({ loc, text, options }): BufferedWrite => (text === undefined ? { loc, type: "remove", options } : { loc, type: "set", value: text, options }));
  return writeFenced(ctx, fence, writes, common, mount);
}

/**
 * A step of a method that takes no fence (reads, listings, meta, clear),
 * refusing options that hold one: a fence there would guard nothing, and
 * is refused rather than ignored. `position`: which argument holds the
 * options (1: `method(a, opts)`, 2: `method(a, b, opts)`).
 *
 * @throws StorageError `E_INVALID_OPTION` for options holding `fence`
 */
export function refusingFence<A, B, C, T>(method: string, step: Step<A, B, C, T>, position: 1 | 2 = 1): Step<A, B, C, T> {
  return (ctx, sync, a, b, c) => {
    refuseFence(position === 1 ? b : c, method);
    return step(ctx, sync, a, b, c);
  };
}
