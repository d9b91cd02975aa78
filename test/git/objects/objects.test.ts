import { chmodSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { isStorageError } from "../../../src/core/errors.js";
import { decodeCommit, decodeTag, decodeTree, encodeCommit, encodeTag, encodeTree, hashObject, Repository, TreeMode, type ObjectType, type TreeEntry } from "../../../src/git/index.js";
import { loosePath } from "../../../src/git/objects/looseObjects.js";
import { tempDir } from "../../helpers/tempDir.js";
import { git, gitBytes, gitInitBare } from "../gitCli.js";

const sig = { name: "Ada Lovelace", email: "ada@example.com", timestamp: 1700000000, timezone: "+0130" };

/** Re-encodes a decoded object of any type. */
function reencode(type: ObjectType, body: Buffer): Buffer {
  if (type === "tree") return encodeTree(decodeTree(body));
  if (type === "commit") return encodeCommit(decodeCommit(body));
  if (type === "tag") return encodeTag(decodeTag(body));
  return body;
}

describe("object model", () => {
  it("hashes as git hash-object does", () => {
    const dir = tempDir("git-hash");
    for (const body of [Buffer.alloc(0), Buffer.from("hello\n"), Buffer.from(Array.from({ length: 256 }, (_, i) => i))]) {
      expect(hashObject("blob", body)).toBe(git(dir, ["hash-object", "--stdin"], body));
    }
  });

  it("sorts tree entries in git's order (a tree sorts as if its name ended in /)", () => {
    const dir = gitInitBare();
    const blob = git(dir, ["hash-object", "-w", "--stdin"], "x");
    const sub = git(dir, ["mktree"], `100644 blob ${blob}\tinner\n`);
    const entries: TreeEntry[] = [
      { mode: TreeMode.tree, name: "a", id: sub },
      { mode: TreeMode.file, name: "a.b", id: blob },
      { mode: TreeMode.file, name: "a-", id: blob },
      { mode: TreeMode.file, name: "a0", id: blob },
      { mode: TreeMode.executable, name: "b", id: blob },
      { mode: TreeMode.symlink, name: "link", id: blob },
      { mode: TreeMode.submodule, name: "mod", id: "1".repeat(40) },
      { mode: TreeMode.file, name: "ü", id: blob },
      { mode: TreeMode.file, name: "Z", id: blob },
    ];
    const lines = entries.map((e) => `${e.mode === "40000" ? "040000" : e.mode} ${e.mode === "40000" ? "tree" : e.mode === "160000" ? "commit" : "blob"} ${e.id}\t${e.name}`);
    const expected = git(dir, ["mktree", "--missing"], `${lines.reverse().join("\n")}\n`);
    expect(hashObject("tree", encodeTree(entries))).toBe(expected);
    expect(decodeTree(encodeTree(entries)).map((e) => e.name)).toEqual(["Z", "a-", "a.b", "a", "a0", "b", "link", "mod", "ü"]);
  });

  it("sorts by UTF-8 bytes where UTF-16 order differs (astral characters after U+E000)", () => {
    const dir = gitInitBare();
    const blob = git(dir, ["hash-object", "-w", "--stdin"], "x");
    const names = ["\u{1F600}", "\uE000", "\uFFFD", "a", "\u00FC"];
    const entries: TreeEntry[] = names.map((name) => ({ mode: TreeMode.file, name, id: blob }));
    const expected = git(dir, ["mktree"], names.map((name) => `100644 blob ${blob}\t${name}\n`).join(""));
    expect(hashObject("tree", encodeTree(entries))).toBe(expected);
    expect(decodeTree(encodeTree(entries)).map((e) => e.name)).toEqual(["a", "\u00FC", "\uE000", "\uFFFD", "\u{1F600}"]);
  });

  it("refuses duplicate and invalid tree names", () => {
    const id = "a".repeat(40);
    expect(() => encodeTree([{ mode: TreeMode.file, name: "x", id }, { mode: TreeMode.file, name: "x", id }])).toThrow(/Duplicate/);
    expect(() => encodeTree([{ mode: TreeMode.file, name: "a/b", id }])).toThrow(/Invalid tree entry name/);
    expect(() => encodeTree([{ mode: TreeMode.file, name: "", id }])).toThrow(/Invalid tree entry name/);
  });
});

describe("loose objects written by us", () => {
  it("are read by git cat-file and pass git fsck --strict", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const blob = repo.writeBlob(Buffer.from("hello world\n"));
    const binary = repo.writeBlob(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
    const tree = repo.writeTree([
      { mode: TreeMode.file, name: "greeting.txt", id: blob },
      { mode: TreeMode.executable, name: "bytes.bin", id: binary },
    ]);
    const root = repo.writeTree([{ mode: TreeMode.tree, name: "dir", id: tree }]);
    const commit = repo.writeCommit({ tree: root, parents: [], author: sig, committer: sig, extraHeaders: [], message: "first\n\nbody ü\n" });
    const second = repo.writeCommit({ tree: root, parents: [commit], author: sig, committer: { ...sig, timezone: "-0700" }, extraHeaders: [], message: "second\n" });
    const tag = repo.writeTag({ object: second, type: "commit", tag: "v1", tagger: sig, extraHeaders: [], message: "release\n" });
    repo.refs.update("refs/heads/main", second);
    repo.refs.update("refs/tags/v1", tag);

    expect(git(dir, ["cat-file", "-t", blob])).toBe("blob");
    expect(git(dir, ["cat-file", "-p", blob])).toBe("hello world");
    expect(gitBytes(dir, ["cat-file", "blob", binary])).toEqual(Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
    expect(git(dir, ["cat-file", "-p", `${tree}`])).toBe(`100755 blob ${binary}\tbytes.bin\n100644 blob ${blob}\tgreeting.txt`);
    expect(git(dir, ["cat-file", "-t", commit])).toBe("commit");
    expect(git(dir, ["log", "--format=%s|%an|%ai", "main"])).toBe("second|Ada Lovelace|2023-11-14 23:43:20 +0130\nfirst|Ada Lovelace|2023-11-14 23:43:20 +0130");
    expect(git(dir, ["cat-file", "-t", tag])).toBe("tag");
    expect(git(dir, ["show", "main:dir/greeting.txt"])).toBe("hello world");
    expect(git(dir, ["fsck", "--strict", "--no-dangling"])).toBe("");
  });

  it("writing an existing object refreshes its mtime instead of rewriting it", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const id = repo.writeBlob(Buffer.from("same"));
    const path = loosePath(repo.objectsDir, id);
    const old = new Date(Date.now() - 3600_000);
    chmodSync(path, 0o444);
    // Age the file, then write it again.
    utimesSync(path, old, old);
    expect(repo.writeBlob(Buffer.from("same"))).toBe(id);
    expect(statSync(path).mtimeMs).toBeGreaterThan(Date.now() - 60_000);
    expect((statSync(path).mode & 0o777).toString(8)).toBe("444");
  });

  it("write with fsync works", () => {
    const repo = Repository.open(gitInitBare(), { fsync: true });
    const id = repo.writeBlob(Buffer.from("durable"));
    expect(repo.readBlob(id).toString()).toBe("durable");
  });
});

describe("objects written by git", () => {
  it("read byte-exactly, and re-encode to the same id", () => {
    const dir = tempDir("git-work");
    git(dir, ["init", "-q", "-b", "main"]);
    writeFileSync(join(dir, "a.txt"), "alpha\n");
    writeFileSync(join(dir, "run.sh"), "#!/bin/sh\n");
    chmodSync(join(dir, "run.sh"), 0o755);
    git(dir, ["add", "."]);
    git(dir, ["commit", "-q", "-m", "one\n\nwith a body"]);
    writeFileSync(join(dir, "a.txt"), "beta\n");
    git(dir, ["commit", "-q", "-am", "two"]);
    git(dir, ["tag", "-a", "v1", "-m", "annotated"]);
    // A commit with a multi-line gpgsig header and an encoding header, made by hand.
    const tree = git(dir, ["rev-parse", "HEAD^{tree}"]);
    const signed =
      `tree ${tree}\nparent ${git(dir, ["rev-parse", "HEAD"])}\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 -0000\nencoding ISO-8859-1\n` +
      "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n =abcd\n -----END PGP SIGNATURE-----\n\nsigned\n";
    const signedId = git(dir, ["hash-object", "-t", "commit", "-w", "--stdin"], signed);
    const latin1 = Buffer.concat([Buffer.from(`tree ${tree}\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 +0000\nencoding ISO-8859-1\n\n`), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])]);
    const latin1Id = git(dir, ["hash-object", "-t", "commit", "-w", "--stdin"], latin1);

    const repo = Repository.open(dir);
    const ids = git(dir, ["rev-list", "--objects", "--all"]).split("\n").map((line) => line.slice(0, 40));
    ids.push(signedId, latin1Id, git(dir, ["rev-parse", "v1"]));
    for (const id of ids) {
      const type = git(dir, ["cat-file", "-t", id]) as ObjectType;
      const object = repo.readObject(id);
      expect(object.type).toBe(type);
      expect(object.body.equals(gitBytes(dir, ["cat-file", type, id]))).toBe(true);
      expect(hashObject(type, reencode(type, object.body))).toBe(id);
    }
    const commit = repo.readCommit(signedId);
    expect(commit.author).toEqual({ name: "A", email: "a@b", timestamp: 1, timezone: "+0000" });
    expect(commit.committer.timezone).toBe("-0000");
    expect(commit.extraHeaders.map(([name]) => name)).toEqual(["encoding", "gpgsig"]);
    expect(repo.readCommit(latin1Id).messageBytes).toEqual(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    expect(repo.readTag(git(dir, ["rev-parse", "v1"])).tag).toBe("v1");
  });

  it("git mktree with every mode reads back and re-encodes exactly", () => {
    const dir = gitInitBare();
    const blob = git(dir, ["hash-object", "-w", "--stdin"], "x");
    const sub = git(dir, ["mktree"], `100644 blob ${blob}\tf\n`);
    const tree = git(dir, ["mktree", "--missing"], [
      `100644 blob ${blob}\tplain`,
      `100755 blob ${blob}\texec`,
      `120000 blob ${blob}\tlink`,
      `040000 tree ${sub}\tsub`,
      `160000 commit ${"1".repeat(40)}\tmodule`,
      `100644 blob ${blob}\tsub.txt`,
    ].join("\n") + "\n");
    const repo = Repository.open(dir);
    const entries = repo.readTree(tree);
    expect(entries.map((e) => `${e.mode} ${e.name}`)).toEqual(["100755 exec", "120000 link", "160000 module", "100644 plain", "100644 sub.txt", "40000 sub"]);
    expect(hashObject("tree", encodeTree([...entries].reverse()))).toBe(tree);
  });
});

describe("corrupt objects", () => {
  function corruptCase(damage: (path: string, id: string) => void) {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const id = repo.writeBlob(Buffer.from("precious data"));
    const path = loosePath(repo.objectsDir, id);
    chmodSync(path, 0o644);
    damage(path, id);
    try {
      Repository.open(dir).readObject(id);
    } catch (error) {
      return error;
    }
    return undefined;
  }

  it("truncated zlib, bad header, wrong content are E_CORRUPT", () => {
    const truncated = corruptCase((path) => writeFileSync(path, readFileSync(path).subarray(0, 10)));
    const badHeader = corruptCase((path) => writeFileSync(path, deflateSync(Buffer.from("blob x\0abc"))));
    const wrongSize = corruptCase((path) => writeFileSync(path, deflateSync(Buffer.from("blob 99\0precious data"))));
    const mismatch = corruptCase((path) => writeFileSync(path, deflateSync(Buffer.from("blob 13\0precious dat!"))));
    for (const error of [truncated, badHeader, wrongSize, mismatch]) expect(isStorageError(error, "E_CORRUPT")).toBe(true);
    expect(String(mismatch)).toMatch(/hashes to another id/);
  });

  it("a missing object is E_NOT_FOUND, and a wrong type E_CORRUPT", () => {
    const repo = Repository.open(gitInitBare());
    expect(() => repo.readObject("1".repeat(40))).toThrow(expect.objectContaining({ code: "E_NOT_FOUND" }));
    const blob = repo.writeBlob(Buffer.from("x"));
    expect(() => repo.readTree(blob)).toThrow(expect.objectContaining({ code: "E_CORRUPT" }));
    expect(repo.hasObject(blob)).toBe(true);
    expect(repo.hasObject("2".repeat(40))).toBe(false);
    expect(repo.hasObject("../../config")).toBe(false);
    expect(() => repo.readObject("../../HEAD")).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
    expect(() => repo.readObject(blob.toUpperCase())).toThrow(expect.objectContaining({ code: "E_INVALID_KEY" }));
  });
});
