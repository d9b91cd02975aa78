import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { gather } from "../core/streams.js";
import { expectCode, type Kit } from "./context.js";

/** setItemStream / getItemStream: raw bytes in chunks, and a failing body writes nothing. */
export function streamTests({ context, test }: Kit): void {
  test("streams: setItemStream and getItemStream carry raw bytes, and a failing body writes nothing", async () => {
    const storage = context.storage;
    const parts = [randomBytes(100_000), Buffer.from("text chunk"), randomBytes(200_000)];
    await storage.setItemStream(
      "stream:value",
      (async function* () {
        yield* parts;
      })(),
    );
    const whole = Buffer.concat(parts);
    expect(Buffer.from((await storage.getItemRaw("stream:value"))!).equals(whole)).toBe(true);
    const opened = (await storage.getItemStream("stream:value"))!;
    expect(opened.meta.size ?? whole.length).toBe(whole.length);
    expect((await gather(opened.body)).equals(whole)).toBe(true);
    await opened.close();
    expect(await storage.getItemStream("stream:absent")).toBeNull();
    // Opened and let go unread: the value stays readable, also as a stream.
    const untouched = (await storage.getItemStream("stream:value"))!;
    await untouched.close();
    const again = (await storage.getItemStream("stream:value"))!;
    expect((await gather(again.body)).equals(whole)).toBe(true);
    const failing = (async function* () {
      yield randomBytes(1000);
      throw new Error("the body broke");
    })();
    await expect(storage.setItemStream("stream:value", failing)).rejects.toThrow("the body broke");
    // The body's own error comes back as it was thrown: the same object, not a driver's wrapping of it.
    const mine = new Error("mine");
    const throwing = (async function* () {
      yield randomBytes(70_000);
      throw mine;
    })();
    await expect(storage.setItemStream("stream:value", throwing)).rejects.toBe(mine);
    expect(Buffer.from((await storage.getItemRaw("stream:value"))!).equals(whole)).toBe(true);
    await expectCode(() => storage.setItemStream("stream:bad", "not a stream" as never), "E_INVALID_VALUE");
    expect(await storage.hasItem("stream:bad")).toBe(false);
  });
}
