import { StorageError, type StorageErrorCode } from "../../core/errors.js";

export const DRIVER_NAME = "redis";

// Server replies that mean "try again later" rather than a broken request.
const TRANSIENT_REPLY = /^(LOADING|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|BUSY|NOREPLICAS)\b/;

/** Maps what ioredis threw to a StorageError: connection trouble is E_UNAVAILABLE. */
export function toStorageError(error: unknown, key?: string): StorageError {
  if (error instanceof StorageError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const isReply = error instanceof Error && error.name === "ReplyError";
  let code: StorageErrorCode = "E_UNAVAILABLE";
  if (isReply && message.startsWith("CROSSSLOT")) code = "E_UNSUPPORTED";
  else if (isReply && message.startsWith("READONLY")) code = "E_READONLY";
  else if (isReply && !TRANSIENT_REPLY.test(message)) code = "E_DRIVER";
  const hint = code === "E_UNSUPPORTED" ? " (in a cluster, keys of one atomic operation must share a hash slot: use a {hash tag})" : "";
  return new StorageError(code, `[redis] ${message}${hint}`, { driver: DRIVER_NAME, key, cause: error });
}

export function invalidOption(message: string): StorageError {
  return new StorageError("E_INVALID_OPTION", message, { driver: DRIVER_NAME });
}
