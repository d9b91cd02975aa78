/**
 * The Git engine: objects, trees, commits, tags, loose objects, packs, refs
 * and repositories, in-process (zlib and SHA-1 from Node), for the git drivers.
 */
export { decodeCommit, encodeCommit, type Commit } from "./objects/commit.js";
export { parseConfig } from "./config.js";
export { applyDelta } from "./objects/delta.js";
export { corrupt, isErrno } from "./errors.js";
export { decodeHeaders, encodeHeaders, type HeaderBlock } from "./objects/headers.js";
export { commitLock, rollbackLock, tryLock, writeLock, type LockFile } from "./lockFile.js";
export { freshenFile, freshenLooseObject, loosePath, parseLooseObject, readLooseObject, writeLooseObject, type LooseWriteOptions } from "./objects/looseObjects.js";
export { LruCache, type LruCacheOptions } from "./lruCache.js";
export {
  frameObject,
  hashObject,
  isObjectId,
  isObjectType,
  objectHeader,
  unframeObject,
  ZERO_ID,
  type GitObject,
  type ObjectId,
  type ObjectType,
} from "./objects/objectId.js";
export { ObjectStore, readAlternates, type ObjectStoreOptions } from "./packs/objectStore.js";
export { parsePackedRefs, PackedRefsCache, removeFromPackedRefs, type PackedRef } from "./refs/packedRefs.js";
export { encodePackIndex, PackIndex, type PackIndexEntry } from "./packs/packIndex.js";
export { PackReader, PackType, type ObjectResolver } from "./packs/packReader.js";
export { PackWriter, type PackMode, type PackWriterOptions, type WrittenPack } from "./packs/packWriter.js";
export { isValidRefName, refNameProblem, type RefNameOptions } from "./refs/refName.js";
export { appendReflog, formatReflogLine, readReflog, type ReflogEntry } from "./refs/reflog.js";
export { RefStore, type RefEntry, type RefStoreOptions, type RefUpdateOptions, type RefValue } from "./refs/refs.js";
export { Repository, type InitOptions, type RepositoryOptions } from "./repo/repository.js";
export { formatSignature, formatTimezone, parseSignature, signatureNow, type Identity, type Signature } from "./objects/signature.js";
export { decodeTag, encodeTag, type Tag } from "./objects/tag.js";
export { decodeTree, encodeTree, isTreeMode, TreeMode, type TreeEntry } from "./objects/tree.js";
export { adler32, deflateObject, inflateObject, STORED_MAX } from "./objects/zlib.js";
export { decodeKeyName, encodeKeyName, isBucketName, keyToNames, VALUE_ENTRY } from "./store/keyPath.js";
export { EMPTY_TREE, KeyTree, treeObjects, type KeyEdit, type NewTree } from "./store/keyTree.js";
export { KeyValueRepo, namesOf, type KeyValueRepoOptions, type WriteUnit } from "./store/kvStore.js";
export { maintain, reachableObjects, type MaintenanceOptions, type MaintenanceResult } from "./repo/maintenance.js";
export { AutoMaintenance, DEFAULT_LOOSE_LIMIT, estimateLoose, type Maintainable } from "./repo/autoMaintenance.js";
export { CommitGraph, commitGraphPath, writeCommitGraph, type CommitGraphOptions, type CommitGraphWritten, type GraphCommit } from "./packs/commitGraph.js";
export { indexObjectIds } from "./repo/indexFile.js";
export { mergeBase, mergeCommits, threeWay, type Conflict, type MergeContext, type MergeOutcome, type MergePolicy, type MergeResolver } from "./remote/merge.js";
export { fetchRef, fetchRefspecs, pushRef, pushRefspecs, redactRemote, trackingRef, type PushedRef, type PushOptions, type RemoteOptions } from "./remote/remote.js";
export { syncRef, type SyncOptions, type SyncResult, type SyncTarget } from "./remote/sync.js";
