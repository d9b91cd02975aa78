import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { gunzip, gzip, gzipSync } from "node:zlib";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { createStorage, transformValues, wrapDriver, type CommitOperation, type Driver, type StorageMeta } from "../../src/index.js";
import { wholeStream } from "../../src/core/streams.js";
import fs from "../../src/drivers/fs.js";
import git from "../../src/drivers/git.js";
import memory from "../../src/drivers/memory.js";
import queue from "../../src/drivers/queue.js";
import sqlite from "../../src/drivers/sqlite.js";
import { testDriver } from "../../src/testing/index.js";
import { codeOf } from "../helpers/checks.js";
import { KIT_TTL } from "../helpers/clock.js";
import { tempDir } from "../helpers/tempDir.js";

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** gzip through node:zlib, asynchronously: a real transform that narrows the sync flag. */
const gzipped = (inner: Driver) => transformValues(inner, { name: "gzip", encode: (bytes) => gzipAsync(bytes), decode: (bytes) => gunzipAsync(bytes) });

// KIT_TTL: two zlib passes and a git commit per write outlast the kit's 200 ms default on a loaded machine;
// the transform does not depend on sizes, so the small scale.
testDriver({ name: "gzip transform over git", driver: () => gzipped(git({ dir: tempDir("transform-git-kit") })), ttl: KIT_TTL, scale: "small" });

/** What the inner driver holds for a key, as the transform stored it. */
const storedText = async (inner: Driver, key: string) => String(await inner.getItem(key, {}));
const storedBytes = async (inner: Driver, key: string) => Buffer.from((await inner.getItemRaw!(key, {})) as Uint8Array);
/** The user's bytes in a value stored in the bytes form: the form byte 0, then gzip's output of the type tag and the bytes. */
const gunzipStored = async (stored: Buffer) => {
  expect(stored[0]).toBe(0);
  return (await gunzipAsync(stored.subarray(1))).subarray(1);
};

describe("transformValues", () => {
  it("stores encoded bytes on every write path, and every read path gives back the user's value", async () => {
    const inner = git({ dir: tempDir("transform-paths") });
    const storage = createStorage({ driver: gzipped(inner) });
    const bytes = new Uint8Array([0, 1, 2, 255, 254]);
    await storage.setItem("text", "hello hello hello");
    await storage.setItems([
      { key: "batch:a", value: { n: 1 } },
      { key: "batch:b", value: [1, 2] },
    ]);
    await storage.setItemRaw("raw", bytes);
    await storage.setItemStream("stream", (async function* () {
      yield new Uint8Array([9, 8]);
      yield new Uint8Array([7]);
    })());
    await storage.transaction(async (tx) => {
      await tx.setItem("tx:set", "in a commit");
      await tx.setItemRaw("tx:raw", bytes);
    });

    // What lies in the store is gzip's output, not the user's text.
    const stored = await storedBytes(inner, "text");
    expect(stored.toString("latin1")).not.toContain("hello");
    expect(new TextDecoder().decode(await gunzipStored(stored))).toBe('"hello hello hello"');
    expect(new TextDecoder().decode(await gunzipStored(await storedBytes(inner, "tx:set")))).toBe('"in a commit"');
    expect(new TextDecoder().decode(await gunzipStored(await storedBytes(inner, "batch:a")))).toBe('{"n":1}');

    expect(await storage.getItem("text")).toBe("hello hello hello");
    expect(await storage.getItems(["batch:a", "batch:b", "missing"])).toEqual([
      { key: "batch:a", value: { n: 1 } },
      { key: "batch:b", value: [1, 2] },
      { key: "missing", value: null },
    ]);
    expect(await storage.getItemRaw("raw")).toEqual(bytes);
    expect(await storage.getItemRaw("stream")).toEqual(new Uint8Array([9, 8, 7]));
    expect(await storage.getItem("tx:set")).toBe("in a commit");
    expect(await storage.getItemRaw("tx:raw")).toEqual(bytes);
    const opened = await storage.getItemStream("raw");
    const chunks: Uint8Array[] = [];
    for await (const chunk of opened!.body) chunks.push(chunk);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(bytes));
    expect(opened!.meta.size).toBe(bytes.byteLength);
    await storage.dispose();
  });

  it("getHistory and getItem(key, { version }) decode past values", async () => {
    const inner = git({ dir: tempDir("transform-history") });
    const storage = createStorage({ driver: gzipped(inner) });
    await storage.setItem("k", "first");
    await storage.setItem("k", { second: true });
    const history = await storage.getHistory("k");
    expect(history.map((entry) => entry.value)).toEqual([{ second: true }, "first"]);
    expect(await storage.getItem("k", { version: history[1]!.version })).toBe("first");
    await storage.dispose();
  });

  it("meta.size is the user's size, and TTL and setMeta work through the sidecar, itself encoded", async () => {
    const inner = memory();
    const storage = createStorage({ driver: transformValues(inner, { encode: (b) => b.map((x) => x ^ 1), decode: (b) => b.map((x) => x ^ 1), sync: true }) });
    await storage.setItemRaw("sized", new Uint8Array(100));
    expect((await storage.getMeta("sized")).size).toBe(100);
    await storage.setMeta("sized", { owner: "ada" });
    expect(await storage.getMeta("sized")).toMatchObject({ owner: "ada", size: 100 });
    // memory keeps TTL natively: a layer narrows the flag, so the core keeps expiry in a sidecar, through the transform.
    const noTtl = wrapDriver(memory(), { name: "no-native-ttl", flags: { ttl: false } });
    const expiring = createStorage({ driver: transformValues(noTtl, { encode: (b) => b.map((x) => x ^ 1), decode: (b) => b.map((x) => x ^ 1), sync: true }) });
    await expiring.setItem("short", "v", { ttl: 60_000 });
    const meta = await expiring.getMeta("short");
    expect(meta.ttl).toBeGreaterThan(50_000);
    // Stored in the bytes form: the form byte, then the XORed tag "s" and the sidecar's JSON.
    const sidecar = (await noTtl.getItemRaw!("short$", {})) as Uint8Array;
    expect([sidecar[0], sidecar[1]]).toEqual([0, 0x73 ^ 1]);
    await expiring.setItem("gone", "v", { ttl: 1 });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await expiring.getItem("gone")).toBeNull();
    await storage.dispose();
    await expiring.dispose();
  });

  it("keeps sync only when told the transform is synchronous", () => {
    expect(gzipped(memory()).flags?.sync).toBe(false);
    const sync = createStorage({ driver: transformValues(memory(), { encode: (b) => b, decode: (b) => b, sync: true }) });
    sync.setItemSync("a", "b");
    expect(sync.getItemSync("a")).toBe("b");
  });

  it("forwards asyncWrites transformed, so the async API's batched writes are encoded too", async () => {
    const inner = git({ dir: tempDir("transform-async") });
    const wrapped = gzipped(inner);
    expect(Object.keys(wrapped.asyncWrites ?? {}).sort()).toEqual(Object.keys(inner.asyncWrites ?? {}).sort());
    await wrapped.asyncWrites!.setItem!("direct", "plain text", {});
    expect(new TextDecoder().decode(await gunzipStored(await storedBytes(inner, "direct")))).toBe("plain text");
    expect(await wrapped.getItem("direct")).toBe("plain text");
  });

  it("calls the inner driver's methods on the driver, so a class instance's `this` holds on every path", async () => {
    class MapDriver implements Driver {
      name = "map";
      flags = { transactions: true };
      entries = new Map<string, string>();
      hasItem(key: string) { return this.entries.has(key); }
      getItem(key: string) { return this.entries.get(key) ?? null; }
      getItems(items: { key: string }[]) { return items.map(({ key }) => ({ key, value: this.getItem(key) })); }
      setItem(key: string, value: string) { this.entries.set(key, value); }
      setItems(items: { key: string; value: string }[]) { for (const { key, value } of items) this.setItem(key, value); }
      removeItem(key: string) { this.entries.delete(key); }
      getMeta(key: string) { return this.entries.has(key) ? { size: this.entries.get(key)!.length } : null; }
      getKeys() { return [...this.entries.keys()]; }
      commit(operations: CommitOperation[]) { for (const op of operations) if (op.type === "set") this.setItem(op.key, op.value); }
    }
    const inner = new MapDriver();
    const storage = createStorage({ driver: gzipped(inner) });
    await storage.setItem("one", "first");
    await storage.setItems([{ key: "two", value: [2] }]);
    await storage.transaction(async (tx) => tx.setItem("three", { n: 3 }));
    expect(await storage.getItems(["one", "two", "three"])).toEqual([{ key: "one", value: "first" }, { key: "two", value: [2] }, { key: "three", value: { n: 3 } }]);
    expect((await storage.getMeta("one")).size).toBe(Buffer.byteLength(JSON.stringify("first")));
    // No getItemRaw nor setItemRaw: the text form, through setItem.
    expect(await storedText(inner, "one")).toMatch(/^base64:/);
  });

  it("a stream's meta is the version its bytes come from, even when a write lands between two reads", async () => {
    const flip = (inner: Driver) => transformValues(inner, { encode: (b) => b.map((x) => x ^ 1), decode: (b) => b.map((x) => x ^ 1), sync: true });
    const inner = memory();
    // Another writer's write, landing synchronously (memory and a sync transform): once, after the first getItem.
    let pending: (() => void) | undefined = () => void flip(inner).setItem!("k", JSON.stringify("second"), {});
    const writeNow = () => (pending?.(), (pending = undefined));
    // A driver with streams whose meta comes with the bytes they open, as ItemStream promises.
    const streaming = wrapDriver(inner, {
      name: "streaming",
      getItem: (key, opts) => {
        const value = inner.getItem(key, opts);
        writeNow();
        return value;
      },
      getItemStream: (key, opts) => {
        const stored = inner.getItem(key, opts) as string | null;
        return stored === null ? null : wholeStream(Buffer.from(stored), inner.getMeta!(key, opts) as StorageMeta);
      },
    });
    const storage = createStorage({ driver: flip(streaming) });
    flip(inner).setItem!("k", JSON.stringify("first"), {});
    const opened = (await storage.getItemStream("k"))!;
    const chunks: Uint8Array[] = [];
    for await (const chunk of opened.body) chunks.push(chunk);
    writeNow();
    expect(JSON.parse(Buffer.concat(chunks).toString())).toBe("first");
    // The etag of "first": a write guarded by it must fail, since "second" replaced it.
    expect(await storage.getItem("k")).toBe("second");
    expect(await codeOf(() => storage.setItem("k", "third", { ifMatch: opened.meta.etag as string }))).toBe("E_CONFLICT");
  });

  it("streams from drivers that stream stored text as it is (fs) and as the bytes it stands for (a queue's queued value)", async () => {
    const flat = fs({ base: tempDir("transform-stream-fs") });
    const queued = queue({ driver: fs({ base: tempDir("transform-stream-queue") }), flushInterval: 60_000 });
    for (const inner of [flat, queued]) {
      const storage = createStorage({ driver: gzipped(inner) });
      await storage.setItem("text", { a: 1 });
      await storage.setItemRaw("bytes", new Uint8Array([0, 255]));
      const read = async (key: string) => {
        const chunks: Uint8Array[] = [];
        for await (const chunk of (await storage.getItemStream(key))!.body) chunks.push(chunk);
        return new Uint8Array(Buffer.concat(chunks));
      };
      expect(JSON.parse(Buffer.from(await read("text")).toString())).toEqual({ a: 1 });
      expect(await read("bytes")).toEqual(new Uint8Array([0, 255]));
      await storage.dispose();
    }
  });

  it("encodes every write of a driver without setItem: its setItemRaw and setItems store the bytes form", async () => {
    const inner = memory();
    const bytesOnly = wrapDriver(inner, { name: "bytes-only", drop: ["setItem"] });
    const storage = createStorage({ driver: gzipped(bytesOnly) });
    await storage.setItemRaw("raw", new Uint8Array([0, 255]));
    await storage.setItems([{ key: "batch", value: { n: 1 } }]);
    expect(await storage.getItemRaw("raw")).toEqual(new Uint8Array([0, 255]));
    expect(await storage.getItem("batch")).toEqual({ n: 1 });
    expect(Buffer.from(await gunzipStored(await storedBytes(inner, "raw")))).toEqual(Buffer.from([0, 255]));
    expect(new TextDecoder().decode(await gunzipStored(await storedBytes(inner, "batch")))).toBe('{"n":1}');
  });

  it("a transform that is not deterministic declares version etags over content-hash drivers, and its etags act so", async () => {
    const salted = (inner: Driver) =>
      transformValues(inner, { encode: (b) => Buffer.concat([randomBytes(8), b]), decode: (b) => b.subarray(8), sync: true, deterministic: false });
    const driver = salted(git({ dir: tempDir("transform-salted") }));
    expect(driver.flags.etag).toBe("version");
    const storage = createStorage({ driver });
    await storage.setItem("k", 1);
    const first = (await storage.getMeta("k")).etag;
    await storage.setItem("k", 1);
    expect((await storage.getMeta("k")).etag).not.toBe(first);
    expect(salted(memory()).flags.etag).toBe("version");
    expect(gzipped(git({ dir: tempDir("transform-gzip-etag") })).flags.etag).toBe("content");
    expect(await codeOf(() => transformValues(memory(), { encode: (b) => b, decode: (b) => b, deterministic: "no" as never }))).toBe("E_INVALID_OPTION");
  });

  it("refuses what it cannot read or write with a coded error", async () => {
    const inner = memory();
    const storage = createStorage({ driver: gzipped(inner) });
    inner.setItem!("foreign", '"written without the transform"', {});
    expect(await codeOf(() => storage.getItem("foreign"))).toBe("E_CORRUPT");
    inner.setItem!("garbled", "base64:AAAA", {});
    expect(await codeOf(() => storage.getItem("garbled"))).toBe("E_CORRUPT");
    const failing = createStorage({ driver: transformValues(memory(), { encode: () => Promise.reject(new Error("no key")), decode: (b) => b }) });
    expect(await codeOf(() => failing.setItem("a", 1))).toBe("E_INVALID_VALUE");
    expect(await failing.hasItem("a")).toBe(false);
    expect(await codeOf(() => transformValues(memory(), { encode: (b: Uint8Array) => b } as never))).toBe("E_INVALID_OPTION");
    const notBytes = createStorage({ driver: transformValues(memory(), { encode: () => "text" as never, decode: (b) => b }) });
    expect(await codeOf(() => notBytes.setItem("a", 1))).toBe("E_INVALID_VALUE");
  });
});

describe("transformValues' stored forms", () => {
  /** About 1 MB of JSON lines, as the review measured: gzip shrinks it to a tenth. */
  const jsonLines = () => {
    const lines: string[] = [];
    for (let i = 0, length = 0; length < 1_000_000; i++) {
      lines.push(JSON.stringify({ id: i, name: `user ${i}`, tags: ["a", "b", String(i % 7)], score: (i * 7919) % 1000 }));
      length += lines[i]!.length + 1;
    }
    return Buffer.from(lines.join("\n"));
  };

  it("stores a 1 MB value in one byte more than the transform's output, on sqlite and on git (git's blob checked with git cat-file)", async () => {
    const value = jsonLines();
    // What gzip makes of the tagged value (the bytes tag, then the value): gzip's output is the same on every run.
    const encoded = gzipSync(Buffer.concat([Buffer.from([0x62]), value]));
    const path = join(tempDir("transform-size-sqlite"), "store.db");
    const dir = tempDir("transform-size-git");
    for (const inner of [sqlite({ path }), git({ dir })]) {
      const storage = createStorage({ driver: gzipped(inner) });
      await storage.setItemRaw("big", value);
      const stored = await storedBytes(inner, "big");
      expect(stored.byteLength).toBe(encoded.byteLength + 1);
      // Buffer's equals, not toEqual: vitest compares a megabyte element by element for seconds.
      expect(stored.subarray(1).equals(encoded)).toBe(true);
      expect(Buffer.from((await storage.getItemRaw("big"))!).equals(value)).toBe(true);
      expect((await storage.getMeta("big")).size).toBe(value.byteLength);
      await storage.dispose();
    }
    const blob = execFileSync("git", ["--git-dir", dir, "rev-parse", "refs/stowage/default:big"], { encoding: "utf8" }).trim();
    expect(Number(execFileSync("git", ["--git-dir", dir, "cat-file", "-s", blob], { encoding: "utf8" }))).toBe(encoded.byteLength + 1);
  });

  it("reads values stored in the base64: text form written before, on every read path, beside values in the bytes form", async () => {
    /** A value as transformValues stored it before the bytes form: base64: text of gzip's output of the tag and the bytes. */
    const textForm = (tag: "s" | "b", payload: string | Uint8Array) => `base64:${gzipSync(Buffer.concat([Buffer.from(tag), Buffer.from(payload)])).toString("base64")}`;
    for (const inner of [memory(), sqlite({ path: join(tempDir("transform-old-sqlite"), "store.db") }), git({ dir: tempDir("transform-old-git") })]) {
      const storage = createStorage({ driver: gzipped(inner) });
      await inner.setItem!("old:text", textForm("s", JSON.stringify({ old: true })), {});
      await inner.setItem!("old:bytes", textForm("b", new Uint8Array([0, 1, 255])), {});
      await storage.setItemRaw("new:bytes", new Uint8Array([255, 0, 128]));
      await storage.setItem("new:text", "fresh");
      expect(await storage.getItem("old:text")).toEqual({ old: true });
      expect(await storage.getItemRaw("old:bytes")).toEqual(new Uint8Array([0, 1, 255]));
      expect(await storage.getItems(["old:text", "new:text", "old:bytes", "new:bytes"])).toEqual([
        { key: "old:text", value: { old: true } },
        { key: "new:text", value: "fresh" },
        { key: "old:bytes", value: new Uint8Array([0, 1, 255]) },
        { key: "new:bytes", value: new Uint8Array([255, 0, 128]) },
      ]);
      expect((await storage.getMeta("old:text")).size).toBe(JSON.stringify({ old: true }).length);
      if (inner.getHistory) {
        await storage.setItemRaw("old:bytes", new Uint8Array([7]));
        const history = await storage.getHistory("old:bytes");
        expect(history.map((entry) => entry.value)).toEqual([new Uint8Array([7]), new Uint8Array([0, 1, 255])]);
        expect(await storage.getItemRaw("old:bytes", { version: history[1]!.version })).toEqual(new Uint8Array([0, 1, 255]));
      }
      await storage.dispose();
    }
  });

  it("getItems reads values a driver hands back as text (git: the blob as UTF-8) again as bytes, and skips that driver's getItems once it has seen one", async () => {
    const inner = git({ dir: tempDir("transform-items-text") });
    let batches = 0;
    const counted = wrapDriver(inner, { name: "counted", getItems: (items, common) => (batches++, inner.getItems!(items, common)) });
    const storage = createStorage({ driver: gzipped(counted) });
    await storage.setItemRaw("bytes", new Uint8Array([0, 200, 255]));
    await storage.setItem("text", "t");
    const expected = [{ key: "bytes", value: new Uint8Array([0, 200, 255]) }, { key: "text", value: "t" }, { key: "none", value: null }];
    // git keeps no TTL: the core reads sidecars with getItems too (on writes, before any value came back as text).
    const before = batches;
    expect(await storage.getItems(["bytes", "text", "none"])).toEqual(expected);
    expect(batches).toBe(before + 1);
    expect(await storage.getItems(["bytes", "text", "none"])).toEqual(expected);
    expect(batches).toBe(before + 1);
    await storage.dispose();
  });

  it("setItems stays all-or-nothing over a transactional driver (one commit of setRaw operations): a failed guard writes no value", async () => {
    const inner = sqlite({ path: join(tempDir("transform-atomic"), "store.db") });
    const storage = createStorage({ driver: gzipped(inner) });
    await storage.setItem("guarded", "before");
    const etag = (await storage.getMeta("guarded")).etag as string;
    const batch = (guard: string) => storage.setItems([{ key: "free", value: "new" }, { key: "guarded", value: "after", options: { ifMatch: guard } }]);
    expect(await codeOf(() => batch("not-the-etag"))).toBe("E_CONFLICT");
    expect(await storage.getItems(["free", "guarded"])).toEqual([{ key: "free", value: null }, { key: "guarded", value: "before" }]);
    await batch(etag);
    expect(await storage.getItems(["free", "guarded"])).toEqual([{ key: "free", value: "new" }, { key: "guarded", value: "after" }]);
    expect((await storedBytes(inner, "free"))[0]).toBe(0);
    await storage.dispose();
  });

  it("reads a stored value handed back as an ArrayBuffer", async () => {
    const inner = memory();
    const asArrayBuffer = wrapDriver(inner, { name: "array-buffer", getItemRaw: (key, opts) => {
      const bytes = inner.getItemRaw!(key, opts) as Uint8Array | null;
      return bytes && bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    } });
    const storage = createStorage({ driver: gzipped(asArrayBuffer) });
    await storage.setItem("k", { a: 1 });
    expect(await storage.getItem("k")).toEqual({ a: 1 });
  });

  it("one sidecar it cannot decode fails no listing: reads of its key are E_CORRUPT, and the key can be overwritten and removed", async () => {
    // git keeps no TTL of its own, so the core reads sidecars while listing.
    const inner = git({ dir: tempDir("transform-bad-sidecar") });
    const storage = createStorage({ driver: gzipped(inner) });
    await storage.setItems([{ key: "a", value: 1 }, { key: "k", value: 2 }, { key: "r", value: 3 }]);
    await inner.setItem!("k$", '{"owner":"written without the transform"}', {});
    await inner.setItem!("r$", "not even JSON", {});
    expect((await storage.getKeys()).sort()).toEqual(["a", "k", "r"]);
    const pages: string[] = [];
    for await (const page of storage.iterateKeys("", { batchSize: 1 })) pages.push(...page);
    expect(pages.sort()).toEqual(["a", "k", "r"]);
    expect(await codeOf(() => storage.getItem("k"))).toBe("E_CORRUPT");
    expect(await codeOf(() => storage.getMeta("k"))).toBe("E_CORRUPT");
    // The write replaces the sidecar it cannot read (here with none), so the key reads again.
    await storage.setItem("k", "again");
    expect(await storage.getItem("k")).toBe("again");
    expect(await inner.hasItem("k$", {})).toBe(false);
    await storage.removeItem("r");
    expect(await inner.hasItem("r$", {})).toBe(false);
    expect((await storage.getKeys()).sort()).toEqual(["a", "k"]);
    // A ttl write over an unreadable sidecar records its expiry in a new one.
    await inner.setItem!("a$", "garbage", {});
    await storage.setItem("a", 4, { ttl: 60_000 });
    expect((await storage.getMeta("a")).ttl).toBeGreaterThan(50_000);
    await storage.dispose();
  });
});
