/** Limits of an {@link LruCache}. */
export interface LruCacheOptions {
  /** Most entries kept. */
  maxEntries: number;
  /** Most total weight kept (e.g. bytes); unbounded when absent. */
  maxWeight?: number;
}

/**
 * A bounded least-recently-used cache on a Map (whose insertion order is the
 * recency order): a hit moves the entry to the end, eviction takes the front.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, { value: V; weight: number }>();
  private weight = 0;
  private readonly maxEntries: number;
  private readonly maxWeight: number;

  constructor(options: LruCacheOptions) {
    this.maxEntries = Math.max(0, options.maxEntries);
    this.maxWeight = options.maxWeight ?? Number.POSITIVE_INFINITY;
  }

  /** Entries held now. */
  get size(): number {
    return this.map.size;
  }

  /** Total weight held now. */
  get totalWeight(): number {
    return this.weight;
  }

  /** The value for `key`, marking it most recently used. */
  get(key: K): V | undefined {
    const slot = this.map.get(key);
    if (slot === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, slot);
    return slot.value;
  }

  /** True when `key` is held (without touching its recency). */
  has(key: K): boolean {
    return this.map.has(key);
  }

  /** Stores `value`; an entry heavier than the whole budget is not kept. */
  set(key: K, value: V, weight = 1): void {
    this.delete(key);
    if (weight > this.maxWeight || this.maxEntries === 0) return;
    this.map.set(key, { value, weight });
    this.weight += weight;
    this.evict();
  }

  /** Drops `key`; false when it was not held. */
  delete(key: K): boolean {
    const slot = this.map.get(key);
    if (slot === undefined) return false;
    this.map.delete(key);
    this.weight -= slot.weight;
    return true;
  }

  /** Drops everything. */
  clear(): void {
    this.map.clear();
    this.weight = 0;
  }

  private evict(): void {
    while (this.map.size > this.maxEntries || this.weight > this.maxWeight) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) return;
      this.delete(oldest.value);
    }
  }
}
