/**
 * `stowage/git`: the in-process Git engine under the git drivers — open or
 * create a repository, hash, read and write objects, move refs by
 * compare-and-swap with Git's lock protocol, push/fetch/sync through the
 * stock `git` CLI, repack and prune. docs/git-engine.md lists this API; the
 * engine's other modules (pack readers, lock files, caches, the drivers'
 * key layouts) are internal and may change without notice.
 */
export { Repository, type InitOptions, type RepositoryOptions } from "./repo/repository.js";
export { hashObject, isObjectId, ZERO_ID, type GitObject, type ObjectId, type ObjectType } from "./objects/objectId.js";
export { decodeCommit, encodeCommit, type Commit } from "./objects/commit.js";
export { decodeTree, encodeTree, isTreeMode, TreeMode, type TreeEntry } from "./objects/tree.js";
export { decodeTag, encodeTag, type Tag } from "./objects/tag.js";
export { signatureNow, type Identity, type Signature } from "./objects/signature.js";
export { isValidRefName } from "./refs/refName.js";
export type { RefEntry, RefStore, RefStoreOptions, RefUpdateOptions, RefValue } from "./refs/refs.js";
export type { PackMode, PackWriter, PackWriterOptions, WrittenPack } from "./packs/packWriter.js";
export { writeCommitGraph, type CommitGraph, type CommitGraphOptions, type CommitGraphWritten, type GraphCommit } from "./packs/commitGraph.js";
export { maintain, type MaintenanceOptions, type MaintenanceResult } from "./repo/maintenance.js";
export { fetchRef, fetchRefspecs, pushRef, pushRefspecs, trackingRef, type PushedRef, type PushOptions, type RemoteOptions } from "./remote/remote.js";
export { mergeBase, mergeCommits, threeWay, type Conflict, type MergeContext, type MergeOutcome, type MergePolicy, type MergeResolver } from "./remote/merge.js";
export { syncRef, type SyncOptions, type SyncResult, type SyncTarget } from "./remote/sync.js";
