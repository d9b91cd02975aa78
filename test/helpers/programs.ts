/**
 * What tests run in processes of their own (workers, the CLI, child scripts)
 * starts from one build per test run: vitest's global setup
 * (test/helpers/buildPrograms.ts) bundles these sources once into the folder
 * named by STOWAGE_TEST_BUILD, and children run that JavaScript on plain node.
 * Through tsx every child compiled every module again (about 1 s a start on a
 * loaded 2-core machine, hundreds of starts a run). Outside vitest (the soak
 * scripts) the variable is unset and children run the sources through tsx.
 * Free of vitest, so those scripts use it too.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "../..");

/** The sources children run or import, relative to the repository; each is an entry of the build. */
export const PROGRAM_SOURCES = [
  "src/index.ts",
  "src/coordination/index.ts",
  "src/cli/main.ts",
  "test/helpers/storeWorker.ts",
  "test/helpers/fenceWorker.ts",
  "test/git/refs/casWorker.ts",
] as const;

/** The folder of this run's build, if vitest's global setup made one. */
function buildDir(): string | undefined {
  return process.env.STOWAGE_TEST_BUILD || undefined;
}

/**
 * The file a child runs or imports for `source` (a path relative to the
 * repository: one of PROGRAM_SOURCES or a driver's module): its built
 * JavaScript during a test run, else the TypeScript source.
 */
export function runnable(source: string): string {
  const dir = buildDir();
  if (!dir) return join(ROOT, source);
  const built = join(dir, source.replace(/\.ts$/, ".js"));
  if (!existsSync(built)) throw new Error(`${source} is not in the test build: add it to PROGRAM_SOURCES in test/helpers/programs.ts`);
  return built;
}

/** Node's options a child needs before its script: stack traces mapped back to the sources, or tsx's loader. */
function loaderArgs(): string[] {
  return buildDir() ? ["--enable-source-maps"] : ["--import", import.meta.resolve("tsx")];
}

/** Node's arguments to run `source` (see `runnable`) with `args`. */
export function programArgs(source: string, args: string[] = []): string[] {
  return [...loaderArgs(), runnable(source), ...args];
}

/** Node's arguments to run the ES module text `script`, whose imports name `runnable` paths. */
export function scriptArgs(script: string): string[] {
  return [...loaderArgs(), "--input-type=module", "-e", script];
}
