import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { git, gitInitBare } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";
import { programArgs } from "../helpers/programs.js";

const CLI = programArgs("src/cli/main.ts");
const NOTES_REF = "refs/notes/stowage-receipts";

/** Runs the CLI in its own process, as a user would. */
function stowage(args: string[]) {
  const result = spawnSync(process.execPath, [...CLI, ...args]);
  return { code: result.status, stdout: result.stdout.toString("utf8"), stderr: result.stderr.toString("utf8") };
}

/** Runs the CLI; it must succeed without a word on stderr. Returns its stdout. */
function ok(args: string[]): string {
  const run = stowage(args);
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return run.stdout;
}

/** A bare origin with one commit on main, and `count` clones of it made by stock git. */
function originWithClones(label: string, count: number): { origin: string; clones: string[] } {
  const origin = gitInitBare(`${label}-origin`);
  const seed = join(tempDir(`${label}-seed`), "seed");
  git(origin, ["clone", "-q", origin, seed]);
  git(seed, ["commit", "-q", "--allow-empty", "-m", "first"]);
  git(seed, ["push", "-q", "origin", "main"]);
  const clones = Array.from({ length: count }, (_, i) => {
    const clone = join(tempDir(`${label}-${i}`), "clone");
    git(origin, ["clone", "-q", origin, clone]);
    return clone;
  });
  return { origin, clones };
}

/** The commands of the receipts `stowage receipts` lists, sorted. */
function receiptCommands(store: string): string[] {
  const lines = ok(["receipts", "--store", store, "--json"]).trim().split("\n");
  return lines.map((line) => (JSON.parse(line) as { command: string }).command).sort();
}

describe("stowage sync on git-notes: stores", () => {
  it("receipts recorded by `stowage lock --receipt` in two clones are all in both after syncing both ways", () => {
    const { origin, clones } = originWithClones("cli-notes", 2);
    const [a, b] = clones.map((dir) => `git-notes:${dir}?namespace=receipts`) as [string, string];
    expect(ok(["lock", "job", "--receipt", "--store", a, "--", "echo", "a1"])).toBe("a1\n");
    ok(["lock", "job", "--receipt", "--store", a, "--", "echo", "a2"]);
    ok(["lock", "job", "--receipt", "--store", b, "--", "echo", "b1"]);
    expect(receiptCommands(a)).toEqual(["echo a1", "echo a2"]);

    const first = JSON.parse(ok(["sync", "origin", "--store", a]));
    expect(first).toMatchObject({ fetched: null, merged: false, pushed: true });
    // Both clones wrote receipts: b merges per note and keeps its own and a's.
    const merged = JSON.parse(ok(["sync", "origin", "--store", b]));
    // The one entry both changed is the lock record (a took the lock twice, b once), not a receipt: its note goes by the policy.
    const lockNote = git(clones[0]!, ["hash-object", "--stdin"], "locks:job");
    expect(merged).toMatchObject({ merged: true, pushed: true, conflicts: [lockNote] });
    expect(JSON.parse(ok(["sync", "origin", "--store", a]))).toMatchObject({ fastForwarded: true, pushed: false, tip: merged.tip });

    const all = ["echo a1", "echo a2", "echo b1"];
    expect(receiptCommands(a)).toEqual(all);
    expect(receiptCommands(b)).toEqual(all);
    for (const dir of [origin, ...clones]) {
      expect(git(dir, ["rev-parse", NOTES_REF])).toBe(merged.tip);
      git(dir, ["fsck", "--strict", "--no-progress"]);
    }
  }, 60_000);

  it("`--policy latest` is refused on git-notes: (ours is the default, theirs is taken)", () => {
    const { clones } = originWithClones("cli-notes-policy", 1);
    const store = `git-notes:${clones[0]}`;
    const latest = stowage(["sync", "origin", "--store", store, "--policy", "latest"]);
    expect(latest.code).toBe(1);
    expect(latest.stderr).toMatch(/^stowage: E_INVALID_OPTION: git-notes: stores sync with --policy ours or theirs \(default ours\), not latest: [^\n]*\n$/);
    // Refused before anything was fetched or written.
    expect(git(clones[0]!, ["for-each-ref", "refs/notes", "refs/remotes/origin/notes"])).toBe("");
    ok(["set", "k", "v", "--store", store]);
    expect(JSON.parse(ok(["sync", "origin", "--store", store, "--policy", "theirs"]))).toMatchObject({ pushed: true });
  }, 30_000);

  it("a directory that is no Git repository is refused without creating anything", () => {
    const empty = tempDir("cli-notes-empty");
    const missing = join(tempDir("cli-notes-missing"), "nothing-here");
    const remote = gitInitBare("cli-notes-remote");
    const commands = (store: string) => [["receipts", "--store", store], ["sync", remote, "--store", store], ["lock", "job", "--receipt", "--store", store, "--", "true"]];
    for (const dir of [empty, missing]) {
      for (const args of commands(`git-notes:${dir}`)) {
        const run = stowage(args);
        expect(run.code).toBe(1);
        expect(run.stderr).toMatch(/^stowage: E_INVALID_OPTION: The git-notes: store needs an existing Git repository .* is none; run git init there first\n$/);
      }
    }
    expect(readdirSync(empty)).toEqual([]);
    expect(existsSync(missing)).toBe(false);
  }, 30_000);

  it("takes ref= and namespace= in its query and refuses any other part", () => {
    const { clones } = originWithClones("cli-notes-url", 1);
    const dir = clones[0]!;
    ok(["set", "k", "1", "--store", `git-notes:${dir}?ref=refs/notes/ci&namespace=x`]);
    expect(git(dir, ["for-each-ref", "--format=%(refname)", "refs/notes"])).toBe("refs/notes/ci-x");
    expect(ok(["get", "k", "--store", `git-notes:${dir}?namespace=x&ref=refs/notes/ci`])).toBe("1\n");
    const refused: [string, RegExp][] = [
      [`${dir}?bogus=1`, /does not take the query parameter "bogus"/],
      [`${dir}?namespace=a&namespace=b`, /takes namespace= once/],
      [`${dir}?`, /has an empty query/],
      [`${dir}#frag`, /takes no fragment/],
      [`${dir}?ref=notes/ci`, /Not a valid ref name under refs\//],
      [`${dir}?namespace=`, /namespace must be a non-empty string/],
      ["", /needs a location/],
    ];
    for (const [rest, message] of refused) {
      const run = stowage(["get", "k", "--store", `git-notes:${rest}`]);
      expect(run.code, rest).toBe(1);
      expect(run.stderr).toMatch(/^stowage: E_INVALID_OPTION: /);
      expect(run.stderr).toMatch(message);
    }
    expect(git(dir, ["for-each-ref", "--format=%(refname)", "refs/notes"])).toBe("refs/notes/ci-x");
  }, 30_000);
});
