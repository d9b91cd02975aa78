import { randomUUID } from "node:crypto";
import { afterAll } from "vitest";
import { createStorage } from "../../src/index.js";
import redis from "../../src/drivers/redis/index.js";

/**
 * A key prefix of Redis's own for one run of a test file (`stowage-test:<name>:<uuid>`), cleared after
 * the file's tests: parallel test files and earlier runs never see each other's keys.
 */
export function redisRunBase(url: string, name: string): string {
  const base = `stowage-test:${name}:${randomUUID()}`;
  afterAll(async () => {
    const cleanup = createStorage({ driver: redis({ url, base, watch: "off" }) });
    await cleanup.clear();
    await cleanup.dispose();
  });
  return base;
}
