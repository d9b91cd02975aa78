import { defineConfig } from "tsup";

export default defineConfig({
  entry: {
    index: "src/index.ts",
    testing: "src/testing/index.ts",
    "cli/main": "src/cli/main.ts",
    "drivers/memory": "src/drivers/memory.ts",
    "drivers/fs": "src/drivers/fs.ts",
    "drivers/fs-lite": "src/drivers/fs-lite.ts",
    "drivers/sqlite": "src/drivers/sqlite.ts",
    "drivers/leveldb": "src/drivers/leveldb.ts",
    "drivers/lmdb": "src/drivers/lmdb.ts",
    "drivers/overlay": "src/drivers/overlay.ts",
    "drivers/queue": "src/drivers/queue.ts",
  },
  format: ["esm"],
  target: "node20",
  dts: true,
  clean: true,
  sourcemap: true,
  splitting: true,
  // Peers: the kit's test runner and the backends' clients, installed by whoever uses them.
  external: ["vitest", "better-sqlite3", "classic-level", "lmdb"],
});
