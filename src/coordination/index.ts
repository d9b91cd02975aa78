/** stowage/coordination: locks (leases with fencing tokens) and the GitVan lock storage adapter. */
export { createLocks, type AcquireOptions, type Lock, type LockInfo, type Locks, type LocksOptions } from "./locks.js";
export { lockStorage, type GitVanLockInfo, type GitVanLockStorage, type LockStorageOptions } from "./lockStorage.js";
