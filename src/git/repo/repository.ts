import { closeSync, openSync, readFileSync, realpathSync, statSync, writeSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { makeDirectories } from "../fileUtil.js";
import { decodeCommit, encodeCommit, type Commit } from "../objects/commit.js";
import { CommitGraph, commitGraphPath } from "../packs/commitGraph.js";
import { statStamp } from "../fileStamp.js";
import { parseConfig } from "../config.js";
import { corrupt, gitError, ioError, isErrno, isStorageError } from "../errors.js";
import { LRUCache } from "lru-cache";
import { hashObject, isObjectId, type GitObject, type ObjectId, type ObjectType } from "../objects/objectId.js";
import { ObjectStore, readAlternates } from "../packs/objectStore.js";
import { PackWriter, type PackMode, type PackWriterOptions, type WrittenPack } from "../packs/packWriter.js";
import { RefStore, type RefStoreOptions } from "../refs/refs.js";
import { checkIdentity } from "../objects/signature.js";
import { decodeTag, encodeTag, type Tag } from "../objects/tag.js";
import { decodeTree, encodeTree, type TreeEntry } from "../objects/tree.js";

/** Options of an opened or created {@link Repository}. */
export interface RepositoryOptions extends RefStoreOptions {
  /**
   * fsync new objects, packs and refs before they are renamed into place (as Git).
   * @default false
   */
  fsync?: boolean;
  /**
   * Check every object read against its id: `E_CORRUPT` on mismatch.
   * @default true
   */
  verify?: boolean;
  /**
   * Byte budget of the cache of recently read objects.
   * @default 32 MiB
   */
  cacheBytes?: number;
  /**
   * How many parsed trees are cached (also bounded at 1,000,000 entries in all).
   * @default 2000
   */
  treeCacheSize?: number;
  /**
   * `writeObjects` writes a pack from this many objects on, loose objects below it.
   * @default 50
   */
  packThreshold?: number;
  /**
   * Staging mode of packs written by `writeObjects`.
   * @default "auto"
   */
  packMode?: PackMode;
  /**
   * In `auto` mode, objects staged in memory before a temporary file is used.
   * @default 10
   */
  packMemoryLimit?: number;
}

/** Options of {@link Repository.init}. */
export interface InitOptions extends RepositoryOptions {
  /**
   * The branch HEAD names.
   * @default "main"
   */
  initialBranch?: string;
}

/** Where a repository's files are. */
interface Layout {
  gitDir: string;
  commonDir: string;
}

/**
 * A Git repository read and written in-process: objects from a bounded LRU
 * cache, then packs, then loose files — the repository's own, then those of
 * its alternates — re-scanning `objects/pack` on a miss, since `git gc` may
 * have repacked; refs through {@link RefStore}.
 *
 * Objects returned may come from the cache: treat their buffers as read-only.
 * Reads fail with `E_NOT_FOUND` for a missing object, `E_CORRUPT` for a
 * damaged one, `E_INVALID_KEY` for a malformed id; file-system failures are `E_IO`.
 */
export class Repository {
  /** The repository's refs. */
  readonly refs: RefStore;
  /** `objects/` */
  readonly objectsDir: string;
  /** The repository's object store, then those its alternates name (read only). */
  private readonly stores: ObjectStore[];
  private readonly primary: ObjectStore;
  /** Absent when the budget is zero: lru-cache reads 0 as unbounded. */
  private readonly cache: LRUCache<ObjectId, GitObject> | undefined;
  private readonly trees: LRUCache<ObjectId, readonly TreeEntry[]> | undefined;
  private readonly resolveBase = (id: ObjectId): GitObject | undefined => this.tryReadObject(id);
  private graph: { stamp: string; graph: CommitGraph | undefined } = { stamp: "", graph: undefined };

  private constructor(
    /** The git dir (a bare repository's directory, or a worktree's `.git`). */
    readonly gitDir: string,
    /** The directory holding objects and shared refs (differs from gitDir in linked worktrees). */
    readonly commonDir: string,
    private readonly options: RepositoryOptions,
  ) {
    this.objectsDir = join(commonDir, "objects");
    const storeOptions = { verify: options.verify ?? true, fsync: options.fsync === true };
    this.primary = new ObjectStore(this.objectsDir, storeOptions);
    this.stores = [this.primary, ...readAlternates(this.objectsDir).map((dir) => new ObjectStore(dir, storeOptions))];
    this.refs = new RefStore(gitDir, commonDir, options);
    const cacheBytes = budget(options.cacheBytes ?? 32 * 1024 * 1024);
    const treeCacheSize = budget(options.treeCacheSize ?? 2000);
    this.cache = cacheBytes > 0 ? new LRUCache({ max: 100_000, maxSize: cacheBytes }) : undefined;
    this.trees = treeCacheSize > 0 ? new LRUCache({ max: treeCacheSize, maxSize: 1_000_000 }) : undefined;
  }

  /**
   * Opens an existing repository: a bare repository, a `.git` directory, a
   * worktree (its `.git` directory or `.git` file with `gitdir:`). SHA-256
   * repositories and unknown formats are `E_UNSUPPORTED`; no repository is `E_NOT_FOUND`.
   * @throws StorageError `E_NOT_FOUND`, `E_UNSUPPORTED` as above; `E_CORRUPT` for a `.git` file that is not a `gitdir:` pointer; `E_INVALID_OPTION` for an `identity` Git cannot read back; `E_IO`
   */
  static open(path: string, options: RepositoryOptions = {}): Repository {
    checkOptions(options);
    const layout = findLayout(resolve(path));
    checkFormat(layout.commonDir);
    return new Repository(layout.gitDir, layout.commonDir, options);
  }

  /**
   * Creates a bare repository at `path` with the files `git init --bare`
   * makes that Git needs (HEAD, config, objects/, refs/heads, refs/tags), or
   * opens the repository already there.
   * @throws StorageError as {@link Repository.open}; `E_IO` when the files cannot be created
   */
  static init(path: string, options: InitOptions = {}): Repository {
    checkOptions(options);
    const dir = resolve(path);
    if (isGitDir(dir)) return Repository.open(dir, options);
    try {
      for (const sub of ["objects/info", "objects/pack", "refs/heads", "refs/tags"]) makeDirectories(join(dir, sub));
      createOnce(join(dir, "config"), "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n");
      // HEAD last: Git takes a directory for a repository once HEAD is there.
      createOnce(join(dir, "HEAD"), `ref: refs/heads/${options.initialBranch ?? "main"}\n`);
    } catch (error) {
      throw ioError(`Cannot create a repository at ${dir}`, error);
    }
    return Repository.open(dir, options);
  }

  /** The object, or `undefined` when the repository does not have it. `E_INVALID_KEY` for a malformed id. */
  tryReadObject(id: ObjectId): GitObject | undefined {
    const cached = this.cache?.get(id);
    if (cached !== undefined) return cached;
    if (!isObjectId(id)) throw gitError("E_INVALID_KEY", `Not a SHA-1 object id: ${JSON.stringify(id)}`);
    const object = this.readKnown(id) ?? this.readAfterRescan(id);
    if (object !== undefined) this.cache?.set(id, object, { size: object.body.length + 64 });
    return object;
  }

  /**
   * The object; `E_NOT_FOUND` when it is missing, `E_CORRUPT` when it is
   * damaged. An object expected to exist (a ref names it) that no known
   * pack holds gets one full rescan of `objects/pack` even when the
   * directory looks unchanged (see {@link ObjectStore.rescan}).
   */
  readObject(id: ObjectId): GitObject {
    return this.tryReadObject(id) ?? this.readAfterRescan(id, true) ?? notFound(id);
  }

  /** True when the object exists (loose or packed). */
  hasObject(id: ObjectId): boolean {
    if (!isObjectId(id)) return false;
    if (this.cache?.has(id) || this.stores.some((store) => store.has(id))) return true;
    return this.stores.some((store) => store.rescan() && store.has(id));
  }

  /** The object, checked to be of `type` (`E_CORRUPT` otherwise). */
  readTyped(id: ObjectId, type: ObjectType): Buffer {
    const object = this.readObject(id);
    if (object.type !== type) throw corrupt(`Object ${id} is a ${object.type}, not a ${type}`);
    return object.body;
  }

  /** A blob's bytes (`E_NOT_FOUND`, or `E_CORRUPT` when `id` is not a blob). */
  readBlob(id: ObjectId): Buffer {
    return this.readTyped(id, "blob");
  }

  /** A tree's entries, parsed once and cached (do not modify the array). */
  readTree(id: ObjectId): readonly TreeEntry[] {
    const cached = this.trees?.get(id);
    if (cached !== undefined) return cached;
    const entries = decodeTree(this.readTyped(id, "tree"));
    this.trees?.set(id, entries, { size: entries.length + 1 });
    return entries;
  }

  /** A parsed commit. */
  readCommit(id: ObjectId): Commit {
    return decodeCommit(this.readTyped(id, "commit"));
  }

  /** A parsed annotated tag. */
  readTag(id: ObjectId): Tag {
    return decodeTag(this.readTyped(id, "tag"));
  }

  /**
   * Writes one object as a loose file; returns its id. An object already
   * packed has its pack's mtime refreshed instead, and a loose one its file's
   * (Git's protection against a concurrent prune).
   */
  writeObject(type: ObjectType, body: Uint8Array): ObjectId {
    const id = hashObject(type, body);
    // An object in an alternate is freshened there, as Git does; otherwise it is written here.
    if (this.stores.some((store) => store !== this.primary && store.freshen(id))) return id;
    return this.primary.writeLoose(type, body, id);
  }

  /** Writes a blob (loose); returns its id. */
  writeBlob(body: Uint8Array): ObjectId {
    return this.writeObject("blob", body);
  }

  /** Writes a tree (entries in any order; Git's order is applied). */
  writeTree(entries: readonly TreeEntry[]): ObjectId {
    return this.writeObject("tree", encodeTree(entries));
  }

  /** Writes a commit (loose); returns its id. */
  writeCommit(commit: Commit): ObjectId {
    return this.writeObject("commit", encodeCommit(commit));
  }

  /** Writes an annotated tag object (loose); returns its id. */
  writeTag(tag: Tag): ObjectId {
    return this.writeObject("tag", encodeTag(tag));
  }

  /**
   * Writes many objects at once: loose below `packThreshold` objects, else
   * one pack (staged per `packMode`). Returns the ids in input order.
   */
  writeObjects(objects: Iterable<GitObject>, options: PackWriterOptions = {}): ObjectId[] {
    const list = Array.isArray(objects) ? (objects as GitObject[]) : [...objects];
    if (list.length < (this.options.packThreshold ?? 50)) return list.map((object) => this.writeObject(object.type, object.body));
    const writer = this.packWriter(options);
    let ids: ObjectId[];
    try {
      ids = list.map((object) => writer.add(object.type, object.body));
    } catch (error) {
      writer.abort();
      throw error;
    }
    this.installPack(writer.finish());
    return ids;
  }

  /** A writer for one pack in this repository; call `installPack(writer.finish())` to make it readable at once. */
  packWriter(options: PackWriterOptions = {}): PackWriter {
    return new PackWriter(this.primary.packDir, {
      mode: this.options.packMode,
      memoryLimit: this.options.packMemoryLimit,
      fsync: this.options.fsync,
      ...options,
    });
  }

  /** Makes a just-written pack readable without waiting for a rescan. */
  installPack(pack: WrittenPack | undefined): void {
    this.primary.installPack(pack);
  }

  /** Re-reads `objects/pack` where it changed (packs added or removed by a merge here or by `git gc`). */
  rescanPacks(): void {
    for (const store of this.stores) store.rescan();
  }

  /** This repository's packs open now (after the last scan). */
  get packFiles(): readonly string[] {
    return this.primary.packFiles;
  }

  /**
   * The repository's commit-graph file (`objects/info/commit-graph`), re-read
   * when the file changed; undefined when there is none. A graph that does
   * not parse is set aside with a warning, as Git does: history then walks
   * the commits themselves.
   */
  commitGraph(): CommitGraph | undefined {
    const path = commitGraphPath(this.objectsDir);
    const stamp = fileStamp(path);
    if (stamp === this.graph.stamp) return this.graph.graph;
    this.graph = { stamp, graph: stamp === "" ? undefined : loadGraph(path) };
    return this.graph.graph;
  }

  /** Forgets cached objects and trees (e.g. after an external rewrite). */
  clearCache(): void {
    this.cache?.clear();
    this.trees?.clear();
  }

  /** Closes pack descriptors. The repository can still be used: packs reopen on the next miss. */
  close(): void {
    for (const store of this.stores) store.close();
  }

  // Packs first: a lookup in an index in memory costs less than a failed open of a loose file.
  private readKnown(id: ObjectId): GitObject | undefined {
    for (const store of this.stores) {
      const object = store.readPacked(id, this.resolveBase) ?? store.readLoose(id);
      if (object !== undefined) return object;
    }
    return undefined;
  }

  /** After a miss: `git gc` may have packed the object (and pruned its loose file) since our last scan. */
  private readAfterRescan(id: ObjectId, force = false): GitObject | undefined {
    for (const store of this.stores) {
      if (!store.rescan(force)) continue;
      const object = store.readPacked(id, this.resolveBase) ?? store.readLoose(id);
      if (object !== undefined) return object;
    }
    return undefined;
  }

}

/** Refuses, before any file is touched, an identity that would make reflog lines Git cannot read back. */
function checkOptions(options: RepositoryOptions): void {
  if (options.identity !== undefined) checkIdentity(options.identity, "identity");
}

/** A file's identity (inode, size, times); "" when there is no file. */
function fileStamp(path: string): string {
  try {
    const stat = statSync(path, { bigint: true, throwIfNoEntry: false });
    return stat === undefined ? "" : statStamp(stat);
  } catch (error) {
    throw ioError(`Cannot stat ${path}`, error);
  }
}

function loadGraph(path: string): CommitGraph | undefined {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (error) {
    // Replaced or removed by git between the stat and the read: the next call sees the new file.
    if (isErrno(error, "ENOENT")) return undefined;
    throw ioError(`Cannot read ${path}`, error);
  }
  try {
    return CommitGraph.parse(data);
  } catch (error) {
    if (!isStorageError(error, "E_CORRUPT")) throw error;
    process.emitWarning(`stowage git: ${path} is ignored: ${error.message}`);
    return undefined;
  }
}

function notFound(id: ObjectId): never {
  throw gitError("E_NOT_FOUND", `Object ${id} is not in the repository`);
}

/** Creates a file unless it exists (two processes may init the same directory at once). */
function createOnce(path: string, content: string): void {
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o666);
  } catch (error) {
    if (isErrno(error, "EEXIST")) return;
    throw error;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
}

/** "file", "dir", or undefined when nothing is there. */
function kindOf(path: string): "file" | "dir" | "other" | undefined {
  try {
    const stat = statSync(path);
    return stat.isFile() ? "file" : stat.isDirectory() ? "dir" : "other";
  } catch (error) {
    if (isErrno(error, "ENOENT", "ENOTDIR")) return undefined;
    throw ioError(`Cannot stat ${path}`, error);
  }
}

const isFile = (path: string): boolean => kindOf(path) === "file";
const isDir = (path: string): boolean => kindOf(path) === "dir";

/** A git dir has HEAD, and objects/ and refs/ (here or, in a linked worktree, through commondir). */
function isGitDir(dir: string): boolean {
  return isFile(join(dir, "HEAD")) && ((isDir(join(dir, "objects")) && isDir(join(dir, "refs"))) || isFile(join(dir, "commondir")));
}

/** A repository found around a path: a work tree's top directory, or a git dir (a bare repository, a `.git` directory). */
export interface EnclosingRepository {
  dir: string;
  workTree: boolean;
}

/**
 * The repository `path` lies inside, found as git's own discovery would (an
 * ancestor holding `.git`, or an ancestor that is itself a git dir, as a
 * bare repository is), in real paths (see {@link realPathOf}); undefined when
 * there is none. `path` itself counts. The walk is bounded by the path's depth.
 */
export function enclosingRepository(path: string): EnclosingRepository | undefined {
  for (let at = realPathOf(path); ; at = dirname(at)) {
    if (kindOf(join(at, ".git")) !== undefined) return { dir: at, workTree: true };
    if (isGitDir(at)) return { dir: at, workTree: false };
    if (dirname(at) === at) return undefined;
  }
}

/** `path` with symlinks resolved: the real path of its nearest existing ancestor, the parts not yet made appended. */
export function realPathOf(path: string): string {
  let at = resolve(path);
  const rest: string[] = [];
  while (kindOf(at) === undefined && dirname(at) !== at) {
    rest.unshift(basename(at));
    at = dirname(at);
  }
  return join(realPath(at), ...rest);
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch (error) {
    throw ioError(`Cannot resolve ${path}`, error);
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    throw ioError(`Cannot read ${path}`, error);
  }
}

function findLayout(path: string): Layout {
  const dotGit = join(path, ".git");
  let gitDir: string;
  if (isFile(dotGit)) {
    const pointer = /^gitdir: *(.+?)\s*$/m.exec(readText(dotGit));
    if (pointer === null) throw corrupt(`${dotGit} is not a "gitdir:" pointer`);
    gitDir = resolve(path, pointer[1] as string);
  } else if (isDir(dotGit) && isGitDir(dotGit)) {
    gitDir = dotGit;
  } else if (isGitDir(path)) {
    gitDir = path;
  } else {
    throw gitError("E_NOT_FOUND", `Not a git repository: ${path}`);
  }
  const commonFile = join(gitDir, "commondir");
  const common = isFile(commonFile) ? readText(commonFile).trim() : "";
  return { gitDir, commonDir: common === "" ? gitDir : isAbsolute(common) ? common : resolve(gitDir, common) };
}

/** Refuses what this engine cannot read: SHA-256 objects, other ref storage, unknown format versions. */
function checkFormat(commonDir: string): void {
  let text = "";
  try {
    text = readFileSync(join(commonDir, "config"), "utf8");
  } catch (error) {
    if (!isErrno(error, "ENOENT")) throw ioError("Cannot read the repository config", error);
  }
  const config = parseConfig(text);
  const version = Number(config.get("core.repositoryformatversion") ?? "0");
  if (version !== 0 && version !== 1) throw gitError("E_UNSUPPORTED", `Repository format version ${version} is not supported`);
  const format = (config.get("extensions.objectformat") ?? "sha1").toLowerCase();
  if (format !== "sha1") {
    throw gitError("E_UNSUPPORTED", `This repository uses ${format} object ids; stowage's Git engine reads SHA-1 repositories only`);
  }
  const refStorage = (config.get("extensions.refstorage") ?? "files").toLowerCase();
  if (refStorage !== "files") throw gitError("E_UNSUPPORTED", `Ref storage "${refStorage}" is not supported (only "files")`);
  // Git honours preciousObjects in format 0 too: objects must never be deleted, and stowage's maintenance prunes.
  if (isTrue(config.get("extensions.preciousobjects"))) throw gitError("E_UNSUPPORTED", "This repository sets extensions.preciousObjects, and stowage's maintenance deletes unreachable objects");
  // Format 1 promises that a reader refuses an extension it does not know, as git does.
  const unknown = version === 1 ? [...config.keys()].filter((key) => key.startsWith("extensions.") && !KNOWN_EXTENSIONS.has(key.slice(11))) : [];
  if (unknown.length > 0) throw gitError("E_UNSUPPORTED", `This repository uses ${unknown.join(", ")}, which stowage's Git engine does not know`);
}

/** Extensions of repository format 1 this engine reads correctly (lower-cased, as parseConfig gives them). */
const KNOWN_EXTENSIONS: ReadonlySet<string> = new Set(["noop", "noop-v1", "objectformat", "refstorage", "worktreeconfig", "partialclone", "preciousobjects"]);

/** A git boolean that is true (`true`, `yes`, `on`, a non-zero number; a bare key is true). */
function isTrue(value: string | undefined): boolean {
  if (value === undefined) return false;
  const text = value.trim().toLowerCase();
  return text === "true" || text === "yes" || text === "on" || (/^-?\d+$/.test(text) && Number(text) !== 0);
}

/** A cache budget as lru-cache takes it: a whole number, 0 (no cache) for none or less, capped where it stops meaning a limit. */
function budget(limit: number): number {
  return limit > 0 ? Math.floor(Math.min(limit, Number.MAX_SAFE_INTEGER)) : 0;
}
