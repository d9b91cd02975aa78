import { randomBytes } from "node:crypto";
import { createReadStream, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage, prefixStorage } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import memory from "../../src/drivers/memory.js";
import { tempDir } from "../helpers/tempDir.js";

/** File descriptors this process holds open (Linux). */
const openFiles = () => readdirSync("/proc/self/fd").length;

async function readAll(body: AsyncIterable<Uint8Array>): Promise<{ bytes: Buffer; chunks: number[] }> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return { bytes: Buffer.concat(chunks), chunks: chunks.map((chunk) => chunk.length) };
}

/** A body of `count` chunks of `size` random bytes, made as it is read; `seen` collects what was sent. */
function generated(count: number, size: number, seen: Buffer[]): AsyncGenerator<Buffer> {
  return (async function* () {
    for (let i = 0; i < count; i++) {
      const chunk = randomBytes(size);
      seen.push(chunk);
      yield chunk;
    }
  })();
}

describe("fs driver streams", () => {
  it("reads a value from disk in chunks of at most 64 KiB, with the file's size and times", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    const value = randomBytes(1024 * 1024 + 7);
    await storage.setItemRaw("files:big.bin", value);
    const opened = (await storage.getItemStream("files:big.bin"))!;
    expect(opened.meta.size).toBe(value.length);
    expect(opened.meta.mtime).toEqual(statSync(join(base, "files", "big.bin")).mtime);
    const { bytes, chunks } = await readAll(opened.body);
    expect(bytes.equals(value)).toBe(true);
    expect(chunks.length).toBe(17);
    expect(Math.max(...chunks)).toBe(64 * 1024);
  });

  it("writes chunks to disk as they come: the temp file grows before the body ends, and the key changes only at its end", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    await storage.setItemRaw("doc", Buffer.from("old"));
    let sizeOnDisk = -1;
    const sent: Buffer[] = [];
    const body = (async function* () {
      yield* generated(8, 256 * 1024, sent);
      // Halfway: the chunks so far are on disk in the temp file, and the key still reads the old value.
      const temp = readdirSync(base).find((name) => name.startsWith(".stowage-tmp-"))!;
      sizeOnDisk = statSync(join(base, temp)).size;
      expect(readFileSync(join(base, "doc"), "utf8")).toBe("old");
      yield* generated(8, 256 * 1024, sent);
    })();
    await storage.setItemStream("doc", body);
    expect(sizeOnDisk).toBe(8 * 256 * 1024);
    expect(readFileSync(join(base, "doc")).equals(Buffer.concat(sent))).toBe(true);
    expect(readdirSync(base)).toEqual(["doc"]);
  });

  it("a body that fails midway leaves the old value and no temp file", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: fsDriver({ base }) });
    await storage.setItemRaw("doc", Buffer.from("old"));
    const lost = new Error("connection lost");
    const body = (async function* () {
      yield randomBytes(300_000);
      throw lost;
    })();
    // The body's own error comes back as it was thrown.
    await expect(storage.setItemStream("doc", body)).rejects.toBe(lost);
    expect(readFileSync(join(base, "doc"), "utf8")).toBe("old");
    expect(readdirSync(base)).toEqual(["doc"]);
  });

  it("a reader keeps the version it opened while a writer replaces the key", async () => {
    const storage = createStorage({ driver: fsDriver({ base: tempDir() }) });
    const first = randomBytes(500_000);
    await storage.setItemRaw("doc", first);
    const opened = (await storage.getItemStream("doc"))!;
    await storage.setItemRaw("doc", randomBytes(10));
    expect(opened.meta.size).toBe(first.length);
    expect((await readAll(opened.body)).bytes.equals(first)).toBe(true);
    expect((await storage.getItemRaw("doc"))!.length).toBe(10);
  });

  it("close() releases an opened value without reading it, and breaking off a read releases it too", async () => {
    const storage = createStorage({ driver: fsDriver({ base: tempDir() }) });
    await storage.setItemRaw("doc", randomBytes(1024 * 1024));
    const before = openFiles();
    const streams = await Promise.all(Array.from({ length: 20 }, () => storage.getItemStream("doc")));
    expect(openFiles()).toBeGreaterThanOrEqual(before + 20);
    await Promise.all(streams.map((opened) => opened!.close()));
    expect(openFiles()).toBe(before);
    const partly = (await storage.getItemStream("doc"))!;
    for await (const chunk of partly.body) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    await partly.close();
    expect(openFiles()).toBe(before);
  });

  it("keeps the core's expiry: ttl on a streamed write, no stream once expired", async () => {
    const storage = createStorage({ driver: fsDriver({ base: tempDir() }) });
    await storage.setItemStream("short", generated(3, 1000, []), { ttl: 150 });
    const opened = (await storage.getItemStream("short"))!;
    expect(opened.meta.ttl).toBeGreaterThan(0);
    expect(opened.meta.ttl).toBeLessThanOrEqual(150);
    await opened.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await storage.getItemStream("short")).toBeNull();
    expect(await storage.getKeys()).toEqual([]);
  });

  it("routes through mounts and prefixed views: an fs mount streams, the memory root reads whole", async () => {
    const base = tempDir();
    const storage = createStorage({ driver: memory() }).mount("files", fsDriver({ base }));
    const files = prefixStorage(storage, "files");
    const sent: Buffer[] = [];
    await files.setItemStream("a:b.bin", generated(4, 100_000, sent));
    expect(readFileSync(join(base, "a", "b.bin")).equals(Buffer.concat(sent))).toBe(true);
    const fromFs = (await storage.getItemStream("files:a:b.bin"))!;
    expect((await readAll(fromFs.body)).chunks.length).toBeGreaterThan(1);
    await storage.setItemStream("root.bin", generated(4, 100_000, []));
    const fromMemory = (await storage.getItemStream("root.bin"))!;
    const { chunks } = await readAll(fromMemory.body);
    expect(chunks).toEqual([400_000]);
    expect(fromMemory.meta.size).toBe(400_000);
  });

  it("takes Node streams, strings and ArrayBuffers, and refuses chunks that are not bytes", async () => {
    const storage = createStorage({ driver: fsDriver({ base: tempDir() }) });
    const { Readable } = await import("node:stream");
    await storage.setItemStream("mixed", Readable.from([Buffer.from("ab"), "cd", new Uint8Array([101]).buffer]));
    expect(Buffer.from((await storage.getItemRaw("mixed"))!).toString()).toBe("abcde");
    const bad = storage.setItemStream("bad", Readable.from([{ not: "bytes" }]));
    await expect(bad).rejects.toMatchObject({ code: "E_INVALID_VALUE" });
    expect(await storage.hasItem("bad")).toBe(false);
  });

  it("a write refused before its body is read lets go of the caller's stream: a file stream is destroyed, a generator ended", async () => {
    const source = join(tempDir(), "source.bin");
    writeFileSync(source, randomBytes(1024 * 1024));
    const storage = createStorage({ driver: fsDriver({ base: tempDir(), readOnly: true }) });
    const file = createReadStream(source);
    await expect(storage.setItemStream("doc", file)).rejects.toMatchObject({ code: "E_READONLY" });
    expect(file.destroyed).toBe(true);
    // Its file closes once its open (already under way) completes.
    if (!file.closed) await new Promise<void>((resolve) => file.once("close", () => resolve()));
    let ended = false;
    const body = (async function* () {
      try {
        yield Buffer.from("never read");
      } finally {
        ended = true;
      }
    })();
    // Started by the caller, then refused for its key: the generator is returned.
    await body.next();
    await expect(storage.setItemStream("../escape", body)).rejects.toMatchObject({ code: "E_INVALID_KEY" });
    expect(ended).toBe(true);
  });
});
