/**
 * Helpers that let one code path serve both the async and the sync API:
 * a step that returns a plain value continues synchronously, a step that
 * returns a promise continues when it settles.
 */
export type MaybePromise<T> = T | Promise<T>;

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return value !== null && typeof value === "object" && typeof (value as { then?: unknown }).then === "function";
}

/** Runs `next` on the value now if it is already there, or once it settles. */
export function chain<T, R>(value: MaybePromise<T>, next: (value: T) => MaybePromise<R>): MaybePromise<R> {
  return isPromise(value) ? value.then(next) : next(value);
}

/** Waits for every step; stays synchronous when no step is a promise. */
export function all<T>(values: MaybePromise<T>[]): MaybePromise<T[]> {
  for (const value of values) {
    if (isPromise(value)) return Promise.all(values);
  }
  return values as T[];
}

/** Runs steps one after another (each may depend on the previous finishing). */
export function sequence<T>(items: readonly T[], step: (item: T) => MaybePromise<void>): MaybePromise<void> {
  for (let i = 0; i < items.length; i++) {
    const result = step(items[i] as T);
    if (isPromise(result)) {
      return result.then(() => sequence(items.slice(i + 1), step));
    }
  }
}
