import { isStorageError } from "../core/errors.js";
import { Repository, type RepositoryOptions } from "./repository.js";

/**
 * The repository a git driver's `dir` names: an existing repository or
 * worktree is opened; where there is none, a bare repository is created.
 */
export function openOrInit(dir: string, options: RepositoryOptions = {}): Repository {
  try {
    return Repository.open(dir, options);
  } catch (error) {
    if (!isStorageError(error, "E_NOT_FOUND")) throw error;
    return Repository.init(dir, options);
  }
}
