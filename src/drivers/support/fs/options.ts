import { StorageError } from "../../../core/errors.js";
import { checkOptions } from "../../../core/options.js";

/** The switches both file drivers take. */
interface FileSwitches {
  readOnly?: boolean;
  noClear?: boolean;
  fsync?: boolean;
}

/**
 * Checks a file driver's options before anything is opened: no unknown
 * names, the boolean switches boolean, and `ignore` of the kind the driver
 * takes (`"globs"`: an array of strings; `"function"`).
 */
export function checkFileOptions<T extends FileSwitches & { ignore?: unknown }>(
  driver: string,
  options: T | undefined,
  known: readonly (keyof T & string)[],
  ignore: "globs" | "function",
): void {
  checkOptions(driver, options, known);
  if (options === undefined || options === null) return;
  const invalid = (message: string) => new StorageError("E_INVALID_OPTION", `[${driver}] ${message}`, { driver });
  for (const name of ["readOnly", "noClear", "fsync"] as const) {
    if (options[name] !== undefined && typeof options[name] !== "boolean") throw invalid(`${name} must be a boolean`);
  }
  const given = options.ignore;
  if (given === undefined) return;
  const fits = ignore === "function" ? typeof given === "function" : Array.isArray(given) && given.every((glob) => typeof glob === "string");
  if (!fits) throw invalid(ignore === "function" ? "ignore must be a function (path) => boolean" : "ignore must be an array of glob strings");
}
