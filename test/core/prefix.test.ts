import { describe, expect, it } from "vitest";
import { StorageError, createStorage, prefixStorage } from "../../src/index.js";
import { codeOf } from "../helpers/checks.js";

describe("prefixStorage", () => {
  it("refuses a relative key that would name the base itself or leave the view", async () => {
    const storage = createStorage();
    await storage.setItem("app", "outside");
    await storage.setItem("other:x", "outside");
    const view = prefixStorage(storage, "app");
    for (const key of ["", ":", "?x", "/", "..", "a/../.."]) {
      expect(await codeOf(() => view.setItem(key, 1))).toBe("E_INVALID_KEY");
      expect(await codeOf(() => view.removeItem(key))).toBe("E_INVALID_KEY");
      expect(await codeOf(() => view.setItems([{ key, value: 1 }]))).toBe("E_INVALID_KEY");
      expect(await codeOf(() => view.transaction((tx) => tx.setItem(key, 1)))).toBe("E_INVALID_KEY");
      expect(() => view.setItemSync(key, 1)).toThrow(StorageError);
    }
    expect(await codeOf(() => view.clear("?x"))).toBe("E_INVALID_KEY");
    expect(await storage.getItem("app")).toBe("outside");
    expect(await storage.getItem("other:x")).toBe("outside");
  });

  it("watch(base) on a view reports keys under the view's base, relative to the view", async () => {
    const storage = createStorage();
    const view = prefixStorage(storage, "app");
    const events: string[] = [];
    await view.watch((event, key) => void events.push(`all ${event} ${key}`));
    await view.watch("user", (event, key) => void events.push(`user ${event} ${key}`));
    await storage.setItem("app", 1);
    await view.setItem("user", 1);
    await view.setItem("user:1", 1);
    await view.setItem("users", 1);
    expect(events).toEqual(["all update user", "user update user", "all update user:1", "user update user:1", "all update users"]);
    expect(await codeOf(() => view.watch("user", "nope" as never))).toBe("E_INVALID_OPTION");
  });
});
