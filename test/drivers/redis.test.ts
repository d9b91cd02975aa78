import { randomUUID } from "node:crypto";
import redis from "../../src/drivers/redis.js";
import { testDriver } from "../../src/testing/index.js";
import { serviceUp } from "../helpers/services.js";

const url = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
// One prefix per run of this file: parallel test files and earlier runs never see each other's keys.
const runBase = `stowage-test:${randomUUID()}`;

if (await serviceUp("Redis", url)) {
  testDriver({ name: "redis", driver: () => redis({ url, base: `${runBase}:kit` }) });
}
