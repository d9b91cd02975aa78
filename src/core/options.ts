import { StorageError } from "./errors.js";

/**
 * Refuses option names a driver or layer does not know, so a misspelt or
 * not-yet-supported option (`memory({ maxSize })`) fails at once instead of
 * running without the behaviour it asked for.
 *
 * @param driver the driver's name, for the error
 * @param options what the caller passed (`undefined` is no options)
 * @param known every option name the driver reads
 * @throws StorageError `E_INVALID_OPTION` naming the unknown options and the known ones,
 *   or when `options` is not a plain object
 */
export function checkOptions<T extends object>(driver: string, options: T | undefined | null | void, known: readonly (keyof T & string)[]): void {
  if (options === undefined || options === null) return;
  if (typeof options !== "object" || Array.isArray(options)) {
    throw new StorageError("E_INVALID_OPTION", `[${driver}] options must be an object, got ${Array.isArray(options) ? "an array" : typeof options}`, { driver });
  }
  const unknown = Object.keys(options).filter((name) => !(known as readonly string[]).includes(name));
  if (unknown.length === 0) return;
  const list = known.length > 0 ? known.join(", ") : "none";
  throw new StorageError("E_INVALID_OPTION", `[${driver}] unknown option${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")} (known: ${list})`, { driver });
}
