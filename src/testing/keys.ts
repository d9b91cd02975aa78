import { expect } from "vitest";
import { keyDepth } from "../core/keys.js";
import { DEFAULT_KEY_LIMITS } from "../core/types.js";
import { expectCode, expectEachCode, keysAtLimits, sorted, type Kit, type Needs } from "./context.js";

const nests = (present: boolean): Needs => ({
  when: (flags) => (flags.nestedKeys !== false) === present,
  note: present ? "the driver is flagged nestedKeys: false" : "keys nest on this driver",
});

/** Key rules: odd characters, nesting, invalid keys, a ?query, and the driver's key limits. */
export function keyTests(kit: Kit): void {
  nestingTests(kit);
  invalidKeyTests(kit);
  queryTests(kit);
  limitTests(kit);
}

function nestingTests({ context, test }: Kit): void {
  test("unicode and emoji keys", async () => {
    const keys = ["ключ", "日本語:キー", "emoji:🚀✨", "mixed:ä ö ü:ß", "space in key"];
    for (const [index, key] of keys.entries()) await context.storage.setItem(key, index);
    for (const [index, key] of keys.entries()) expect(await context.storage.getItem(key)).toBe(index);
    expect(sorted(await context.storage.getKeys())).toEqual(sorted(keys.map((key) => key.replaceAll("/", ":"))));
  });

  test(
    "a key that is a prefix of another key",
    async () => {
      const storage = context.storage;
      await storage.setItem("user:1", "profile");
      await storage.setItem("user:10", "other user");
      await storage.setItem("user:1:settings", "dark");
      expect(await storage.getItem("user:1")).toBe("profile");
      expect(await storage.getItem("user:1:settings")).toBe("dark");
      expect(sorted(await storage.getKeys("user"))).toEqual(sorted(["user:1", "user:1:settings", "user:10"]));
      expect(await storage.getKeys("user:1")).toEqual(["user:1:settings"]);
      await storage.removeItem("user:1");
      expect(await storage.getItem("user:1:settings")).toBe("dark");
    },
    nests(true),
  );

  test(
    "a key below another key is E_INVALID_KEY with nestedKeys: false",
    async () => {
      const storage = context.storage;
      await storage.setItem("user:1", "profile");
      await storage.setItem("user:10", "other user");
      await expectCode(() => storage.setItem("user:1:settings", "dark"), "E_INVALID_KEY");
      expect(await storage.getItem("user:1")).toBe("profile");
      expect(sorted(await storage.getKeys("user"))).toEqual(["user:1", "user:10"]);
    },
    nests(false),
  );
}

function invalidKeyTests({ context, test }: Kit): void {
  test("invalid keys are E_INVALID_KEY", async () => {
    const storage = context.storage;
    for (const key of ["", ":", "/", "a\0b", "../escape", "a:..:b", "./x"]) {
      await expectCode(() => storage.getItem(key), "E_INVALID_KEY");
      await expectCode(() => storage.setItem(key, 1), "E_INVALID_KEY");
      await expectCode(() => storage.hasItem(key), "E_INVALID_KEY");
      await expectCode(() => storage.removeItem(key), "E_INVALID_KEY");
    }
    await expectCode(() => storage.getItem(42 as unknown as string), "E_INVALID_KEY");
    expect(await storage.getKeys()).toEqual([]);
  });

  test("a ? never widens: an item key empty before its ? and any base with ? are E_INVALID_KEY", async () => {
    const storage = context.storage;
    await storage.setItem("q:1", 1);
    for (const key of ["?", "?x", ":?x", "/?a=1"]) {
      await expectCode(() => storage.setItem(key, 2), "E_INVALID_KEY");
      await expectCode(() => storage.removeItem(key), "E_INVALID_KEY");
    }
    for (const base of ["?", "?x", "q?x", "q:?x"]) {
      await expectCode(() => storage.clear(base), "E_INVALID_KEY");
      await expectCode(() => storage.getKeys(base), "E_INVALID_KEY");
    }
    expect(await storage.getKeys()).toEqual(["q:1"]);
  });
}

function queryTests({ context, test }: Kit): void {
  test("a ? in a key written or removed is E_INVALID_KEY on every write path; reads ignore a ?query", async () => {
    const storage = context.storage;
    const flags = context.driver.flags ?? {};
    await storage.setItem("q", 1);
    const before = await storage.getMeta("q");
    const body = () =>
      (async function* () {
        yield new Uint8Array([1]);
      })();
    const writes: [string, () => Promise<unknown>][] = [
      ["setItem", () => storage.setItem("q?x", 2)],
      ["setItem undefined", () => storage.setItem("q?x", undefined)],
      ["setItemRaw", () => storage.setItemRaw("q?x", new Uint8Array([2]))],
      ["setItems", () => storage.setItems([{ key: "q?x", value: 2 }])],
      ["setItems undefined", () => storage.setItems([{ key: "q?x", value: undefined }])],
      ["setItemStream", () => storage.setItemStream("q?x", body())],
      ["removeItem", () => storage.removeItem("q?anything")],
      ["removeItem removeMeta", () => storage.removeItem("q?anything", { removeMeta: true })],
      ["setMeta", () => storage.setMeta("q?x", { note: "other" })],
      ["removeMeta", () => storage.removeMeta("q?x")],
      ["a ? inside a segment", () => storage.setItem("q:a?b:c", 2)],
    ];
    if (flags.cas) writes.push(["update", () => storage.update("q?x", () => 2)]);
    if (flags.transactions) {
      writes.push(["transaction setItem", () => storage.transaction((tx) => tx.setItem("q?x", 2))]);
      writes.push(["transaction setItemRaw", () => storage.transaction((tx) => tx.setItemRaw("q?x", new Uint8Array([2])))]);
      writes.push(["transaction removeItem", () => storage.transaction((tx) => tx.removeItem("q?x"))]);
    }
    if (flags.sync) {
      writes.push(["setItemSync", async () => storage.setItemSync("q?x", 2)]);
      writes.push(["removeItemSync", async () => storage.removeItemSync("q?x")]);
    }
    await expectEachCode(writes, "E_INVALID_KEY");
    expect(await storage.getItem("q")).toBe(1);
    expect(await storage.getKeys()).toEqual(["q"]);
    // Reads strip a ?query, as unstorage does.
    expect(await storage.getItem("q?x")).toBe(1);
    expect(await storage.hasItem("q?anything")).toBe(true);
    expect((await storage.getMeta("q?x")).etag).toBe(before.etag);
    expect(await storage.getItems(["q?y"])).toEqual([{ key: "q", value: 1 }]);
  });
}

function limitTests({ context, test }: Kit): void {
  test("keys past the driver's key limits are E_INVALID_KEY before anything is sent", async () => {
    const storage = context.storage;
    const { atBytes, atSegments } = keysAtLimits(context.driver);
    for (const key of [atBytes + "y", `${atSegments}:z`]) {
      await expectCode(() => storage.setItem(key, 1), "E_INVALID_KEY");
      await expectCode(() => storage.getItem(key), "E_INVALID_KEY");
      await expectCode(() => storage.removeItem(key), "E_INVALID_KEY");
      await expectCode(() => storage.setItems([{ key: "limits:ok", value: 1 }, { key, value: 2 }]), "E_INVALID_KEY");
    }
    expect(await storage.getKeys()).toEqual([]);
  });

  test("keys at the driver's key limits are stored", async () => {
    const storage = context.storage;
    const { atBytes, atSegments } = keysAtLimits(context.driver);
    const { bytes, segments } = context.driver.keyLimits ?? DEFAULT_KEY_LIMITS;
    if (keyDepth(atBytes) < segments) {
      await storage.setItem(atBytes, "longest");
      expect(await storage.getItem(atBytes)).toBe("longest");
    }
    if (atSegments.length <= bytes) {
      await storage.setItem(atSegments, "deepest");
      expect(await storage.getItem(atSegments)).toBe("deepest");
    }
  });
}
