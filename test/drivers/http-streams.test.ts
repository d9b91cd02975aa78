import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createCoreStorage } from "../../src/core/storage.js";
import fsDriver from "../../src/drivers/fs.js";
import http from "../../src/drivers/http.js";
import { eventually } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";
import { startServer } from "../server/helpers.js";

const MIB = 1024 * 1024;
const temps = (dir: string) => readdirSync(dir).filter((name) => name.startsWith(".stowage-tmp-"));

/** A client storage over the http driver, against a stowage server over an fs store in a temp dir. */
async function clientOverFs(serverOptions: { maxBodySize?: number } = {}, timeout?: number) {
  const base = tempDir("http-streams");
  const { url } = await startServer({ driver: fsDriver({ base }), ...serverOptions });
  const client = createCoreStorage({ driver: http({ base: url, timeout }) });
  return { base, client };
}

async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe("http driver streams", () => {
  it("an upload reaches the server's disk while the client is still sending it", async () => {
    const { base, client } = await clientOverFs({ maxBodySize: 64 * MIB });
    const sent: Buffer[] = [];
    let onDiskMidway = 0;
    const body = (async function* () {
      for (let i = 0; i < 16; i++) {
        const chunk = randomBytes(MIB);
        sent.push(chunk);
        yield chunk;
        if (i === 7) {
          // Half sent: the server has written most of it to its temp file already.
          await eventually(() => {
            const [temp] = temps(join(base, "files"));
            expect(temp).toBeDefined();
            onDiskMidway = statSync(join(base, "files", temp!)).size;
            expect(onDiskMidway).toBeGreaterThan(6 * MIB);
          });
        }
      }
    })();
    await client.setItemStream("files:video", body, { ttl: 60_000 });
    expect(onDiskMidway).toBeGreaterThan(6 * MIB);
    expect(readFileSync(join(base, "files", "video")).equals(Buffer.concat(sent))).toBe(true);
    expect((await client.getMeta("files:video")).ttl).toBeGreaterThan(50_000);
  });

  it("a download comes in chunks with the size the server reports; an absent key is null", async () => {
    const { client } = await clientOverFs();
    const value = randomBytes(5 * MIB + 3);
    await client.setItemRaw("blob", value);
    const opened = (await client.getItemStream("blob"))!;
    expect(opened.meta.size).toBe(value.length);
    const chunks: Buffer[] = [];
    for await (const chunk of opened.body) chunks.push(Buffer.from(chunk));
    expect(chunks.length).toBeGreaterThan(1);
    expect(Buffer.concat(chunks).equals(value)).toBe(true);
    expect(await client.getItemStream("absent")).toBeNull();
    const unread = (await client.getItemStream("blob"))!;
    await unread.close();
    expect(Buffer.from((await client.getItemRaw("blob"))!).equals(value)).toBe(true);
  });

  it("a body that fails midway: the server keeps the old value and no temp file; the body's error comes back", async () => {
    const { base, client } = await clientOverFs({ maxBodySize: 64 * MIB });
    await client.setItemRaw("doc", Buffer.from("old"));
    const unplugged = new Error("the camera was unplugged");
    const body = (async function* () {
      yield randomBytes(2 * MIB);
      throw unplugged;
    })();
    // The body's own error comes back as it was thrown.
    expect(await failureOf(client.setItemStream("doc", body))).toBe(unplugged);
    await eventually(() => expect(temps(base)).toEqual([]));
    expect(Buffer.from((await client.getItemRaw("doc"))!).toString()).toBe("old");
  });

  it("an upload over the server's limit is E_TOO_LARGE as soon as the server refuses it", async () => {
    const { base, client } = await clientOverFs({ maxBodySize: MIB });
    await client.setItemRaw("doc", Buffer.from("old"));
    let yielded = 0;
    const body = (async function* () {
      for (; yielded < 256; yielded++) yield Buffer.alloc(256 * 1024, 7);
    })();
    const error = await failureOf(client.setItemStream("doc", body));
    expect(error).toMatchObject({ code: "E_TOO_LARGE" });
    expect(yielded).toBeLessThan(256);
    await eventually(() => expect(temps(base)).toEqual([]));
    expect(Buffer.from((await client.getItemRaw("doc"))!).toString()).toBe("old");
  });

  it("downloads nobody reads are cut off after the timeout and give their connections back", async () => {
    // 1.5 s: each of the 40 opens must still be answered within the timeout on a loaded 2-core machine (300 ms was not).
    const { client } = await clientOverFs({}, 1500);
    await client.setItemRaw("big", randomBytes(8 * MIB));
    // More than the driver's 32 connections, none read.
    const unread = await Promise.all(Array.from({ length: 40 }, () => client.getItemStream("big")));
    expect(unread.every((opened) => opened !== null)).toBe(true);
    // Each is cut once no byte has moved for the timeout; then calls get connections again.
    expect(await client.getItem("absent")).toBeNull();
    const error = await failureOf((async () => {
      for await (const chunk of unread[0]!.body) expect(chunk.length).toBeGreaterThan(0);
    })());
    expect(error).toMatchObject({ code: "E_UNAVAILABLE" });
  });

  it("an upload that stops moving fails with E_UNAVAILABLE after the timeout, however long it ran before", async () => {
    const { base, client } = await clientOverFs({ maxBodySize: 64 * MIB }, 400);
    const started = Date.now();
    const body = (async function* () {
      // Longer in all than the timeout, never idle for it...
      for (let i = 0; i < 6; i++) {
        yield randomBytes(64 * 1024);
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      // ...then stuck.
      await new Promise((resolve) => setTimeout(resolve, 5000));
      yield randomBytes(1);
    })();
    const error = await failureOf(client.setItemStream("stuck", body));
    expect(error).toMatchObject({ code: "E_UNAVAILABLE" });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(Date.now() - started).toBeGreaterThan(900);
    await eventually(() => expect(temps(base)).toEqual([]));
    expect(await client.hasItem("stuck")).toBe(false);
  });
});
