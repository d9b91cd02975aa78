import type { StorageError } from "../../core/errors.js";

/** How often deadlines of `timeout` ms are checked: a quarter of it, 100 ms at most, so a call fails at most that late. */
export function deadlineTick(timeout: number): number {
  return Math.max(1, Math.min(100, timeout / 4));
}

interface Waiting {
  at: number;
  fail: (error: StorageError) => void;
}

/**
 * Deadlines for many short calls without a timer per call. Arming and
 * clearing a timer for each statement (what mysql2's `timeout` and pg's
 * `query_timeout` do) cost more client CPU than the rest of a point read
 * (measured: ~20 µs of ~50 µs per mysql2 `execute`). Here one interval,
 * running while calls are in flight, fails the calls past their deadline,
 * at most a tick (a quarter of the timeout, 100 ms at most) late.
 *
 * A call that times out only stops being waited for: the client library
 * still owns the request and settles it when the server answers.
 */
export class Deadlines {
  private readonly waiting = new Set<Waiting>();
  private timer: NodeJS.Timeout | undefined;
  private readonly tick: number;

  /** `timedOut` makes the error of a call past `timeout` ms. */
  constructor(
    private readonly timeout: number,
    private readonly timedOut: () => StorageError,
  ) {
    this.tick = deadlineTick(timeout);
  }

  /** What `call` settles to, or a rejection with `timedOut()` once it has taken longer than the timeout. */
  within<T>(call: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const entry: Waiting = { at: Date.now() + this.timeout, fail: reject };
      this.waiting.add(entry);
      // unref: waiting calls never keep a process alive on their own (their sockets do, while open).
      this.timer ??= setInterval(() => this.sweep(), this.tick).unref();
      call.then(
        (value) => {
          this.waiting.delete(entry);
          resolve(value);
        },
        (error: unknown) => {
          this.waiting.delete(entry);
          reject(error);
        },
      );
    });
  }

  /** Stops the interval: nothing is waited for any more (a disposed driver). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    // Idle: the interval stops, and the next call arms it again (once per idle spell, not per call).
    if (this.waiting.size === 0) return this.stop();
    const now = Date.now();
    for (const entry of this.waiting) {
      if (entry.at > now) continue;
      this.waiting.delete(entry);
      entry.fail(this.timedOut());
    }
  }
}
