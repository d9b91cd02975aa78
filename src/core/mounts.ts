import { StorageError } from "./errors.js";
import { keyDepth, normalizeBaseKey, resolveKeyLimits } from "./keys.js";
import type { Driver, KeyLimits } from "./types.js";

/**
 * Whether writes through `committer` can commit atomically: `flagged`
 * states the flag "transactions" and `committer` has `commit`. For a
 * mount, `flagged` is `mount.store`: the TTL layer in front of a driver
 * keeps `commit` exactly when the driver has it, and wrapDriver keeps
 * "transactions" only with `commit`, so the store's flag is the driver's
 * where either has commit. `committer` may differ from `flagged` (a
 * mount's async writer, whose commit may come from `asyncWrites`; the TTL
 * layer's writer over the driver it flags from).
 */
export function commitsAtomically(flagged: Driver, committer: Driver = flagged): boolean {
  return flagged.flags?.transactions === true && typeof committer.commit === "function";
}

/** A driver mounted at a base, with what the core needs to know about it. */
export interface Mount {
  /** Normalized base ending in `:`, or `""` for the root. */
  readonly base: string;
  /** The driver as the user mounted it (what `getMount` returns, and what `clear` empties whole). */
  readonly driver: Driver;
  /**
   * The driver the operations talk to: `driver` with the core's layers in
   * front (the TTL layer where `driver` has no TTL of its own), so that it
   * honours `ttl` whatever is mounted.
   */
  readonly store: Driver;
  /** `store` as the async API writes through it: its `asyncWrites` preferred. */
  readonly writer: Driver;
  readonly name: string;
  /** Segments in `base`: how much deeper a key is from the root than from the driver. */
  readonly depth: number;
  /** The driver has no watch of its own, so the core reports the writes made through it. */
  readonly coreEvents: boolean;
  /** The driver's key limits (or the defaults), checked on every key routed to it. */
  readonly keyLimits: KeyLimits;
}

/** A key resolved to its mount: `key` is the full normalized key, `rel` the driver's key. */
export interface Located {
  mount: Mount;
  key: string;
  rel: string;
  /** `mount.store` for the sync API, `mount.writer` for the async one. */
  writer: Driver;
}

/** A mount together with the part of a base that lies inside it. */
export interface MountSlice {
  mount: Mount;
  /** Base relative to the mount (`""` when the mount lies wholly inside the base). */
  relativeBase: string;
}

/**
 * Puts the core's layers in front of a mounted driver (see {@link Mount.store}).
 * It gets the mount being built, to report on later (its `store` and
 * `writer` are not set yet).
 */
export type FrontOf = (driver: Driver, mount: Mount) => Driver;

/** No layers: the driver as it is. */
const AS_IS: FrontOf = (driver) => driver;

export function describeMount(base: string, driver: Driver, front: FrontOf = AS_IS): Mount {
  if (!driver || typeof driver.getItem !== "function" || typeof driver.hasItem !== "function" || typeof driver.getKeys !== "function") {
    throw new StorageError("E_INVALID_OPTION", "A driver needs at least hasItem, getItem and getKeys");
  }
  const name = driver.name ?? "custom";
  const mount = {
    base,
    driver,
    name,
    depth: base ? keyDepth(base) : 0,
    coreEvents: typeof driver.watch !== "function",
    keyLimits: resolveKeyLimits(driver.keyLimits, name),
  } as { -readonly [K in keyof Mount]: Mount[K] };
  const store = front(driver, mount);
  mount.store = store;
  mount.writer = store.asyncWrites ? { ...store, ...store.asyncWrites } : store;
  return mount;
}

/**
 * The mount points of a storage, longest base first, so the most specific
 * mount wins (unstorage's precedence).
 */
export class MountTable {
  root: Mount;
  private mounts: Mount[] = [];

  /** `front`: the core's layers for each mounted driver ({@link Mount.store}). */
  constructor(
    rootDriver: Driver,
    private readonly front: FrontOf = AS_IS,
  ) {
    this.root = describeMount("", rootDriver, front);
  }

  /** All mounts, longest base first, the root last. */
  list(): Mount[] {
    return [...this.mounts, this.root];
  }

  get(base: string): Mount | undefined {
    return base === "" ? this.root : this.mounts.find((mount) => mount.base === base);
  }

  add(base: string, driver: Driver): Mount {
    base = normalizeBaseKey(base);
    const mount = describeMount(base, driver, this.front);
    if (!base) {
      this.root = mount;
      return mount;
    }
    if (this.get(base)) throw new StorageError("E_INVALID_OPTION", `Already mounted at ${base}`);
    this.mounts.push(mount);
    this.mounts.sort((a, b) => b.base.length - a.base.length);
    return mount;
  }

  remove(base: string): Mount | undefined {
    const mount = this.get(base);
    if (!mount || mount === this.root) return undefined;
    this.mounts = this.mounts.filter((other) => other !== mount);
    return mount;
  }

  /** The mount that holds a normalized key. */
  resolve(key: string): Mount {
    for (const mount of this.mounts) {
      if (key.startsWith(mount.base)) return mount;
    }
    return this.root;
  }

  /**
   * Mounts below `base` and, with `parents`, the mounts that contain it,
   * longest base first: unstorage's getMounts.
   */
  within(base: string, parents: boolean): MountSlice[] {
    const slices: MountSlice[] = [];
    for (const mount of this.list()) {
      if (mount.base.startsWith(base)) slices.push({ mount, relativeBase: "" });
      else if (parents && base.startsWith(mount.base)) slices.push({ mount, relativeBase: base.slice(mount.base.length) });
    }
    return slices;
  }
}
