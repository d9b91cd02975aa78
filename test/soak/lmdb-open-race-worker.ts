/**
 * One process of the open-race soak: `<path> <cycles> <increments>`. Each cycle opens the store
 * (a real LMDB open: the environment is closed in between), makes `increments` update() increments
 * of "counter", printing each value it wrote, and closes it. SOAK_DRIVER names another driver
 * module to run (an older build, to measure the loss it had).
 */
import { createStorage, type Driver } from "../../src/index.js";
import type { LmdbOptions } from "../../src/drivers/lmdb.js";

const [path, cyclesText, incrementsText] = process.argv.slice(2);
const driverModule = process.env.SOAK_DRIVER ?? "../../src/drivers/lmdb.js";
const lmdb = (await import(driverModule)).default as (options: LmdbOptions) => Driver;

for (let cycle = 0; cycle < Number(cyclesText); cycle++) {
  const storage = createStorage({ driver: lmdb({ path: path!, noSync: process.env.SOAK_SYNC !== "1" }) });
  for (let i = 0; i < Number(incrementsText); i++) {
    process.stdout.write(`${await storage.update<number>("counter", (n) => (n ?? 0) + 1, { retries: 10_000 })}\n`);
  }
  await storage.dispose();
}
