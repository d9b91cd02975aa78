import { isObjectId, type ObjectId } from "../objects/objectId.js";
import type { TreeLayout } from "./treeRef.js";

/**
 * Git's notes tree layout: a note is a blob at the hex id of the object it
 * annotates, split into `xx/` directories by fan-out (`ab/cdef…`,
 * `ab/cd/ef…`). Reading accepts any fan-out (as `git notes` does); writing
 * fans out with git's own rule (notes.c, `determine_fanout`): in the 16-ary
 * trie of the ids, at each even nibble depth `n <= 2 * fanout`, when all 16
 * children hold two notes or more, the notes below get one more level.
 * Entries that are not notes (any path that is not hex) are kept as they are.
 */
export const NOTES_LAYOUT: TreeLayout = {
  nameOf(path) {
    const flat = path.replaceAll("/", "");
    // A note path is 2-hex directories then the rest of the id; anything else is kept verbatim.
    return isObjectId(flat) && /^([0-9a-f]{2}\/)*[0-9a-f]+$/.test(path) ? flat : path;
  },
  pathsOf(names) {
    const paths = new Map<string, ObjectId>();
    const notes: string[] = [];
    for (const [name, id] of names) {
      if (isObjectId(name)) notes.push(name);
      else paths.set(name, id);
    }
    const fanouts = new Map<string, number>();
    assignFanout(notes, 0, 0, fanouts);
    for (const note of notes) paths.set(fanoutPath(note, fanouts.get(note) ?? 0), names.get(note) as ObjectId);
    return paths;
  },
};

/** `abcdef…` with fan-out 2 → `ab/cd/ef…`. */
export function fanoutPath(id: string, fanout: number): string {
  let path = "";
  for (let level = 0; level < fanout; level++) path += `${id.slice(level * 2, level * 2 + 2)}/`;
  return path + id.slice(fanout * 2);
}

/** Walks the 16-ary trie of `ids` (sharing their first `depth` nibbles) and records each id's fan-out as git would write it. */
function assignFanout(ids: string[], depth: number, fanout: number, into: Map<string, number>): void {
  if (ids.length === 1) {
    into.set(ids[0] as string, fanout);
    return;
  }
  if (ids.length === 0 || depth >= 40) return;
  const groups = new Map<string, string[]>();
  for (const id of ids) {
    const nibble = id[depth] as string;
    const group = groups.get(nibble);
    if (group === undefined) groups.set(nibble, [id]);
    else group.push(id);
  }
  let next = fanout;
  if (depth % 2 === 0 && depth <= 2 * fanout && groups.size === 16 && [...groups.values()].every((group) => group.length >= 2)) next++;
  for (const group of groups.values()) assignFanout(group, depth + 1, next, into);
}
