import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { git, gitInitBare } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";
import { programArgs } from "../helpers/programs.js";

const CLI = programArgs("src/cli/main.ts");
const REF = "refs/stowage/default";

/** Runs the CLI in its own process, as a user would. */
function stowage(args: string[]) {
  const result = spawnSync(process.execPath, [...CLI, ...args]);
  return { code: result.status, stdout: result.stdout.toString("utf8"), stderr: result.stderr.toString("utf8") };
}

/** `stowage sync`'s JSON line; the command must succeed. */
function sync(remote: string, store: string, ...more: string[]) {
  const run = stowage(["sync", remote, "--store", store, ...more]);
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout);
}

describe("stowage sync", () => {
  it("pushes, fast-forwards and merges two git stores through a bare remote", () => {
    const remote = gitInitBare("cli-sync-remote");
    const a = `git:${tempDir("cli-sync-a")}`;
    const b = `git:${tempDir("cli-sync-b")}`;
    expect(stowage(["set", "k", "base", "--store", a]).code).toBe(0);
    expect(sync(remote, a)).toMatchObject({ fetched: null, pushed: true });
    expect(sync(remote, b)).toMatchObject({ fastForwarded: true, pushed: false });
    stowage(["set", "k", "from-a", "--store", a]);
    stowage(["set", "k", "from-b", "--store", b]);
    stowage(["set", "only-b", "1", "--store", b]);
    sync(remote, a);
    expect(sync(remote, b, "--policy", "theirs")).toMatchObject({ merged: true, pushed: true, conflicts: ["k"] });
    sync(remote, a);
    expect(stowage(["get", "k", "--store", a]).stdout).toBe("from-a\n");
    expect(stowage(["get", "only-b", "--store", a]).stdout).toBe("1\n");
    expect(git(a.slice(4), ["rev-parse", `${REF}^{tree}`])).toBe(git(b.slice(4), ["rev-parse", `${REF}^{tree}`]));
  });

  it("refuses stores that are neither git: nor git-notes: and reports an unreachable remote", () => {
    const notGit = stowage(["sync", gitInitBare("cli-sync-remote"), "--store", `fs:${tempDir("cli-sync-fs")}`]);
    expect(notGit.code).toBe(1);
    expect(notGit.stderr).toMatch(/^stowage: E_UNSUPPORTED: sync works on git: and git-notes: stores only, not fs:/);
    const unreachable = stowage(["sync", join(tempDir("cli-sync-none"), "missing"), "--store", `git:${tempDir("cli-sync-a")}`]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^stowage: E_UNAVAILABLE: git fetch/);
    expect(stowage(["sync", "origin", "--policy", "newest", "--store", `git:${tempDir("cli-sync-a")}`]).code).not.toBe(0);
  });

  it("a remote whose tip is no stowage tree is E_CORRUPT and the store is left as it was", () => {
    const remote = gitInitBare("cli-sync-hostile");
    const blob = git(remote, ["hash-object", "-w", "--stdin"], '"x"');
    const tip = git(remote, ["commit-tree", "-m", "hostile", git(remote, ["mktree"], `120000 blob ${blob}\tlink\n`)]);
    git(remote, ["update-ref", REF, tip]);
    const dir = tempDir("cli-sync-victim");
    expect(stowage(["set", "k", "mine", "--store", `git:${dir}`]).code).toBe(0);
    const before = git(dir, ["rev-parse", REF]);
    const run = stowage(["sync", remote, "--store", `git:${dir}`]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^stowage: E_CORRUPT: .* is refused, the local ref is unchanged: .*mode 120000/);
    expect(git(dir, ["rev-parse", REF])).toBe(before);
    git(dir, ["fsck", "--strict", "--no-progress"]);
  });

  it("the default store ./.stowage inside a project's work tree is refused, not created among its files", () => {
    const project = tempDir("cli-sync-project");
    git(project, ["init", "-q", "-b", "main"]);
    const run = spawnSync(process.execPath, [...CLI, "sync", gitInitBare("cli-sync-remote")], { cwd: project });
    expect(run.status).toBe(1);
    expect(run.stderr.toString()).toMatch(/^stowage: E_INVALID_OPTION: .*\.stowage lies inside the work tree of the Git repository at .*list it in the work tree's .gitignore/);
    expect(existsSync(join(project, ".stowage"))).toBe(false);
  });
});
