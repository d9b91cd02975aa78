import { StorageError, toStorageError } from "../errors.js";
import { isPromise, type MaybePromise } from "../maybePromise.js";
import { CallerError } from "../transaction.js";
import { driverName, type StorageContext } from "./context.js";

/** One settled promise serves every call that resolves to nothing. */
const RESOLVED: Promise<undefined> = Promise.resolve(undefined);

/**
 * An operation written once as a chain of steps that stays synchronous while
 * the driver answers synchronously; the forms below make the async, sync and
 * direct-access methods of it.
 */
export type Step<A, B, C, T> = (ctx: StorageContext, sync: boolean, a: A, b?: B, c?: C) => MaybePromise<T>;

/**
 * The async form of a step: its result or failure (as a StorageError) as a
 * promise. Built once per method, so a call allocates no closure.
 */
export function asyncApi<A, B, C, T>(ctx: StorageContext, step: Step<A, B, C, T>): (a: A, b?: B, c?: C) => Promise<T> {
  // Fixed arity rather than rest arguments: no array per call on the hot path.
  return (a, b, c) => {
    try {
      const result = step(ctx, false, a, b, c);
      if (isPromise(result)) return result.catch((error: unknown) => Promise.reject(toStorageError(error, driverName(ctx, a))));
      return result === undefined ? (RESOLVED as Promise<T>) : Promise.resolve(result);
    } catch (error) {
      return Promise.reject(toStorageError(error, driverName(ctx, a)));
    }
  };
}

/** The sync form of a step; a driver flagged sync that answers with a promise broke its promise. */
export function syncApi<A, B, C, T>(ctx: StorageContext, step: Step<A, B, C, T>): (a: A, b?: B, c?: C) => T {
  return (a, b, c) => {
    let result: MaybePromise<T>;
    try {
      result = step(ctx, true, a, b, c);
    } catch (error) {
      throw toStorageError(error, driverName(ctx, a));
    }
    if (isPromise(result)) {
      const name = driverName(ctx, a);
      result.catch((cause: unknown) => process.emitWarning(`stowage: a sync driver's late failure: ${String(cause)}`));
      throw new StorageError("E_DRIVER", `Driver ${name} is flagged sync but answered with a promise`, { driver: name });
    }
    return result;
  };
}

/** The form of a step for direct access: sync where the driver is, failures as StorageError either way. */
export function directApi<A, B, C, T>(
  ctx: StorageContext,
  step: (ctx: StorageContext, sync: boolean, a: A, b: B, c?: C) => MaybePromise<T>,
): (a: A, b: B, c?: C) => MaybePromise<T> {
  return (a, b, c) => {
    try {
      const result = step(ctx, false, a, b, c);
      return isPromise(result) ? result.catch((error: unknown) => Promise.reject(toStorageError(error, driverName(ctx, a)))) : result;
    } catch (error) {
      throw toStorageError(error, driverName(ctx, a));
    }
  };
}

/** For methods that are not plain steps: failures as StorageError promises, the caller's own errors as they were thrown. */
export function toPromise<T>(ctx: StorageContext, key: unknown, step: () => MaybePromise<T>): Promise<T> {
  const fail = (error: unknown) => Promise.reject(error instanceof CallerError ? error.error : toStorageError(error, driverName(ctx, key)));
  try {
    return Promise.resolve(step()).catch(fail);
  } catch (error) {
    return fail(error);
  }
}
