import { expect } from "vitest";
import { sorted, type Kit } from "./context.js";

/** Listing and clearing at scale: many keys in pages, and clear(base) within its base. */
export function listingTests({ context, test, sizes }: Kit): void {
  const { manyKeys, batchSize, readBack } = sizes;

  test(`${manyKeys.toLocaleString("en-US")} keys: getKeys and iterateKeys in batches`, async () => {
    const storage = context.storage;
    const items = Array.from({ length: manyKeys }, (_, i) => ({ key: `many:${i % 10}:${i}`, value: i }));
    await storage.setItems(items);
    expect((await storage.getKeys("many")).length).toBe(manyKeys);
    const seen = new Set<string>();
    for await (const batch of storage.iterateKeys("many", { batchSize })) {
      expect(batch.length).toBeLessThanOrEqual(batchSize);
      for (const key of batch) seen.add(key);
    }
    expect(seen.size).toBe(manyKeys);
    const values = await storage.getItems(items.slice(0, readBack).map((item) => item.key));
    expect(values.map((entry) => entry.value)).toEqual(items.slice(0, readBack).map((item) => item.value));
  });

  test("clear(base) touches only base", async () => {
    const storage = context.storage;
    await storage.setItems([
      { key: "a:1", value: 1 },
      { key: "a:deep:2", value: 2 },
      { key: "ab:1", value: 3 },
      { key: "b:1", value: 4 },
    ]);
    await storage.clear("a");
    expect(sorted(await storage.getKeys())).toEqual(["ab:1", "b:1"]);
  });
}
