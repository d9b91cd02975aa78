import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { bloomFilter, bloomMaybe, DEFAULT_BLOOM, MAX_CHANGED_PATHS, withLeadingDirs, type BloomKey, type BloomSettings } from "./bloom.js";
import type { Commit } from "../objects/commit.js";
import { corrupt } from "../errors.js";
import { commitLock, rollbackLock, tryLock, writeLock } from "../lockFile.js";
import type { GitObject, ObjectId } from "../objects/objectId.js";
import { findSortedId } from "./packIndex.js";
import { decodeTag } from "../objects/tag.js";
import { isTreeMode, type TreeEntry } from "../objects/tree.js";

/**
 * Git's commit-graph file (`objects/info/commit-graph`,
 * Documentation/gitformat-commit-graph.txt): every commit's tree, parents,
 * generation and date in fixed-size records, sorted by id, so a history walk
 * needs no commit object; with changed-path Bloom filters (BIDX/BDAT) it
 * can also skip the commits that did not touch a path without reading a
 * tree. Stock git reads and verifies (`git commit-graph verify`) what
 * {@link writeCommitGraph} writes.
 */

const SIGNATURE = "CGPH";
const HASH = 20;
const RECORD = HASH + 16;
const PARENT_NONE = 0x70000000;
const EXTRA_EDGES = 0x80000000;
const LAST_EDGE = 0x80000000;
const GENERATION_MAX = 0x3fffffff;
const BDAT_HEADER = 12;

/** Where a chunk's bytes are. */
interface Span {
  start: number;
  end: number;
}

/** One commit as a graph records it. */
export interface GraphCommit {
  tree: ObjectId;
  parents: ObjectId[];
  /** Committer time, seconds. */
  time: number;
}

/** A parsed `commit-graph` file (a single file, not a split chain). */
export class CommitGraph {
  /** Commits in the graph. */
  readonly count: number;
  /** The Bloom filters' settings, when the graph has filters. */
  readonly bloom: BloomSettings | undefined;
  private readonly fanout: Span;
  private readonly ids: Span;
  private readonly records: Span;
  private readonly edges: Span | undefined;
  private readonly bloomIndex: Span | undefined;
  private readonly bloomData: Span | undefined;

  private constructor(
    private readonly data: Buffer,
    chunks: Map<string, Span>,
  ) {
    const need = (id: string): Span => chunks.get(id) ?? notGraph(`it lacks the ${id} chunk`);
    this.fanout = need("OIDF");
    this.ids = need("OIDL");
    this.records = need("CDAT");
    this.edges = chunks.get("EDGE");
    if (this.fanout.end - this.fanout.start !== 256 * 4) notGraph("its fanout is not 256 entries");
    this.count = data.readUInt32BE(this.fanout.end - 4);
    if (this.ids.end - this.ids.start !== this.count * HASH || this.records.end - this.records.start !== this.count * RECORD) {
      notGraph(`its chunks do not hold ${this.count} commits`);
    }
    const index = chunks.get("BIDX");
    const filters = chunks.get("BDAT");
    if (index !== undefined && filters !== undefined && index.end - index.start === this.count * 4 && filters.end - filters.start >= BDAT_HEADER) {
      const settings = { version: data.readUInt32BE(filters.start), hashes: data.readUInt32BE(filters.start + 4), bitsPerEntry: data.readUInt32BE(filters.start + 8) };
      // Filters of a hash version this code does not know are left unused, as Git does.
      if ((settings.version === 1 || settings.version === 2) && settings.hashes > 0) {
        this.bloom = settings;
        this.bloomIndex = index;
        this.bloomData = filters;
      }
    }
  }

  /**
   * Parses a graph file's bytes, checking its trailing checksum and chunk
   * table; `E_CORRUPT` when it is not a SHA-1 commit-graph of version 1.
   */
  static parse(data: Buffer): CommitGraph {
    if (data.length < 8 + 12 + HASH || data.toString("latin1", 0, 4) !== SIGNATURE) notGraph("it has no CGPH header");
    if (data[4] !== 1 || data[5] !== 1) notGraph(`its version ${data[4]} / hash ${data[5]} is not 1 / SHA-1`);
    if (data[7] !== 0) notGraph("it is a layer of a split graph");
    const body = data.length - HASH;
    if (!createHash("sha1").update(data.subarray(0, body)).digest().equals(data.subarray(body))) notGraph("its checksum does not match");
    const chunks = new Map<string, Span>();
    const count = data[6]!;
    for (let i = 0; i < count; i++) {
      const at = 8 + i * 12;
      const start = Number(data.readBigUInt64BE(at + 4));
      const end = Number(data.readBigUInt64BE(at + 16));
      if (at + 24 > body || start > end || end > body) notGraph("its chunk table points outside the file");
      chunks.set(data.toString("latin1", at, at + 4), { start, end });
    }
    return new CommitGraph(data, chunks);
  }

  /** The position of a commit in the graph, or -1. */
  position(id: ObjectId): number {
    return findSortedId(this.data, this.fanout.start, this.ids.start, id);
  }

  /** The id of the commit at a position. */
  idAt(position: number): ObjectId {
    const at = this.ids.start + position * HASH;
    return this.data.toString("hex", at, at + HASH);
  }

  /** The root tree of the commit at a position. */
  treeAt(position: number): ObjectId {
    const at = this.records.start + position * RECORD;
    return this.data.toString("hex", at, at + HASH);
  }

  /** The position of the first parent, or -1 for a root commit. */
  firstParentAt(position: number): number {
    return this.parentPosition(this.data.readUInt32BE(this.records.start + position * RECORD + HASH));
  }

  /** The positions of all parents, in order. */
  parentsAt(position: number): number[] {
    const at = this.records.start + position * RECORD + HASH;
    const first = this.data.readUInt32BE(at);
    const second = this.data.readUInt32BE(at + 4);
    if (first === PARENT_NONE) return [];
    const parents = [this.parentPosition(first)];
    if (second === PARENT_NONE) return parents;
    if ((second & EXTRA_EDGES) === 0) return [...parents, this.parentPosition(second)];
    if (this.edges === undefined) notGraph("an octopus merge needs the EDGE chunk");
    for (let edge = this.edges.start + (second & ~EXTRA_EDGES) * 4; ; edge += 4) {
      if (edge + 4 > this.edges.end) notGraph("its EDGE list runs past the chunk");
      const value = this.data.readUInt32BE(edge);
      parents.push(this.parentPosition(value & ~LAST_EDGE));
      if ((value & LAST_EDGE) !== 0) return parents;
    }
  }

  /** The commit at a position as ids. */
  commitAt(position: number): GraphCommit {
    const at = this.records.start + position * RECORD + HASH + 8;
    const time = (this.data.readUInt32BE(at) & 3) * 2 ** 32 + this.data.readUInt32BE(at + 4);
    return { tree: this.treeAt(position), parents: this.parentsAt(position).map((parent) => this.idAt(parent)), time };
  }

  /** The changed-path filter of the commit at a position; undefined without filters (an empty one proves nothing). */
  filterAt(position: number): Uint8Array | undefined {
    const span = this.filterSpan(position);
    return span === undefined ? undefined : this.data.subarray(span.start, span.end);
  }

  /** False when the commit's filter proves the probed path untouched by it; true for "maybe" (and without filters). */
  mayHaveChanged(position: number, key: BloomKey): boolean {
    const span = this.filterSpan(position);
    return span === undefined || bloomMaybe(this.data, key, span.start, span.end - span.start);
  }

  private filterSpan(position: number): Span | undefined {
    if (this.bloomIndex === undefined || this.bloomData === undefined) return undefined;
    const end = this.data.readUInt32BE(this.bloomIndex.start + position * 4);
    const start = position === 0 ? 0 : this.data.readUInt32BE(this.bloomIndex.start + (position - 1) * 4);
    const from = this.bloomData.start + BDAT_HEADER;
    if (start > end || from + end > this.bloomData.end) notGraph("its BIDX points outside BDAT");
    return { start: from + start, end: from + end };
  }

  private parentPosition(value: number): number {
    if (value === PARENT_NONE) return -1;
    if (value >= this.count) notGraph(`a parent position ${value} is past its ${this.count} commits`);
    return value;
  }
}

function notGraph(why: string): never {
  throw corrupt(`The commit-graph file is not valid: ${why}`);
}

/** The graph file of an `objects/` directory. */
export function commitGraphPath(objectsDir: string): string {
  return join(objectsDir, "info", "commit-graph");
}

/** What {@link writeCommitGraph} wrote. */
export interface CommitGraphWritten {
  path: string;
  commits: number;
  /** Commits whose data came from the previous graph (not re-read). */
  reused: number;
}

/** Options of {@link writeCommitGraph}. */
export interface CommitGraphOptions {
  /**
   * The commits whose history the graph holds.
   * @default HEAD and every ref, tags peeled
   */
  tips?: readonly ObjectId[];
  /**
   * Reads a commit (a caller with a cache of its own commits passes it).
   * @default from the repository
   */
  readCommit?: (id: ObjectId) => Commit;
  /**
   * Reads a tree's entries.
   * @default from the repository
   */
  readTree?: TreeReader;
}

type TreeReader = (id: ObjectId) => readonly TreeEntry[];

/**
 * What writing a graph reads of a repository (repo/repository.ts's
 * Repository is one): declared here because packs sit below refs and the
 * repository in the engine's layers, and the graph's tips are ref tips.
 */
export interface GraphSource {
  readonly objectsDir: string;
  commitGraph(): CommitGraph | undefined;
  readCommit(id: ObjectId): Commit;
  readTree: TreeReader;
  tryReadObject(id: ObjectId): GitObject | undefined;
  readonly refs: {
    readonly commonDir: string;
    resolve(name: string): ObjectId | undefined;
    list(prefix: string): readonly { id: ObjectId }[];
  };
}

/** A commit being written, with its first parent's tree for the filter. */
interface Node extends GraphCommit {
  id: ObjectId;
  /** The previous graph's filter, when it can be kept. */
  filter?: Uint8Array;
}

/**
 * Writes `objects/info/commit-graph` for every commit reachable from `tips`
 * (default: HEAD and every ref, tags peeled), with changed-path Bloom
 * filters — what `git commit-graph write --reachable --changed-paths`
 * writes. Commits and filters the current graph already holds are copied
 * from it, so a rewrite after a few commits reads only those. The file is
 * replaced under `commit-graph.lock`; `undefined` when another writer holds
 * that lock, or where Git itself would not use a graph (a shallow
 * repository, replace refs, grafts).
 * @throws StorageError `E_NOT_FOUND` or `E_CORRUPT` for a commit or tree the tips reach that is missing or damaged (a current graph that does not parse is set aside, not thrown); `E_IO` when the file cannot be written
 */
export function writeCommitGraph(repo: GraphSource, options: CommitGraphOptions = {}): CommitGraphWritten | undefined {
  if (!graphUsable(repo)) return undefined;
  const path = commitGraphPath(repo.objectsDir);
  const previous = repo.commitGraph();
  const keepFilters = previous?.bloom !== undefined && sameSettings(previous.bloom, DEFAULT_BLOOM);
  const readCommit = options.readCommit ?? ((id: ObjectId) => repo.readCommit(id));
  const nodes = collect(readCommit, options.tips ?? refTips(repo), previous);
  const filters = computeFilters(options.readTree ?? ((id: ObjectId) => repo.readTree(id)), nodes, keepFilters);
  const bytes = encodeGraph(nodes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)), filters);
  const lock = tryLock(path);
  if (lock === undefined) return undefined;
  try {
    writeLock(lock, bytes);
  } catch (error) {
    rollbackLock(lock, error);
    throw error;
  }
  commitLock(lock);
  return { path, commits: nodes.length, reused: keepFilters ? nodes.filter((node) => node.filter !== undefined).length : 0 };
}

/** Git ignores commit-graphs where history can be rewritten locally: shallow clones, grafts, replace refs. */
function graphUsable(repo: GraphSource): boolean {
  const common = repo.refs.commonDir;
  return !existsSync(join(common, "shallow")) && !existsSync(join(common, "info", "grafts")) && repo.refs.list("refs/replace/").length === 0;
}

/** HEAD and every ref, peeled to the commits they name (refs to trees or blobs are left out). */
function refTips(repo: GraphSource): ObjectId[] {
  const tips = new Set<ObjectId>();
  const head = repo.refs.resolve("HEAD");
  const ids = [...(head === undefined ? [] : [head]), ...repo.refs.list("refs/").map((ref) => ref.id)];
  for (let id of ids) {
    let object = repo.tryReadObject(id);
    for (let depth = 0; object?.type === "tag" && depth < 10; depth++) {
      id = decodeTag(object.body).object;
      object = repo.tryReadObject(id);
    }
    if (object?.type === "commit") tips.add(id);
  }
  return [...tips];
}

/**
 * Each commit's changed-path filter: the previous graph's when it can be
 * kept, else computed against its first parent — in walk order, so that a
 * commit's trees are still cached when its parent's filter needs them.
 */
function computeFilters(readTree: TreeReader, nodes: readonly Node[], keep: boolean): Map<ObjectId, Uint8Array> {
  const tree = new Map(nodes.map((node) => [node.id, node.tree]));
  const filters = new Map<ObjectId, Uint8Array>();
  for (const node of nodes) {
    const parentTree = node.parents.length === 0 ? undefined : tree.get(node.parents[0]!);
    filters.set(node.id, keep && node.filter !== undefined ? node.filter : bloomFilter(changedPaths(readTree, parentTree, node.tree), DEFAULT_BLOOM));
  }
  return filters;
}

/** Every commit reachable from `tips`, tips first and each before its parents; from the previous graph where it has them. */
function collect(readCommit: (id: ObjectId) => Commit, tips: readonly ObjectId[], previous: CommitGraph | undefined): Node[] {
  const nodes = new Map<ObjectId, Node>();
  const pending = [...tips];
  while (pending.length > 0) {
    const id = pending.pop()!;
    if (nodes.has(id)) continue;
    const at = previous?.position(id) ?? -1;
    let node: Node;
    if (at >= 0) {
      node = { id, ...previous!.commitAt(at), filter: previous!.filterAt(at) };
      // An empty filter is one Git did not compute: compute it here.
      if (node.filter?.length === 0) delete node.filter;
    } else {
      const commit = readCommit(id);
      node = { id, tree: commit.tree, parents: commit.parents, time: commit.committer.timestamp };
    }
    nodes.set(id, node);
    pending.push(...node.parents);
  }
  return [...nodes.values()];
}

/** Each commit's topological level: 1 for a root, one more than its highest parent otherwise. */
function generations(nodes: readonly Node[], position: ReadonlyMap<ObjectId, number>): Uint32Array {
  const level = new Uint32Array(nodes.length);
  for (let start = 0; start < nodes.length; start++) {
    if (level[start] !== 0) continue;
    const stack = [start];
    while (stack.length > 0) {
      const at = stack[stack.length - 1]!;
      const waiting = nodes[at]!.parents.map((parent) => position.get(parent)!).filter((parent) => level[parent] === 0);
      if (waiting.length > 0) {
        stack.push(...waiting);
        continue;
      }
      stack.pop();
      let highest = 0;
      for (const parent of nodes[at]!.parents) highest = Math.max(highest, level[position.get(parent)!]!);
      level[at] = Math.min(highest + 1, GENERATION_MAX);
    }
  }
  return level;
}

/** The file's bytes (`nodes` sorted by id): OIDF, OIDL, CDAT, EDGE (octopus merges only), BIDX, BDAT, checksum. */
function encodeGraph(nodes: readonly Node[], filterOf: ReadonlyMap<ObjectId, Uint8Array>): Buffer {
  const position = new Map(nodes.map((node, i) => [node.id, i]));
  const level = generations(nodes, position);
  const fanout = Buffer.alloc(256 * 4);
  const ids = Buffer.alloc(nodes.length * HASH);
  const records = Buffer.alloc(nodes.length * RECORD);
  const edges: number[] = [];
  const counts = new Uint32Array(256);
  const filters: Uint8Array[] = [];
  nodes.forEach((node, i) => {
    ids.write(node.id, i * HASH, "hex");
    counts[parseInt(node.id.slice(0, 2), 16)]! += 1;
    const at = i * RECORD;
    records.write(node.tree, at, "hex");
    const parents = node.parents.map((parent) => position.get(parent)!);
    records.writeUInt32BE(parents[0] ?? PARENT_NONE, at + HASH);
    if (parents.length <= 2) records.writeUInt32BE(parents[1] ?? PARENT_NONE, at + HASH + 4);
    else {
      records.writeUInt32BE(EXTRA_EDGES | edges.length, at + HASH + 4);
      parents.slice(1).forEach((parent, j) => edges.push(j === parents.length - 2 ? parent | LAST_EDGE : parent));
    }
    records.writeUInt32BE(((level[i]! << 2) | Math.floor(node.time / 2 ** 32)) >>> 0, at + HASH + 8);
    records.writeUInt32BE(node.time >>> 0, at + HASH + 12);
    filters.push(filterOf.get(node.id)!);
  });
  let running = 0;
  for (let i = 0; i < 256; i++) fanout.writeUInt32BE((running += counts[i]!), i * 4);
  const index = Buffer.alloc(nodes.length * 4);
  let end = 0;
  filters.forEach((filter, i) => index.writeUInt32BE((end += filter.length), i * 4));
  const bloomHeader = Buffer.alloc(BDAT_HEADER);
  bloomHeader.writeUInt32BE(DEFAULT_BLOOM.version, 0);
  bloomHeader.writeUInt32BE(DEFAULT_BLOOM.hashes, 4);
  bloomHeader.writeUInt32BE(DEFAULT_BLOOM.bitsPerEntry, 8);
  const chunks: Array<[string, Buffer]> = [
    ["OIDF", fanout],
    ["OIDL", ids],
    ["CDAT", records],
    ...(edges.length > 0 ? [["EDGE", uint32s(edges)] as [string, Buffer]] : []),
    ["BIDX", index],
    ["BDAT", Buffer.concat([bloomHeader, ...filters])],
  ];
  return withChecksum(Buffer.concat([graphHeader(chunks), ...chunks.map(([, data]) => data)]));
}

function sameSettings(a: BloomSettings, b: BloomSettings): boolean {
  return a.version === b.version && a.hashes === b.hashes && a.bitsPerEntry === b.bitsPerEntry;
}

function uint32s(values: readonly number[]): Buffer {
  const out = Buffer.alloc(values.length * 4);
  values.forEach((value, i) => out.writeUInt32BE(value >>> 0, i * 4));
  return out;
}

/** Header and chunk table (each chunk's id and offset, then a zero id at the end offset). */
function graphHeader(chunks: ReadonlyArray<[string, Buffer]>): Buffer {
  const header = Buffer.alloc(8 + (chunks.length + 1) * 12);
  header.write(SIGNATURE, 0, "latin1");
  header[4] = 1;
  header[5] = 1;
  header[6] = chunks.length;
  header[7] = 0;
  let offset = header.length;
  chunks.forEach(([id, data], i) => {
    header.write(id, 8 + i * 12, "latin1");
    header.writeBigUInt64BE(BigInt(offset), 8 + i * 12 + 4);
    offset += data.length;
  });
  header.writeBigUInt64BE(BigInt(offset), 8 + chunks.length * 12 + 4);
  return header;
}

function withChecksum(body: Buffer): Buffer {
  return Buffer.concat([body, createHash("sha1").update(body).digest()]);
}

/**
 * The paths that differ between two root trees, with their leading
 * directories, as Git's filters hold them (a recursive diff: files, not the
 * trees above them); `undefined` past {@link MAX_CHANGED_PATHS} files, or
 * when a name is not UTF-8 (the filter then says "maybe" to everything).
 */
export function changedPaths(readTree: TreeReader, from: ObjectId | undefined, to: ObjectId): Set<string> | undefined {
  const files: string[] = [];
  if (!diffTrees(readTree, from, to, "", files)) return undefined;
  const paths = new Set<string>();
  for (const file of files) withLeadingDirs(file, paths);
  return paths;
}

/** Adds the changed files below two trees to `out`; false once there are too many (or an unhashable name). */
function diffTrees(readTree: TreeReader, from: ObjectId | undefined, to: ObjectId | undefined, prefix: string, out: string[]): boolean {
  const before = new Map<string, TreeEntry>();
  for (const entry of from === undefined ? [] : readTree(from)) before.set(entry.name, entry);
  for (const entry of to === undefined ? [] : readTree(to)) {
    const old = before.get(entry.name);
    before.delete(entry.name);
    if (old?.id === entry.id && old.mode === entry.mode) continue;
    if (!changedEntry(readTree, old, entry, prefix, out)) return false;
  }
  for (const old of before.values()) if (!changedEntry(readTree, old, undefined, prefix, out)) return false;
  return true;
}

function changedEntry(readTree: TreeReader, old: TreeEntry | undefined, entry: TreeEntry | undefined, prefix: string, out: string[]): boolean {
  if (old?.rawName !== undefined || entry?.rawName !== undefined) return false;
  const path = prefix + (entry ?? old)!.name;
  const oldTree = old !== undefined && isTreeMode(old.mode) ? old.id : undefined;
  const newTree = entry !== undefined && isTreeMode(entry.mode) ? entry.id : undefined;
  // A side that is not a tree is one changed file; trees are walked (a tree against nothing lists all its files).
  if ((old !== undefined && oldTree === undefined) || (entry !== undefined && newTree === undefined)) out.push(path);
  if ((oldTree !== undefined || newTree !== undefined) && !diffTrees(readTree, oldTree, newTree, `${path}/`, out)) return false;
  return out.length <= MAX_CHANGED_PATHS;
}
