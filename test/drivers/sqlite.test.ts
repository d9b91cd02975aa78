import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { testDriver } from "../../src/testing/index.js";
import { tempDir } from "../helpers/tempDir.js";

testDriver({ name: "sqlite", driver: () => sqlite({ path: join(tempDir("sqlite"), "store.db") }) });

const WORKER = join(import.meta.dirname, "../helpers/storeWorker.ts");
const TSX = import.meta.resolve("tsx");

function worker(args: string[]) {
  return spawn(process.execPath, ["--import", TSX, WORKER, ...args], { stdio: ["ignore", "pipe", "inherit"] });
}

describe("sqlite driver", () => {
  it("several processes share one file: concurrent CAS increments lose nothing", async () => {
    const path = join(tempDir("sqlite-multi"), "shared.db");
    await createStorage({ driver: sqlite({ path }) }).dispose();
    const processes = 3;
    const rounds = 40;
    await Promise.all(
      Array.from({ length: processes }, () => {
        const child = worker(["sqlite", path, "increment", String(rounds)]);
        return new Promise<void>((resolve, reject) => child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`worker exited ${code}`)))));
      }),
    );
    const storage = createStorage({ driver: sqlite({ path }) });
    expect(await storage.getItem("counter")).toBe(processes * rounds);
    await storage.dispose();
  });

  it("a process killed mid-write loses no acknowledged write (10 kills)", async () => {
    for (let round = 0; round < 10; round++) {
      const path = join(tempDir("sqlite-crash"), "crash.db");
      const child = worker(["sqlite", path, "write", "1000000"]);
      let output = "";
      child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
      // Kill once writes are flowing, at a random moment.
      await new Promise<void>((resolve) => {
        const onData = () => {
          if (output.split("\n").length < 5) return;
          child.stdout!.off("data", onData);
          setTimeout(resolve, Math.random() * 200);
        };
        child.stdout!.on("data", onData);
      });
      child.kill("SIGKILL");
      await new Promise((resolve) => child.on("exit", resolve));
      const acknowledged = output.split("\n").filter(Boolean).map(Number);
      expect(acknowledged.length).toBeGreaterThan(0);
      const storage = createStorage({ driver: sqlite({ path }) });
      const last = acknowledged[acknowledged.length - 1]!;
      const values = await storage.getItems(acknowledged.map((i) => `key:${i}`));
      expect(values.filter((entry) => entry.value === null)).toEqual([]);
      expect(await storage.getItem<{ i: number }>(`key:${last}`)).toMatchObject({ i: last });
      await storage.dispose();
    }
  });

  it("refuses a bad table name and a missing directory with clear errors", () => {
    expect(() => sqlite({ path: ":memory:", table: "x; DROP TABLE y" })).toThrow(/Invalid table name/);
    expect(() => sqlite({ path: "/nonexistent/dir/store.db" })).toThrow(/Cannot open/);
  });

  it("lists a prefix from the index range, in pages", async () => {
    const storage = createStorage({ driver: sqlite({ path: ":memory:" }) });
    await storage.setItems(Array.from({ length: 2500 }, (_, i) => ({ key: `${i % 2 ? "odd" : "even"}:${i}`, value: i })));
    const pages: number[] = [];
    for await (const batch of storage.iterateKeys("odd", { batchSize: 500 })) pages.push(batch.length);
    expect(pages).toEqual([500, 500, 250]);
    await storage.dispose();
  });
});
