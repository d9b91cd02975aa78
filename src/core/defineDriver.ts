import type { Driver } from "./types.js";

/** A driver factory: options in, driver out (unstorage's shape). */
export type DriverFactory<OptionsT = unknown, InstanceT = unknown> = (options: OptionsT) => Driver<OptionsT, InstanceT>;

/**
 * Declares a driver factory. It only gives the factory its type, as
 * unstorage's defineDriver does, so drivers written for either library match.
 */
export function defineDriver<OptionsT = unknown, InstanceT = unknown>(
  factory: (options: OptionsT) => Driver<OptionsT, InstanceT>,
): (options: OptionsT) => Driver<OptionsT, InstanceT> {
  return factory;
}
