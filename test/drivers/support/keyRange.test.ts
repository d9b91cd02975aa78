import { describe, expect, it } from "vitest";
import { prefixEnd, prefixEndBytes } from "../../../src/drivers/support/keyRange.js";

/** Whether `key` lies in [prefix, end) compared as UTF-8 bytes, the order of the stores that use these ends. */
const inRange = (key: string, prefix: string, end: string) => Buffer.compare(Buffer.from(key), Buffer.from(prefix)) >= 0 && Buffer.compare(Buffer.from(key), Buffer.from(end)) < 0;

describe("prefixEnd", () => {
  it("bounds every key under a prefix and no key after it, in UTF-8 byte order", () => {
    const cases = ["user:", "a", "é", "a\uffff", "x😀", "\ud7ff"];
    for (const prefix of cases) {
      const end = prefixEnd(prefix);
      for (const tail of ["", "\0", "z", "\uffff", "😀", "\u{10ffff}"]) expect(inRange(prefix + tail, prefix, end)).toBe(true);
      expect(Buffer.compare(Buffer.from(end), Buffer.from(prefix))).toBe(1);
    }
    expect(prefixEnd("user:")).toBe("user;");
    // The next code point after U+FFFF is U+10000 (a UTF-16 code unit + 1 would wrap to "\0").
    expect(prefixEnd("a\uffff")).toBe("a\u{10000}");
    expect(prefixEnd("\ud7ff")).toBe("\ue000");
    expect(inRange("b", "a", prefixEnd("a"))).toBe(false);
  });

  it("has no end for a prefix of U+10FFFF only", () => {
    expect(prefixEnd("\u{10ffff}")).toBe("");
    expect(prefixEnd("a\u{10ffff}")).toBe("b");
  });
});

describe("prefixEndBytes", () => {
  it("is the shortest byte string above every one that starts with the prefix", () => {
    expect(prefixEndBytes(Buffer.from("ab"))).toEqual(Buffer.from("ac"));
    expect(prefixEndBytes(Buffer.from([0x61, 0xff, 0xff]))).toEqual(Buffer.from([0x62]));
    const prefix = Buffer.from("dé");
    expect(prefixEndBytes(prefix)).toEqual(Buffer.from([0x64, 0xc3, 0xaa]));
  });

  it("has no end for an empty prefix or 0xff bytes only", () => {
    expect(prefixEndBytes(Buffer.alloc(0))).toBeUndefined();
    expect(prefixEndBytes(Buffer.from([0xff, 0xff]))).toBeUndefined();
  });
});
