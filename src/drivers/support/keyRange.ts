/**
 * The exclusive end of a prefix's key range, for drivers that list and clear
 * a prefix as one range read of an ordered store.
 */

/**
 * The smallest string above every string that starts with `prefix`, in code
 * point order, which is UTF-8 byte order: how SQLite (BINARY), PostgreSQL
 * (`COLLATE "C"`), LevelDB and LMDB order keys. "" when there is none (a
 * prefix of U+10FFFF only).
 */
export function prefixEnd(prefix: string): string {
  const points = [...prefix];
  while (points.length > 0) {
    let next = points.pop()!.codePointAt(0)! + 1;
    // Surrogate code points are not characters: the next one is U+E000.
    if (next >= 0xd800 && next <= 0xdfff) next = 0xe000;
    if (next <= 0x10ffff) return points.join("") + String.fromCodePoint(next);
  }
  return "";
}

/**
 * The shortest byte string above every byte string that starts with
 * `prefix`, for stores that compare keys as bytes (mysql's VARBINARY, etcd);
 * undefined when there is none (an empty prefix, or 0xff bytes only, which
 * UTF-8 never holds).
 */
export function prefixEndBytes(prefix: Uint8Array): Buffer | undefined {
  for (let end = prefix.length; end > 0; end--) {
    if (prefix[end - 1]! < 0xff) {
      const next = Buffer.from(prefix.subarray(0, end));
      next[end - 1]!++;
      return next;
    }
  }
  return undefined;
}
