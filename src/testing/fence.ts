import { expect } from "vitest";
import { isStorageError } from "../core/errors.js";
import { fenceRecordKey } from "../core/fence.js";
import type { DriverFlags, Fence, Storage, WatchEvent } from "../core/types.js";
import { eventually, expectCode, expectEachCode, needsFlag, sorted, type Kit, type Needs } from "./context.js";

/** Fenced setItem, setItemRaw and removeItem: a driver flagged `transactions` (the core fences its commits) or `fence` (it fences them itself). */
const fencedWrites: Needs = {
  when: (flags) => flags.transactions === true || flags.fence === true,
  note: 'the driver is flagged neither "transactions" nor "fence"',
};

/** Fenced setItems and transaction: one commit, on a driver flagged `transactions`. */
const fencedCommits: Needs = {
  when: (flags) => flags.transactions === true,
  note: 'the driver is not flagged "transactions"',
};

/** Both of two needs: the test runs only on a driver with both capabilities; vitest shows both notes when it skips it. */
function allOf(first: Needs, second: Needs): Needs {
  return {
    when: (flags) => first.when(flags) && second.when(flags),
    note: `${first.note}, or ${second.note}`,
  };
}

const fenceOf = (fenceId: string, token: number): Fence => ({ fenceId, token });

/** Runs a fenced transaction that appends `token` to the array at `key`, again while the read it made conflicts; false once fenced out. */
async function appendFenced(storage: Storage, key: string, fence: Fence): Promise<boolean> {
  for (;;) {
    try {
      await storage.transaction(
        async (tx) => {
          const log = (await tx.getItem<number[]>(key)) ?? [];
          await tx.setItem(key, [...log, fence.token]);
        },
        { fence },
      );
      return true;
    } catch (error) {
      if (isStorageError(error, "E_FENCED")) return false;
      if (!isStorageError(error, "E_CONFLICT")) throw error;
    }
  }
}

/**
 * Fenced writes (`{ fence }`): a write lands only if its token is at least
 * the highest one used with its fenceId on the mount, checked and raised in
 * the same atomic step; E_FENCED otherwise, with nothing changed. Refused
 * with E_UNSUPPORTED on a driver that can neither commit atomically nor
 * fence itself.
 */
export function fenceTests({ context, test }: Kit): void {
  const flags = (): DriverFlags => context.driver.flags ?? {};

  test("fenced writes: E_UNSUPPORTED on a driver that cannot fence, and nothing written", async () => {
    const storage = context.storage;
    const fence = fenceOf("lock:a", 1);
    if (!flags().transactions && !flags().fence) {
      await expectEachCode(
        [
          ["setItem", () => storage.setItem("fu:a", 1, { fence })],
          ["setItemRaw", () => storage.setItemRaw("fu:a", new Uint8Array([1]), { fence })],
          ["removeItem", () => storage.removeItem("fu:a", { fence })],
          ["setItems", () => storage.setItems([{ key: "fu:a", value: 1 }], { fence })],
        ],
        "E_UNSUPPORTED",
      );
      expect(await storage.hasItem("fu:a")).toBe(false);
    }
    if (!flags().transactions) {
      await expectCode(() => storage.setItems([{ key: "fu:b", value: 1 }], { fence }), "E_UNSUPPORTED");
      await expectCode(() => storage.transaction((tx) => tx.setItem("fu:b", 1), { fence }), "E_UNSUPPORTED");
      expect(await storage.hasItem("fu:b")).toBe(false);
    }
  });

  test("fenced writes: a malformed fence is E_INVALID_OPTION, and reads refuse a fence", async () => {
    const storage = context.storage;
    for (const fence of [null, "x", { fenceId: "", token: 1 }, { fenceId: "a", token: 0 }, { fenceId: "a", token: 1.5 }, { fenceId: "a" }, { token: 1 }, undefined]) {
      await expectCode(() => storage.setItem("fi:a", 1, { fence: fence as never }), "E_INVALID_OPTION");
    }
    await expectEachCode(
      [
        ["getItem", () => storage.getItem("fi:a", { fence: fenceOf("l", 1) })],
        ["hasItem", () => storage.hasItem("fi:a", { fence: fenceOf("l", 1) })],
        ["getMeta", () => storage.getMeta("fi:a", { fence: fenceOf("l", 1) })],
        ["getKeys", () => storage.getKeys("fi", { fence: fenceOf("l", 1) })],
        ["clear", () => storage.clear("fi", { fence: fenceOf("l", 1) })],
        ["a setItems entry", () => storage.setItems([{ key: "fi:a", value: 1, options: { fence: fenceOf("l", 1) } }])],
      ],
      "E_INVALID_OPTION",
    );
    expect(await storage.hasItem("fi:a")).toBe(false);
  });

  test(
    "fenced writes: a higher token raises the record, an equal one passes, a lower one is E_FENCED and changes nothing",
    async () => {
      const storage = context.storage;
      await storage.setItem("f:a", "one", { fence: fenceOf("lock:a", 1) });
      await storage.setItem("f:a", "two", { fence: fenceOf("lock:a", 2) });
      await storage.setItem("f:a", "again", { fence: fenceOf("lock:a", 2) });
      expect(await storage.getItem("f:a")).toBe("again");
      const meta = await storage.getMeta("f:a");
      await expectEachCode(
        [
          ["setItem", () => storage.setItem("f:a", "late", { fence: fenceOf("lock:a", 1) })],
          ["setItemRaw", () => storage.setItemRaw("f:a", new Uint8Array([1, 2]), { fence: fenceOf("lock:a", 1) })],
          ["removeItem", () => storage.removeItem("f:a", { fence: fenceOf("lock:a", 1) })],
          ["setItem of another key", () => storage.setItem("f:b", "late", { fence: fenceOf("lock:a", 1) })],
        ],
        "E_FENCED",
      );
      expect(await storage.getItem("f:a")).toBe("again");
      expect(await storage.hasItem("f:b")).toBe(false);
      if (meta.etag) expect((await storage.getMeta("f:a")).etag).toBe(meta.etag);
      // Tokens of another fenceId are not compared with these, and unfenced writes are not fenced.
      await storage.setItem("f:a", "other lock", { fence: fenceOf("lock:b", 1) });
      await storage.setItem("f:a", "plain");
      await storage.setItemRaw("f:raw", new Uint8Array([7]), { fence: fenceOf("lock:a", 3) });
      expect(Array.from((await storage.getItemRaw("f:raw")) ?? [])).toEqual([7]);
      await storage.removeItem("f:raw", { fence: fenceOf("lock:a", 3) });
      expect(await storage.hasItem("f:raw")).toBe(false);
      await expectCode(() => storage.setItem("f:a", "late", { fence: fenceOf("lock:a", 2) }), "E_FENCED");
    },
    fencedWrites,
  );

  test(
    "fenced writes: a fenced-out write is not heard by watch",
    async () => {
      const storage = context.storage;
      // The record is raised through another key: a late event of this write could not pass for a leak.
      await storage.setItem("fw:raised", "kept", { fence: fenceOf("lock:w", 5) });
      const events: string[] = [];
      const unwatch = await storage.watch((event: WatchEvent, key: string) => events.push(`${event} ${key}`));
      try {
        await expectCode(() => storage.setItem("fw:a", "late", { fence: fenceOf("lock:w", 4) }), "E_FENCED");
        await expectCode(() => storage.removeItem("fw:a", { fence: fenceOf("lock:w", 4) }), "E_FENCED");
        await storage.setItem("fw:b", "landed", { fence: fenceOf("lock:w", 5) });
        // The fenced write that landed is heard; nothing came before it (a feed delivers in order).
        await eventually(() => expect(events).toContain("update fw:b"));
        expect(events.filter((event) => event.endsWith(" fw:a"))).toEqual([]);
      } finally {
        await unwatch();
      }
    },
    fencedWrites,
  );

  test(
    "fenced writes: a guard's conflict is E_CONFLICT, a fence's is E_FENCED",
    async () => {
      const storage = context.storage;
      await storage.setItem("fg:a", 1, { fence: fenceOf("lock:g", 2) });
      const { etag } = await storage.getMeta("fg:a");
      await storage.setItem("fg:a", 2);
      await expectCode(() => storage.setItem("fg:a", 3, { fence: fenceOf("lock:g", 2), ifMatch: etag! }), "E_CONFLICT");
      await expectCode(() => storage.setItem("fg:a", 3, { fence: fenceOf("lock:g", 3), ifNoneMatch: "*" }), "E_CONFLICT");
      await expectCode(() => storage.setItem("fg:a", 3, { fence: fenceOf("lock:g", 1), ifMatch: etag! }), "E_FENCED");
      expect(await storage.getItem("fg:a")).toBe(2);
      // The conflicting write with token 3 raised nothing: token 2 still passes.
      const current = (await storage.getMeta("fg:a")).etag!;
      await storage.setItem("fg:a", 4, { fence: fenceOf("lock:g", 2), ifMatch: current });
      expect(await storage.getItem("fg:a")).toBe(4);
    },
    allOf(fencedWrites, needsFlag("cas")),
  );

  test(
    "fenced writes: fence records are invisible to keys, reads and clear(base) of user keys",
    async () => {
      const storage = context.storage;
      await storage.setItem("fv:a", 1, { fence: fenceOf("lock:v", 3) });
      await storage.setItem("fv:b:c", 2, { fence: fenceOf("fv:b", 1) });
      expect(sorted(await storage.getKeys())).toEqual(["fv:a", "fv:b:c"]);
      expect(sorted(await storage.getKeys("fv"))).toEqual(["fv:a", "fv:b:c"]);
      const iterated: string[] = [];
      for await (const batch of storage.iterateKeys()) iterated.push(...batch);
      expect(sorted(iterated)).toEqual(["fv:a", "fv:b:c"]);
      const record = fenceRecordKey("lock:v");
      await expectEachCode(
        [
          ["getItem", () => storage.getItem(record)],
          ["hasItem", () => storage.hasItem(record)],
          ["getMeta", () => storage.getMeta(record)],
          ["setItem", () => storage.setItem(record, { token: 1 })],
          ["removeItem", () => storage.removeItem(record)],
        ],
        "E_INVALID_KEY",
      );
      await storage.clear("fv");
      await storage.clear("stowage-fence-");
      expect(await storage.getKeys()).toEqual([]);
      // The records outlived clear(base): token 2 is still fenced out.
      await expectCode(() => storage.setItem("fv:a", "late", { fence: fenceOf("lock:v", 2) }), "E_FENCED");
      expect(await storage.hasItem("fv:a")).toBe(false);
    },
    fencedWrites,
  );

  test(
    "fenced writes: ttl still works with a fence",
    async () => {
      const storage = context.storage;
      await storage.setItem("ft:a", "v", { fence: fenceOf("lock:t", 1), ttl: 60_000 });
      const meta = await storage.getMeta("ft:a");
      expect(meta.ttl).toBeGreaterThan(0);
      expect(meta.ttl).toBeLessThanOrEqual(60_000);
      expect(await storage.getItem("ft:a")).toBe("v");
    },
    fencedWrites,
  );

  test(
    "fenced writes: setItems and transaction land whole or, fenced out, not at all",
    async () => {
      const storage = context.storage;
      await storage.setItem("fs:gone", 0);
      await storage.setItems(
        [
          { key: "fs:a", value: 1 },
          { key: "fs:b", value: 2, options: { ttl: 60_000 } },
          { key: "fs:gone", value: undefined },
        ],
        { fence: fenceOf("lock:s", 2) },
      );
      expect(await storage.getItems(["fs:a", "fs:b", "fs:gone"])).toEqual([
        { key: "fs:a", value: 1 },
        { key: "fs:b", value: 2 },
        { key: "fs:gone", value: null },
      ]);
      await expectCode(() => storage.setItems([{ key: "fs:a", value: "late" }, { key: "fs:c", value: "late" }], { fence: fenceOf("lock:s", 1) }), "E_FENCED");
      await expectCode(
        () =>
          storage.transaction(
            async (tx) => {
              await tx.setItem("fs:a", "late");
              await tx.removeItem("fs:b");
            },
            { fence: fenceOf("lock:s", 1) },
          ),
        "E_FENCED",
      );
      const result = await storage.transaction(
        async (tx) => {
          await tx.setItem("fs:c", 3);
          await tx.removeItem("fs:a");
          return "done";
        },
        { fence: fenceOf("lock:s", 3) },
      );
      expect(result).toBe("done");
      expect(await storage.getItems(["fs:a", "fs:b", "fs:c"])).toEqual([
        { key: "fs:a", value: null },
        { key: "fs:b", value: 2 },
        { key: "fs:c", value: 3 },
      ]);
      await expectCode(() => storage.setItems([{ key: "fs:a", value: 1 }], { fence: fenceOf("lock:s", 2) }), "E_FENCED");
      await expectCode(() => storage.transaction((tx) => tx.setItem("fs:a", 1, { fence: fenceOf("lock:s", 3) } as never)), "E_INVALID_OPTION");
      expect(await storage.hasItem("fs:a")).toBe(false);
    },
    fencedCommits,
  );

  test(
    "fenced writes: a transaction that writes nothing and an empty setItems still check the fence",
    async () => {
      const storage = context.storage;
      await storage.setItem("fn:a", "v", { fence: fenceOf("lock:n", 3) });
      await expectEachCode(
        [
          ["a read-only transaction", () => storage.transaction((tx) => tx.getItem("fn:a"), { fence: fenceOf("lock:n", 2) })],
          ["an empty transaction", () => storage.transaction(() => "nothing", { fence: fenceOf("lock:n", 2) })],
          ["an empty setItems", () => storage.setItems([], { fence: fenceOf("lock:n", 2) })],
        ],
        "E_FENCED",
      );
      expect(await storage.transaction((tx) => tx.getItem("fn:a"), { fence: fenceOf("lock:n", 3) })).toBe("v");
      await storage.setItems([], { fence: fenceOf("lock:n", 4) });
      // The empty setItems raised the record: token 3 is fenced out now.
      await expectCode(() => storage.setItem("fn:a", "late", { fence: fenceOf("lock:n", 3) }), "E_FENCED");
      expect(await storage.getItem("fn:a")).toBe("v");
    },
    fencedCommits,
  );

  test(
    "fenced writes: concurrent writers with different tokens, the lower never lands after the higher",
    async () => {
      const storage = context.storage;
      const rounds = 6;
      const writer = async (token: number) => {
        for (let round = 0; round < rounds; round++) {
          if (!(await appendFenced(storage, "fc:log", fenceOf("lock:c", token)))) return;
        }
      };
      await Promise.all([writer(1), writer(2), writer(3)]);
      const log = (await storage.getItem<number[]>("fc:log")) ?? [];
      // Token 3 never loses to a lower one, so its writes all land; once it has, no lower token does.
      expect(log.filter((token) => token === 3)).toHaveLength(rounds);
      expect(log).toEqual([...log].sort((a, b) => a - b));
    },
    allOf(fencedCommits, needsFlag("cas")),
  );
}
