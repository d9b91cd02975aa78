import { expect } from "vitest";
import { expectCode, needsFlag, type Kit, type Needs } from "./context.js";

const transactionsAndCas: Needs = {
  when: (flags) => flags.transactions === true && flags.cas === true,
  note: "the driver is not flagged both transactions and cas",
};

/** transaction(fn): all writes or none, on drivers flagged `transactions`; the caller's errors come back as thrown. */
export function transactionTests({ context, test }: Kit): void {
  test("transaction and update hand back the caller's own error, the same object", async () => {
    const storage = context.storage;
    const flags = context.driver.flags ?? {};
    const error = new Error("boom");
    await expect(
      storage.transaction(() => {
        throw error;
      }),
    ).rejects.toBe(error);
    if (flags.transactions) {
      await expect(
        storage.transaction(async (tx) => {
          await tx.setItem("tx:identity", 1);
          throw error;
        }),
      ).rejects.toBe(error);
      expect(await storage.hasItem("tx:identity")).toBe(false);
    }
    if (flags.cas) {
      await storage.setItem("cas:identity", 1);
      await expect(
        storage.update("cas:identity", () => {
          throw error;
        }),
      ).rejects.toBe(error);
      expect(await storage.getItem("cas:identity")).toBe(1);
    }
  });

  test(
    "transactions: all writes or none",
    async () => {
      const storage = context.storage;
      await storage.setItem("tx:gone", "x");
      const result = await storage.transaction(async (tx) => {
        await tx.setItem("tx:a", 1);
        await tx.setItem("tx:b", { two: 2 });
        await tx.removeItem("tx:gone");
        expect(await tx.getItem("tx:a")).toBe(1);
        expect(await tx.hasItem("tx:gone")).toBe(false);
        return "done";
      });
      expect(result).toBe("done");
      expect(await storage.getItems(["tx:a", "tx:b", "tx:gone"])).toEqual([
        { key: "tx:a", value: 1 },
        { key: "tx:b", value: { two: 2 } },
        { key: "tx:gone", value: null },
      ]);
      await expect(
        storage.transaction(async (tx) => {
          await tx.setItem("tx:a", 100);
          await tx.setItem("tx:c", 3);
          throw new Error("changed my mind");
        }),
      ).rejects.toThrow("changed my mind");
      expect(await storage.getItem("tx:a")).toBe(1);
      expect(await storage.hasItem("tx:c")).toBe(false);
    },
    needsFlag("transactions"),
  );

  test(
    "transactions: E_UNSUPPORTED without the transactions flag",
    async () => {
      const storage = context.storage;
      await expectCode(() => storage.transaction(async (tx) => tx.setItem("tx:a", 1)), "E_UNSUPPORTED");
      expect(await storage.hasItem("tx:a")).toBe(false);
    },
    needsFlag("transactions", false),
  );

  test(
    "transactions: a conflicting write in between fails the whole commit",
    async () => {
      const storage = context.storage;
      await storage.setItem("tx:balance", 10);
      await expectCode(
        () =>
          storage.transaction(async (tx) => {
            const balance = (await tx.getItem<number>("tx:balance"))!;
            await storage.setItem("tx:balance", 0);
            await tx.setItem("tx:balance", balance - 5);
            await tx.setItem("tx:log", "withdrew 5");
          }),
        "E_CONFLICT",
      );
      expect(await storage.getItem("tx:balance")).toBe(0);
      expect(await storage.hasItem("tx:log")).toBe(false);
    },
    transactionsAndCas,
  );
}
