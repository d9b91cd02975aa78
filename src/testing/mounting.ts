import { expect } from "vitest";
import { createCoreStorage } from "../core/storage.js";
import { sorted, type Kit } from "./context.js";

/** The driver in a storage's life: mounted below a base, and disposed. */
export function mountingTests({ context, test, makeDriver }: Kit): void {
  test("works mounted below a base", async () => {
    const driver = await makeDriver();
    const storage = createCoreStorage({ driver: context.driver });
    storage.mount("mnt:sub", driver);
    try {
      await storage.setItem("mnt:sub:k:1", "mounted");
      await storage.setItem("mnt:sub:k:2:3", "deeper");
      expect(await storage.getItem("mnt:sub:k:1")).toBe("mounted");
      expect(sorted(await storage.getKeys("mnt"))).toEqual(["mnt:sub:k:1", "mnt:sub:k:2:3"]);
      expect(await storage.getKeys("mnt", { maxDepth: 3 })).toEqual(["mnt:sub:k:1"]);
      expect(await context.storage.getKeys("mnt")).toEqual([]);
      await storage.clear("mnt:sub:k:2");
      expect(await storage.getKeys("mnt:sub")).toEqual(["mnt:sub:k:1"]);
    } finally {
      await storage.clear("mnt:sub");
      await storage.unmount("mnt:sub", true);
    }
  });

  test("dispose", async () => {
    const driver = await makeDriver();
    const storage = createCoreStorage({ driver });
    await storage.watch(() => undefined);
    await storage.setItem("dispose:a", 1);
    await storage.clear();
    await expect(storage.dispose()).resolves.toBeUndefined();
  });
}
