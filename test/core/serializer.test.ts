import { createStorage as createUnstorage } from "unstorage";
import unstorageMemory from "unstorage/drivers/memory";
import { describe, expect, it } from "vitest";
import { createStorage, jsonSerializer, richSerializer, type Driver } from "../../src/index.js";

describe("rich serializer", () => {
  it("round-trips what JSON cannot carry", () => {
    const value = {
      date: new Date(1_700_000_000_000),
      map: new Map<unknown, unknown>([["a", new Set([1n])]]),
      regexp: /x+/gi,
      url: new URL("https://example.com/a?b=c"),
      bytes: new Uint8Array([1, 2, 3]),
      floats: new Float64Array([1.5, -2]),
      negativeZero: -0,
      nothing: undefined,
      nan: Number.NaN,
      inf: [Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
      big: -(2n ** 70n),
    };
    const text = richSerializer.serialize(value);
    expect(richSerializer.deserialize(text)).toEqual(value);
  });

  it("keeps JSON values plain JSON text", () => {
    expect(richSerializer.serialize({ a: [1, "x", null, true] })).toBe('{"a":[1,"x",null,true]}');
    expect(richSerializer.serialize("456")).toBe('"456"');
    expect(richSerializer.deserialize('"456"')).toBe("456");
  });

  it("honours toJSON and refuses class instances without it", () => {
    class Money {
      toJSON() {
        return { cents: 5 };
      }
    }
    class Opaque {
      x = 1;
    }
    expect(richSerializer.serialize({ m: new Money() })).toBe('{"m":{"cents":5}}');
    expect(() => richSerializer.serialize(new Opaque())).toThrow(/Cannot stringify value/);
    expect(() => richSerializer.serialize(() => 1)).toThrow(/Cannot stringify value/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => richSerializer.serialize(cyclic)).toThrow(/circular/);
  });

  it("an object holding the envelope's own key reads back as itself", () => {
    const tricky = { $stowage: 1, json: "not an envelope" };
    expect(richSerializer.deserialize(richSerializer.serialize(tricky))).toEqual(tricky);
  });

  it("a stored envelope whose meta does not fit its json is E_CORRUPT, never a crash", () => {
    for (const text of ['{"$stowage":1,"json":{},"meta":{"values":"nonsense"}}', '{"$stowage":1,"json":1,"meta":{"values":["map"]}}']) {
      let caught: unknown;
      try {
        richSerializer.deserialize(text);
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ code: "E_CORRUPT" });
    }
  });

  it("reads values unstorage wrote the way unstorage reads them", async () => {
    const driver = unstorageMemory();
    const theirs = createUnstorage({ driver });
    const ours = createStorage({ driver: driver as Driver });
    await theirs.setItem("n", "456");
    await theirs.setItem("s", "hello");
    await theirs.setItem("o", { a: 1 });
    await theirs.setItem("b", true);
    for (const key of ["n", "s", "o", "b"]) expect(await ours.getItem(key)).toEqual(await theirs.getItem(key));
  });

  it("exact strings: '456' stays a string (unstorage #277)", async () => {
    const storage = createStorage();
    await storage.setItem("n", "456");
    await storage.setItem("t", "true");
    expect(await storage.getItem("n")).toBe("456");
    expect(await storage.getItem("t")).toBe("true");
  });

  it("serializer 'json' behaves exactly like unstorage", async () => {
    const storage = createStorage({ serializer: "json" });
    await storage.setItem("n", "456");
    expect(await storage.getItem("n")).toBe(456);
    expect(jsonSerializer.serialize("plain")).toBe("plain");
    await expect(storage.setItem("bad", new (class Opaque {})())).rejects.toMatchObject({ code: "E_INVALID_VALUE" });
  });
});
