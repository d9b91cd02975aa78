import { StorageError } from "../core/errors.js";
import type { CommitOperation, RemoveOptions, SetOptions } from "../core/types.js";
import type { NameChange } from "./treeRef.js";

/** The old value a write's guards ask for: `undefined` (none), `null` (absent) or an etag. */
export function expectation(opts: SetOptions | RemoveOptions | undefined): string | null | undefined {
  if (opts?.ifMatch !== undefined) return opts.ifMatch;
  return (opts as SetOptions | undefined)?.ifNoneMatch === "*" ? null : undefined;
}

/**
 * Folds a transaction's operations into one change per name: the last write
 * wins, conditions (`check`, `ifMatch`, `ifNoneMatch`) add up, and two
 * different conditions on one key are `E_CONFLICT` at once (both can never
 * hold). A check alone writes back the value it requires: a no-op once it holds.
 */
export function foldOperations(
  operations: readonly CommitOperation[],
  nameOf: (key: string) => string,
  build: (op: Exclude<CommitOperation, { type: "check" }>) => NameChange,
  driver: string,
): NameChange[] {
  const changes = new Map<string, NameChange>();
  for (const op of operations) {
    const next = op.type === "check" ? undefined : build(op);
    const name = nameOf(op.key);
    const previous = changes.get(name);
    const wanted = op.type === "check" ? op.etag : next?.expected;
    if (previous?.expected !== undefined && wanted !== undefined && previous.expected !== wanted) {
      throw new StorageError("E_CONFLICT", `Conflicting conditions on one key: ${op.key}`, { driver, key: op.key });
    }
    const expected = previous?.expected ?? wanted;
    const merged: NameChange = next ?? previous ?? { name, id: op.type === "check" ? op.etag : null };
    const entry: NameChange = { name, id: merged.id };
    if (merged.also !== undefined) entry.also = merged.also;
    if (expected !== undefined) entry.expected = expected;
    changes.set(name, entry);
  }
  return [...changes.values()];
}
