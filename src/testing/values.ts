import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { sorted, type Kit } from "./context.js";

/** What a value is once stored: exact types, exact bytes, large values, no shared references. */
export function valueTests({ context, test, sizes }: Kit): void {
  test("keeps strings and rich values exact", async () => {
    const value = {
      text: "456",
      date: new Date("2020-01-02T03:04:05.006Z"),
      map: new Map([["k", 1]]),
      set: new Set([1, 2]),
      big: 12345678901234567890n,
      nan: Number.NaN,
      inf: Number.NEGATIVE_INFINITY,
      missing: undefined,
    };
    await context.storage.setItem("rich", value);
    await context.storage.setItem("numeric-string", "456");
    expect(await context.storage.getItem("rich")).toEqual(value);
    expect(await context.storage.getItem("numeric-string")).toBe("456");
  });

  test("raw bytes: all 256 byte values", async () => {
    const bytes = new Uint8Array(256 * 4);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
    await context.storage.setItemRaw("raw:all", bytes);
    expect(Buffer.from((await context.storage.getItemRaw("raw:all"))!).equals(Buffer.from(bytes))).toBe(true);
    await context.storage.setItemRaw("raw:buffer", Buffer.from([0, 255, 0]));
    expect([...(await context.storage.getItemRaw("raw:buffer"))!]).toEqual([0, 255, 0]);
  });

  test("a value read or written cannot be changed from outside", async () => {
    const bytes = new Uint8Array([1, 2, 3]);
    await context.storage.setItemRaw("raw:own", bytes);
    bytes[0] = 99;
    const read = (await context.storage.getItemRaw("raw:own"))!;
    read[1] = 99;
    expect([...(await context.storage.getItemRaw("raw:own"))!]).toEqual([1, 2, 3]);
    const object = { list: [1] };
    await context.storage.setItem("obj:own", object);
    object.list.push(2);
    const got = (await context.storage.getItem<{ list: number[] }>("obj:own"))!;
    got.list.push(3);
    expect(await context.storage.getItem("obj:own")).toEqual({ list: [1] });
  });

  test(`a ${sizes.bigValue / (1024 * 1024)} MB value`, async () => {
    const big = randomBytes(sizes.bigValue);
    await context.storage.setItemRaw("big:raw", big);
    expect(Buffer.from((await context.storage.getItemRaw("big:raw"))!).equals(big)).toBe(true);
    const text = big.toString("base64").slice(0, sizes.bigValue);
    await context.storage.setItem("big:text", text);
    expect(await context.storage.getItem("big:text")).toBe(text);
  });

  test("setItems with undefined values removes those keys, as setItem does", async () => {
    const storage = context.storage;
    await storage.setItems([
      { key: "su:a", value: 1 },
      { key: "su:b", value: 2 },
    ]);
    await storage.setItem("su:t", 3, { ttl: 600_000 });
    await storage.setItems([
      { key: "su:a", value: undefined },
      { key: "su:t", value: undefined },
      { key: "su:c", value: 3 },
    ]);
    expect(sorted(await storage.getKeys("su"))).toEqual(["su:b", "su:c"]);
    expect(await storage.getItems(["su:a", "su:t", "su:c"])).toEqual([
      { key: "su:a", value: null },
      { key: "su:t", value: null },
      { key: "su:c", value: 3 },
    ]);
    expect((await storage.getMeta("su:t")).expires).toBeUndefined();
    await storage.setItems([{ key: "su:b", value: undefined }]);
    expect(await storage.getKeys("su")).toEqual(["su:c"]);
  });
}
