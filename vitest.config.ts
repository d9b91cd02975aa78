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
    // One project on purpose (issue #16, December 2026): the files that spawn processes by the dozen (CLI, workers,
    // git) split into a project run first with 2 workers, the rest after with 3, took 366 s against 280 s for this
    // one pool (one run each, other suites loading the machine too). Run side by side the CPU-bound files slowed each
    // other (git/remote/sync 7 s to 53 s, lmdb 9 s to 36 s); mixed with files that wait on servers they share the
    // two cores better.
    // Three workers, not two: on a clean clone of 56567e9, alone on the machine, 177 s and 179 s against 201–218 s
    // with two (all 69 files green each time); most files wait on servers, so a third keeps the cores busy.
    maxWorkers: 3,
  },
});
