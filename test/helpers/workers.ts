import { expect } from "vitest";
import { createStorage, type Driver } from "../../src/index.js";
import { finish } from "./checks.js";
import { startWorker } from "./spawnWorkers.js";

export { runWorkers, startWorker, storeAfterWorkers } from "./spawnWorkers.js";

/**
 * Kills a process writing key:0, key:1, … with SIGKILL at a random moment
 * once writes flow, then reopens the store: every write it acknowledged
 * (printed) must be there.
 */
export async function killWhileWriting(driverName: string, path: string, open: (path: string) => Driver): Promise<number> {
  const child = startWorker([driverName, path, "write", "1000000"]);
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`worker exited ${code} before it was killed`)));
    const onData = () => {
      if (output.split("\n").length < 5) return;
      child.stdout!.off("data", onData);
      setTimeout(resolve, Math.random() * 200);
    };
    child.stdout!.on("data", onData);
  });
  child.removeAllListeners("exit");
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
  const acknowledged = output.split("\n").filter(Boolean).map(Number);
  expect(acknowledged.length).toBeGreaterThan(0);
  const storage = createStorage({ driver: open(path) });
  try {
    const last = acknowledged[acknowledged.length - 1]!;
    const values = await storage.getItems(acknowledged.map((i) => `key:${i}`));
    expect(values.filter((entry) => entry.value === null)).toEqual([]);
    expect(await storage.getItem<{ i: number }>(`key:${last}`)).toMatchObject({ i: last });
  } finally {
    await storage.dispose();
  }
  return acknowledged.length;
}

/** A worker that watches, writes `count` keys (and one with a ttl), lists them, and must then exit by itself: nothing left open keeps it alive. */
export async function exitsOnItsOwn(driverName: string, location: string, env: Record<string, string>, count = 20): Promise<void> {
  const { code, output } = await finish(startWorker([driverName, location, "exercise", String(count)], env), 60_000); // a hang, not a slow start on a loaded machine
  expect(code).toBe(0);
  expect(output.split("\n").filter(Boolean)).toHaveLength(count);
}
