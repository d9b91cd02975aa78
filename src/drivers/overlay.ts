import { defineDriver } from "../core/defineDriver.js";
import { StorageError } from "../core/errors.js";
import { normalizeKey } from "../core/keys.js";
import { checkOptions } from "../core/options.js";
import { all, chain, type MaybePromise } from "../core/maybePromise.js";
import { serializeRaw } from "../core/serializer.js";
import { DEFAULT_KEY_LIMITS } from "../core/types.js";
import type {
  Driver,
  DriverFlags,
  GetKeysOptions,
  IterateKeysOptions,
  KeyLimits,
  SetOptions,
  StorageMeta,
  TransactionOptions,
  Unwatch,
  DriverWatchCallback,
} from "../core/types.js";
import { wrapDriver, type ForwardedMember } from "../core/wrapDriver.js";

export interface OverlayOptions {
  /** Drivers read in order: the first layer holding a key (or its removal) answers. Required, at least one. */
  layers: Driver[];
  /**
   * Index of the layer that takes every write and removal.
   * @default 0
   */
  writeTo?: number;
}

/**
 * The value that marks a key removed in the write layer, masking lower
 * layers: unstorage's overlay marker, so each library reads the other's
 * masks. stowage's default serializer writes every string as JSON text
 * (quoted), so no value a user stores through it can equal the marker.
 */
export const OVERLAY_REMOVED = "__OVERLAY_REMOVED__";

const DRIVER_NAME = "overlay";
const MARKER_BYTES = new TextEncoder().encode(OVERLAY_REMOVED);

function isMarker(stored: unknown): boolean {
  if (stored === OVERLAY_REMOVED) return true;
  return stored instanceof Uint8Array && stored.length === MARKER_BYTES.length && Buffer.from(stored).equals(MARKER_BYTES);
}

/** What a layer says of a key: a value, a removal mark, or nothing (ask the next layer). */
type Found = { layer: Driver; stored: unknown } | null;

/**
 * The flags the overlay sets over the write layer's (wrapDriver's rule):
 * what every layer must share, `clearBase` which its own clear gives, and
 * `cas` narrowed (an etag is one layer's, a removal a mark). Expiry and
 * nesting stay the write layer's: writes land there only, and an expired
 * override lets the layer below show through.
 */
function sharedFlags(layers: Driver[]): DriverFlags {
  const every = (flag: keyof DriverFlags) => layers.every((layer) => layer.flags?.[flag] === true);
  return { sync: every("sync"), maxDepth: every("maxDepth"), watch: every("watch"), clearBase: true, cas: false };
}

/**
 * What the write layer has that the overlay cannot keep correct: a commit
 * or history of one layer ignores the others and the removal marks, and a
 * stream from the write layer would miss the layers below. Its
 * setItemStream is kept: streamed writes land in the write layer, as every write does.
 */
const NOT_KEPT: ForwardedMember[] = ["commit", "getHistory", "getItemStream"];

/** A key is read from every layer: the tightest of their limits. */
function sharedKeyLimits(layers: Driver[]): KeyLimits {
  const limits = layers.map((layer) => layer.keyLimits ?? DEFAULT_KEY_LIMITS);
  return { bytes: Math.min(...limits.map((limit) => limit.bytes)), segments: Math.min(...limits.map((limit) => limit.segments)) };
}

/**
 * Layers of drivers read as one store: reads go through the layers in order,
 * writes land in the `writeTo` layer, and a removal leaves a mark there so
 * the key does not reappear from a layer below, until it is written again.
 * Stays synchronous (flag `sync`) when every layer is.
 *
 * Built on {@link wrapDriver} over the write layer: `getItems` asks each
 * layer once for the keys the layers above did not hold (a batch per layer
 * where it has `getItems`); `iterateKeys` (when every layer has it) pages
 * through each layer's keys in turn, leaving out keys a layer above holds or
 * masks; the write layer's `setItemStream` is kept. `commit`, `getHistory`
 * and `getItemStream` are left out (see NOT_KEPT), so their flags are off.
 *
 * @throws StorageError `E_INVALID_OPTION` for no layers, a layer that is not a driver, a bad `writeTo` or an unknown option
 */
export default defineDriver<OverlayOptions, Driver[]>((options: OverlayOptions) => {
  checkOptions(DRIVER_NAME, options, ["layers", "writeTo"]);
  const layers = options?.layers;
  if (!Array.isArray(layers) || layers.length === 0) {
    throw new StorageError("E_INVALID_OPTION", "The overlay driver needs at least one layer", { driver: DRIVER_NAME });
  }
  const notDriver = layers.findIndex((layer) => !layer || typeof layer.getItem !== "function" || typeof layer.hasItem !== "function" || typeof layer.getKeys !== "function");
  if (notDriver !== -1) {
    throw new StorageError("E_INVALID_OPTION", `layers[${notDriver}] is not a driver (it needs hasItem, getItem and getKeys)`, { driver: DRIVER_NAME });
  }
  const writeIndex = options.writeTo ?? 0;
  if (!Number.isInteger(writeIndex) || !layers[writeIndex]) {
    throw new StorageError("E_INVALID_OPTION", `writeTo must index a layer (0 to ${layers.length - 1})`, { driver: DRIVER_NAME });
  }
  const writer: Driver = layers[writeIndex];
  const below = layers.filter((_, index) => index !== writeIndex);

  /** The first layer, from `index` on, that holds the key or its removal mark. */
  function find(key: string, raw: boolean, index = 0): MaybePromise<Found> {
    if (index === layers.length) return null;
    const layer = layers[index]!;
    const stored = raw && layer.getItemRaw ? layer.getItemRaw(key, {}) : layer.getItem(key, {});
    return chain(stored, (value) => (value === null || value === undefined ? find(key, raw, index + 1) : { layer, stored: value }));
  }

  const read = (key: string, raw: boolean): MaybePromise<unknown> =>
    chain(find(key, raw), (found) => (found === null || isMarker(found.stored) ? null : found.stored));

  const readOnly = (method: string) => new StorageError("E_READONLY", `The overlay's write layer has no ${method}`, { driver: DRIVER_NAME });
  const set = (key: string, value: string, opts: SetOptions): MaybePromise<void> => {
    if (!writer.setItem) throw readOnly("setItem");
    return writer.setItem(key, value, opts);
  };
  const remove = (key: string, opts: TransactionOptions): MaybePromise<void> => {
    if (!writer.removeItem) throw readOnly("removeItem");
    return writer.removeItem(key, opts);
  };

  /** Whether one of `candidates` holds the key (a value or a mark), asked in turn until one does. */
  function heldIn(candidates: Driver[], key: string, index = 0): MaybePromise<boolean> {
    if (index === candidates.length) return false;
    return chain(candidates[index]!.hasItem(key, {}), (has) => has || heldIn(candidates, key, index + 1));
  }

  const mask = (key: string, opts: TransactionOptions) => set(key, OVERLAY_REMOVED, { ...opts, ttl: undefined });

  /** Keys of every layer, once each, without the ones the write layer marks removed. */
  function listKeys(base: string, opts: GetKeysOptions): MaybePromise<string[]> {
    return chain(all(layers.map((layer) => layer.getKeys(base, opts))), (listings) => {
      const seen = new Set<string>();
      const fromWriter: string[] = [];
      const keys: string[] = [];
      listings.forEach((listing, index) => {
        for (const raw of listing) {
          const key = normalizeKey(raw);
          if (seen.has(key)) continue;
          seen.add(key);
          // Only the write layer holds marks; a key it lists first may be one.
          if (index === writeIndex) fromWriter.push(key);
          else keys.push(key);
        }
      });
      if (fromWriter.length === 0) return keys;
      return chain(readValues(writer, fromWriter), (values) => [...keys, ...fromWriter.filter((_, index) => !isMarker(values[index]))]);
    });
  }

  const readValues = (layer: Driver, keys: string[]): MaybePromise<unknown[]> =>
    layer.getItems
      ? chain(layer.getItems(keys.map((key) => ({ key }))), (found) => found.map((entry) => entry.value))
      : all(keys.map((key) => layer.getItem(key, {})));

  const absent = (stored: unknown) => stored === null || stored === undefined;

  /** What the first layer (from `index` on) holding each key stores: a value, a mark, or null. */
  function findMany(keys: string[], index = 0): MaybePromise<unknown[]> {
    if (index === layers.length || keys.length === 0) return keys.map(() => null);
    return chain(readValues(layers[index]!, keys), (values) => {
      const missing = keys.filter((_, at) => absent(values[at]));
      return chain(findMany(missing, index + 1), (below) => {
        let next = 0;
        return values.map((value) => (absent(value) ? below[next++] : value));
      });
    });
  }

  const getItems = (items: { key: string }[]) =>
    chain(findMany(items.map((item) => item.key)), (found) => items.map(({ key }, at) => ({ key, value: isMarker(found[at]) ? null : (found[at] ?? null) })));

  /** The keys of one layer's page that the overlay shows: none a layer above holds, and no mark. */
  async function shownOf(page: string[], index: number): Promise<string[]> {
    const keys = page.map(normalizeKey);
    // A key a layer before `index` holds (a value or a mark) is not `index`'s to show.
    const upper = layers.slice(0, index);
    const above = await Promise.all(keys.map((key) => heldIn(upper, key)));
    const candidates = keys.filter((_, at) => !above[at]);
    if (index !== writeIndex || candidates.length === 0) return candidates;
    const values = await readValues(writer, candidates);
    return candidates.filter((_, at) => !isMarker(values[at]));
  }

  /** Each layer's keys in turn, as the overlay shows them; a layer's listing is never held whole. */
  async function* iterateKeys(base: string, opts: IterateKeysOptions): AsyncIterable<string[]> {
    for (const [index, layer] of layers.entries()) {
      for await (const page of layer.iterateKeys!(base, opts)) {
        const shown = await shownOf(page, index);
        if (shown.length > 0) yield shown;
      }
    }
  }

  /**
   * Layer events with the layer's own info, a removal mark written to the
   * write layer reported as the removal it is (a mark's etag is no value's, so it is left out).
   */
  function watch(callback: DriverWatchCallback): MaybePromise<Unwatch> {
    const fromWriter: DriverWatchCallback = (event, key, info) => {
      if (event === "remove") return callback(event, key, info);
      return chain(writer.getItem(key, {}), (stored) => (isMarker(stored) ? callback("remove", key, info && { origin: info.origin }) : callback("update", key, info)));
    };
    const subscriptions = layers.map((layer) => layer.watch!(layer === writer ? fromWriter : callback));
    return chain(all(subscriptions), (unwatches) => () => chain(all(unwatches.map((unwatch) => unwatch())), () => undefined));
  }

  // Only when every layer has one: the write layer's alone would miss the layers below.
  const everyWatches = layers.every((layer) => typeof layer.watch === "function");
  const everyIterates = layers.every((layer) => typeof layer.iterateKeys === "function");
  const drop = [...NOT_KEPT, ...(everyWatches ? [] : ["watch" as const]), ...(everyIterates ? [] : ["iterateKeys" as const])];
  return wrapDriver(writer, {
    name: DRIVER_NAME,
    options,
    flags: sharedFlags(layers),
    drop,
    keyLimits: sharedKeyLimits(layers),
    getInstance: () => layers,
    hasItem: (key: string) => chain(read(key, false), (value) => value !== null),
    getItem: (key: string) => read(key, false),
    getItemRaw: (key: string) => read(key, true),
    setItem: set,
    setItemRaw: (key: string, value: Uint8Array, opts: SetOptions) =>
      writer.setItemRaw ? writer.setItemRaw(key, value, opts) : set(key, serializeRaw(value), opts),
    setItems: (items: { key: string; value: string; options?: SetOptions }[], common?: SetOptions) => {
      if (writer.setItems) return writer.setItems(items, common);
      return chain(all(items.map((item) => set(item.key, item.value, item.options ?? common ?? {}))), () => undefined);
    },
    // A key a layer other than the write layer still holds is removed with a mark.
    removeItem: (key: string, opts: TransactionOptions) => chain(heldIn(below, key), (held) => (held ? mask(key, opts) : remove(key, opts))),
    getMeta: (key: string, opts: TransactionOptions): MaybePromise<StorageMeta | null> =>
      chain(find(key, false), (found) => {
        if (found === null || isMarker(found.stored)) return null;
        return found.layer.getMeta ? found.layer.getMeta(key, opts) : {};
      }),
    getKeys: (base: string, opts: GetKeysOptions) => listKeys(base ?? "", opts ?? {}),
    clear: (base: string, opts: TransactionOptions) =>
      // Keys that lower layers hold under base get marks; the write layer's own go.
      chain(all(below.map((layer) => layer.getKeys(base, {}))), (listings) => {
        const masked = [...new Set(listings.flat().map(normalizeKey))].filter((key) => key.startsWith(base ?? ""));
        const cleared = writer.clear && (!base || writer.flags?.clearBase) ? writer.clear(base, opts) : clearOneByOne(base, opts);
        return chain(cleared, () => chain(all(masked.map((key) => mask(key, opts))), () => undefined));
      }),
    watch: everyWatches ? watch : undefined,
    getItems,
    iterateKeys: everyIterates ? iterateKeys : undefined,
    dispose: () => chain(all(layers.map((layer) => layer.dispose?.())), () => undefined),
  });

  function clearOneByOne(base: string, opts: TransactionOptions): MaybePromise<void> {
    return chain(writer.getKeys(base, {}), (keys) => chain(all(keys.map((key) => remove(normalizeKey(key), opts))), () => undefined));
  }
});
