import { expect } from "vitest";
import { expectCode, needsFlag, sorted, type Kit } from "./context.js";

/** The sync API: on drivers flagged `sync`, and refused everywhere else. */
export function syncTests({ context, test }: Kit): void {
  test(
    "sync API",
    async () => {
      const storage = context.storage;
      storage.setItemSync("sync:a", { n: 1 });
      storage.setItemsSync([{ key: "sync:b", value: 2 }]);
      storage.setItemRawSync("sync:raw", new Uint8Array([9, 8]));
      expect(storage.hasItemSync("sync:a")).toBe(true);
      expect(storage.getItemSync("sync:a")).toEqual({ n: 1 });
      expect(storage.getItemsSync(["sync:a", "sync:b"])).toEqual([
        { key: "sync:a", value: { n: 1 } },
        { key: "sync:b", value: 2 },
      ]);
      expect([...storage.getItemRawSync("sync:raw")!]).toEqual([9, 8]);
      expect(sorted(storage.getKeysSync("sync"))).toEqual(["sync:a", "sync:b", "sync:raw"]);
      expect(storage.getMetaSync("sync:a")).toBeTypeOf("object");
      storage.removeItemSync("sync:a");
      expect(storage.getItemSync("sync:a")).toBe(null);
      storage.clearSync("sync");
      expect(storage.getKeysSync()).toEqual([]);
    },
    needsFlag("sync"),
  );

  test(
    "sync API: E_UNSUPPORTED without the sync flag",
    async () => {
      const storage = context.storage;
      await expectCode(() => storage.getItemSync("x"), "E_UNSUPPORTED");
      await expectCode(() => storage.setItemSync("x", 1), "E_UNSUPPORTED");
      await expectCode(() => storage.getKeysSync(), "E_UNSUPPORTED");
      expect(await storage.hasItem("x")).toBe(false);
    },
    needsFlag("sync", false),
  );
}
