import { spawn } from "node:child_process";
import { mkdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { makeDirectories } from "../../src/core/directories.js";
import { tempDir } from "../helpers/tempDir.js";
import { finish } from "../helpers/checks.js";
import { runnable, scriptArgs } from "../helpers/programs.js";

/**
 * Opens a git, git-refs and fs store at `path` and writes one key, in a child
 * process: Node's recursive mkdir spins forever under /proc, and a hang must
 * fail the test, not stop the test run.
 */
async function openInChild(path: string): Promise<string[]> {
  const script = `import { createStorage } from ${JSON.stringify(runnable("src/index.ts"))};
import git from ${JSON.stringify(runnable("src/drivers/git.ts"))};
import gitRefs from ${JSON.stringify(runnable("src/drivers/git-refs.ts"))};
import fs from ${JSON.stringify(runnable("src/drivers/fs.ts"))};
for (const open of [() => git({ dir: ${JSON.stringify(path)} }), () => gitRefs({ dir: ${JSON.stringify(path)} }), () => fs({ base: ${JSON.stringify(path)} })]) {
  try { await createStorage({ driver: open() }).setItem("k", 1); console.log("written"); } catch (error) { console.log(error.code); }
}`;
  const child = spawn(process.execPath, scriptArgs(script), { stdio: ["ignore", "pipe", "inherit"] });
  const result = await finish(child, 60_000); // a hang, not a slow start on a loaded machine
  expect(result.code, "exit code (a signal or a hang: null)").toBe(0);
  return result.output.trim().split("\n");
}

describe("makeDirectories", () => {
  it("makes every missing level, and accepts what exists", () => {
    const dir = join(tempDir("mkdirs"), "a", "b", "c");
    makeDirectories(dir);
    makeDirectories(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
  });

  it("fails at once where a level cannot be made: under /proc, under a file, under a dangling link", () => {
    const base = tempDir("mkdirs-bad");
    writeFileSync(join(base, "file"), "x");
    symlinkSync(join(base, "nowhere"), join(base, "dangling"));
    mkdirSync(join(base, "ok"));
    expect(() => makeDirectories("/proc/stowage-nope/x")).toThrow(expect.objectContaining({ code: "ENOENT" }));
    expect(() => makeDirectories(join(base, "file", "x"))).toThrow(expect.objectContaining({ code: "ENOTDIR" }));
    expect(() => makeDirectories(join(base, "dangling", "x"))).toThrow(expect.objectContaining({ code: "EEXIST" }));
  });

  it("git, git-refs and fs stores under /proc fail with E_IO instead of spinning in Node's recursive mkdir", async () => {
    expect(await openInChild("/proc/stowage-nope/store")).toEqual(["E_IO", "E_IO", "E_IO"]);
  }, 90_000);
});
