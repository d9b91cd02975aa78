/**
 * vitest's global setup: bundles what tests run in child processes once per
 * test run (see programs.ts), into a folder under node_modules/.cache so the
 * built code finds stowage's packages, and removes it when the run ends.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { build } from "tsup";
import type { TestProject } from "vitest/node";
import { DRIVERS } from "../../src/config/registry.js";
import { driverSource } from "../../tsup.config.js";
import { PROGRAM_SOURCES } from "./programs.js";

const ROOT = join(import.meta.dirname, "../..");
const PREFIX = "stowage-test-build-";

/** Whether process `pid` still runs: signal 0 only checks (EPERM: it runs, as another user). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return false;
    if (code === "EPERM") return true;
    throw error;
  }
}

/** Removes the builds of runs that ended without their teardown (killed, or stopped by a timeout). */
function removeAbandoned(cache: string): void {
  for (const name of readdirSync(cache)) {
    const pid = name.startsWith(PREFIX) ? Number(name.slice(PREFIX.length).split("-")[0]) : NaN;
    if (Number.isInteger(pid) && !running(pid)) rmSync(join(cache, name), { recursive: true, force: true });
  }
}

/** Bundles PROGRAM_SOURCES and every registered driver into `outDir`. */
async function buildInto(outDir: string): Promise<void> {
  const sources = [...PROGRAM_SOURCES, ...DRIVERS.map(({ name }) => driverSource(name))];
  await build({
    entry: Object.fromEntries(sources.map((source) => [source.replace(/\.ts$/, ""), join(ROOT, source)])),
    outDir,
    format: ["esm"],
    target: "node20",
    splitting: true,
    sourcemap: true,
    // Every package stays an import, resolved from node_modules as the sources resolve it.
    skipNodeModulesBundle: true,
    config: false,
    silent: true,
  });
}

export default async function setup(project: TestProject): Promise<() => void> {
  const cache = join(ROOT, "node_modules/.cache");
  mkdirSync(cache, { recursive: true });
  removeAbandoned(cache);
  // One folder per run, named by its process: runs side by side in one tree must not share one.
  const outDir = mkdtempSync(join(cache, `${PREFIX}${process.pid}-`));
  await buildInto(outDir);
  // In watch mode each rerun builds again, so children run the sources as they are now.
  project.onTestsRerun(() => buildInto(outDir));
  process.env.STOWAGE_TEST_BUILD = outDir;
  return () => rmSync(outDir, { recursive: true, force: true });
}
