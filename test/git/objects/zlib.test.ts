import { randomBytes } from "node:crypto";
import { deflateSync, inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { adler32, deflateObject, inflateObject, STORED_MAX } from "../../../src/git/objects/zlib.js";
import { encodeTree, hashObject, Repository, TreeMode } from "../../../src/git/index.js";
import { errorCode, git, gitBytes, gitInitBare } from "../gitCli.js";

describe("zlib streams", () => {
  it("adler32 matches zlib's trailer", () => {
    for (const size of [0, 1, 100, 5552, 5553, 70_000]) {
      const data = randomBytes(size);
      expect(adler32(data)).toBe(deflateSync(data).readUInt32BE(deflateSync(data).length - 4));
    }
  });

  it("small objects are stored blocks zlib inflates; large ones are deflated; both inflate back", () => {
    for (const size of [0, 1, STORED_MAX, STORED_MAX + 1, 200_000]) {
      const data = Buffer.alloc(size, "ab");
      const stream = deflateObject(data);
      expect(inflateSync(stream).equals(data)).toBe(true);
      expect(inflateObject(stream, "test").equals(data)).toBe(true);
      if (size > STORED_MAX) expect(stream.length).toBeLessThan(size);
    }
  });

  it("deflating a buffer inflateObject returned hands back the stream it came from; a copy is deflated afresh", () => {
    const body = Buffer.from("tree-like text ".repeat(300));
    const stream = deflateSync(body, { level: 9 });
    const inflated = inflateObject(Buffer.concat([stream, Buffer.from("next entry")]), "test");
    expect(deflateObject(inflated).equals(stream)).toBe(true);
    const copy = Buffer.from(inflated);
    const fresh = deflateObject(copy);
    expect(fresh.equals(stream)).toBe(false);
    expect(inflateSync(fresh).equals(body)).toBe(true);
    // The same for a stored block above STORED_MAX (a tree as written), unwrapped without zlib.
    const tree = Buffer.concat(Array.from({ length: 60 }, (_, i) => Buffer.concat([Buffer.from(`100644 k${i}\0`), Buffer.from(hashObject("blob", Buffer.from(String(i))), "hex")])));
    const stored = deflateObject(tree);
    expect(stored[2]).toBe(0x01);
    const unwrapped = inflateObject(stored, "test");
    // The remembered stream itself (the same buffer each time), not a new stored block.
    expect(deflateObject(unwrapped)).toBe(deflateObject(unwrapped));
    expect(deflateObject(unwrapped).equals(stored)).toBe(true);
  });

  it("tree-like bodies (binary ids) up to 16 KiB are stored, text is deflated; git reads both", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const entries = Array.from({ length: 100 }, (_, i) => ({ mode: TreeMode.file, name: `k${i}`, id: hashObject("blob", Buffer.from(String(i))) }));
    const tree = encodeTree(entries);
    expect(tree.length).toBeGreaterThan(STORED_MAX);
    expect(deflateObject(tree)[2]).toBe(0x01);
    const json = Buffer.from(JSON.stringify(entries));
    expect(deflateObject(json).length).toBeLessThan(json.length / 2);
    const id = repo.writeTree(entries);
    expect(gitBytes(dir, ["cat-file", "tree", id]).equals(tree)).toBe(true);
    git(dir, ["fsck", "--strict"]);
  });

  it("a stored block with a bad checksum is E_CORRUPT", () => {
    const stream = deflateObject(Buffer.from("hello"));
    stream[stream.length - 1] = stream[stream.length - 1]! ^ 1;
    expect(errorCode(() => inflateObject(stream, "test"))).toBe("E_CORRUPT");
  });

  it("git reads large and small loose objects we write", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const large = randomBytes(300_000);
    const text = Buffer.from("text ".repeat(10_000));
    for (const body of [large, text, Buffer.from("tiny")]) {
      const id = repo.writeBlob(body);
      expect(gitBytes(dir, ["cat-file", "blob", id]).equals(body)).toBe(true);
    }
    expect(git(dir, ["fsck", "--strict"])).toMatch(/^(dangling blob [0-9a-f]{40}\n?){3}$/);
  });
});
