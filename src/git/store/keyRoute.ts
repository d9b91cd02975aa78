import { bucketName, MAX_BUCKET_LEVEL, nameHash, VALUE_ENTRY } from "./keyNames.js";
import type { KeyTree } from "./keyTree.js";
import type { ObjectId } from "../objects/objectId.js";
import { isTreeMode } from "../objects/tree.js";

/**
 * The path, in one root tree, of the deepest entry a key's lookup reaches
 * (fan-out buckets included): the key's own entry when it exists, else the
 * last directory or bucket on its way; undefined when the lookup stops at
 * the root. While a commit leaves this path unchanged, the key's value is
 * unchanged too — the layout moves every entry of a directory when it fans
 * out or folds back, so a key's route cannot change without this path
 * changing — which lets a history walk test a commit's changed-path filter
 * instead of reading its trees.
 */
export function keyRoute(keys: KeyTree, root: ObjectId, names: readonly string[]): string | undefined {
  let dir = root;
  let path = "";
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    let node = keys.tree(dir);
    if (node.fanned && name !== VALUE_ENTRY) {
      const hash = nameHash(name);
      for (let level = 0; node.fanned && level < MAX_BUCKET_LEVEL; level++) {
        const bucket = node.map.get(bucketName(hash, level));
        if (bucket === undefined || !isTreeMode(bucket.mode)) return path || undefined;
        path = path === "" ? bucket.name : `${path}/${bucket.name}`;
        node = keys.tree(bucket.id);
      }
    }
    const entry = node.map.get(name);
    if (entry === undefined) return path || undefined;
    path = path === "" ? name : `${path}/${name}`;
    if (!isTreeMode(entry.mode)) return path;
    dir = entry.id;
  }
  return path;
}
