import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: "forks",
    // Bundles what child processes run once per run, so they start on plain node (test/helpers/programs.ts).
    globalSetup: ["test/helpers/buildPrograms.ts"],
    // Vitest defaults to cores - 1 workers: one here, though the files mostly wait on servers and child processes.
    maxWorkers: 2,
  },
});
