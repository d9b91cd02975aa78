import { vi } from "vitest";
import type { Clock } from "../../src/index.js";

/**
 * Runs `body` with Date moved `ms` ahead, and only Date (it goes on ticking;
 * timers and I/O stay real): entries expire without a wait that a loaded
 * machine could outrun, and no purge timer fires early.
 */
export async function withDateAhead<T>(ms: number, body: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ["Date"], shouldAdvanceTime: true });
  try {
    vi.setSystemTime(Date.now() + ms);
    return await body();
  } finally {
    vi.useRealTimers();
  }
}

/**
 * The compliance kit's ttl for these drivers: long enough that a loaded 2-core
 * machine writes, reads and checks an entry before it expires (the kit's
 * 200 ms default failed there now and then).
 */
export const KIT_TTL = 1500;

/** A clock that moves only when told: expiry tests advance it instead of sleeping. */
export interface ManualClock extends Clock {
  advance(ms: number): void;
}

export function manualClock(start = Date.UTC(2026, 0, 1)): ManualClock {
  let now = start;
  return {
    now: () => now,
    advance(ms) {
      now += ms;
    },
  };
}
