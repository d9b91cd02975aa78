import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import git from "../../../src/drivers/git.js";
import gitNotes from "../../../src/drivers/git-notes.js";
import gitObjects from "../../../src/drivers/git-objects.js";
import gitRefs from "../../../src/drivers/git-refs.js";
import { createStorage, isStorageError, type Driver, type Storage } from "../../../src/index.js";
import { Repository } from "../../../src/git/repo/repository.js";
import { encodeTree, TreeMode } from "../../../src/git/objects/tree.js";
import { decodeKeyName, encodeKeyName, isBucketName, keyPath, nameHash, pathKey, VALUE_ENTRY } from "../../../src/git/store/keyNames.js";
import { git as gitCli, gitFails } from "../gitCli.js";
import { codeOf } from "../../helpers/checks.js";
import { tempDir } from "../../helpers/tempDir.js";

// git-refs writes a lock file per key: on tmpfs where there is one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

/** mulberry32: a small seeded PRNG, so a failing case can be replayed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Segment parts that look like escapes, layout names, Git's own names, or nothing much. */
const PARTS = [
  "%", "%%", "%25", "%2E", "%2e", "%47", "%67", "%u", "%uD800", "%value", "%x3f", "%x", "%ab", "%41", "%:", "%0",
  ".", "..", "...", ".git", ".GIT", ".gitmodules", "git~1", "GIT~1", "gi~", ".lock", "@{", "@", "~", "^", "*", "[",
  " ", "\t", "\u00a0", "\u200c", "é", "ß", "日本", "🚀", "a", "b", "x", "value", "0", "-", "_", "'", '"', "$x",
];

/** A random key the core accepts: 1-4 segments of 1-3 parts, no `.`/`..` segment, no separators. */
function randomKey(next: () => number): string {
  const segments: string[] = [];
  const count = 1 + Math.floor(next() * 4);
  while (segments.length < count) {
    let segment = "";
    const parts = 1 + Math.floor(next() * 3);
    for (let i = 0; i < parts; i++) segment += PARTS[Math.floor(next() * PARTS.length)]!.replace(":", "");
    if (segment !== "." && segment !== "..") segments.push(segment);
  }
  return segments.join(":");
}

function randomKeys(seed: number, count: number): string[] {
  const next = prng(seed);
  const keys = new Set<string>();
  while (keys.size < count) keys.add(randomKey(next));
  return [...keys];
}

/** `git fsck --strict` reports no error (dangling objects are allowed). */
function fsck(dir: string): void {
  expect(gitCli(dir, ["fsck", "--strict", "--no-progress"])).not.toMatch(/^(error|missing|broken|bad)/m);
}

type Make = (dir: string) => Driver;
const DRIVERS: [string, Make][] = [
  ["git", (dir) => git({ dir, fanout: 16 })],
  ["git-refs", (dir) => gitRefs({ dir })],
  ["git-notes", (dir) => gitNotes({ dir })],
  ["git-objects", (dir) => gitObjects({ dir })],
];

describe("git key encoding (tree entry names)", () => {
  it("decode(encode(s)) = s, encoded names are never layout names, and only canonical names decode", () => {
    const next = prng(7);
    for (let i = 0; i < 5000; i++) {
      const segment = randomKey(next).replaceAll(":", "") || "%";
      const name = encodeKeyName(segment);
      expect(decodeKeyName(name), JSON.stringify(segment)).toBe(segment);
      expect(isBucketName(name) || name === VALUE_ENTRY || /^%[vxVX]/.test(name), name).toBe(false);
    }
    for (const segment of ["%", "%25", "%value", "%x3f", ".git", "%2Egit", "lone\ud800", "git~1"]) expect(decodeKeyName(encodeKeyName(segment))).toBe(segment);
    // Layout names and names the encoder never writes are no key's.
    for (const name of [VALUE_ENTRY, "%x3f", "%x00", "100%", "%41", "a%2Eb", "%2e", ".gitignore", "%uD83D%uDE00", ""]) expect(decodeKeyName(name), name).toBeUndefined();
    expect(isBucketName(encodeKeyName("%"))).toBe(false);
  });

  it("keyNames (git-refs, git-notes, git-objects paths): pathKey(keyPath(k)) = k for random keys, and no two keys share a path", () => {
    const keys = randomKeys(11, 3000);
    const paths = new Map<string, string>();
    for (const key of keys) {
      const path = keyPath(key);
      expect(pathKey(path), JSON.stringify(key)).toBe(key);
      expect(paths.has(path), `${JSON.stringify(key)} and ${JSON.stringify(paths.get(path))}`).toBe(false);
      paths.set(path, key);
    }
    expect(pathKey("%")).toBeUndefined();
    expect(pathKey("%ab%")).toBeUndefined();
  });
});

describe.each(DRIVERS)("%s: keys that look like escapes or Git's own names", (name, make) => {
  const open = (dir: string): Storage => createStorage({ driver: make(dir) });

  it("random keys (seeded): each written, listed exactly once, read back; clear(base) removes only keys below base", async () => {
    const dir = tempDir(`keys-${name}`);
    const storage = open(dir);
    const keys = randomKeys(name.length * 101, 200);
    await Promise.all(keys.map((key, i) => storage.setItem(key, i)));
    expect((await storage.getKeys()).sort()).toEqual([...keys].sort());
    for (const [i, key] of keys.entries()) expect(await storage.getItem(key), JSON.stringify(key)).toBe(i);
    const next = prng(3);
    for (let round = 0; round < 5; round++) {
      const alive = await storage.getKeys();
      if (alive.length === 0) break;
      const segments = alive[Math.floor(next() * alive.length)]!.split(":");
      const base = segments.slice(0, Math.max(1, Math.floor(next() * segments.length))).join(":");
      await storage.clear(base);
      const left = (await storage.getKeys()).sort();
      expect(left, `clear(${JSON.stringify(base)})`).toEqual(alive.filter((key) => !key.startsWith(`${base}:`)).sort());
      for (const key of left) expect(await storage.getItem(key)).toBe(keys.indexOf(key));
    }
    await storage.dispose();
    fsck(dir);
  });

  it("the hostile keys of #15 round-trip, are listed once, and each base clears only its own", async () => {
    const dir = tempDir(`hostile-${name}`);
    const storage = open(dir);
    const keys = [".git:x", "%2Egit:y", "%ab:b", "%value:v", "%:z", "%:x", "%", "%25", "%25:w", "%x3f:q", "%2E:e", "%ab", "plain"];
    for (const [i, key] of keys.entries()) await storage.setItem(key, i);
    expect((await storage.getKeys()).sort()).toEqual([...keys].sort());
    for (const [i, key] of keys.entries()) expect(await storage.getItem(key), key).toBe(i);
    await storage.clear("%");
    expect((await storage.getKeys()).sort()).toEqual(keys.filter((key) => key !== "%:z" && key !== "%:x").sort());
    await storage.clear("%ab");
    await storage.clear("%25");
    await storage.clear(".git");
    expect((await storage.getKeys()).sort()).toEqual([".git:x", "%2Egit:y", "%value:v", "%", "%25", "%x3f:q", "%2E:e", "%ab", "plain"].filter((key) => key !== ".git:x").sort());
    expect(await storage.getItem("%")).toBe(6);
    await storage.dispose();
    fsck(dir);
  });

  it("a 5,000-segment key is E_INVALID_KEY (through storage and on the driver itself), and its neighbours land", async () => {
    const dir = tempDir(`deep-${name}`);
    const driver = make(dir);
    const storage = createStorage({ driver });
    const deep = Array.from({ length: 5000 }, (_, i) => `s${i}`).join(":");
    const results = await Promise.allSettled([storage.setItem("before", 1), storage.setItem(deep, "x"), storage.setItem("after", 2)]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(await codeOf(() => storage.setItem(deep, "x"))).toBe("E_INVALID_KEY");
    // Mounted without stowage's core (as in unstorage), the driver refuses it itself.
    expect(await codeOf(() => driver.setItem!(deep, '"x"', {}))).toBe("E_INVALID_KEY");
    const queued = driver.asyncWrites?.setItem;
    if (queued !== undefined) expect(await codeOf(() => queued(deep, '"x"', {}))).toBe("E_INVALID_KEY");
    expect(await codeOf(() => driver.getItem(deep, {}))).toBe("E_INVALID_KEY");
    expect((await storage.getKeys()).sort()).toEqual(["after", "before"]);
    await storage.dispose();
    fsck(dir);
  });

  it("a key at the declared depth limit is stored, read, listed and cleared", async () => {
    const dir = tempDir(`limit-${name}`);
    const driver = make(dir);
    const segments = driver.keyLimits!.segments;
    const storage = createStorage({ driver });
    const key = Array.from({ length: segments }, (_, i) => `${i % 10}`).join(":");
    await storage.setItem(key, "deep");
    expect(await storage.getItem(key)).toBe("deep");
    expect(await storage.getKeys()).toEqual([key]);
    expect(await codeOf(() => storage.setItem(`${key}:more`, "x"))).toBe("E_INVALID_KEY");
    await storage.clear("0");
    expect(await storage.getKeys()).toEqual([]);
    await storage.dispose();
    fsck(dir);
  });
});

describe("git driver: the layout's names are apart from every key's", () => {
  it("a key below `%` (tree `%25`) no longer hides the other keys of its directory, before and after it is removed", async () => {
    const dir = tempDir("git-percent");
    const storage = createStorage({ driver: git({ dir }) });
    await storage.setItems([
      { key: "a", value: 1 },
      { key: "b:c", value: 2 },
      { key: "d", value: 3 },
    ]);
    await storage.setItem("%:x", "x");
    expect(gitCli(dir, ["ls-tree", "--name-only", "refs/stowage/default"]).split("\n")).toContain("%25");
    expect(await storage.getItem("a")).toBe(1);
    expect(await storage.getItem("b:c")).toBe(2);
    expect((await storage.getKeys()).sort()).toEqual(["%:x", "a", "b:c", "d"]);
    await storage.removeItem("%:x");
    expect(await storage.getItem("a")).toBe(1);
    expect((await storage.getKeys()).sort()).toEqual(["a", "b:c", "d"]);
    await storage.setItem("e", 5);
    expect(await storage.getItem("e")).toBe(5);
    await storage.dispose();
    fsck(dir);
  });

  it("fan-out buckets are %xNN trees, and `%`-like keys in a fanned directory stay apart from them", async () => {
    const dir = tempDir("git-buckets");
    const storage = createStorage({ driver: git({ dir, fanout: 16 }) });
    const keys = [...Array.from({ length: 100 }, (_, i) => `d:${i}`), "d:%", "d:%:x", "d:%x3f", "d:%x3f:y", "d:%value", "d:%25"];
    await storage.setItems(keys.map((key, i) => ({ key, value: i })));
    const names = gitCli(dir, ["ls-tree", "--name-only", "refs/stowage/default:d"]).split("\n");
    expect(names.every((entry) => /^%x[0-9a-f]{2}$/.test(entry))).toBe(true);
    expect((await storage.getKeys("d")).sort()).toEqual([...keys].sort());
    for (const [i, key] of keys.entries()) expect(await storage.getItem(key), key).toBe(i);
    expect((await storage.getHistory("d:%:x")).map((entry) => entry.value)).toEqual([101]);
    await storage.dispose();
    fsck(dir);
  });

  it("entries stock git wrote under names the encoder never writes are not keys: not listed, and reading the name they spell finds nothing", async () => {
    const dir = tempDir("git-foreign");
    const storage = createStorage({ driver: git({ dir }) });
    await storage.setItem("mine", 1);
    const blob = gitCli(dir, ["hash-object", "-w", "--stdin"], '"theirs"');
    const tree = gitCli(dir, ["mktree"], [`100644 blob ${blob}\t100%`, `100644 blob ${blob}\t.gitignore`, `100644 blob ${blob}\tmine`, ""].join("\n"));
    const commit = gitCli(dir, ["commit-tree", tree, "-p", "refs/stowage/default", "-m", "by hand"]);
    gitCli(dir, ["update-ref", "refs/stowage/default", commit]);
    expect(await storage.getKeys()).toEqual(["mine"]);
    expect(await storage.getItem("100%")).toBeNull();
    await storage.dispose();
  });
});

describe("group commits: one bad write fails alone", () => {
  it("git: a refused write queued with good ones (async API of the driver) rejects alone, the others land in one commit", async () => {
    const dir = tempDir("git-group");
    const driver = git({ dir });
    const deep = Array.from({ length: 600 }, () => "s").join(":");
    const writes = [driver.asyncWrites!.setItem!("a", '"1"', {}), driver.asyncWrites!.setItem!(deep, '"x"', {}), driver.asyncWrites!.setItem!("a::b", '"x"', {}), driver.asyncWrites!.setItem!("b", '"2"', {})];
    const results = await Promise.allSettled(writes);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
    for (const result of results) if (result.status === "rejected") expect(isStorageError(result.reason, "E_INVALID_KEY")).toBe(true);
    expect((driver.getKeys("", {}) as string[]).sort()).toEqual(["a", "b"]);
    expect(gitCli(dir, ["rev-list", "--count", "refs/stowage/default"])).toBe("1");
    await driver.dispose!();
    fsck(dir);
  });

  it.each([
    ["git-refs", (dir: string) => gitRefs({ dir }), "%".repeat(100)],
    ["git-objects", (dir: string) => gitObjects({ dir }), "%".repeat(100)],
    ["git-notes", (dir: string) => gitNotes({ dir }), "lone\ud800"],
  ] as const)("%s: a key it cannot name, written concurrently with good ones, fails alone", async (_name, make, bad) => {
    const dir = tempDir("group");
    const storage = createStorage({ driver: make(dir) });
    const good = Array.from({ length: 20 }, (_, i) => `k:${i}`);
    const results = await Promise.allSettled([...good.map((key, i) => storage.setItem(key, i)), storage.setItem(bad, "refused value")]);
    expect(results.slice(0, -1).every((result) => result.status === "fulfilled")).toBe(true);
    const last = results[results.length - 1]!;
    expect(last.status === "rejected" && isStorageError(last.reason, "E_INVALID_KEY")).toBe(true);
    expect((await storage.getKeys()).sort()).toEqual([...good].sort());
    // Refused before anything was made: not even the value's blob was written.
    expect(await codeOf(() => storage.setItemRaw(bad, new TextEncoder().encode("refused bytes")))).toBe("E_INVALID_KEY");
    for (const text of ['"refused value"', "refused bytes"]) expect(gitFails(dir, ["cat-file", "-e", gitCli(dir, ["hash-object", "--stdin"], text)]).status).not.toBe(0);
    await storage.dispose();
    fsck(dir);
  });
});

describe("trees deeper than any key stowage writes (made by stock git)", () => {
  it("git: a 5,000-level tree lists, diffs (watch, history of its neighbours) and clears without a stack overflow", async () => {
    const dir = tempDir("git-deep-foreign");
    const driver = git({ dir });
    const storage = createStorage({ driver });
    await storage.setItem("plain", 1);
    const deepPath = Array.from({ length: 5000 }, (_, i) => `s${i}`).join("/");
    const stream = ["commit refs/stowage/default", "committer Ada <ada@example.com> 1700000000 +0000", "data 5", "deep", "from refs/stowage/default^0", `M 100644 inline ${deepPath}`, "data 3", '"d"', ""].join("\n");
    gitCli(dir, ["fast-import", "--quiet"], stream);
    const changed: string[] = [];
    const [before, after] = ["refs/stowage/default^^{tree}", "refs/stowage/default^{tree}"].map((rev) => gitCli(dir, ["rev-parse", rev]));
    driver.getInstance!().keys.diff(before, after, (key) => changed.push(key));
    expect(changed).toEqual([deepPath.replaceAll("/", ":")]);
    const keys = await storage.getKeys();
    expect(keys).toHaveLength(2);
    expect(keys).toContain("plain");
    expect((await storage.getHistory("plain")).map((entry) => entry.value)).toEqual([1]);
    await storage.clear("s0");
    expect(await storage.getKeys()).toEqual(["plain"]);
    await storage.dispose();
    fsck(dir);
  });

  it("git-objects: a 5,000-level index tree is read, rebuilt and cleared without a stack overflow", async () => {
    const dir = tempDir("objects-deep-foreign");
    const storage = createStorage({ driver: gitObjects({ dir }) });
    await storage.setItem("plain", 1);
    const segments = Array.from({ length: 5000 }, (_, i) => `s${i}`);
    const stream = ["commit refs/stowage/objects", "committer Ada <ada@example.com> 1700000000 +0000", "data 5", "deep", "from refs/stowage/objects^0", `M 100644 inline keys/${segments.join("/")}%`, "data 3", '"d"', ""].join("\n");
    gitCli(dir, ["fast-import", "--quiet"], stream);
    expect((await storage.getKeys()).sort()).toEqual(["plain", segments.join(":")].sort());
    await storage.setItem("other", 2);
    await storage.clear("s0");
    expect((await storage.getKeys()).sort()).toEqual(["other", "plain"]);
    await storage.dispose();
    fsck(dir);
  });

  it("git: a chain of 5,000 bucket-like trees below a key's buckets is read and edited as a plain table (bucket walks stop at level 19)", async () => {
    const dir = tempDir("git-bucket-chain");
    const storage = createStorage({ driver: git({ dir }) });
    await storage.setItem("plain", 0);
    const repo = Repository.open(dir);
    const tree = (entries: [string, string, string][]) => repo.writeObjects([{ type: "tree", body: encodeTree(entries.map(([name, mode, id]) => ({ name, mode, id }))) }])[0]!;
    const sibling = tree([["f", TreeMode.file, repo.writeBlob(Buffer.from("x"))]]);
    // Every table on the way counts as fanned (it holds a %xNN tree); past level 19 the names no longer come from a hash.
    let chain = tree([["%x00", TreeMode.tree, sibling]]);
    for (let i = 0; i < 5000; i++) chain = tree([["%x", TreeMode.tree, chain], ["%x00", TreeMode.tree, sibling]]);
    const hash = nameHash("k");
    chain = tree([[`%x${hash.slice(38, 40)}`, TreeMode.tree, chain]]);
    for (let level = 18; level >= 0; level--) chain = tree([[`%x${hash.slice(level * 2, level * 2 + 2)}`, TreeMode.tree, chain]]);
    repo.close();
    gitCli(dir, ["update-ref", "refs/stowage/default", gitCli(dir, ["commit-tree", chain, "-p", "refs/stowage/default", "-m", "chain"])]);
    expect(await storage.getItem("k")).toBeNull();
    await storage.setItem("k", 1);
    expect(await storage.getItem("k")).toBe(1);
    expect(await storage.getKeys()).toEqual(["k"]);
    await storage.removeItem("k");
    expect(await storage.getKeys()).toEqual([]);
    await storage.dispose();
    fsck(dir);
  });
});

describe("group commits: a write that fails the whole transaction is retried alone", () => {
  /** Puts something stock git wrote where the key `a:b` needs a directory. */
  const plantRef = (dir: string) => gitCli(dir, ["update-ref", "refs/stowage/kv/a", gitCli(dir, ["rev-parse", "refs/stowage/kv/seed%"])]);
  const plantBlob = (dir: string) => {
    const stream = ["commit refs/stowage/objects", "committer Ada <ada@example.com> 1700000000 +0000", "data 7", "foreign", "from refs/stowage/objects^0", "M 100644 inline keys/a", "data 1", "x", ""];
    gitCli(dir, ["fast-import", "--quiet"], stream.join("\n"));
  };

  it.each([
    // Taking the ref locks fails the whole transaction (a file stands where `a/` must be): E_CONFLICT.
    ["git-refs", (dir: string) => gitRefs({ dir }), plantRef],
    // Building the index tree fails the whole commit (a blob and a tree both named `a`).
    ["git-objects", (dir: string) => gitObjects({ dir }), plantBlob],
  ] as const)("%s: a key whose directory is a foreign file fails alone; the writes grouped with it land", async (_name, make, plant) => {
    const dir = tempDir("group-df");
    const storage = createStorage({ driver: make(dir) });
    await storage.setItem("seed", 0);
    plant(dir);
    const good = Array.from({ length: 10 }, (_, i) => `k:${i}`);
    const results = await Promise.allSettled([...good.map((key, i) => storage.setItem(key, i)), storage.setItem("a:b", "blocked")]);
    expect(results.slice(0, -1).map((result) => result.status)).toEqual(good.map(() => "fulfilled"));
    const last = results[results.length - 1]!;
    expect(last.status === "rejected" && isStorageError(last.reason)).toBe(true);
    expect((await storage.getKeys()).sort()).toEqual([...good, "seed"].sort());
    await storage.dispose();
    fsck(dir);
  });

  it("git: a write into a directory git cannot rewrite (a foreign tree with an empty entry name) fails alone; the group's other writes land", async () => {
    const dir = tempDir("git-group-broken");
    const storage = createStorage({ driver: git({ dir }) });
    await storage.setItem("seed", 0);
    const repo = Repository.open(dir);
    const blob = repo.writeBlob(Buffer.from('"x"'));
    // Written byte by byte: no encoder makes an entry without a name, and rewriting this tree is E_CORRUPT.
    const broken = repo.writeObjects([{ type: "tree", body: Buffer.concat([Buffer.from("100644 \0"), Buffer.from(blob, "hex")]) }])[0]!;
    const root = repo.writeObjects([{ type: "tree", body: encodeTree([{ name: "bad", mode: TreeMode.tree, id: broken }]) }])[0]!;
    repo.close();
    gitCli(dir, ["update-ref", "refs/stowage/default", gitCli(dir, ["commit-tree", root, "-p", "refs/stowage/default", "-m", "broken"])]);
    const good = Array.from({ length: 10 }, (_, i) => `good:${i}`);
    const results = await Promise.allSettled([...good.map((key, i) => storage.setItem(key, i)), storage.setItem("bad:y", "blocked")]);
    expect(results.slice(0, -1).map((result) => result.status)).toEqual(good.map(() => "fulfilled"));
    const last = results[results.length - 1]!;
    expect(last.status === "rejected" && isStorageError(last.reason, "E_CORRUPT")).toBe(true);
    expect((await storage.getKeys("good")).sort()).toEqual([...good].sort());
    await storage.dispose();
  });
});

describe("git-refs: a ref path past the file system's limit", () => {
  it("is E_INVALID_KEY before anything is written, in a repository whose own path is long; shorter keys there work", async () => {
    const dir = join(tempDir("refs-long-path"), ...Array.from({ length: 15 }, (_, i) => `${i}`.padEnd(230, "d")));
    mkdirSync(dir, { recursive: true });
    const storage = createStorage({ driver: gitRefs({ dir }) });
    await storage.setItem("short", 1);
    const long = Array.from({ length: 3 }, () => "k".repeat(200)).join(":");
    const results = await Promise.allSettled([storage.setItem("near", 2), storage.setItem(long, "too long")]);
    expect(results[0]!.status).toBe("fulfilled");
    expect(results[1]!.status === "rejected" && isStorageError(results[1].reason, "E_INVALID_KEY")).toBe(true);
    expect(existsSync(join(dir, "refs/stowage/kv", "k".repeat(200)))).toBe(false);
    expect((await storage.getKeys()).sort()).toEqual(["near", "short"]);
    // A base no path can name holds no key: listed and cleared as empty, not E_IO.
    for (const base of ["k".repeat(300), `${long}:${"k".repeat(200)}`]) {
      expect(await storage.getKeys(base)).toEqual([]);
      await storage.clear(base);
    }
    expect((await storage.getKeys()).sort()).toEqual(["near", "short"]);
    await storage.dispose();
  });
});
