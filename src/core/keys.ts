import { StorageError } from "./errors.js";
import { DEFAULT_KEY_LIMITS, type KeyLimits } from "./types.js";

/**
 * Key rules, as unstorage has them: `/`, `\` and `:` all separate segments,
 * runs of separators collapse, leading and trailing separators are dropped,
 * and a `?query` suffix is stripped. Normalized keys use `:`. stowage strips
 * the query on reads only: a key written or removed may not hold `?`
 * ({@link normalizeWriteKey}), and neither may a base.
 */

const COLON = 58;
const DOT = 46;

/**
 * Whether a key needs the slow path of normalizeKey or may be invalid: it
 * holds `?`, `/`, `\`, NUL, an empty segment, or a `.`/`..` segment. A plain
 * loop, because this runs on every operation and beats the equivalent regex.
 */
function needsWork(key: string): boolean {
  let previous = COLON;
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code === 63 || code === 47 || code === 92 || code === 0) return true;
    if (previous === COLON) {
      if (code === COLON) return true;
      if (code === DOT) {
        const next = key.charCodeAt(i + 1);
        if (Number.isNaN(next) || next === COLON) return true;
        if (next === DOT) {
          const after = key.charCodeAt(i + 2);
          if (Number.isNaN(after) || after === COLON) return true;
        }
      }
    }
    previous = code;
  }
  return previous === COLON;
}

/**
 * unstorage's key rules: `/` and `\` become `:`, repeated separators
 * collapse, leading and trailing ones drop, a `?query` suffix is stripped.
 * Never throws: it does not check the key (the storage does, with `E_INVALID_KEY`).
 */
export function normalizeKey(key: string | undefined | null): string {
  if (!key) return "";
  if (!needsWork(key)) return key;
  return (key.split("?")[0] ?? "").replace(/[/\\]/g, ":").replace(/:+/g, ":").replace(/^:|:$/g, "");
}

/** A base as listings take it: the normalized key with one trailing `:`, or `""` for everything. */
export function normalizeBaseKey(base: string | undefined | null): string {
  const key = normalizeKey(base);
  return key ? key + ":" : "";
}

/** Joins keys with `:` and normalizes the result. */
export function joinKeys(...keys: string[]): string {
  return normalizeKey(keys.join(":"));
}

export function hasDotSegment(key: string): boolean {
  return key.split(":").some((segment) => segment === "." || segment === "..");
}

/**
 * Normalizes a key that must name an item, refusing keys that normalize to
 * nothing, hold a NUL byte, or have `.`/`..` segments. A `?query` suffix is
 * stripped as unstorage does (`a?q=1` is `a`), so a key that is empty before
 * its `?` (`?x`, `:?x`) normalizes to nothing and is refused: a query never
 * turns a key into the root.
 */
export function normalizeItemKey(key: unknown): string {
  if (typeof key === "string" && key.length > 0 && !needsWork(key)) return key;
  if (typeof key !== "string") {
    throw new StorageError("E_INVALID_KEY", `Invalid key: expected a string, got ${typeof key}`);
  }
  const normalized = normalizeKey(key);
  if (!normalized || normalized.includes("\0") || hasDotSegment(normalized)) {
    throw new StorageError("E_INVALID_KEY", `Invalid key: ${JSON.stringify(key)}`, { key });
  }
  return normalized;
}

/**
 * Normalizes a key that is written or removed (setItem, setItemRaw,
 * setItems, setItemStream, removeItem, setMeta, removeMeta, update and the
 * writes of a transaction). Reads strip a `?query` suffix as unstorage does,
 * but a write or removal of `q?x` would act on `q`, a key the caller did not
 * name, so a key holding `?` is refused here. The check rides on the fast
 * scan of {@link normalizeItemKey}: a plain key pays nothing for it.
 *
 * @throws StorageError `E_INVALID_KEY` for a key holding `?`, and for every key {@link normalizeItemKey} refuses
 */
export function normalizeWriteKey(key: unknown): string {
  if (typeof key === "string" && key.length > 0 && !needsWork(key)) return key;
  if (typeof key === "string" && key.includes("?")) {
    throw new StorageError("E_INVALID_KEY", `Invalid key: "?" is not allowed in a key that is written or removed, got ${JSON.stringify(key)}`, { key });
  }
  return normalizeItemKey(key);
}

/**
 * Refuses a base holding `?`. unstorage strips a `?query` suffix from keys,
 * which for a base can only widen it (`clear("?x")` would clear everything,
 * `clear("a?x")` all of `a:`), so stowage takes no query in a base.
 *
 * @throws StorageError `E_INVALID_KEY`
 */
export function assertNoQuery(base: string): void {
  if (base.includes("?")) {
    throw new StorageError("E_INVALID_KEY", `Invalid base: "?" is not allowed in a base, got ${JSON.stringify(base)}`, { key: base });
  }
}

/**
 * Normalizes a base (a key prefix ending in `:`, or `""` for everything).
 * A base holding `?` is refused ({@link assertNoQuery}).
 */
export function normalizeItemBase(base: unknown): string {
  if (base !== undefined && base !== null && typeof base !== "string") {
    throw new StorageError("E_INVALID_KEY", `Invalid base: expected a string, got ${typeof base}`);
  }
  if (base) assertNoQuery(base);
  const normalized = normalizeBaseKey(base);
  if (normalized.includes("\0") || hasDotSegment(normalized)) {
    throw new StorageError("E_INVALID_KEY", `Invalid base: ${JSON.stringify(base)}`, { key: String(base) });
  }
  return normalized;
}

/**
 * A driver's declared key limits, checked once at mount time: each bound a
 * positive integer. Absent limits are the core's defaults.
 */
export function resolveKeyLimits(declared: KeyLimits | undefined, driver: string): KeyLimits {
  if (declared === undefined) return DEFAULT_KEY_LIMITS;
  const valid = (bound: unknown) => typeof bound === "number" && Number.isInteger(bound) && bound > 0;
  if (declared === null || typeof declared !== "object" || !valid(declared.bytes) || !valid(declared.segments)) {
    throw new StorageError("E_INVALID_OPTION", `[${driver}] keyLimits needs positive integer bytes and segments`, { driver });
  }
  return { bytes: declared.bytes, segments: declared.segments };
}

/**
 * Refuses a normalized key past a driver's limits with E_INVALID_KEY. Cheap
 * on the hot path: bytes are only counted when the key could exceed them
 * (a UTF-16 unit is at most 3 UTF-8 bytes), segments only when the key is
 * long enough to hold that many.
 */
export function checkKeyLimits(key: string, limits: KeyLimits, driver: string): void {
  if (key.length * 3 > limits.bytes && Buffer.byteLength(key, "utf8") > limits.bytes) {
    throw new StorageError("E_INVALID_KEY", `Key too long for ${driver}: ${Buffer.byteLength(key, "utf8")} bytes, at most ${limits.bytes}`, {
      driver,
      key: key.slice(0, 200),
    });
  }
  if (key.length >= limits.segments && keyDepth(key) + 1 > limits.segments) {
    throw new StorageError("E_INVALID_KEY", `Key too deep for ${driver}: ${keyDepth(key) + 1} segments, at most ${limits.segments}`, {
      driver,
      key: key.slice(0, 200),
    });
  }
}

/** Number of `:` separators in a key: its depth below the root. */
export function keyDepth(key: string): number {
  let depth = 0;
  for (let index = key.indexOf(":"); index !== -1; index = key.indexOf(":", index + 1)) depth++;
  return depth;
}

/** True when `key` is at most `depth` separators deep (always, without a depth). */
export function filterKeyByDepth(key: string, depth: number | undefined): boolean {
  return depth === undefined || keyDepth(key) <= depth;
}

/** Keys under `base` that are not meta keys (those end in `$`). */
export function filterKeyByBase(key: string, base: string | undefined): boolean {
  return (!base || key.startsWith(base)) && !isMetaKey(key);
}

/** Meta of `key` lives under `key$` where a driver has no native meta. */
export function isMetaKey(key: string): boolean {
  return key.charCodeAt(key.length - 1) === 36; // "$"
}

export function metaKeyOf(key: string): string {
  return key + "$";
}
