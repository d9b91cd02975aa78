import { describe, expect } from "vitest";
import { restoreSnapshot } from "../core/snapshot.js";
import { clearAround, sorted, type Kit } from "./context.js";

/** unstorage's own driver tests, as its test suite writes them. */
export function unstorageTests(kit: Kit): void {
  const { context, test } = kit;

  describe("unstorage's driver tests", () => {
    clearAround(context);

    test("init: restoreSnapshot", async () => {
      await restoreSnapshot(context.storage, { initial: "backup" });
      expect(await context.storage.getKeys()).toEqual(["initial"]);
    });

    test("initial state", async () => {
      await restoreSnapshot(context.storage, { initial: "backup" });
      expect(await context.storage.hasItem("initial")).toBe(true);
      expect(await context.storage.getItem("initial")).toBe("backup");
      expect(await context.storage.getKeys()).toMatchObject(["initial"]);
    });

    describe("with a clean store", () => {
      // unstorage's tests write "s3:a?q=1" here and in getKeys and getItems; stowage refuses a "?" in a
      // key written or removed (it would act on "s3:a"), so those writes name "s3:a". Reads keep the query.
      test("setItem", async () => {
        await context.storage.setItem("s1:a", "test_data");
        await context.storage.setItem("s2:a", "test_data");
        await context.storage.setItem("s3:a", "test_data");
        expect(await context.storage.hasItem("s1:a")).toBe(true);
        expect(await context.storage.getItem("s1:a")).toBe("test_data");
        expect(await context.storage.getItem("s3:a?q=2")).toBe("test_data");
      });

      test("getKeys", async () => {
        await context.storage.setItem("s1:a", "test_data");
        await context.storage.setItem("s2:a", "test_data");
        await context.storage.setItem("s3:a", "test_data");
        expect(sorted(await context.storage.getKeys())).toEqual(["s1:a", "s2:a", "s3:a"]);
        expect(await context.storage.getKeys("s1")).toEqual(["s1:a"]);
        expect(await context.storage.getKeys("s1:")).toEqual(["s1:a"]);
      });

      test("getKeys with maxDepth", async () => {
        await context.storage.setItem("depth0_0", "test_data");
        await context.storage.setItem("depth0:depth1:depth2_0", "test_data");
        await context.storage.setItem("depth0:depth1:depth2_1", "test_data");
        await context.storage.setItem("depth0:depth1_0", "test_data");
        await context.storage.setItem("depth0:depth1_1", "test_data");
        expect(sorted(await context.storage.getKeys(undefined, { maxDepth: 0 }))).toEqual(["depth0_0"]);
        expect(sorted(await context.storage.getKeys(undefined, { maxDepth: 1 }))).toEqual(["depth0:depth1_0", "depth0:depth1_1", "depth0_0"]);
        expect(sorted(await context.storage.getKeys(undefined, { maxDepth: 2 }))).toEqual([
          "depth0:depth1:depth2_0",
          "depth0:depth1:depth2_1",
          "depth0:depth1_0",
          "depth0:depth1_1",
          "depth0_0",
        ]);
        expect(sorted(await context.storage.getKeys("depth0", { maxDepth: 1 }))).toEqual(["depth0:depth1_0", "depth0:depth1_1"]);
      });

      test("serializes objects", async () => {
        await context.storage.setItem("/data/test.json", { a: "b" });
        expect(await context.storage.getItem("/data/test.json")).toEqual({ a: "b" });
      });

      test("serializes primitives", async () => {
        await context.storage.setItem("/data/true.json", true);
        expect(await context.storage.getItem("/data/true.json")).toBe(true);
      });

      test("serializes with toJSON", async () => {
        class WithToJSON {
          toJSON() {
            return "exported";
          }
        }
        await context.storage.setItem("/data/serialized.json", new WithToJSON());
        expect(await context.storage.getItem("/data/serialized.json")).toBe("exported");
      });

      test("refuses a class instance without toJSON", async () => {
        class NoToJSON {
          value = 1;
        }
        await expect(context.storage.setItem("/data/bad.json", new NoToJSON())).rejects.toThrow("Cannot stringify value");
        expect(await context.storage.hasItem("/data/bad.json")).toBe(false);
      });

      test("raw support", async () => {
        const value = new Uint8Array([1, 2, 3]);
        await context.storage.setItemRaw("/data/raw.bin", value);
        const stored = await context.storage.getItemRaw("/data/raw.bin");
        expect(stored).toBeInstanceOf(Uint8Array);
        expect([...stored!]).toEqual([1, 2, 3]);
      });

      test("setItems", async () => {
        await context.storage.setItems([
          { key: "t:1", value: "test_data_t1" },
          { key: "t:2", value: "test_data_t2" },
          { key: "t:3", value: "test_data_t3" },
        ]);
        expect(await context.storage.getItem("t:1")).toBe("test_data_t1");
        expect(await context.storage.getItem("t:2")).toBe("test_data_t2");
        expect(await context.storage.getItem("t:3")).toBe("test_data_t3");
      });

      test("getItems", async () => {
        await context.storage.setItem("v1:a", "test_data_v1:a");
        await context.storage.setItem("v2:a", "test_data_v2:a");
        await context.storage.setItem("v3:a", "test_data_v3:a?q=1");
        expect(await context.storage.getItems([{ key: "v1:a" }, "v2:a", { key: "v3:a?q=1" }, "v4:missing"])).toEqual([
          { key: "v1:a", value: "test_data_v1:a" },
          { key: "v2:a", value: "test_data_v2:a" },
          { key: "v3:a", value: "test_data_v3:a?q=1" },
          { key: "v4:missing", value: null },
        ]);
      });

      test("falsy values", async () => {
        const falsy = [null, 0, false, ""] as const;
        for (const [index, value] of falsy.entries()) {
          await context.storage.setItem(`falsy:${index}`, value);
          expect(await context.storage.hasItem(`falsy:${index}`)).toBe(true);
          expect(await context.storage.getItem(`falsy:${index}`)).toBe(value);
        }
      });

      test("removeItem", async () => {
        await context.storage.setItem("s1:a", "test_data");
        await context.storage.removeItem("s1:a", { removeMeta: true });
        expect(await context.storage.hasItem("s1:a")).toBe(false);
        expect(await context.storage.getItem("s1:a")).toBe(null);
        await context.storage.removeItem("s1:never-existed");
      });

      test("clear", async () => {
        await context.storage.setItem("c1", 1);
        await context.storage.setItem("c2:deep:er", 2);
        await context.storage.clear();
        expect(await context.storage.getKeys()).toEqual([]);
        expect(await context.storage.getItem("c2:deep:er")).toBe(null);
      });
    });
  });
}
