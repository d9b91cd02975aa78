/**
 * Leases with fencing tokens over any storage whose driver is flagged `cas`
 * (`stowage/coordination`). A lock is one JSON record at `<prefix>:<name>`
 * holding the fencing token and the current holder, if any. The record is
 * never deleted: release and expiry clear the holder and keep the token, so
 * the next holder's token is always higher, across processes, expiries,
 * takeovers and crashes. Every change is a compare-and-swap on the record's
 * etag (`ifMatch`, or `ifNoneMatch: "*"` for the first one), nothing else.
 */
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { resolveClock } from "../core/clock.js";
import { isStorageError, StorageError, type StorageErrorCode } from "../core/errors.js";
import { normalizeKey } from "../core/keys.js";
import { checkOptions } from "../core/options.js";
import type { Clock, Driver, Fence, LockTakingDriver, Storage } from "../core/types.js";

/** Options of {@link createLocks}. */
export interface LocksOptions {
  /**
   * Key under which the lock records live (`<prefix>:<name>`).
   * @default "locks"
   */
  prefix?: string;
  /**
   * Lease length in ms of a lock acquired without its own `ttl` (at most 2^31-1, a timer's limit).
   * @default 30000
   */
  ttl?: number;
  /**
   * Where time comes from: expiry is judged by `clock.now()` against the record's `expiresAt`,
   * and a new record's first token is `clock.now() × 1000` (see docs/coordination.md, "Tokens").
   * @default the system clock (`Date.now`)
   */
  clock?: Clock;
  /**
   * Called by {@link Locks.list} and {@link Locks.cleanup} for each key under the prefix that does
   * not hold a lock record (an `E_CORRUPT` StorageError): they skip it and go on with the others.
   * @default a process warning per such key
   */
  onCorrupt?: (key: string, error: StorageError) => void;
}

/** Options of {@link Locks.acquire} (and {@link Locks.withLock}). */
export interface AcquireOptions {
  /**
   * Who holds the lock, as {@link LockInfo.owner} shows it.
   * @default a new id per acquire: `<host>:<pid>:<random>`
   */
  owner?: string;
  /**
   * Lease length in ms (at most 2^31-1).
   * @default the `ttl` of {@link createLocks}
   */
  ttl?: number;
  /**
   * How long to keep trying, in ms of real (monotonic) time, not of the `clock`, while another holder has the lock.
   * @default 0 (try once)
   */
  wait?: number;
  /**
   * First delay between tries in ms while waiting; it doubles per try up to 16 times it, with ±50% jitter.
   * @default 50
   */
  retryDelay?: number;
  /** Cancels waiting: the call rejects with `signal.reason`. */
  signal?: AbortSignal;
}

/** What is known about a held lock. */
export interface LockInfo {
  name: string;
  owner: string;
  /** The fencing token of this holding. */
  token: number;
  /** Epoch ms (by the clock) when this holder acquired it. */
  acquiredAt: number;
  /** Epoch ms (by the clock) when the lease ends unless renewed. */
  expiresAt: number;
  /** Process id of the process that acquired it. */
  pid: number;
  /** Host name of the machine that acquired it. */
  host: string;
}

/**
 * A held lock. It is a {@link Fence}: `storage.setItem(key, value, { fence: lock })`
 * lands only while no later holder has written with a higher token.
 * Its methods are shared by every Lock (no closures per acquire): call them on it
 * (`lock.release()`), or bind one before handing it on (`lock.release.bind(lock)`).
 */
export interface Lock extends Fence, AsyncDisposable {
  readonly name: string;
  readonly owner: string;
  /** The fencing token: strictly increasing per lock name. */
  readonly token: number;
  readonly acquiredAt: number;
  /** When the lease ends unless renewed (moves on with {@link Lock.renew}). */
  readonly expiresAt: number;
  /**
   * Aborted when the lock is known lost: at `expiresAt` (a timer, unref'd,
   * judged by the clock) or when a renewal finds it expired or taken over.
   * Its reason is a StorageError `E_LOCK_LOST`. Not aborted by release.
   */
  readonly signal: AbortSignal;
  /**
   * Extends the lease to `clock.now() + ttl`.
   * @throws StorageError `E_LOCK_LOST` when it expired, was released or another holder took it (nothing changes; `signal` aborts); `E_INVALID_OPTION` for a bad ttl
   */
  renew(ttl?: number): Promise<void>;
  /**
   * Clears the holder (the token stays in the record). A second release of the same Lock, even one
   * made while the first is under way, gets the first one's outcome and writes nothing.
   * @throws StorageError `E_LOCK_LOST` when it expired or another holder took it (nothing changes)
   */
  release(): Promise<void>;
}

/** The locks of one storage and prefix, made by {@link createLocks}. */
export interface Locks {
  /**
   * Takes lock `name`, or resolves to null when another holder has it for longer than `wait`.
   * @throws StorageError `E_INVALID_KEY` for a bad name; `E_INVALID_OPTION` for unknown or bad options (a ttl above 2^31-1 ms among them); `E_UNSUPPORTED` when the name's mount is not flagged `cas`; `E_CORRUPT` for a record that is not a lock record (a token that is not an integer from 0 to 2^53-1 among them); `E_TOO_LARGE` when the record's token is 2^53-1, so no higher one can be issued; `E_CONFLICT` when the record's etag and value keep disagreeing, or it kept changing with no live holder for 16 tries; the storage's errors. Rejects with `signal.reason` when `signal` aborts
   */
  acquire(name: string, options?: AcquireOptions): Promise<Lock | null>;
  /**
   * Runs `fn(lock)` holding lock `name`, renewing it every ttl/3 (`lock.signal`
   * aborts if a renewal fails or the lease ends; it is made before `fn` runs, so it aborts from a timer or
   * a renewal, never at `fn`'s first read of it: a listener added while `aborted` is false hears of the loss), and releases it however `fn` ends. Returns what `fn` returns.
   * When `fn` throws and the release fails too, rejects with an AggregateError of both.
   * @throws StorageError `E_LOCK_TIMEOUT` when not acquired within `wait`; `E_LOCK_LOST` when `fn` returned but the lock was lost meanwhile, or when it was lost before `fn` could start (a stall past the lease right after the acquire: `fn` is not called); as {@link Locks.acquire}; what `fn` throws, as it threw it
   */
  withLock<R>(name: string, fn: (lock: Lock) => R | Promise<R>, options?: AcquireOptions): Promise<R>;
  /**
   * Whether lock `name` has a holder whose lease has not ended.
   * @throws StorageError as {@link Locks.acquire}
   */
  isLocked(name: string): Promise<boolean>;
  /**
   * The current holder of lock `name`, or null when it is free or its lease ended.
   * @throws StorageError as {@link Locks.acquire}
   */
  info(name: string): Promise<LockInfo | null>;
  /**
   * Every held lock whose lease has not ended. A key under the prefix that is not a lock record is skipped and reported to `onCorrupt`.
   * @throws StorageError the storage's errors
   */
  list(): Promise<LockInfo[]>;
  /**
   * Releases lock `name` on behalf of `owner` (a holder known by its owner id, not by its Lock).
   * @throws StorageError `E_NOT_OWNER` when nobody or another owner holds it (nothing changes); `E_LOCK_LOST` when `owner`'s lease ended; as {@link Locks.acquire}
   */
  release(name: string, owner: string): Promise<void>;
  /**
   * Renews lock `name` on behalf of `owner` to `clock.now() + ttl`; returns the holding as renewed.
   * @throws StorageError as {@link Locks.release}; `E_INVALID_OPTION` for a bad ttl
   */
  renew(name: string, owner: string, ttl?: number): Promise<LockInfo>;
  /**
   * Clears the holder of every lock whose lease has ended (tokens stay); returns how many it cleared.
   * A key under the prefix that is not a lock record is skipped and reported to `onCorrupt`.
   * @throws StorageError `E_CONFLICT` when a record kept changing for 16 tries; the storage's errors
   */
  cleanup(): Promise<number>;
}

/** The JSON at `<prefix>:<name>`. */
interface LockRecord {
  token: number;
  holder: Holder | null;
}

type Holder = Omit<LockInfo, "name" | "token">;

/** A record with a holder, as a change of a holding gets it. */
type HeldRecord = LockRecord & { holder: Holder };

/** A record as read: its etag (read first) and its value (null: no record). */
interface Snapshot {
  etag: string | undefined;
  record: LockRecord | null;
}

/** What a {@link HeldLock} needs of the locks that made it: one reference per Lock rather than a closure per method. */
interface LockHome {
  readonly clock: Clock;
  readonly storage: Storage;
  /** Changes the holding of `owner` (and `token`) after checking it is still theirs and live; see createLocks. */
  changeHolding(key: string, owner: string, token: number | undefined, change: (record: HeldRecord) => LockRecord): Promise<LockRecord>;
}

const DEFAULT_TTL = 30_000;
/** The longest delay setTimeout keeps: a longer one fires after 1 ms, which would renew or retry in a busy loop. */
const MAX_DELAY = 2 ** 31 - 1;
/** Guarded writes of one change before giving up on a record that keeps changing with no live holder (as core/fence.ts). */
const MAX_ATTEMPTS = 16;
/** Reads of a record whose etag and value keep disagreeing (one present, one not) before giving up. */
const MAX_READS = 16;
const DEFAULT_RETRY_DELAY = 50;
const LOCKS = "locks";

function invalid(message: string): StorageError {
  return new StorageError("E_INVALID_OPTION", `[locks] ${message}`);
}

function checkTtl(ttl: unknown, what = "ttl"): number {
  if (typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl <= 0 || ttl > MAX_DELAY) {
    throw invalid(`${what} must be a positive integer of ms no larger than ${MAX_DELAY} (a timer's limit), got ${String(ttl)}`);
  }
  return ttl;
}

/**
 * A lock name is a key already in normalized form (segments split by `:`):
 * `a/b`, `a::b`, `:a` or `a?x` would silently name another lock than the one
 * written, so they are refused rather than normalized.
 */
function checkName(name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || normalizeKey(name) !== name || name.includes("\0") || name.endsWith("$")) {
    throw new StorageError("E_INVALID_KEY", `[locks] a lock name must be a non-empty key in normalized form (segments split by ":", no "/", "\\", "?", "$" at the end), got ${JSON.stringify(name)}`);
  }
  return name;
}

let host: string | undefined;

/** This machine's name, asked of the system once: a holder records it on every acquire. */
function hostName(): string {
  return (host ??= hostname());
}

/** The default owner: unique per acquire, and readable (which host and process). */
function newOwner(): string {
  // randomUUID draws from a cached pool; its last 12 hex digits are random (48 bits, as randomBytes(6) gave).
  return `${hostName()}:${process.pid}:${randomUUID().slice(-12)}`;
}

/**
 * Refuses unknown or bad acquire options; the caller reads them with `??` defaults, which is safe
 * because a null (which `??` would replace) never gets past this check. Validates only: no
 * object is built per acquire.
 */
function checkAcquireOptions(options: AcquireOptions): void {
  checkOptions("locks", options, ["owner", "ttl", "wait", "retryDelay", "signal"]);
  const { owner, ttl, wait, retryDelay, signal } = options;
  if (owner !== undefined) checkOwner(owner);
  if (ttl !== undefined) checkTtl(ttl);
  if (wait !== undefined && (typeof wait !== "number" || !Number.isFinite(wait) || wait < 0)) throw invalid(`wait must be a non-negative number of ms, got ${String(wait)}`);
  if (retryDelay !== undefined) checkTtl(retryDelay, "retryDelay");
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid("signal must be an AbortSignal");
}

function isHolder(value: unknown): value is Holder {
  if (value === null || typeof value !== "object") return false;
  const holder = value as Record<string, unknown>;
  return typeof holder.owner === "string" && typeof holder.acquiredAt === "number" && typeof holder.expiresAt === "number" && typeof holder.pid === "number" && typeof holder.host === "string";
}

/** A token is a safe integer from 0: a negative one would make every fenced write E_INVALID_OPTION. */
function parseRecord(key: string, value: unknown): LockRecord {
  const record = value as Partial<LockRecord> | null;
  if (record !== null && typeof record === "object" && Number.isSafeInteger(record.token) && record.token! >= 0 && (record.holder === null || isHolder(record.holder))) {
    return record as LockRecord;
  }
  throw new StorageError("E_CORRUPT", `[locks] ${key} does not hold a lock record`, { key });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sleeps `ms`, or rejects with the signal's reason as soon as it aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return sleep(ms).then(() => undefined);
  // A listener added to a signal that already aborted never fires: the pause would run its course.
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Delay before retry `attempt` (0-based): doubling from `base` up to 16× it, ±50% jitter so waiters spread out. */
function backoff(base: number, attempt: number): number {
  return Math.min(MAX_DELAY, base * 2 ** Math.min(attempt, 4) * (0.5 + Math.random()));
}

function lost(key: string, why: string): StorageError {
  return new StorageError("E_LOCK_LOST", `[locks] ${key}: ${why}`, { key });
}

const releasedRecord = (record: LockRecord): LockRecord => ({ token: record.token, holder: null });

/**
 * The holder's JSON as `JSON.stringify({ owner, acquiredAt, expiresAt, pid, host })` gives it, built as
 * text: no object per acquire. A time that is not finite (JSON writes it as null) goes through JSON.stringify.
 */
function holderJson(owner: string, acquiredAt: number, expiresAt: number): string {
  if (!Number.isFinite(acquiredAt) || !Number.isFinite(expiresAt)) return JSON.stringify({ owner, acquiredAt, expiresAt, pid: process.pid, host: hostName() });
  return `{"owner":${JSON.stringify(owner)},"acquiredAt":${acquiredAt},"expiresAt":${expiresAt},"pid":${process.pid},"host":${hostJson ??= JSON.stringify(hostName())}}`;
}
let hostJson: string | undefined;

/** Aborts a Lock's signal after a failed renewal; set by HeldLock's static block, so that only this module (withLock) can. */
let abortLock: (lock: HeldLock, cause: unknown) => void;

/**
 * A held {@link Lock}. Its state is in private fields and its methods on the prototype: an acquire
 * builds this one object (an object of closures cost each uncontended acquire+release a few µs of
 * CPU, much of it garbage collection).
 */
class HeldLock implements Lock {
  readonly name: string;
  readonly owner: string;
  readonly token: number;
  readonly fenceId: string;
  readonly acquiredAt: number;
  readonly #home: LockHome;
  /** The lease length a renew() without one uses. */
  readonly #ttl: number;
  #expiresAt: number;
  /** The record's etag as this Lock's fast-path take left it; dropped once a release or renewal uses or rewrites the record. */
  #etag: string | undefined;
  /** The driver whose take wrote the record, when it can release that exact text itself (LockTakingDriver.releaseLock). */
  readonly #releaser: LockTakingDriver | undefined;
  /** The record's key in that driver, and the holder JSON its take wrote. */
  readonly #driverKey: string;
  readonly #holderText: string;
  /** Set by this Lock's own release: a second release does nothing, a renew is E_LOCK_LOST. */
  #released = false;
  #timer: NodeJS.Timeout | undefined;
  /**
   * The signal and its expiry timer are made when `signal` is first read: only a reader can tell
   * whether it aborted, and a timer per acquire cost an uncontended acquire+release a sixth of its time.
   */
  #controller: AbortController | undefined;
  #lostWith: StorageError | undefined;
  /** The release under way or done: a later call (a second release, `await using` after an explicit one) gets its outcome. */
  #releasing: Promise<void> | undefined;
  /** A release request failed without a verdict (a network error): it may have landed all the same. */
  #releaseMayHaveLanded = false;

  static {
    abortLock = (lock, cause) => lock.#abort(isStorageError(cause, "E_LOCK_LOST") ? cause : new StorageError("E_LOCK_LOST", `[locks] ${lock.fenceId}: a renewal failed, so the lease may end unseen`, { key: lock.fenceId, cause }));
  }

  /**
   * @param etag the record's etag after a fast-path take (undefined after a generic one: its release reads and judges)
   * @param releaser the driver, when it took the lock and has releaseLock
   */
  constructor(home: LockHome, key: string, name: string, owner: string, token: number, acquiredAt: number, ttl: number, etag: string | undefined, releaser: LockTakingDriver | undefined, driverKey: string, holderText: string) {
    this.name = name;
    this.owner = owner;
    this.token = token;
    this.fenceId = key;
    this.acquiredAt = acquiredAt;
    this.#home = home;
    this.#ttl = ttl;
    this.#expiresAt = acquiredAt + ttl;
    this.#etag = etag;
    this.#releaser = releaser;
    this.#driverKey = driverKey;
    this.#holderText = holderText;
  }

  get expiresAt(): number {
    return this.#expiresAt;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      // A lease already over by the clock reads as lost at once, as the timer would have made it.
      if (!this.#lostWith && !this.#released && this.#home.clock.now() >= this.#expiresAt) this.#lostWith = lost(this.fenceId, "its lease ended");
      if (this.#lostWith) this.#controller.abort(this.#lostWith);
      else this.#arm();
    }
    return this.#controller.signal;
  }

  async renew(ttl: number = this.#ttl): Promise<void> {
    checkTtl(ttl);
    // Also while a release is under way: a renewal racing it must not abort the signal a release leaves alone.
    if (this.#released || this.#releasing) throw lost(this.fenceId, "this Lock was released");
    this.#etag = undefined;
    const record = await this.#guarded(this.#home.changeHolding(this.fenceId, this.owner, this.token, renewed(this.#home.clock, ttl)));
    this.#expiresAt = record.holder?.expiresAt ?? this.#expiresAt;
    this.#arm();
  }

  release(): Promise<void> {
    return (this.#releasing ??= this.#releaseOnce());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  async #releaseOnce(): Promise<void> {
    try {
      if (!(this.#releaseMayHaveLanded && (await this.#releasedByUs())) && !(await this.#releaseUnchanged())) {
        await this.#guarded(this.#home.changeHolding(this.fenceId, this.owner, this.token, releasedRecord));
      }
    } catch (error) {
      // Only a verdict on the lock is final; a failed request (a network error) may be tried again.
      // This runs after the await above, so #releasing already holds this call's promise.
      if (!isStorageError(error, "E_LOCK_LOST")) {
        this.#releasing = undefined;
        this.#releaseMayHaveLanded = true;
      }
      throw error;
    }
    this.#released = true;
    clearTimeout(this.#timer);
  }

  /**
   * Whether an earlier release whose answer was lost did land: the record still holds this Lock's
   * token, no holder, and the lease has not ended (so no cleanup cleared it). A retry then succeeds
   * instead of reporting the lock lost.
   */
  async #releasedByUs(): Promise<boolean> {
    const record: unknown = await this.#home.storage.getItem(this.fenceId);
    const { token, holder } = (record ?? {}) as Partial<LockRecord>;
    return token === this.token && holder === null && this.#expiresAt > this.#home.clock.now();
  }

  /**
   * Releases in one guarded write while the record is still the one this Lock's take wrote (its
   * etag unchanged: same token, owner and lease) and the lease has not ended; false when either
   * is unknown or no longer so, and the generic release must read and judge.
   */
  async #releaseUnchanged(): Promise<boolean> {
    const ifMatch = this.#etag;
    if (ifMatch === undefined || this.#expiresAt <= this.#home.clock.now()) return false;
    this.#etag = undefined;
    // The driver's own release writes only over the exact text its take wrote: no weaker than the guarded write.
    if (this.#releaser) return this.#releaser.releaseLock!(this.#driverKey, `{"token":${this.token},"holder":${this.#holderText}}`, `{"token":${this.token},"holder":null}`);
    try {
      await this.#home.storage.setItem(this.fenceId, { token: this.token, holder: null }, { ifMatch, ttl: Infinity });
      return true;
    } catch (error) {
      if (isStorageError(error, "E_CONFLICT")) return false;
      throw error;
    }
  }

  /** `change` as it settles; an E_LOCK_LOST from it aborts the signal. */
  async #guarded<T>(change: Promise<T>): Promise<T> {
    try {
      return await change;
    } catch (error) {
      if (isStorageError(error, "E_LOCK_LOST")) this.#abort(error);
      throw error;
    }
  }

  /** The first reason stays: a later abort does nothing. */
  #abort(reason: StorageError): void {
    clearTimeout(this.#timer);
    this.#lostWith ??= reason;
    this.#controller?.abort(this.#lostWith);
  }

  /** Fires at expiresAt as the clock tells it; a clock that moved less than the timer re-arms it. */
  #arm(): void {
    clearTimeout(this.#timer);
    if (this.#released || this.#controller === undefined || this.#controller.signal.aborted) return;
    const clock = this.#home.clock;
    this.#timer = setTimeout(() => (clock.now() >= this.#expiresAt ? this.#abort(lost(this.fenceId, "its lease ended")) : this.#arm()), Math.min(MAX_DELAY, Math.max(1, this.#expiresAt - clock.now())));
    this.#timer.unref();
  }
}

/**
 * Locks (leases with fencing tokens) over `storage`, kept under `prefix`.
 * Works on any mount whose driver is flagged `cas`; the check is made per
 * lock name, on the mount its record falls in.
 *
 * @example
 * const locks = createLocks(storage);
 * await locks.withLock("deploy", async (lock) => {
 *   await storage.setItem("release", version, { fence: lock });
 * }, { wait: 10_000 });
 *
 * @throws StorageError `E_INVALID_OPTION` for an unknown option, a `ttl` that is not a positive integer up to 2^31-1, a `clock` without `now()`, an `onCorrupt` that is not a function; `E_INVALID_KEY` for a prefix that is not a key in normalized form
 */
export function createLocks(storage: Storage, options: LocksOptions = {}): Locks {
  checkOptions(LOCKS, options, ["prefix", "ttl", "clock", "onCorrupt"]);
  const prefix = checkPrefix(options.prefix ?? LOCKS);
  const defaultTtl = checkTtl(options.ttl ?? DEFAULT_TTL);
  const clock = resolveClock(options.clock);
  if (options.onCorrupt !== undefined && typeof options.onCorrupt !== "function") throw invalid("onCorrupt must be a function");
  const onCorrupt = options.onCorrupt ?? ((key: string, error: StorageError) => process.emitWarning(`stowage: ${error.message}; list and cleanup skip it`, { code: error.code, detail: key }));

  // The last name's key: a loop on one lock checks its name once, and a cache of one entry never grows.
  // A name no caller can pass (not a string), so the first call always checks its name.
  let lastName: unknown = recordKey;
  let lastKey = "";
  function recordKey(name: string): string {
    if (name !== lastName) {
      lastKey = `${prefix}:${checkName(name)}`;
      lastName = name;
    }
    return lastKey;
  }

  /**
   * The record's key, once its mount is known to take CAS writes. The mount is looked up per call,
   * not cached: a mount or unmount may change it at any time, and the storage tells nobody.
   */
  function casKey(name: string): string {
    const key = recordKey(name);
    requireCas(key, storage.getMount(key).driver);
    return key;
  }

  function requireCas(key: string, driver: Driver): void {
    if (driver.flags?.cas !== true) {
      throw new StorageError("E_UNSUPPORTED", `[locks] ${key}: locks need a driver flagged cas, and ${driver.name ?? "this driver"} is not`, { driver: driver.name, key });
    }
  }

  /** The etag, then the value: a value newer than its etag only makes the next CAS fail, never pass. */
  async function read(key: string): Promise<Snapshot> {
    for (let attempt = 0; attempt < MAX_READS; attempt++) {
      const { etag } = await storage.getMeta(key, { nativeOnly: true });
      const value = await storage.getItem(key);
      // Created or removed between the two reads: read again rather than pair a value with no etag.
      if ((etag === undefined) !== (value === null)) continue;
      return { etag, record: value === null ? null : parseRecord(key, value) };
    }
    // Only a record deleted and written again without pause, or a driver that reports no etag for a value it holds.
    throw new StorageError("E_CONFLICT", `[locks] ${key}: its etag and value disagreed on ${MAX_READS} reads in a row`, { key });
  }

  /**
   * Writes `record` only if the key still holds `seen` (absent: create-only); false on a conflict.
   * `ttl: Infinity`: a storage's default ttl must not expire the record, or its token would start over.
   */
  async function swap(key: string, seen: Snapshot, record: LockRecord): Promise<boolean> {
    const guard = seen.etag === undefined ? { ifNoneMatch: "*" as const, ttl: Infinity } : { ifMatch: seen.etag, ttl: Infinity };
    try {
      await storage.setItem(key, record, guard);
      return true;
    } catch (error) {
      if (isStorageError(error, "E_CONFLICT")) return false;
      throw error;
    }
  }

  const live = (holder: Holder | null): holder is Holder => holder !== null && holder.expiresAt > clock.now();

  /**
   * The mount's driver when it takes locks itself ({@link LockTakingDriver}): mounted as is (a layer
   * does not forward takeLock) and flagged `watch`, so that its own change feed reports the write the core does not see.
   */
  function lockTaker(driver: Driver): LockTakingDriver | undefined {
    return typeof (driver as Partial<LockTakingDriver>).takeLock === "function" && driver.flags?.watch === true ? (driver as LockTakingDriver) : undefined;
  }

  /**
   * One round of acquire: the new Lock, or null while someone else holds it. The fast path (`taker`,
   * with the record at `driverKey` in it) writes the very record the generic one would, so holders
   * taken either way exclude each other and share one token line.
   */
  async function tryAcquire(key: string, name: string, taker: LockTakingDriver | undefined, driverKey: string, owner: string, ttl: number): Promise<HeldLock | null> {
    if (taker) {
      const now = clock.now();
      const holderText = holderJson(owner, now, now + ttl);
      const take = await taker.takeLock(driverKey, holderText, now);
      if (take.outcome === "taken") {
        const releaser = typeof taker.releaseLock === "function" ? taker : undefined;
        return new HeldLock(home, key, name, owner, take.token, now, ttl, take.etag, releaser, driverKey, holderText);
      }
      if (take.outcome === "held") return null;
      // Declined: the stored text is not a plain-JSON lock record; the generic path reads it through the serializer.
    }
    return tryAcquireGeneric(key, name, owner, ttl);
  }

  /**
   * The token after `record`'s. A new record starts at the clock in ms × 1000, so one made again
   * after its predecessor was lost (clear(), a removal, another lock store) starts above every token
   * the predecessor issued, unless that one issued more than 1000 a ms on average since it began.
   */
  function nextToken(key: string, record: LockRecord | null): number {
    if (record === null) return Math.max(1, Math.min(Math.floor(clock.now()) * 1000, Number.MAX_SAFE_INTEGER - 2 ** 32));
    if (record.token >= Number.MAX_SAFE_INTEGER) throw new StorageError("E_TOO_LARGE", `[locks] ${key}: its token is ${record.token}, the last one a fence can carry; no higher one can be issued`, { key });
    return record.token + 1;
  }

  /** A record that kept changing with no live holder through MAX_ATTEMPTS guarded writes. */
  const restless = (key: string, what: string) => new StorageError("E_CONFLICT", `[locks] ${key}: the record changed under ${MAX_ATTEMPTS} ${what} attempts in a row`, { key });

  /** tryAcquire on the core's CAS alone: etag, value, guarded write. */
  async function tryAcquireGeneric(key: string, name: string, owner: string, ttl: number): Promise<HeldLock | null> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const seen = await read(key);
      if (live(seen.record?.holder ?? null)) return null;
      const now = clock.now();
      const token = nextToken(key, seen.record);
      const holder: Holder = { owner, acquiredAt: now, expiresAt: now + ttl, pid: process.pid, host: hostName() };
      // No etag: the core's guarded write gives none, so the release reads and judges.
      if (await swap(key, seen, { token, holder })) return new HeldLock(home, key, name, owner, token, now, ttl, undefined, undefined, key, "");
      // Lost the race to another write: read again, the winner (if any) now shows as holder.
    }
    throw restless(key, "acquire");
  }

  /**
   * Changes the holding of `owner` (and, from a Lock, of `token`) with `change`,
   * after checking it is still theirs and live. Nothing is written when it is not.
   */
  async function changeHolding(key: string, owner: string, token: number | undefined, change: (record: HeldRecord) => LockRecord): Promise<LockRecord> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const seen = await read(key);
      const record = seen.record;
      refuseUnlessHeld(key, record, owner, token);
      const next = change(record as HeldRecord);
      if (await swap(key, seen, next)) return next;
    }
    throw restless(key, "release or renew");
  }
  const home: LockHome = { clock, storage, changeHolding };

  function refuseUnlessHeld(key: string, record: LockRecord | null, owner: string, token: number | undefined): void {
    const fail = (code: StorageErrorCode, why: string) => new StorageError(code, `[locks] ${key}: ${why}`, { key });
    if (token !== undefined && record?.token !== token) throw lost(key, `another holder took it over (token ${record?.token ?? "none"}, ours ${token})`);
    const holder = record?.holder ?? null;
    if (holder === null) throw token !== undefined ? lost(key, "it was released or cleaned up after its lease ended") : fail("E_NOT_OWNER", `nobody holds it, so ${owner} cannot`);
    if (holder.owner !== owner) throw fail("E_NOT_OWNER", `held by ${holder.owner}, not ${owner}`);
    if (holder.expiresAt <= clock.now()) throw lost(key, `its lease ended at ${new Date(holder.expiresAt).toISOString()}`);
  }

  async function acquire(name: string, acquireOptions?: AcquireOptions): Promise<Lock | null> {
    // No options (the common call) builds nothing: each value is read with its default below.
    if (acquireOptions !== undefined && acquireOptions !== null) checkAcquireOptions(acquireOptions);
    const key = recordKey(name);
    const { base, driver } = storage.getMount(key);
    requireCas(key, driver);
    const taker = lockTaker(driver);
    const driverKey = taker ? key.slice(base.length) : key;
    const owner = acquireOptions?.owner ?? newOwner();
    const ttl = acquireOptions?.ttl ?? defaultTtl;
    const signal = acquireOptions?.signal;
    const deadline = performance.now() + (acquireOptions?.wait ?? 0);
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      const taken = await tryAcquire(key, name, taker, driverKey, owner, ttl);
      if (taken) return taken;
      // Aborted while the try was in flight: reject now, not after the backoff.
      signal?.throwIfAborted();
      const left = deadline - performance.now();
      if (left <= 0) return null;
      await pause(Math.min(left, backoff(acquireOptions?.retryDelay ?? DEFAULT_RETRY_DELAY, attempt)), signal);
    }
  }

  async function withLock<R>(name: string, fn: (lock: Lock) => R | Promise<R>, acquireOptions?: AcquireOptions): Promise<R> {
    if (typeof fn !== "function") throw invalid("withLock needs a function");
    const lock = (await acquire(name, acquireOptions)) as HeldLock | null;
    if (!lock) throw new StorageError("E_LOCK_TIMEOUT", `[locks] ${recordKey(name)}: not acquired within ${acquireOptions?.wait ?? 0} ms`, { key: recordKey(name) });
    // The signal is made before fn runs, not at fn's first read of it: a first read after a stall past the
    // lease (GC, SIGSTOP) would find it aborted already, and a listener fn adds then would never fire.
    if (lock.signal.aborted) {
      // Lost already, in a stall between the acquire and here: fn would run without the exclusion it asked for.
      throw lock.signal.reason;
    }
    const stopRenewing = keepRenewed(lock, acquireOptions?.ttl ?? defaultTtl);
    let result: R;
    try {
      result = await fn(lock);
    } catch (error) {
      await stopRenewing();
      await lock.release().catch((releaseError: unknown) => {
        throw new AggregateError([error, releaseError], `[locks] ${lock.fenceId}: the function failed, and so did the release`);
      });
      throw error;
    }
    await stopRenewing();
    await lock.release();
    return result;
  }

  /**
   * Renews `lock` every ttl/3 until stopped; a failed renewal aborts its
   * signal and ends the renewals. Stopping waits for a renewal in flight, so
   * that it cannot land after the release.
   */
  function keepRenewed(lock: HeldLock, ttl: number): () => Promise<void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let inFlight: Promise<void> = Promise.resolve();
    const schedule = () => {
      timer = setTimeout(() => {
        inFlight = lock.renew(ttl).then(
          () => void (stopped || schedule()),
          (error: unknown) => abortLock(lock, error),
        );
      }, Math.max(1, Math.floor(ttl / 3)));
      timer.unref();
    };
    schedule();
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await inFlight;
    };
  }

  async function info(name: string): Promise<LockInfo | null> {
    const key = casKey(name);
    const { record } = await read(key);
    return live(record?.holder ?? null) ? { name, token: record!.token, ...record!.holder! } : null;
  }

  /** `action`'s answer for one record of a listing, or undefined for a key that is not a lock record (reported to onCorrupt). */
  async function unlessCorrupt<T>(key: string, action: () => Promise<T>): Promise<T | undefined> {
    try {
      return await action();
    } catch (error) {
      if (!isStorageError(error, "E_CORRUPT")) throw error;
      onCorrupt(key, error);
      return undefined;
    }
  }

  async function list(): Promise<LockInfo[]> {
    const held: LockInfo[] = [];
    for (const key of await storage.getKeys(prefix)) {
      const found = await unlessCorrupt(key, () => info(key.slice(prefix.length + 1)));
      if (found) held.push(found);
    }
    return held;
  }

  async function cleanup(): Promise<number> {
    let cleared = 0;
    for (const key of await storage.getKeys(prefix)) {
      if (await unlessCorrupt(key, () => clearExpired(casKey(key.slice(prefix.length + 1))))) cleared++;
    }
    return cleared;
  }

  /** Clears the holder of `key` if its lease ended; true when this call cleared it. */
  async function clearExpired(key: string): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const seen = await read(key);
      const holder = seen.record?.holder ?? null;
      if (seen.record === null || holder === null || live(holder)) return false;
      if (await swap(key, seen, releasedRecord(seen.record))) return true;
    }
    throw restless(key, "cleanup");
  }

  return {
    acquire,
    withLock,
    isLocked: async (name) => (await info(name)) !== null,
    info,
    list,
    async release(name, owner) {
      checkOwner(owner);
      await changeHolding(casKey(name), owner, undefined, releasedRecord);
    },
    async renew(name, owner, ttl = defaultTtl) {
      checkOwner(owner);
      checkTtl(ttl);
      const record = await changeHolding(casKey(name), owner, undefined, renewed(clock, ttl));
      return { name, token: record.token, ...record.holder! };
    },
    cleanup,
  };
}

/** The change that moves a held record's lease end to `clock.now() + ttl` (token and holder otherwise kept). */
function renewed(clock: Clock, ttl: number): (record: HeldRecord) => LockRecord {
  return (record) => ({ token: record.token, holder: { ...record.holder, expiresAt: clock.now() + ttl } });
}

function checkOwner(owner: unknown): void {
  if (typeof owner !== "string" || owner.length === 0) throw invalid(`owner must be a non-empty string, got ${String(owner)}`);
}

function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== "string" || prefix.length === 0 || normalizeKey(prefix) !== prefix) {
    throw new StorageError("E_INVALID_KEY", `[locks] prefix must be a non-empty key in normalized form, got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}
