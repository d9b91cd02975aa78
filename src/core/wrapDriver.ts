import { StorageError } from "./errors.js";
import type { AsyncWrites, Driver, DriverFlags } from "./types.js";

/** The members of {@link Driver} a wrapper forwards from its inner driver: all but `name` and `flags`, which it always states itself. */
export type ForwardedMember = Exclude<keyof Driver, "name" | "flags">;

// A Record, so that a member added to Driver and missing here fails the type check instead of being silently dropped.
const FORWARDED: Record<ForwardedMember, true> = {
  options: true,
  keyLimits: true,
  getInstance: true,
  hasItem: true,
  getItem: true,
  getItems: true,
  getItemRaw: true,
  setItem: true,
  setItems: true,
  setItemRaw: true,
  removeItem: true,
  getMeta: true,
  getKeys: true,
  clear: true,
  dispose: true,
  watch: true,
  getItemStream: true,
  setItemStream: true,
  iterateKeys: true,
  commit: true,
  getHistory: true,
  asyncWrites: true,
};
const FORWARDED_MEMBERS = Object.keys(FORWARDED) as ForwardedMember[];

/** Flags that promise a method: without it the flag cannot hold. */
const FLAG_METHODS = { transactions: "commit", history: "getHistory", watch: "watch" } as const satisfies Partial<Record<keyof DriverFlags, ForwardedMember>>;

/** What a layer gives {@link wrapDriver}: its own name and options, the members it takes over, the flags it changes, the members it drops. */
export type DriverLayer<OptionsT = unknown, InstanceT = unknown> = Partial<Omit<Driver<OptionsT, InstanceT>, "name" | "flags">> & {
  /** The wrapper's name (errors and mounts report it). */
  name: string;
  /**
   * Flags the layer changes: `false` narrows a capability it cannot keep;
   * `true` claims one, which only a layer that implements it may do (see {@link wrapDriver}).
   * @default {} (the inner driver's flags, as far as the wrapper's methods allow)
   */
  flags?: DriverFlags;
  /**
   * Members of the inner driver the layer cannot keep correct and does not
   * implement: the wrapper leaves them out, so the core uses its fallback.
   * @default []
   */
  drop?: readonly ForwardedMember[];
};

/** A driver made by {@link wrapDriver}: the layer's extra members, the driver's, and `inner`. */
export type WrappedDriver<L extends DriverLayer = DriverLayer> = Driver<LayerOptions<L>, LayerInstance<L>> &
  Omit<L, "drop" | keyof Driver> & { flags: DriverFlags; readonly inner: Driver };
type LayerOptions<L> = L extends { options?: infer O } ? O : unknown;
type LayerInstance<L> = L extends { getInstance?: () => infer I } ? I : unknown;

/**
 * Wraps `inner` in a layer: the one way to write a driver decorator.
 *
 * - **Members.** Every optional member `inner` has (batches, raw, streams,
 *   `iterateKeys`, `commit`, `watch`, `getHistory`, meta, `dispose`,
 *   `keyLimits`, `getInstance`, `options`, …) is forwarded unless the layer gives its
 *   own or names it in `drop`; a member `inner` lacks is absent unless the
 *   layer gives it. The core chooses its paths by which methods exist, so a
 *   wrapper neither invents nor loses one. `asyncWrites` members are forwarded
 *   only for the writes the layer neither takes over nor drops (the core
 *   prefers them, so one left beside a layer's `setItem` would bypass the layer);
 *   a layer may give its own `asyncWrites`.
 * - **Flags.** The wrapper starts from `inner`'s flags; a flag the layer
 *   sets `false` is narrowed; a flag the layer sets `true` is claimed, and
 *   the layer must implement it. A flag that promises a method
 *   (`transactions`: `commit`, `history`: `getHistory`, `watch`: `watch`) is
 *   false when the wrapper lacks that method; `etag` goes with `cas`.
 * - **`inner`** is on the result, so {@link findLayer} and {@link innermost}
 *   reach a driver's own members (a queue's `flush()`, git's `maintenance()`)
 *   through any number of wrappers.
 *
 * @throws StorageError `E_INVALID_OPTION` when `inner` is not a driver, or the layer claims `transactions`, `history` or `watch` without implementing its method
 * @example
 * const inner = memory();
 * const logged = wrapDriver(inner, {
 *   name: "logged",
 *   setItem: (key, value, opts) => (console.log("set", key), inner.setItem!(key, value, opts)),
 * });
 */
export function wrapDriver<L extends DriverLayer>(inner: Driver, layer: L): WrappedDriver<L> {
  checkDriver(inner, layer.name);
  const { drop = [], flags: layerFlags, ...own } = layer;
  const dropped = new Set<string>(drop);
  const wrapped: Record<string, unknown> = {};
  for (const member of FORWARDED_MEMBERS) {
    if (dropped.has(member) || member === "asyncWrites") continue;
    const value = inner[member];
    if (value !== undefined) wrapped[member] = typeof value === "function" ? value.bind(inner) : value;
  }
  // An undefined member is no override: a layer may write `getItems: inner.getItems && batchRead`.
  for (const [member, value] of Object.entries(own)) if (value !== undefined) wrapped[member] = value;
  const asyncWrites = dropped.has("asyncWrites") ? undefined : own.asyncWrites ? definedWrites(own.asyncWrites) : forwardedAsyncWrites(inner, own, dropped);
  if (asyncWrites === undefined) delete wrapped.asyncWrites;
  else wrapped.asyncWrites = asyncWrites;
  wrapped.flags = combineFlags(inner.flags, layerFlags, wrapped as Partial<Driver>, own, layer.name);
  Object.defineProperty(wrapped, "inner", { value: inner, enumerable: false, writable: false });
  return wrapped as WrappedDriver<L>;
}

function checkDriver(inner: Driver, name: string): void {
  const driver = inner as Partial<Driver> | null | undefined;
  if (!driver || typeof driver.getItem !== "function" || typeof driver.hasItem !== "function" || typeof driver.getKeys !== "function") {
    throw new StorageError("E_INVALID_OPTION", `${name} needs a driver to wrap (with hasItem, getItem and getKeys)`, { driver: name });
  }
}

/** A layer's asyncWrites without its undefined members: the core spreads them over the driver, where an undefined one would erase a method. */
function definedWrites(writes: AsyncWrites): AsyncWrites | undefined {
  const kept = Object.fromEntries(Object.entries(writes).filter(([, method]) => method !== undefined));
  return Object.keys(kept).length > 0 ? (kept as AsyncWrites) : undefined;
}

/** inner's async writes, less those the layer took over or dropped as plain methods. */
function forwardedAsyncWrites(inner: Driver, own: Partial<Driver>, dropped: Set<string>): AsyncWrites | undefined {
  if (!inner.asyncWrites) return undefined;
  const kept: Record<string, unknown> = {};
  for (const [member, method] of Object.entries(inner.asyncWrites)) {
    if (method !== undefined && own[member as keyof AsyncWrites] === undefined && !dropped.has(member)) kept[member] = method.bind(inner.asyncWrites);
  }
  return Object.keys(kept).length > 0 ? (kept as AsyncWrites) : undefined;
}

/** The flag rule of {@link wrapDriver}: inner's flags, narrowed or claimed by the layer, and false where the wrapper lacks the method a flag promises. */
function combineFlags(inner: DriverFlags | undefined, layer: DriverFlags | undefined, wrapped: Partial<Driver>, own: Partial<Driver>, name: string): DriverFlags {
  const flags: DriverFlags = { ...inner, ...layer };
  for (const [flag, method] of Object.entries(FLAG_METHODS) as [keyof typeof FLAG_METHODS, ForwardedMember][]) {
    if (layer?.[flag] === true && inner?.[flag] !== true && own[method] === undefined) {
      throw new StorageError("E_INVALID_OPTION", `${name} claims the flag ${flag} but implements no ${method}`, { driver: name });
    }
    if (flags[flag] === true && wrapped[method] === undefined) flags[flag] = false;
  }
  // The etag kind describes CAS etags: a wrapper that narrows cas has none to describe.
  if (flags.cas !== true) delete (flags as { etag?: unknown }).etag;
  return flags;
}

/** Whether a driver was made by {@link wrapDriver} (or exposes `inner` the same way). */
export function isWrapped(driver: Driver): driver is Driver & { readonly inner: Driver } {
  const inner = (driver as { inner?: unknown }).inner;
  return typeof inner === "object" && inner !== null;
}

/** The driver and every driver it wraps, outermost first. */
export function layersOf(driver: Driver): Driver[] {
  const chain: Driver[] = [driver];
  let current = driver;
  while (isWrapped(current) && !chain.includes(current.inner)) {
    current = current.inner;
    chain.push(current);
  }
  return chain;
}

/**
 * The outermost driver in `driver`'s `inner` chain (itself included) that
 * passes `test`: how a queue's `flush()` or git's `maintenance()` is found
 * under any number of wrappers.
 * @example
 * const git = findLayer(storage.getMount("").driver, (d): d is GitRefsDriver => "maintenance" in d);
 */
export function findLayer<T extends Driver>(driver: Driver, test: (layer: Driver) => layer is T): T | undefined;
export function findLayer(driver: Driver, test: (layer: Driver) => boolean): Driver | undefined;
export function findLayer(driver: Driver, test: (layer: Driver) => boolean): Driver | undefined {
  return layersOf(driver).find(test);
}

/** The driver at the bottom of `driver`'s `inner` chain: the one that talks to the backend. */
export function innermost(driver: Driver): Driver {
  return layersOf(driver).at(-1)!;
}
