import { StorageError, toStorageError } from "../core/errors.js";
import { filterKeyByDepth, normalizeKey } from "../core/keys.js";
import { checkOptions } from "../core/options.js";
import { deserializeRaw } from "../core/serializer.js";
import { wholeStream } from "../core/streams.js";
import { describeExpiry } from "../core/ttl.js";
import { resolveClock } from "../core/clock.js";
import type { Clock, CommitOperation, Driver, GetKeysOptions, ItemStream, IterateKeysOptions, SetOptions, StorageMeta, TransactionOptions } from "../core/types.js";
import { wrapDriver } from "../core/wrapDriver.js";

export interface QueueOptions {
  /** The driver the writes go to. Required. */
  driver: Driver;
  /**
   * Writes per driver call when flushing.
   * @default 100
   */
  batchSize?: number;
  /**
   * ms from the first queued write to the flush that carries it.
   * @default 1000
   */
  flushInterval?: number;
  /**
   * Queued writes that trigger a flush at once; further writes wait for it.
   * @default 1000
   */
  maxQueueSize?: number;
  /**
   * true: a later write to a queued key replaces it; false: every write reaches the driver, in order.
   * @default true
   */
  mergeUpdates?: boolean;
  /**
   * Called with each failed flush (the writes stay queued and the flush is
   * retried with backoff) and each write the driver refuses for good (dropped).
   */
  onError?: (error: StorageError) => void;
  /**
   * First retry delay after a failed flush, in ms, doubling up to 30 s.
   * @default 100
   */
  retryDelay?: number;
  /**
   * Where a queued write's ttl reads the time (it counts from the write, not the flush).
   *
   * @default systemClock (Date.now)
   * @throws StorageError `E_INVALID_OPTION` when it has no `now` function
   */
  clock?: Clock;
}

/** What `getInstance()` returns: the queue's state, and `flush()`. */
export interface QueueState {
  /** Writes not yet on the driver (queued or in flight). */
  readonly size: number;
  /** Whether a flush is running. */
  readonly flushing: boolean;
  /** The wrapped driver. */
  readonly driver: Driver;
  /** Resolves once every write queued so far has reached the driver; rejects when a flush fails. */
  flush(): Promise<void>;
}

/** The queue driver: a driver with `flush()`, wrapping its driver (`inner`). */
export interface QueueDriver extends Driver<QueueOptions, QueueState> {
  flush(): Promise<void>;
  readonly inner: Driver;
}

type Write =
  | { type: "set"; key: string; value: string; options: SetOptions; expires?: number }
  | { type: "setRaw"; key: string; value: Uint8Array; options: SetOptions; expires?: number }
  | { type: "remove"; key: string; options: TransactionOptions };

const DRIVER_NAME = "queue";
const MAX_RETRY_DELAY = 30_000;
// Refusals that no retry can turn into success.
const PERMANENT = new Set<string>(["E_INVALID_KEY", "E_INVALID_VALUE", "E_INVALID_OPTION", "E_TOO_LARGE", "E_READONLY", "E_UNSUPPORTED"]);

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) throw new StorageError("E_INVALID_OPTION", `${name} must be a positive integer`, { driver: DRIVER_NAME });
  return value;
}

/**
 * Batches the writes to another driver: writes return once queued and reach
 * the driver in batches (through its `setItems` where it has one), every
 * `flushInterval` ms, whenever `maxQueueSize` writes wait, on `flush()` and on
 * `dispose()`. Reads see queued writes. A failed flush keeps its writes
 * queued, reports the error and retries with backoff: nothing is dropped.
 *
 * Built on {@link wrapDriver}: what the driver has beyond plain reads and
 * writes is kept. `getItems` reads queued keys from the queue and the rest
 * in one call to the driver's `getItems` (MGET on redis); `iterateKeys` pages
 * through the driver's keys with the queue's own laid over them;
 * `getItemStream` streams from the driver unless the key is queued.
 * `commit` flushes first, so a commit lands after every write queued
 * before it. `getHistory` is dropped (and `history` narrowed): a flush hands
 * the driver a batch, which a git driver stores as one commit, so the
 * writes in it would never be versions of their own. Flags: `sync`, `cas` and
 * `transactions` are narrowed (a queued write returns before it is checked
 * or applied, and the storage's `setItems` must stay queued rather than go
 * through `commit`); `watch` and `setItemStream` are dropped, so the core
 * reports writes when they are queued and gathers a streamed value into one
 * queued write.
 *
 * @throws StorageError `E_INVALID_OPTION` for a missing driver or a bad option; `E_READONLY` for a driver without setItem and removeItem
 */
export default function queueDriver(options: QueueOptions): QueueDriver {
  checkOptions(DRIVER_NAME, options, ["driver", "batchSize", "flushInterval", "maxQueueSize", "mergeUpdates", "onError", "retryDelay", "clock"]);
  const driver = options?.driver;
  if (!driver) throw new StorageError("E_INVALID_OPTION", "The queue driver needs a driver", { driver: DRIVER_NAME });
  if (!driver.setItem || !driver.removeItem) throw new StorageError("E_READONLY", "The queue driver needs a writable driver", { driver: DRIVER_NAME });
  const batchSize = positive("batchSize", options.batchSize, 100);
  const flushInterval = positive("flushInterval", options.flushInterval, 1000);
  const maxQueueSize = positive("maxQueueSize", options.maxQueueSize, 1000);
  if (options.mergeUpdates !== undefined && typeof options.mergeUpdates !== "boolean") {
    throw new StorageError("E_INVALID_OPTION", "mergeUpdates must be true or false", { driver: DRIVER_NAME });
  }
  if (options.onError !== undefined && typeof options.onError !== "function") {
    throw new StorageError("E_INVALID_OPTION", "onError must be a function", { driver: DRIVER_NAME });
  }
  const mergeUpdates = options.mergeUpdates !== false;
  const clock = resolveClock(options.clock);
  const firstRetryDelay = positive("retryDelay", options.retryDelay, 100);

  /** Writes waiting, oldest first. */
  let queued: Write[] = [];
  /** With mergeUpdates: the queued (not in-flight) write of each key, replaced in place by later writes. */
  const queuedByKey = new Map<string, Write>();
  /** The newest write of every key not yet on the driver, queued or in flight: what reads see. */
  const latest = new Map<string, Write>();
  let inFlight = 0;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let soon: NodeJS.Immediate | undefined;
  let retryDelay = firstRetryDelay;
  let failed: StorageError | undefined;

  function enqueue(write: Write): Promise<void> | undefined {
    // A full queue whose driver keeps failing takes no more: this write is refused, not half-accepted.
    if (failed && queued.length + inFlight >= maxQueueSize) {
      throw new StorageError("E_UNAVAILABLE", `The queue is full (${maxQueueSize}) and its driver is failing`, { driver: DRIVER_NAME, key: write.key, cause: failed });
    }
    latest.set(write.key, write);
    const earlier = mergeUpdates ? queuedByKey.get(write.key) : undefined;
    if (earlier) {
      Object.assign(earlier, write);
      latest.set(write.key, earlier);
    } else {
      queued.push(write);
      if (mergeUpdates) queuedByKey.set(write.key, write);
    }
    // Backpressure: the writer that fills the queue waits for the flush (whose failure onError reports).
    if (queued.length + inFlight >= maxQueueSize) return startFlush();
    if (queued.length >= batchSize) flushSoon();
    else schedule(flushInterval);
    return undefined;
  }

  function cancelScheduled(): void {
    clearTimeout(timer);
    clearImmediate(soon);
    timer = undefined;
    soon = undefined;
  }

  function schedule(delay: number): void {
    // The timer holds the process open until the writes it carries are flushed.
    if (timer === undefined) timer = setTimeout(() => ((timer = undefined), void startFlush()), delay);
  }

  /**
   * A full batch is sent on the event loop's next turn, not inside the write
   * that filled it: starting a batch (100 file writes, say) costs the writer
   * more than its own write, and writes made meanwhile join the queue.
   */
  function flushSoon(): void {
    soon ??= setImmediate(() => ((soon = undefined), void startFlush()));
  }

  /** A flush in the background: its failure is reported through onError and retried, not thrown. */
  function startFlush(): Promise<void> {
    return flush().catch(() => undefined);
  }

  /**
   * Resolves once everything queued so far is on the driver. A write queued
   * as a drain ends (its queue empty, its promise not yet settled) is not in
   * that drain, so a flush that finds writes left after it drains again.
   */
  function flush(): Promise<void> {
    running ??= drain().finally(() => (running = undefined));
    return running.then(() => (queued.length > 0 ? flush() : undefined));
  }

  /**
   * Sends batches until the queue is empty. A batch that fails is sent
   * write by write (see sendOneByOne), so one bad write fails alone; a
   * single write that fails for a passing reason goes back in front and is
   * retried. Writes refused for good are dropped, each reported, and
   * flush() rejects.
   */
  async function drain(): Promise<void> {
    cancelScheduled();
    let refused: StorageError | undefined;
    while (queued.length > 0) {
      const batch = take(batchSize);
      try {
        await send(batch);
      } catch (error) {
        const cause = toStorageError(error, driver!.name);
        if (batch.length === 1 && !PERMANENT.has(cause.code)) throw retryLater(batch, cause);
        refused ??= await sendOneByOne(batch);
      }
      landed(batch);
    }
    if (refused) throw refused;
  }

  /** The next writes to send, out of the queue and in flight. */
  function take(count: number): Write[] {
    const batch = queued.slice(0, count);
    queued = queued.slice(batch.length);
    for (const write of batch) if (queuedByKey.get(write.key) === write) queuedByKey.delete(write.key);
    inFlight = batch.length;
    return batch;
  }

  function landed(batch: Write[]): void {
    inFlight = 0;
    retryDelay = firstRetryDelay;
    failed = undefined;
    batch.forEach(settled);
  }

  /** A write that is on the driver, or dropped: reads go to the driver again unless a newer write waits. */
  function settled(write: Write): void {
    if (latest.get(write.key) === write) latest.delete(write.key);
  }

  /** Hands a failure to onError; a handler that throws must not break the flush (writes would be left unsent), so it becomes a warning. */
  function report(error: StorageError): void {
    try {
      options.onError?.(error);
    } catch (handlerError) {
      process.emitWarning(`stowage: the queue's onError threw on "${error.message}": ${String(handlerError)}`);
    }
  }

  /** Puts a failed batch back in front, reports the failure and schedules a retry. */
  function retryLater(batch: Write[], cause: StorageError): StorageError {
    queued = [...batch, ...queued];
    if (mergeUpdates) restoreMerge(batch);
    inFlight = 0;
    failed = new StorageError(cause.code, `Flushing the queue failed; its writes stay queued and are retried: ${cause.message}`, {
      driver: DRIVER_NAME,
      cause,
    });
    report(failed);
    schedule(retryDelay);
    retryDelay = Math.min(retryDelay * 2, MAX_RETRY_DELAY);
    return failed;
  }

  /**
   * Sends a failed batch write by write, so one bad write fails alone: the
   * others land. A write refused for good is dropped and reported; one that
   * failed for a passing reason is queued again, with the later writes of
   * its key behind it (their order kept), and retried. Two passing failures
   * in a row look like the driver, not a write: the rest is queued again
   * untried. Returns the first refusal.
   */
  async function sendOneByOne(batch: Write[]): Promise<StorageError | undefined> {
    let first: StorageError | undefined;
    let passing: StorageError | undefined;
    let failuresInARow = 0;
    const again: Write[] = [];
    const held = new Set<string>();
    for (const [index, write] of batch.entries()) {
      if (failuresInARow >= 2) {
        again.push(...batch.slice(index));
        break;
      }
      if (held.has(write.key)) {
        again.push(write);
        continue;
      }
      try {
        await send([write]);
        settled(write);
        failuresInARow = 0;
      } catch (error) {
        const cause = toStorageError(error, driver!.name);
        if (PERMANENT.has(cause.code)) {
          settled(write);
          first ??= refuse(write, cause);
          continue;
        }
        passing ??= cause;
        failuresInARow++;
        again.push(write);
        held.add(write.key);
      }
    }
    if (passing) throw retryLater(again, passing);
    return first;
  }

  /** Reports a write the driver refused for good, now dropped. */
  function refuse(write: Write, cause: StorageError): StorageError {
    const refusal = new StorageError(cause.code, `The queued write of ${JSON.stringify(write.key)} was refused by the driver and dropped: ${cause.message}`, {
      driver: DRIVER_NAME,
      key: write.key,
      cause,
    });
    report(refusal);
    return refusal;
  }

  /** A failed batch's writes merge again with later writes of the same keys, which stay newest. */
  function restoreMerge(batch: Write[]): void {
    for (const write of batch) {
      const newer = queuedByKey.get(write.key);
      if (newer === undefined) {
        queuedByKey.set(write.key, write);
      } else {
        // The newer write is queued further back: the failed one is superseded.
        queued.splice(queued.indexOf(write), 1);
      }
    }
  }

  /** One batch to the driver, in order: runs of plain sets go through setItems. */
  async function send(batch: Write[]): Promise<void> {
    let run: { key: string; value: string; options?: SetOptions }[] = [];
    const sendRun = async () => {
      if (run.length === 0) return;
      const items = run;
      run = [];
      if (driver!.setItems && items.length > 1) await driver!.setItems(items, {});
      else for (const item of items) await driver!.setItem!(item.key, item.value, item.options ?? {});
    };
    for (const write of batch) {
      if (write.type === "remove") {
        await sendRun();
        await driver!.removeItem!(write.key, write.options);
        continue;
      }
      const options = remainingTtl(write);
      if (options === null) continue;
      if (write.type === "set") {
        run.push({ key: write.key, value: write.value, options });
      } else {
        await sendRun();
        if (driver!.setItemRaw) await driver!.setItemRaw(write.key, write.value, options);
        else throw new StorageError("E_UNSUPPORTED", "The queued driver cannot store raw values", { driver: DRIVER_NAME, key: write.key });
      }
    }
    await sendRun();
  }

  /** A queued write's ttl counts from when it was written, not from the flush; null when it expired in the queue. */
  function remainingTtl(write: Exclude<Write, { type: "remove" }>): SetOptions | null {
    if (write.expires === undefined) return write.options;
    const ttl = write.expires - clock.now();
    return ttl > 0 ? { ...write.options, ttl } : null;
  }

  const expiresOf = (opts: SetOptions) => (opts.ttl === undefined ? undefined : clock.now() + opts.ttl);

  /** The value a queued write leaves: undefined when there is no write, null when it removes the key or expired. */
  function valueOf(write: Write | undefined): string | Uint8Array | null | undefined {
    if (write === undefined) return undefined;
    if (write.type === "remove") return null;
    if (write.expires !== undefined && write.expires <= clock.now()) return null;
    return write.value;
  }

  /** The queued value of a key (see valueOf). */
  const pending = (key: string) => valueOf(latest.get(key));

  /** {@link pending} for a reader: queued bytes are the queue's own, so callers get a copy. */
  function pendingCopy(key: string): string | Uint8Array | null | undefined {
    const value = pending(key);
    return value instanceof Uint8Array ? new Uint8Array(value) : value;
  }

  /** The meta of a key as its queued write leaves it (null: removed or expired). */
  function queuedMeta(write: Write): StorageMeta | null {
    const value = valueOf(write);
    if (value === null || value === undefined || write.type === "remove") return null;
    return describeExpiry({ size: typeof value === "string" ? Buffer.byteLength(value) : value.byteLength }, write.expires, clock.now());
  }

  /** Keys under `base` that queued writes add (first) and remove (second), as of now. */
  function queuedUnder(base: string, opts: GetKeysOptions): { added: string[]; removed: Set<string> } {
    const added: string[] = [];
    const removed = new Set<string>();
    for (const [key, write] of latest) {
      if (!key.startsWith(base ?? "")) continue;
      if (valueOf(write) === null) removed.add(key);
      else if (opts?.maxDepth === undefined || filterKeyByDepth(key, opts.maxDepth)) added.push(key);
    }
    return { added, removed };
  }

  /** The driver's pages with the queue's keys laid over them: queued keys are left out of the pages and given at the end. */
  async function* iterateKeys(base: string, opts: IterateKeysOptions): AsyncIterable<string[]> {
    const { added, removed } = queuedUnder(base, opts);
    const queuedKeys = new Set([...added, ...removed]);
    for await (const page of driver!.iterateKeys!(base, opts)) {
      const kept = page.filter((key) => !queuedKeys.has(normalizeKey(key)));
      if (kept.length > 0) yield kept;
    }
    const size = opts?.batchSize ?? 1000;
    for (let start = 0; start < added.length; start += size) yield added.slice(start, start + size);
  }

  /** Queued keys from the queue, the rest in one call to the driver's getItems. */
  async function getItems(items: { key: string; options?: TransactionOptions }[], common?: TransactionOptions) {
    const values = items.map(({ key }) => pendingCopy(key));
    const unqueued = items.filter((_, index) => values[index] === undefined);
    const fetched = unqueued.length > 0 ? await driver!.getItems!(unqueued, common) : [];
    const byKey = new Map(fetched.map((entry) => [entry.key, entry.value]));
    return items.map(({ key }, index) => {
      const value = values[index];
      return { key, value: value === undefined ? (byKey.get(key) ?? null) : value };
    });
  }

  function getItemStream(key: string, opts: TransactionOptions): Promise<ItemStream | null> | ItemStream | null {
    const write = latest.get(key);
    if (write === undefined) return driver!.getItemStream!(key, opts);
    const value = valueOf(write);
    return value === null || value === undefined ? null : wholeStream(new Uint8Array(deserializeRaw(value)!), queuedMeta(write)!);
  }

  /** A commit lands after every write queued before it. */
  async function commit(operations: CommitOperation[], opts: TransactionOptions): Promise<void> {
    await flush();
    await driver!.commit!(operations, opts);
  }

  const read = (key: string, opts: TransactionOptions, raw: boolean) => {
    const value = pendingCopy(key);
    if (value !== undefined) return value;
    return raw && driver.getItemRaw ? driver.getItemRaw(key, opts) : driver.getItem(key, opts);
  };

  const state: QueueState = {
    get size() {
      return queued.length + inFlight;
    },
    get flushing() {
      return running !== undefined;
    },
    driver,
    flush,
  };

  // Expiry, depth, clearBase, nesting and key limits stay the driver's (keys are refused before they
  // are queued, so a queued write cannot fail on its key at flush); see the TSDoc for what is narrowed.
  return wrapDriver(driver, {
    name: DRIVER_NAME,
    options,
    flags: { sync: false, cas: false, transactions: false },
    drop: ["watch", "setItemStream", "asyncWrites", "getHistory"],
    getInstance: () => state,
    flush,
    hasItem: async (key: string, opts: TransactionOptions) => {
      const value = pending(key);
      return value === undefined ? driver.hasItem(key, opts) : value !== null;
    },
    getItem: (key: string, opts: TransactionOptions = {}) => read(key, opts, false),
    getItemRaw: (key: string, opts: TransactionOptions) => read(key, opts, true),
    setItem: (key: string, value: string, opts: SetOptions) => enqueue({ type: "set", key, value, options: opts, expires: expiresOf(opts) }),
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) =>
      enqueue({ type: "setRaw", key, value: new Uint8Array(value), options: opts, expires: expiresOf(opts) }),
    setItems: async (items: { key: string; value: string; options?: SetOptions }[], common: SetOptions = {}) => {
      for (const item of items) {
        const opts = item.options ?? common;
        await enqueue({ type: "set", key: item.key, value: item.value, options: opts, expires: expiresOf(opts) });
      }
    },
    removeItem: (key: string, opts: TransactionOptions) => enqueue({ type: "remove", key, options: opts }),
    getMeta: async (key: string, opts: TransactionOptions): Promise<StorageMeta | null> => {
      const write = latest.get(key);
      if (write === undefined) return driver.getMeta ? driver.getMeta(key, opts) : {};
      return queuedMeta(write);
    },
    getKeys: async (base: string, opts: GetKeysOptions) => {
      const keys = new Set((await driver.getKeys(base, opts)).map(normalizeKey));
      const { added, removed } = queuedUnder(base, opts);
      for (const key of removed) keys.delete(key);
      for (const key of added) keys.add(key);
      return [...keys];
    },
    getItems: driver.getItems && getItems,
    iterateKeys: driver.iterateKeys && iterateKeys,
    getItemStream: driver.getItemStream && getItemStream,
    commit: driver.commit && commit,
    clear: async (base: string, opts: TransactionOptions) => {
      // Queued writes land first, so the clear removes them like everything else under base.
      await flush();
      if (driver.clear) return driver.clear(base, opts);
      for (const key of await driver.getKeys(base, {})) await driver.removeItem!(key, opts);
    },
    dispose: async () => {
      try {
        await flush();
      } catch (error) {
        // No retries after dispose: the writes stay queued, and the rejection says so.
        cancelScheduled();
        throw error;
      }
      await driver.dispose?.();
    },
  });
}
