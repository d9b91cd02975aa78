import type { BigIntStats } from "node:fs";

/** How long after a change a file counts as racy, in ns: well past a tick of the kernel's coarse file clock (1-10 ms). */
const RACY_NS = 100_000_000n;

/**
 * A file's identity for caches that re-read a file only when it changed:
 * inode, size, mtime and ctime (Git replaces the files it rewrites by
 * rename). `undefined` while the file is racy, as Git says of its index:
 * changed so recently that a replacement within the same tick of the
 * kernel's file clock, on a reused inode and with the same size, would
 * carry the very same stamp. A racy file is read every time until it ages.
 */
export function stableStamp(stat: BigIntStats): string | undefined {
  if (BigInt(Date.now()) * 1_000_000n - stat.ctimeNs < RACY_NS) return undefined;
  return statStamp(stat);
}

/** A file's identity as of a stat: inode, size, mtime and ctime (racy or not; see {@link stableStamp}). */
export function statStamp(stat: BigIntStats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
}
