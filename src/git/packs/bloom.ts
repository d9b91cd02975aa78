/**
 * Git's changed-path Bloom filters (the BIDX/BDAT chunks of a commit-graph,
 * Documentation/gitformat-commit-graph.txt): one filter per commit holding
 * every path that differs from its first parent, with each leading
 * directory. Keys are hashed with Git's seeded murmur3: version 1 reads
 * path bytes as C's signed `char` (what Git wrote until 2.46, and still
 * reads), version 2 as unsigned.
 */

/** The settings of a graph's filters, as its BDAT header records them. */
export interface BloomSettings {
  /** 1 or 2: how path bytes enter the hash. */
  version: number;
  /** Bits set per path (Git: 7). */
  hashes: number;
  /** Filter bits per path (Git: 10). */
  bitsPerEntry: number;
}

/** What Git writes by default (`git commit-graph write --changed-paths`). */
export const DEFAULT_BLOOM: BloomSettings = { version: 1, hashes: 7, bitsPerEntry: 10 };

/** More changed paths than this and Git writes the one-byte "everything" filter instead. */
export const MAX_CHANGED_PATHS = 512;

const SEED0 = 0x293ae76f;
const SEED1 = 0x7e646e2c;

/** Git's murmur3_seeded; `signedBytes` reproduces version 1's sign extension of bytes >= 0x80. */
function murmur3(seed: number, data: Uint8Array, signedBytes: boolean): number {
  const byte = (i: number): number => (signedBytes && data[i]! >= 0x80 ? data[i]! | 0xffffff00 : data[i]!);
  let h = seed >>> 0;
  const blocks = data.length >>> 2;
  for (let i = 0; i < blocks; i++) {
    const at = i * 4;
    let k = (byte(at) | (byte(at + 1) << 8) | (byte(at + 2) << 16) | (byte(at + 3) << 24)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks * 4;
  let k1 = 0;
  switch (data.length & 3) {
    case 3:
      k1 ^= byte(tail + 2) << 16;
    // falls through
    case 2:
      k1 ^= byte(tail + 1) << 8;
    // falls through
    case 1:
      k1 ^= byte(tail);
      k1 = Math.imul(k1, 0xcc9e2d51);
      k1 = (k1 << 15) | (k1 >>> 17);
      k1 = Math.imul(k1, 0x1b873593);
      h ^= k1;
  }
  h ^= data.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A path hashed once, to be tested against many filters. */
export type BloomKey = Uint32Array;

/** The bit positions' seeds of `path` (no leading or trailing `/`). */
export function bloomKey(path: string, settings: BloomSettings): BloomKey {
  const data = Buffer.from(path, "utf8");
  const signed = settings.version === 1;
  const hash0 = murmur3(SEED0, data, signed);
  const hash1 = murmur3(SEED1, data, signed);
  const key = new Uint32Array(settings.hashes);
  for (let i = 0; i < settings.hashes; i++) key[i] = (hash0 + Math.imul(i, hash1)) >>> 0;
  return key;
}

/**
 * False when the filter — `length` bytes of `data` from `start` (the whole
 * array by default) — proves the key's path unchanged; true for "maybe"
 * (an empty filter proves nothing).
 */
export function bloomMaybe(data: Uint8Array, key: BloomKey, start = 0, length = data.length - start): boolean {
  if (length === 0) return true;
  const bits = length * 8;
  for (let i = 0; i < key.length; i++) {
    const bit = key[i]! % bits;
    if ((data[start + (bit >>> 3)]! & (1 << (bit & 7))) === 0) return false;
  }
  return true;
}

/**
 * The filter of a commit whose changed paths are `paths` (leading
 * directories included, as {@link withLeadingDirs} gives them), or
 * `undefined` for more than {@link MAX_CHANGED_PATHS}: Git's one-byte
 * filter with every bit set.
 */
export function bloomFilter(paths: ReadonlySet<string> | undefined, settings: BloomSettings): Uint8Array {
  if (paths === undefined) return Uint8Array.of(0xff);
  // Git's length: ceil(paths * bitsPerEntry / 8) bytes, at least one.
  const filter = new Uint8Array(Math.max(1, Math.ceil((paths.size * settings.bitsPerEntry) / 8)));
  const bits = filter.length * 8;
  for (const path of paths) {
    for (const hash of bloomKey(path, settings)) {
      const bit = hash % bits;
      filter[bit >>> 3]! |= 1 << (bit & 7);
    }
  }
  return filter;
}

/** Adds `path` and each of its leading directories (`a/b/c`, `a/b`, `a`) to `out`. */
export function withLeadingDirs(path: string, out: Set<string>): void {
  for (let end = path.length; end > 0; end = path.lastIndexOf("/", end - 1)) {
    const prefix = path.slice(0, end);
    if (out.has(prefix)) return;
    out.add(prefix);
  }
}
