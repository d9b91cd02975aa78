import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Repository, type GitObject, type ObjectType } from "../../../src/git/index.js";
import { PackIndex } from "../../../src/git/packs/packIndex.js";
import { PackWriter } from "../../../src/git/packs/packWriter.js";
import { encodePackIndex } from "../../../src/git/packs/packIndex.js";
import { tempDir } from "../../helpers/tempDir.js";
import { errorCode, git, gitBytes, gitEnv, gitInitBare } from "../gitCli.js";

/** A worktree repository with history whose files change a little each commit (good delta material). */
function repoWithHistory(commits = 12): string {
  const dir = tempDir("git-history");
  git(dir, ["init", "-q", "-b", "main"]);
  const lines = Array.from({ length: 400 }, (_, i) => `line ${i}: ${"lorem ipsum dolor sit amet ".repeat(2)}`);
  for (let c = 0; c < commits; c++) {
    lines[c * 7] = `changed in commit ${c}`;
    writeFileSync(join(dir, "big.txt"), lines.join("\n"));
    writeFileSync(join(dir, `small-${c % 3}.txt`), `small ${c}\n`);
    mkdirSync(join(dir, "sub"), { recursive: true });
    writeFileSync(join(dir, "sub", "nested.txt"), lines.slice(0, 100 + c).join("\n"));
    git(dir, ["add", "-A"]);
    git(dir, ["commit", "-q", "-m", `commit ${c}`]);
  }
  git(dir, ["tag", "-a", "v1", "-m", "tagged"]);
  return dir;
}

function allIds(dir: string): string[] {
  const ids = git(dir, ["rev-list", "--objects", "--all"]).split("\n").map((line) => line.slice(0, 40));
  return [...ids, git(dir, ["rev-parse", "v1"])];
}

/** Every object reads as git cat-file prints it. */
function expectAllReadLikeGit(dir: string, repo: Repository, ids: string[]): void {
  for (const id of ids) {
    const type = git(dir, ["cat-file", "-t", id]) as ObjectType;
    const object = repo.readObject(id);
    expect(object.type).toBe(type);
    expect(object.body.equals(gitBytes(dir, ["cat-file", type, id]))).toBe(true);
  }
}

/** Type numbers of a pack's entries, read from the raw bytes at the offsets its index gives. */
function entryTypes(packPath: string): number[] {
  const index = PackIndex.parse(readFileSync(packPath.replace(/\.pack$/, ".idx")), packPath);
  const pack = readFileSync(packPath);
  return Array.from({ length: index.count }, (_, i) => (pack[index.offsetAt(i)]! >> 4) & 7);
}

function packsIn(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith(".pack")).map((name) => join(dir, name));
}

describe("pack reading", () => {
  it("after git gc --aggressive (OFS_DELTA chains) every object reads as git cat-file prints it", () => {
    const dir = repoWithHistory();
    const ids = allIds(dir);
    git(dir, ["gc", "-q", "--aggressive", "--prune=now"]);
    const packDir = join(dir, ".git", "objects", "pack");
    const [pack] = packsIn(packDir);
    expect(entryTypes(pack!)).toContain(6);
    const repo = Repository.open(dir);
    expectAllReadLikeGit(dir, repo, ids);
  });

  it("reads REF_DELTA entries (git pack-objects without --delta-base-offset)", () => {
    const source = repoWithHistory();
    const target = gitInitBare("git-refdelta");
    const list = git(source, ["rev-list", "--objects", "--all"]) + `\n${git(source, ["rev-parse", "v1"])}\n`;
    gitBytes(source, ["pack-objects", "-q", "--window=10", "--depth=20", join(target, "objects", "pack", "pack")], list);
    const [pack] = packsIn(join(target, "objects", "pack"));
    expect(entryTypes(pack!)).toContain(7);
    expect(entryTypes(pack!)).not.toContain(6);
    expectAllReadLikeGit(source, Repository.open(target), allIds(source));
  });

  it("reads an index whose offsets are in the 64-bit table", () => {
    const dir = repoWithHistory(4);
    const ids = allIds(dir);
    git(dir, ["repack", "-a", "-d", "-q"]);
    const packDir = join(dir, ".git", "objects", "pack");
    const [pack] = packsIn(packDir);
    const idx = pack!.replace(/\.pack$/, ".idx");
    chmodSync(idx, 0o644);
    // Every offset past 0x20 goes to the large-offset table.
    git(dir, ["index-pack", "--index-version=2,0x20", "-o", idx, pack!]);
    const index = PackIndex.parse(readFileSync(idx), idx);
    const small = readFileSync(idx).readUInt32BE(8 + 1024 + index.count * 24);
    expect(small >>> 31).toBe(1);
    expectAllReadLikeGit(dir, Repository.open(dir), ids);
  });

  it("finds objects packed by git gc after the repository was opened (rescan on a miss)", () => {
    const dir = repoWithHistory(3);
    const repo = Repository.open(dir);
    const head = git(dir, ["rev-parse", "HEAD"]);
    expect(repo.readCommit(head).message).toBe("commit 2\n");
    writeFileSync(join(dir, "late.txt"), "late\n");
    git(dir, ["add", "late.txt"]);
    git(dir, ["commit", "-q", "-m", "late"]);
    git(dir, ["gc", "-q", "--prune=now"]);
    const late = git(dir, ["rev-parse", "HEAD:late.txt"]);
    expect(existsSync(join(dir, ".git", "objects", late.slice(0, 2), late.slice(2)))).toBe(false);
    expect(repo.readBlob(late).toString()).toBe("late\n");
    expect(repo.hasObject(late)).toBe(true);
  });

  it("finds an object whose just-written pack git repack merged away before anything read it", () => {
    const dir = gitInitBare("pack-lazy");
    const repo = Repository.open(dir);
    const writer = repo.packWriter({ mode: "memory" });
    const id = writer.add("blob", Buffer.from("written, never read"));
    const written = writer.finish()!;
    repo.installPack(written);
    git(dir, ["update-ref", "refs/keep", id]);
    // A second object, so the new pack differs from the one merged into it.
    git(dir, ["update-ref", "refs/other", git(dir, ["hash-object", "-w", "--stdin"], "loose")]);
    git(dir, ["repack", "-a", "-d", "-q"]);
    expect(existsSync(written.packPath)).toBe(false);
    expect(repo.readBlob(id).toString()).toBe("written, never read");
    expect(repo.packFiles).not.toContain(written.packPath);
  });
});

describe("reading while git gc runs", () => {
  it("every object stays readable while git gc packs and prunes loose objects and old packs", async () => {
    const dir = repoWithHistory(20);
    git(dir, ["repack", "-q"]);
    for (let i = 0; i < 200; i++) writeFileSync(join(dir, `extra-${i}.txt`), `extra ${i}\n`);
    git(dir, ["add", "-A"]);
    git(dir, ["commit", "-q", "-m", "extras"]);
    const ids = allIds(dir);
    const repo = Repository.open(dir);
    const expected = new Map(ids.map((id) => [id, repo.readObject(id).body]));
    const fresh = Repository.open(dir, { cacheBytes: 0 });
    const gc = spawn("git", ["gc", "-q", "--prune=now"], { cwd: dir, env: gitEnv, stdio: "ignore" });
    let done = false;
    const exited = new Promise<number | null>((resolve) => gc.on("exit", (status) => resolve(status)));
    void exited.then(() => (done = true));
    let rounds = 0;
    while (!done || rounds === 0) {
      for (const id of ids) expect(fresh.readObject(id).body.equals(expected.get(id)!)).toBe(true);
      rounds++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(await exited).toBe(0);
    expect(readdirSync(join(dir, ".git", "objects")).filter((name) => /^[0-9a-f]{2}$/.test(name))).toEqual([]);
    for (const id of ids) expect(fresh.readObject(id).body.equals(expected.get(id)!)).toBe(true);
  });
});

describe("corrupt packs", () => {
  function packedRepo(): { dir: string; ids: string[]; pack: string } {
    const dir = gitInitBare();
    const repo = Repository.open(dir, { packThreshold: 1 });
    const ids = repo.writeObjects(Array.from({ length: 5 }, (_, i) => ({ type: "blob" as const, body: Buffer.from(`entry ${i} `.repeat(20)) })));
    const pack = repo.packFiles[0]!;
    chmodSync(pack, 0o644);
    return { dir, ids, pack };
  }

  it("a damaged entry is E_CORRUPT", () => {
    const { dir, ids, pack } = packedRepo();
    const index = PackIndex.parse(readFileSync(pack.replace(/\.pack$/, ".idx")), pack);
    const bytes = readFileSync(pack);
    const offset = index.offsetAt(index.find(ids[2]!));
    bytes[offset + 6] = bytes[offset + 6]! ^ 0xff;
    writeFileSync(pack, bytes);
    expect(errorCode(() => Repository.open(dir).readObject(ids[2]!))).toBe("E_CORRUPT");
    expect(Repository.open(dir).readBlob(ids[1]!).toString()).toBe("entry 1 ".repeat(20));
  });

  it("a truncated pack is E_CORRUPT", () => {
    const { dir, ids, pack } = packedRepo();
    writeFileSync(pack, readFileSync(pack).subarray(0, -10));
    expect(errorCode(() => Repository.open(dir).readObject(ids[0]!))).toBe("E_CORRUPT");
  });
});

describe("pack writing", () => {
  function objects(count: number): GitObject[] {
    return Array.from({ length: count }, (_, i) => ({ type: "blob" as const, body: Buffer.from(`value ${i} ${"x".repeat(i % 50)}\n`) }));
  }

  for (const mode of ["memory", "disk", "auto"] as const) {
    it(`${mode} mode: git verify-pack and git fsck accept the pack; git reads every object; no temp file remains`, () => {
      const dir = gitInitBare();
      const repo = Repository.open(dir, { packMode: mode });
      const blobs = objects(120);
      const ids = repo.writeObjects(blobs);
      const tree = repo.writeTree(ids.map((id, i) => ({ mode: "100644", name: `k${i}`, id })));
      git(dir, ["update-ref", "refs/heads/main", git(dir, ["commit-tree", tree, "-m", "m"])]);
      const packDir = join(dir, "objects", "pack");
      const files = readdirSync(packDir);
      expect(files.filter((name) => name.startsWith("tmp_"))).toEqual([]);
      expect(files.filter((name) => name.endsWith(".pack"))).toHaveLength(1);
      const verify = git(dir, ["verify-pack", "-v", join(packDir, files.find((name) => name.endsWith(".idx"))!)]);
      expect(verify).toMatch(/non delta: 120 objects/);
      expect(git(dir, ["fsck", "--strict", "--no-dangling"])).toBe("");
      expect(git(dir, ["cat-file", "-p", ids[7]!])).toBe(blobs[7]!.body.toString().trim());
      expect(Repository.open(dir).readBlob(ids[119]!).equals(blobs[119]!.body)).toBe(true);
    });
  }

  it("auto mode stays in memory up to the limit, then stages in a temporary file", () => {
    const dir = gitInitBare();
    const writer = new PackWriter(join(dir, "objects", "pack"), { mode: "auto", memoryLimit: 10 });
    for (let i = 0; i < 10; i++) writer.add("blob", Buffer.from(`v${i}`));
    expect(writer.inMemory).toBe(true);
    expect(writer.tempPath).toBeUndefined();
    writer.add("blob", Buffer.from("v10"));
    expect(writer.inMemory).toBe(false);
    expect(existsSync(writer.tempPath!)).toBe(true);
    const temp = writer.tempPath!;
    const pack = writer.finish()!;
    expect(existsSync(temp)).toBe(false);
    expect(pack.ids).toHaveLength(11);
    expect(git(dir, ["verify-pack", pack.idxPath])).toBe("");
  });

  it("duplicates are written once; an empty writer writes nothing", () => {
    const dir = gitInitBare();
    const writer = new PackWriter(join(dir, "objects", "pack"), { mode: "memory" });
    writer.add("blob", Buffer.from("same"));
    writer.add("blob", Buffer.from("same"));
    expect(writer.count).toBe(1);
    expect(writer.finish()!.ids).toHaveLength(1);
    const empty = new PackWriter(join(dir, "objects", "pack"), { mode: "disk" });
    expect(empty.finish()).toBeUndefined();
    expect(readdirSync(join(dir, "objects", "pack")).filter((name) => name.startsWith("tmp_"))).toEqual([]);
  });

  for (const mode of ["memory", "disk", "auto"] as const) {
    it(`${mode} mode: temporary files are removed after a failure`, () => {
      // The same objects give the same pack name: block that name with a directory, so installing fails.
      const probe = gitInitBare();
      const name = new PackWriter(join(probe, "objects", "pack"), { mode });
      for (const object of objects(30)) name.add(object.type, object.body);
      const checksum = name.finish()!.checksum;
      const dir = gitInitBare();
      const packDir = join(dir, "objects", "pack");
      mkdirSync(join(packDir, `pack-${checksum}.pack`, "blocker"), { recursive: true });
      const writer = new PackWriter(packDir, { mode });
      for (const object of objects(30)) writer.add(object.type, object.body);
      expect(() => writer.finish()).toThrow(expect.objectContaining({ code: "E_IO" }));
      expect(readdirSync(packDir).sort()).toEqual([`pack-${checksum}.pack`]);
      // A failure while adding (a bad body) aborts through writeObjects.
      const repo = Repository.open(dir, { packMode: mode });
      const bad = [...objects(60), { type: "blob", body: 42 as unknown as Buffer }] as GitObject[];
      expect(() => repo.writeObjects(bad)).toThrow();
      expect(readdirSync(packDir).sort()).toEqual([`pack-${checksum}.pack`]);
    });
  }

  it("an index records offsets from 2 GiB on in its 64-bit table", () => {
    const entries = [
      { id: "a".repeat(40), offset: 12, crc: 1 },
      { id: "b".repeat(40), offset: 0x7fffffff, crc: 2 },
      { id: "c".repeat(40), offset: 0x80000000, crc: 3 },
      { id: "0".repeat(39) + "1", offset: 2 ** 40 + 5, crc: 0xffffffff },
    ];
    const data = encodePackIndex(entries, Buffer.alloc(20, 7));
    const index = PackIndex.parse(data, "test.idx");
    expect(data.length).toBe(8 + 1024 + 4 * 28 + 2 * 8 + 40);
    for (const entry of entries) {
      const position = index.find(entry.id);
      expect([index.idAt(position), index.offsetAt(position), index.crcAt(position)]).toEqual([entry.id, entry.offset, entry.crc]);
    }
    expect(index.packChecksum).toEqual(Buffer.alloc(20, 7));
    expect(index.find("d".repeat(40))).toBe(-1);
  });

  it("an unknown mode is refused", () => {
    expect(() => new PackWriter(tempDir(), { mode: "cloud" as "disk" })).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
  });
});
