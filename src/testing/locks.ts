import { hostname } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLocks, lockStorage, type Lock, type LocksOptions } from "../coordination/index.js";
import { isStorageError } from "../core/errors.js";
import type { Clock, Storage } from "../core/types.js";
import { eventually, expectCode } from "./context.js";

/** Options of {@link testLocks}. */
export interface LockTestOptions {
  /**
   * How many acquires race for one lock in the mutual-exclusion test.
   * @default 8
   */
  contenders?: number;
  /**
   * How long, in ms, a test may wait for a timer-driven effect (a renewal, an expiry abort).
   * @default 10000
   */
  timeout?: number;
}

/** A clock that moves only when told, so leases end without sleeping. */
interface ManualClock extends Clock {
  advance(ms: number): void;
}

function manualClock(start = Date.UTC(2026, 0, 1)): ManualClock {
  let now = start;
  return { now: () => now, advance: (ms) => void (now += ms) };
}

/**
 * Registers the lock contract of `stowage/coordination` as vitest tests, run
 * against the storage `makeStorage` makes (its driver flagged `cas`; made once
 * for the suite, and cleared and disposed after it): mutual exclusion, fencing tokens that
 * only grow (across release, expiry, takeover and a holder that never
 * releases), E_NOT_OWNER / E_LOCK_LOST that change nothing, the lock's signal,
 * withLock's renewals and release, waiting, cancelling, cleanup, list/info,
 * asyncDispose, fenced writes (or E_UNSUPPORTED where the driver has no atomic
 * step for them), and the GitVan adapter. Time comes from a manual clock
 * wherever the contract allows, so leases end without sleeping; each test
 * keeps its records under its own prefix.
 */
export function testLocks(name: string, makeStorage: () => Storage | Promise<Storage>, options: LockTestOptions = {}): void {
  const contenders = options.contenders ?? 8;
  const timeout = options.timeout ?? 10_000;
  let storage: Storage;
  let made = 0;
  /** Locks under a prefix no other test uses, on a manual clock unless given another. */
  const fresh = (extra: Omit<LocksOptions, "prefix"> = {}) => {
    const clock = manualClock();
    const prefix = `locktest:${made++}`;
    return { clock, prefix, locks: createLocks(storage, { clock, ...extra, prefix }) };
  };
  const held = (lock: Lock | null): Lock => {
    expect(lock, "the lock is free, so acquire takes it").not.toBeNull();
    return lock!;
  };

  describe(`locks: ${name}`, () => {
    beforeAll(async () => {
      storage = await makeStorage();
    });
    afterAll(async () => {
      // The storage is the kit's: nothing (lock records, fence records) is left behind in a shared server.
      await storage?.clear();
      await storage?.dispose();
    });

    it(`mutual exclusion: of ${contenders} racing acquires exactly one wins`, async () => {
      const { locks, clock } = fresh();
      const results = await Promise.all(Array.from({ length: contenders }, (_, index) => locks.acquire("race", { owner: `racer-${index}`, ttl: 60_000 })));
      const winners = results.filter((lock) => lock !== null);
      expect(winners).toHaveLength(1);
      expect((await locks.info("race"))?.owner).toBe(winners[0]!.owner);
      // A new record's first token is the clock in ms × 1000: above what a lost predecessor issued.
      expect(winners[0]!.token).toBe(clock.now() * 1000);
    });

    it("tokens strictly increase across release, and the lock is its own fence", async () => {
      const { locks, prefix, clock } = fresh();
      const tokens: number[] = [];
      for (let round = 0; round < 3; round++) {
        const lock = held(await locks.acquire("seq"));
        expect(lock.fenceId).toBe(`${prefix}:seq`);
        expect(lock.name).toBe("seq");
        tokens.push(lock.token);
        await lock.release();
        expect(await locks.isLocked("seq")).toBe(false);
      }
      const first = clock.now() * 1000;
      expect(tokens).toEqual([first, first + 1, first + 2]);
    });

    it("a lease that ends is taken over with a higher token; the old holder (crashed, never released) gets E_LOCK_LOST and changes nothing", async () => {
      const { locks, clock } = fresh();
      const first = held(await locks.acquire("crash", { owner: "first", ttl: 1000 }));
      expect(await locks.acquire("crash", { owner: "second", ttl: 1000 })).toBeNull();
      clock.advance(1000);
      expect(await locks.isLocked("crash")).toBe(false);
      const second = held(await locks.acquire("crash", { owner: "second", ttl: 1000 }));
      expect(second.token).toBeGreaterThan(first.token);
      const before = await locks.info("crash");
      await expectCode(() => first.renew(), "E_LOCK_LOST");
      await expectCode(() => first.release(), "E_LOCK_LOST");
      expect(await locks.info("crash")).toEqual(before);
      expect(first.signal.aborted).toBe(true);
      expect(isStorageError(first.signal.reason, "E_LOCK_LOST")).toBe(true);
      expect(second.signal.aborted).toBe(false);
      await second.release();
    });

    it("an expired holder's renew and release are E_LOCK_LOST before anyone takes over, and change nothing", async () => {
      const { locks, clock } = fresh();
      const lock = held(await locks.acquire("lapsed", { owner: "me", ttl: 1000 }));
      clock.advance(1500);
      await expectCode(() => lock.release(), "E_LOCK_LOST");
      await expectCode(() => locks.renew("lapsed", "me"), "E_LOCK_LOST");
      // The record still names the lapsed holder: only a new acquire or cleanup clears it.
      expect(await locks.cleanup()).toBe(1);
      expect(held(await locks.acquire("lapsed")).token).toBe(lock.token + 1);
    });

    it("release and renew by another owner are E_NOT_OWNER and change nothing", async () => {
      const { locks } = fresh();
      const lock = held(await locks.acquire("mine", { owner: "me", ttl: 60_000 }));
      const before = await locks.info("mine");
      await expectCode(() => locks.release("mine", "intruder"), "E_NOT_OWNER");
      await expectCode(() => locks.renew("mine", "intruder", 120_000), "E_NOT_OWNER");
      await expectCode(() => locks.release("free", "intruder"), "E_NOT_OWNER");
      expect(await locks.info("mine")).toEqual(before);
      const renewed = await locks.renew("mine", "me", 120_000);
      expect(renewed.token).toBe(lock.token);
      await locks.release("mine", "me");
      expect(await locks.isLocked("mine")).toBe(false);
      // The Lock itself now finds its holding gone.
      await expectCode(() => lock.renew(), "E_LOCK_LOST");
    });

    it("the signal aborts when the lease ends, by the clock", async () => {
      const { locks, clock } = fresh();
      const lock = held(await locks.acquire("timer", { ttl: 30 }));
      expect(lock.signal.aborted).toBe(false);
      clock.advance(30);
      await eventually(() => expect(lock.signal.aborted).toBe(true), timeout);
      expect(isStorageError(lock.signal.reason, "E_LOCK_LOST")).toBe(true);
    });

    it("renew moves expiresAt on, keeps the token, and keeps the lock past its first lease", async () => {
      const { locks, clock } = fresh();
      const lock = held(await locks.acquire("renew", { ttl: 1000 }));
      clock.advance(800);
      await lock.renew();
      expect(lock.expiresAt).toBe(clock.now() + 1000);
      clock.advance(800);
      expect(await locks.isLocked("renew")).toBe(true);
      expect((await locks.info("renew"))?.token).toBe(lock.token);
      await lock.renew(5000);
      expect((await locks.info("renew"))?.expiresAt).toBe(clock.now() + 5000);
      await lock.release();
      await lock.release(); // a second release of the same Lock does nothing
      await expectCode(() => lock.renew(), "E_LOCK_LOST");
    });

    it("withLock renews while fn runs past the ttl, then releases", async () => {
      const { locks, clock } = fresh();
      const ttl = 300;
      const result = await locks.withLock(
        "long",
        async (lock) => {
          // Each step moves the clock by 2/3 of a lease (past the ttl in all), then waits for the ttl/3 renewal to catch up.
          for (let step = 0; step < 3; step++) {
            clock.advance(200);
            await eventually(() => expect(lock.expiresAt).toBeGreaterThanOrEqual(clock.now() + ttl), timeout);
            expect(await locks.acquire("long")).toBeNull();
          }
          expect(lock.signal.aborted).toBe(false);
          expect((await locks.info("long"))?.token).toBe(lock.token);
          return "done";
        },
        { ttl },
      );
      expect(result).toBe("done");
      expect(await locks.isLocked("long")).toBe(false);
    });

    it("withLock releases when fn throws, and is E_LOCK_TIMEOUT when the lock stays taken", async () => {
      const { locks } = fresh();
      const boom = new Error("boom");
      await expect(locks.withLock("thrown", () => Promise.reject(boom))).rejects.toBe(boom);
      expect(await locks.isLocked("thrown")).toBe(false);
      const holder = held(await locks.acquire("thrown", { ttl: 60_000 }));
      let ran = false;
      await expectCode(() => locks.withLock("thrown", () => (ran = true)), "E_LOCK_TIMEOUT");
      expect(ran).toBe(false);
      await holder.release();
    });

    it("acquire waits for a release, gives up after wait, and an AbortSignal cancels it", async () => {
      const { locks } = fresh();
      const first = held(await locks.acquire("wait", { ttl: 60_000 }));
      expect(await locks.acquire("wait", { wait: 60, retryDelay: 5 })).toBeNull();
      const waiting = locks.acquire("wait", { wait: timeout, retryDelay: 5 });
      await first.release();
      const second = held(await waiting);
      expect(second.token).toBe(first.token + 1);

      const controller = new AbortController();
      const cancelled = locks.acquire("wait", { wait: timeout, retryDelay: 5, signal: controller.signal });
      const reason = new Error("stop waiting");
      controller.abort(reason);
      await expect(cancelled).rejects.toBe(reason);
      await expect(locks.acquire("wait", { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      await second.release();
    });

    it("cleanup clears ended leases (counted once), keeps their tokens, leaves live ones", async () => {
      const { locks, clock } = fresh();
      const [a] = await Promise.all(["a", "b", "c"].map(async (lockName) => held(await locks.acquire(lockName, { ttl: 1000 }))));
      await held(await locks.acquire("released", { ttl: 1000 })).release();
      held(await locks.acquire("live", { ttl: 60_000 }));
      clock.advance(1000);
      expect(await locks.cleanup()).toBe(3);
      expect(await locks.cleanup()).toBe(0);
      expect(held(await locks.acquire("a")).token).toBe(a!.token + 1);
      expect((await locks.list()).map((info) => info.name).sort()).toEqual(["a", "live"]);
    });

    it("info and list describe the holders", async () => {
      const { locks, clock } = fresh();
      const one = held(await locks.acquire("one", { owner: "owner-1", ttl: 5000 }));
      held(await locks.acquire("two:nested", { owner: "owner-2", ttl: 5000 }));
      expect(await locks.info("one")).toEqual({
        name: "one",
        owner: "owner-1",
        token: one.token,
        acquiredAt: clock.now(),
        expiresAt: clock.now() + 5000,
        pid: process.pid,
        host: hostname(),
      });
      expect(one.owner).toBe("owner-1");
      expect((await locks.list()).map((info) => [info.name, info.owner]).sort()).toEqual([
        ["one", "owner-1"],
        ["two:nested", "owner-2"],
      ]);
      expect(await locks.info("absent")).toBeNull();
      const defaulted = held(await locks.acquire("three"));
      expect(defaulted.owner).toMatch(new RegExp(`^${hostname().replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:${process.pid}:`));
    });

    it("a Lock fences writes: after a takeover the old holder's fenced write is E_FENCED and changes nothing", async () => {
      const { locks, clock, prefix } = fresh();
      const key = `${prefix}:resource`;
      const flags = storage.getMount(key).driver.flags ?? {};
      const first = held(await locks.acquire("fenced", { ttl: 1000 }));
      if (flags.transactions !== true && flags.fence !== true) {
        // No atomic step to check the fence in: refused, never emulated.
        await expectCode(() => storage.setItem(key, "first", { fence: first }), "E_UNSUPPORTED");
        expect(await storage.getItem(key)).toBeNull();
        return;
      }
      await storage.setItem(key, "first", { fence: first });
      clock.advance(1000);
      const second = held(await locks.acquire("fenced", { ttl: 1000 }));
      await storage.setItem(key, "second", { fence: second });
      await expectCode(() => storage.setItem(key, "late", { fence: first }), "E_FENCED");
      await expectCode(() => storage.removeItem(key, { fence: first }), "E_FENCED");
      expect(await storage.getItem(key)).toBe("second");
    });

    it("Symbol.asyncDispose releases the lock", async () => {
      const { locks } = fresh();
      const lock = held(await locks.acquire("disposed"));
      await lock[Symbol.asyncDispose]();
      expect(await locks.isLocked("disposed")).toBe(false);
    });

    it("names and options are checked", async () => {
      const { locks } = fresh();
      for (const bad of ["", "a/b", "a::b", ":a", "a?x", "a$"]) await expectCode(() => locks.acquire(bad), "E_INVALID_KEY");
      await expectCode(() => locks.acquire("x", { tll: 5 } as never), "E_INVALID_OPTION");
      await expectCode(() => locks.acquire("x", { ttl: 0 }), "E_INVALID_OPTION");
      await expectCode(() => locks.acquire("x", { wait: -1 }), "E_INVALID_OPTION");
      await expectCode(() => locks.acquire("x", { owner: "" }), "E_INVALID_OPTION");
      await expectCode(() => locks.withLock("x", "not a function" as never), "E_INVALID_OPTION");
      expect(() => createLocks(storage, { timeout: 5 } as never)).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
      expect(() => createLocks(storage, { prefix: "a/b" })).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
      expect(await locks.list()).toEqual([]);
    });

    it("the GitVan adapter: acquireLock, releaseLock, isLocked, getLockInfo, renewLock, cleanup", async () => {
      const { clock, prefix } = fresh();
      const adapter = lockStorage({ storage, ttl: 1000, prefix, clock });
      const firstToken = clock.now() * 1000;
      expect(await adapter.acquireLock("job", "a")).toBe(true);
      expect(await adapter.acquireLock("job", "a")).toBe(true); // already the owner
      expect(await adapter.acquireLock("job", "b")).toBe(false);
      expect(await adapter.isLocked("job")).toBe(true);
      const info = await adapter.getLockInfo("job");
      expect(info).toEqual({ owner: "a", acquired: clock.now(), ttl: 1000, process: `${process.pid}@${hostname()}`, token: firstToken });
      expect(await adapter.renewLock("job", "b")).toBe(false);
      expect(await adapter.releaseLock("job", "b")).toBe(false);
      clock.advance(500);
      // Re-entrant acquire by the owner renews the lease (GitVan's acquire of a held lock starts a new one).
      expect(await adapter.acquireLock("job", "a")).toBe(true);
      expect((await adapter.getLockInfo("job"))?.ttl).toBe(1500);
      clock.advance(500);
      expect(await adapter.renewLock("job", "a")).toBe(true);
      expect((await adapter.getLockInfo("job"))?.ttl).toBe(2000);
      expect(await adapter.releaseLock("job", "a")).toBe(true);
      expect(await adapter.releaseLock("job", "a")).toBe(true); // already released
      expect(await adapter.getLockInfo("job")).toBeNull();
      expect(await adapter.acquireLock("job", "b")).toBe(true);
      expect((await adapter.getLockInfo("job"))?.token).toBe(firstToken + 1);
      clock.advance(1000);
      expect(await adapter.releaseLock("job", "b")).toBe(false); // b's lease had ended
      expect(await adapter.renewLock("job", "b")).toBe(false);
      expect(await adapter.cleanup()).toBe(1);
      expect(await adapter.isLocked("job")).toBe(false);
    });
  });
}

