import { StorageError } from "./errors.js";
import type { Clock } from "./types.js";

/** The wall clock: `Date.now`. Every `clock` option defaults to it. */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() });

/**
 * A `clock` option checked: an object with a `now` function, or left out
 * (the system clock).
 *
 * @throws StorageError `E_INVALID_OPTION` when `clock` is given without a `now` function
 */
export function resolveClock(clock: unknown): Clock {
  if (clock === undefined) return systemClock;
  if (clock === null || typeof clock !== "object" || typeof (clock as Clock).now !== "function") {
    throw new StorageError("E_INVALID_OPTION", "clock must be an object with a now() function returning epoch milliseconds");
  }
  return clock as Clock;
}
