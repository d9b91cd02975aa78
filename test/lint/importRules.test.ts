import { join } from "node:path";
import { ESLint } from "eslint";
import { describe, expect, it } from "vitest";

// eslint.config.js's import rules, run on imports written into real file paths: each forbidden import is
// reported, each allowed one is not, so a rule that stops matching fails here rather than passing silently.

const eslint = new ESLint({ cwd: join(import.meta.dirname, "../.."), overrideConfig: { rules: { "@typescript-eslint/no-unused-vars": "off" } } });

/** The rules that report `source` as if it were the file at `path`. */
async function reportedRules(path: string, source: string): Promise<(string | null)[]> {
  const [result] = await eslint.lintText(`${source}\nexport const used = 1;\n`, { filePath: path });
  return result!.messages.map((message) => message.ruleId);
}

const FORBIDDEN: [string, string][] = [
  ["src/drivers/queue.ts", 'import memory from "./memory.js";'],
  ["src/drivers/overlay.ts", 'import redis from "./redis/index.js";'],
  ["src/drivers/redis/watch.ts", 'import postgres from "../postgres.js";'],
  ["src/drivers/support/tableDriver.ts", 'import sqlite from "../sqlite.js";'],
  ["src/drivers/http.ts", 'import { createHandler } from "../server/handler.js";'],
  ["src/drivers/http.ts", 'import { isBearerToken } from "../server/token.js";'],
  ["src/drivers/memory.ts", 'import { DRIVERS } from "../config/registry.js";'],
  ["src/drivers/support/fs/fileStore.ts", 'import fs from "../../fs.js";'],
  ["src/drivers/support/fs/fileStore.ts", 'import { createHandler } from "../../../server/handler.js";'],
  ["src/core/types.ts", 'import memory from "../drivers/memory.js";'],
  ["src/core/storage/reads.ts", 'import { KvStore } from "../../git/store/kvStore.js";'],
  ["src/git/objects/tree.ts", 'import { RefStore } from "../refs/refs.js";'],
  ["src/git/refs/refs.ts", 'import { StorageError } from "../../core/errors.js";'],
];

const ALLOWED: [string, string][] = [
  ["src/drivers/queue.ts", 'import { wrapDriver } from "../core/wrapDriver.js";'],
  ["src/drivers/postgres.ts", 'import { prefixEnd } from "./support/keyRange.js";'],
  ["src/drivers/http.ts", 'import { isBearerToken } from "../core/bearerToken.js";'],
  ["src/drivers/redis/watch.ts", 'import { OwnWrites } from "../support/ownWrites.js";'],
  ["src/drivers/redis/index.ts", 'import { close } from "./connection.js";'],
  ["src/drivers/git.ts", 'import { KvStore } from "../git/store/kvStore.js";'],
  ["src/drivers/fs.ts", 'import { FileStore } from "./support/fs/fileStore.js";'],
  ["src/drivers/support/fs/fileStore.ts", 'import { errnoOf } from "./errno.js";'],
  ["src/drivers/support/fs/fileStore.ts", 'import { StorageError } from "../../../core/errors.js";'],
  ["src/drivers/support/tableDriver.ts", 'import { StorageError } from "../../core/errors.js";'],
  ["src/core/storage/reads.ts", 'import { StorageError } from "../errors.js";'],
  ["src/git/store/kvStore.ts", 'import { StorageError } from "../../core/errors.js";'],
];

describe("eslint.config.js's import rules", () => {
  it.each(FORBIDDEN)("%s may not %s", async (path, source) => {
    expect(await reportedRules(path, source)).toEqual(["no-restricted-imports"]);
  });

  it.each(ALLOWED)("%s may %s", async (path, source) => {
    expect(await reportedRules(path, source)).toEqual([]);
  });
});
