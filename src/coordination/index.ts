/** stowage/coordination: locks (leases with fencing tokens), the GitVan lock storage adapter, and execution receipts. */
export { createLocks, type AcquireOptions, type Lock, type LockInfo, type Locks, type LocksOptions } from "./locks.js";
export { lockStorage, type GitVanLockInfo, type GitVanLockStorage, type LockStorageOptions } from "./lockStorage.js";
export { createReceipts, MAX_RECEIPT_BYTES, type FindOptions, type Receipt, type ReceiptFilter, type Receipts, type ReceiptsCheck, type ReceiptsOptions, type StoreReceiptOptions } from "./receipts.js";
