import { expect } from "vitest";
import { expectCode, needsFlag, type Kit } from "./context.js";

/** A key's past versions, on drivers flagged `history`. */
export function historyTests({ context, test }: Kit): void {
  test(
    "history: past versions newest first, reads as of a version",
    async () => {
      const storage = context.storage;
      await storage.setItem("h:a", 1);
      await storage.setItem("h:other", "x");
      await storage.setItem("h:a", { two: 2 });
      await storage.setItem("h:a", "3");
      const history = await storage.getHistory("h:a");
      expect(history.map((entry) => entry.value)).toEqual(["3", { two: 2 }, 1]);
      for (const entry of history) {
        expect(typeof entry.version).toBe("string");
        expect(entry.date).toBeInstanceOf(Date);
      }
      expect((await storage.getHistory("h:a", { limit: 2 })).map((entry) => entry.value)).toEqual(["3", { two: 2 }]);
      expect(await storage.getItem("h:a", { version: history[2]!.version })).toBe(1);
      expect(await storage.getItem("h:a", { version: history[1]!.version })).toEqual({ two: 2 });
      // A removal is a version whose value is null; the key's earlier versions stay readable.
      await storage.removeItem("h:a");
      const afterRemove = await storage.getHistory("h:a", { limit: 2 });
      expect(afterRemove.map((entry) => entry.value)).toEqual([null, "3"]);
      expect(await storage.getItem("h:a", { version: afterRemove[0]!.version })).toBeNull();
      expect(await storage.getItem("h:a", { version: history[0]!.version })).toBe("3");
      expect(await storage.getHistory("h:never")).toEqual([]);
    },
    needsFlag("history"),
  );

  test(
    "history: raw bytes as of a version",
    async () => {
      const storage = context.storage;
      // Drivers may answer with a Buffer: compare the bytes.
      const bytesAt = async (version?: string) => [...((await storage.getItemRaw("h:raw", version === undefined ? {} : { version })) ?? [])];
      await storage.setItemRaw("h:raw", new Uint8Array([0, 255, 1, 128]));
      await storage.setItemRaw("h:raw", new Uint8Array([7]));
      const [newest, oldest] = await storage.getHistory("h:raw", { limit: 2 });
      expect(await bytesAt(oldest!.version)).toEqual([0, 255, 1, 128]);
      expect(await bytesAt(newest!.version)).toEqual([7]);
      expect(await bytesAt()).toEqual([7]);
    },
    needsFlag("history"),
  );

  test(
    "history: E_UNSUPPORTED without the history flag",
    async () => {
      await expectCode(() => context.storage.getHistory("h:a"), "E_UNSUPPORTED");
      await expectCode(() => context.storage.getItem("h:a", { version: "1" }), "E_UNSUPPORTED");
      await expectCode(() => context.storage.getItemRaw("h:a", { version: "1" }), "E_UNSUPPORTED");
    },
    needsFlag("history", false),
  );
}
