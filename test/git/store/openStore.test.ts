import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import git from "../../../src/drivers/git.js";
import gitNotes from "../../../src/drivers/git-notes.js";
import gitObjects from "../../../src/drivers/git-objects.js";
import gitRefs from "../../../src/drivers/git-refs.js";
import { enclosingRepository, Repository } from "../../../src/git/repo/repository.js";
import { openOrInit } from "../../../src/git/store/openStore.js";
import { tempDir } from "../../helpers/tempDir.js";
import { errorCode, git as gitCli, gitInitBare } from "../gitCli.js";

const OPENERS: [string, (dir: string) => unknown][] = [
  ["git", (dir) => git({ dir })],
  ["git-refs", (dir) => gitRefs({ dir })],
  ["git-notes", (dir) => gitNotes({ dir })],
  ["git-objects", (dir) => gitObjects({ dir, namespace: `t${Math.random().toString(36).slice(2)}` })],
];

/** A work tree made by stock git, with an app's files in it. */
function workTree(): string {
  const dir = tempDir("open-worktree");
  gitCli(dir, ["init", "-q", "-b", "main"]);
  writeFileSync(join(dir, "package.json"), "{}\n");
  mkdirSync(join(dir, "src"));
  return dir;
}

describe("where a git driver's repository is", () => {
  it.each(OPENERS)("%s: a dir inside a work tree is E_INVALID_OPTION and nothing is created there", (_name, open) => {
    const top = workTree();
    for (const dir of [join(top, "src"), join(top, ".stowage"), join(top, "src", "deep", "store"), join(top, ".git", "stowage")]) {
      expect(errorCode(() => open(dir)), dir).toBe("E_INVALID_OPTION");
      expect(existsSync(join(dir, "HEAD"))).toBe(false);
    }
    expect(readdirSync(join(top, "src"))).toEqual([]);
    expect(existsSync(join(top, ".stowage"))).toBe(false);
    expect(gitCli(top, ["status", "--porcelain", "--untracked-files=all"]).split("\n").sort()).toEqual(["?? package.json"]);
  });

  it("the message names the enclosing repository and what to pass instead", () => {
    const top = workTree();
    expect(() => git({ dir: join(top, "src") })).toThrow(`lies inside the work tree of the Git repository at ${top}: pass ${top} to store in that repository`);
  });

  it("a directory the work tree ignores (.stowage/ in .gitignore, as this project's README runs it) gets its bare repository", async () => {
    const top = workTree();
    writeFileSync(join(top, ".gitignore"), ".stowage/\nignored/\n");
    const driver = git({ dir: join(top, ".stowage") });
    await driver.setItem!("k", '"v"', {});
    expect(gitCli(join(top, ".stowage"), ["rev-parse", "--is-bare-repository"])).toBe("true");
    expect(errorCode(() => openOrInit(join(top, "ignored", "deep")))).toBeUndefined();
    // The project sees none of it; a sibling that is not ignored is still refused.
    expect(gitCli(top, ["status", "--porcelain", "--untracked-files=all"]).split("\n").sort()).toEqual(["?? .gitignore", "?? package.json"]);
    expect(errorCode(() => openOrInit(join(top, ".stowage2")))).toBe("E_INVALID_OPTION");
    await driver.dispose?.();
  });

  it.each(OPENERS)("%s: the work tree's top directory opens its repository; a dir there made with git init --bare is used", (_name, open) => {
    const top = workTree();
    expect(errorCode(() => open(top))).toBeUndefined();
    expect(errorCode(() => open(join(top, ".git")))).toBeUndefined();
    const own = join(top, "store.git");
    gitCli(top, ["init", "-q", "--bare", own]);
    expect(errorCode(() => open(own))).toBeUndefined();
  });

  it("a dir inside a bare repository, or reached through a symlink into a work tree, is refused", () => {
    const bare = gitInitBare("open-bare");
    expect(errorCode(() => openOrInit(join(bare, "refs", "tags")))).toBe("E_INVALID_OPTION");
    expect(errorCode(() => openOrInit(join(bare, "new")))).toBe("E_INVALID_OPTION");
    const link = join(tempDir("open-link"), "app");
    symlinkSync(workTree(), link);
    expect(errorCode(() => openOrInit(join(link, "data")))).toBe("E_INVALID_OPTION");
    expect(enclosingRepository(join(link, "data"))).toMatchObject({ workTree: true });
    expect(enclosingRepository(join(bare, "refs"))).toEqual({ dir: bare, workTree: false });
  });

  it("a directory holding other files is refused; a new or empty one outside any repository gets a bare repository", () => {
    const full = tempDir("open-full");
    writeFileSync(join(full, "notes.txt"), "mine\n");
    expect(() => openOrInit(full)).toThrow(/is neither a Git repository nor empty \(it holds "notes.txt"\)/);
    expect(readdirSync(full)).toEqual(["notes.txt"]);
    for (const dir of ["", "a\0b", 7]) expect(errorCode(() => openOrInit(dir as string))).toBe("E_INVALID_OPTION");
    const file = join(full, "notes.txt");
    expect(errorCode(() => openOrInit(join(file, "x")))).toBe("E_INVALID_OPTION");

    const fresh = join(tempDir("open-fresh"), "a", "b");
    const repo = openOrInit(fresh);
    expect(repo.gitDir).toBe(fresh);
    expect(gitCli(fresh, ["rev-parse", "--is-bare-repository"])).toBe("true");
    const empty = tempDir("open-empty");
    expect(openOrInit(empty).gitDir).toBe(empty);
    // One being created by another process (HEAD comes last) is finished, not refused.
    const half = tempDir("open-half");
    mkdirSync(join(half, "objects"));
    mkdirSync(join(half, "refs"));
    expect(openOrInit(half).gitDir).toBe(half);
    expect(Repository.open(half).refs.resolve("HEAD")).toBeUndefined();
  });

  it("a repository whose format asks for what the engine does not do is E_UNSUPPORTED (preciousObjects, unknown format-1 extensions)", () => {
    const precious = gitInitBare("open-precious");
    gitCli(precious, ["config", "extensions.preciousObjects", "true"]);
    expect(errorCode(() => git({ dir: precious }))).toBe("E_UNSUPPORTED");
    const unknown = gitInitBare("open-unknown-extension");
    gitCli(unknown, ["config", "core.repositoryformatversion", "1"]);
    gitCli(unknown, ["config", "extensions.frobnicate", "true"]);
    expect(() => Repository.open(unknown)).toThrow(/uses extensions\.frobnicate/);
    // Stock git refuses the repository too: its config is edited as a file.
    gitCli(unknown, ["config", "--file", join(unknown, "config"), "--unset", "extensions.frobnicate"]);
    gitCli(unknown, ["config", "--file", join(unknown, "config"), "extensions.worktreeConfig", "true"]);
    expect(errorCode(() => Repository.open(unknown))).toBeUndefined();
  });
});
