/**
 * The Git engine: objects, trees, commits, tags, loose objects, packs, refs
 * and repositories, in-process (zlib and SHA-1 from Node), for the git drivers.
 */
export { decodeCommit, encodeCommit, type Commit } from "./commit.js";
export { parseConfig } from "./config.js";
export { applyDelta } from "./delta.js";
export { corrupt, isErrno } from "./errors.js";
export { decodeHeaders, encodeHeaders, type HeaderBlock } from "./headers.js";
export { commitLock, rollbackLock, tryLock, writeLock, type LockFile } from "./lockFile.js";
export { freshenFile, freshenLooseObject, loosePath, parseLooseObject, readLooseObject, writeLooseObject, type LooseWriteOptions } from "./looseObjects.js";
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
} from "./objectId.js";
export { ObjectStore, readAlternates, type ObjectStoreOptions } from "./objectStore.js";
export { parsePackedRefs, PackedRefsCache, removeFromPackedRefs, type PackedRef } from "./packedRefs.js";
export { encodePackIndex, PackIndex, type PackIndexEntry } from "./packIndex.js";
export { PackReader, PackType, type ObjectResolver } from "./packReader.js";
export { PackWriter, type PackMode, type PackWriterOptions, type WrittenPack } from "./packWriter.js";
export { isValidRefName, refNameProblem, type RefNameOptions } from "./refName.js";
export { appendReflog, formatReflogLine, readReflog, type ReflogEntry } from "./reflog.js";
export { RefStore, type Identity, type RefEntry, type RefStoreOptions, type RefUpdateOptions, type RefValue } from "./refs.js";
export { Repository, type InitOptions, type RepositoryOptions } from "./repository.js";
export { formatSignature, formatTimezone, parseSignature, signatureNow, type Signature } from "./signature.js";
export { decodeTag, encodeTag, type Tag } from "./tag.js";
export { decodeTree, encodeTree, isTreeMode, TreeMode, type TreeEntry } from "./tree.js";
export { adler32, deflateObject, inflateObject, STORED_MAX } from "./zlib.js";
export { decodeKeyName, encodeKeyName, isBucketName, keyToNames, VALUE_ENTRY } from "./keyPath.js";
export { EMPTY_TREE, KeyTree, treeObjects, type KeyEdit, type NewTree } from "./keyTree.js";
export { KeyValueRepo, namesOf, type KeyValueRepoOptions, type WriteUnit } from "./kvStore.js";
export { maintain, reachableObjects, type MaintenanceOptions, type MaintenanceResult } from "./maintenance.js";
export { AutoMaintenance, DEFAULT_LOOSE_LIMIT, estimateLoose, type Maintainable } from "./autoMaintenance.js";
export { CommitGraph, commitGraphPath, writeCommitGraph, type CommitGraphOptions, type CommitGraphWritten, type GraphCommit } from "./commitGraph.js";
export { indexObjectIds } from "./indexFile.js";
export { mergeBase, mergeCommits, threeWay, type Conflict, type MergeContext, type MergeOutcome, type MergePolicy, type MergeResolver } from "./merge.js";
export { fetchRef, fetchRefspecs, pushRef, pushRefspecs, redactRemote, trackingRef, type PushedRef, type PushOptions, type RemoteOptions } from "./remote.js";
export { syncRef, type SyncOptions, type SyncResult, type SyncTarget } from "./sync.js";
