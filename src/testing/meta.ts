import { expect } from "vitest";
import type { Kit } from "./context.js";

/** User meta beside a value. */
export function metaTests({ context, test }: Kit): void {
  test("meta: setMeta, getMeta, removeMeta", async () => {
    const storage = context.storage;
    await storage.setItem("meta:a", "value");
    await storage.setMeta("meta:a", { owner: "ada", count: 2 });
    expect(await storage.getMeta("meta:a")).toMatchObject({ owner: "ada", count: 2 });
    expect(await storage.getKeys("meta")).toEqual(["meta:a"]);
    await storage.removeMeta("meta:a");
    expect((await storage.getMeta("meta:a")).owner).toBeUndefined();
    await storage.setMeta("meta:a", { owner: "ada" });
    await storage.removeItem("meta:a", { removeMeta: true });
    expect((await storage.getMeta("meta:a")).owner).toBeUndefined();
    expect(await storage.getMeta("meta:missing")).toBeTypeOf("object");
  });
}
