import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Vitest defaults to cores - 1 workers: one here, though the files mostly wait on servers and child processes.
    maxWorkers: 2,
  },
});
