import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createStorage, isStorageError, type Storage } from "../../../src/index.js";
import git, { type GitDriver } from "../../../src/drivers/git.js";
import { fetchRefspecs, mergeBase, pushRefspecs, Repository, trackingRef, type ObjectId, type SyncOptions } from "../../../src/git/index.js";
import { EMPTY_TREE } from "../../../src/git/store/keyTree.js";
import { tempDir } from "../../helpers/tempDir.js";
import { git as gitCli, gitFails, gitInitBare } from "../gitCli.js";

const REF = "refs/stowage/default";

interface Clone {
  dir: string;
  driver: GitDriver;
  storage: Storage;
  sync: (options?: SyncOptions) => ReturnType<GitDriver["sync"]>;
}

/** A git store in a new repository, synced with `remote`. */
function clone(remote: string, label = "sync-clone"): Clone {
  const dir = tempDir(label);
  const driver = git({ dir });
  return { dir, driver, storage: createStorage({ driver }), sync: (options) => driver.sync(remote, options) };
}

const treeOf = (dir: string): string => gitCli(dir, ["rev-parse", `${REF}^{tree}`]);

function fsck(dir: string): void {
  gitCli(dir, ["fsck", "--strict", "--no-progress"]);
}

async function codeOf(run: Promise<unknown>): Promise<string | undefined> {
  try {
    await run;
  } catch (error) {
    if (isStorageError(error)) return error.code;
    throw error;
  }
  return undefined;
}

/** Two clones of one bare remote sharing a first commit of `base`. */
async function pair(base: Record<string, unknown>, remote = gitInitBare("sync-remote")): Promise<{ remote: string; a: Clone; b: Clone }> {
  const a = clone(remote, "sync-a");
  const b = clone(remote, "sync-b");
  await a.storage.setItems(Object.entries(base).map(([key, value]) => ({ key, value })));
  expect(await a.sync()).toMatchObject({ fetched: null, pushed: true, merged: false });
  expect(await b.sync()).toMatchObject({ fastForwarded: true, pushed: false });
  return { remote, a, b };
}

/** A's and B's edits made apart, B's one second after A's (commit times are in seconds). */
async function editApart(a: Clone, b: Clone, editA: (s: Storage) => Promise<unknown>, editB: (s: Storage) => Promise<unknown>): Promise<void> {
  vi.useFakeTimers({ toFake: ["Date"], now: new Date("2026-01-01T00:00:00Z") });
  await editA(a.storage);
  vi.setSystemTime(new Date("2026-01-01T00:00:01Z"));
  await editB(b.storage);
  vi.useRealTimers();
}

const BASE = { shared: 1, same: "base", rmEdit: "base", rmBoth: "base", sameBoth: "base" };

async function divergedPair(): Promise<{ remote: string; a: Clone; b: Clone }> {
  const clones = await pair(BASE);
  await editApart(
    clones.a,
    clones.b,
    async (s) => {
      await s.setItem("a:only", "A");
      await s.setItem("same", "A");
      await s.removeItem("rmEdit");
      await s.removeItem("rmBoth");
      await s.setItem("sameBoth", "X");
    },
    async (s) => {
      await s.setItem("b:only", "B");
      await s.setItem("same", "B");
      await s.setItem("rmEdit", "B");
      await s.removeItem("rmBoth");
      await s.setItem("sameBoth", "X");
    },
  );
  return clones;
}

/** A pushes, B merges and pushes, A fast-forwards: both end on B's merge commit. */
async function syncAround(a: Clone, b: Clone, options: SyncOptions = {}) {
  expect(await a.sync(options)).toMatchObject({ pushed: true, merged: false });
  const merge = await b.sync(options);
  expect(merge).toMatchObject({ pushed: true, merged: true });
  expect(await a.sync(options)).toMatchObject({ pushed: false, fastForwarded: true, tip: merge.tip });
  expect(treeOf(a.dir)).toBe(treeOf(b.dir));
  return merge;
}

async function values(storage: Storage): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of (await storage.getKeys()).sort()) out[key] = await storage.getItem(key);
  return out;
}

/**
 * A pre-push hook in A's repository that pushes B's ref to the remote first,
 * once: A's push, leased on the commit it fetched, is then refused. Returns
 * the file the hook creates when it has run.
 */
function letOtherPushFirst(a: Clone, b: Clone, remote: string): string {
  const marker = join(tempDir("sync-hook"), "pushed");
  mkdirSync(join(a.dir, "hooks"), { recursive: true });
  const hook = join(a.dir, "hooks", "pre-push");
  writeFileSync(
    hook,
    [
      "#!/usr/bin/env node",
      'const { execFileSync } = require("node:child_process");',
      'const { existsSync, writeFileSync } = require("node:fs");',
      `if (!existsSync(${JSON.stringify(marker)})) {`,
      `  writeFileSync(${JSON.stringify(marker)}, "");`,
      `  execFileSync("git", ["--git-dir", ${JSON.stringify(b.dir)}, "push", "-q", ${JSON.stringify(remote)}, ${JSON.stringify(`${REF}:${REF}`)}], { stdio: "inherit" });`,
      "}",
      "",
    ].join("\n"),
  );
  chmodSync(hook, 0o755);
  return marker;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("git driver sync", () => {
  it("pushes to an empty remote, fast-forwards an empty clone, and is a no-op when in step", async () => {
    const { remote, a, b } = await pair({ greeting: "hello", "user:1": { name: "Ada" } });
    expect(await b.storage.getItem("user:1")).toEqual({ name: "Ada" });
    expect(gitCli(remote, ["rev-parse", REF])).toBe(gitCli(a.dir, ["rev-parse", REF]));
    expect(await a.sync()).toMatchObject({ pushed: false, merged: false, fastForwarded: false, conflicts: [] });
    expect(gitCli(a.dir, ["rev-parse", trackingRef(remote, REF)])).toBe(gitCli(remote, ["rev-parse", REF]));
    // Syncs of one driver run one after the other; a write queued before a sync is in it.
    void a.storage.setItem("queued", 1);
    const [first, second] = await Promise.all([a.sync(), a.sync()]);
    expect(first).toMatchObject({ pushed: true });
    expect(second).toMatchObject({ pushed: false, tip: first.tip });
    expect(gitCli(remote, ["show", `${REF}:queued`])).toBe("1");
  });

  it("merges edits made apart per key and both clones end with identical trees (latest wins)", async () => {
    const { remote, a, b } = await divergedPair();
    const merge = await syncAround(a, b);
    expect(merge.conflicts.sort()).toEqual(["rmEdit", "same"]);
    // B's edits are a second newer: B wins both conflicts, the removal on A loses to B's edit.
    const expected = { "a:only": "A", "b:only": "B", rmEdit: "B", same: "B", sameBoth: "X", shared: 1 };
    expect(await values(a.storage)).toEqual(expected);
    expect(await values(b.storage)).toEqual(expected);
    expect(gitCli(a.dir, ["rev-list", "--parents", "-n", "1", REF]).split(" ")).toHaveLength(3);
    expect(gitCli(remote, ["log", "--format=%s", REF]).split("\n")[0]).toMatch(/^stowage: merge refs\/stowage\/default from /);
    for (const dir of [a.dir, b.dir, remote]) fsck(dir);
  });

  it("latest: the side whose last change of the key is newer wins, even when its tip is older", async () => {
    const { a, b } = await pair({ k: "base", other: "base" });
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2026-01-01T00:00:00Z") });
    await a.storage.setItem("k", "A-early");
    vi.setSystemTime(new Date("2026-01-01T00:00:05Z"));
    await b.storage.setItem("k", "B-later");
    vi.setSystemTime(new Date("2026-01-01T00:00:09Z"));
    await a.storage.setItem("other", "A-latest");
    vi.useRealTimers();
    await syncAround(a, b);
    expect(await values(a.storage)).toEqual({ k: "B-later", other: "A-latest" });
  });

  it("policies ours and theirs decide conflicts for the clone that merges", async () => {
    for (const policy of ["ours", "theirs"] as const) {
      const { a, b } = await divergedPair();
      const merge = await syncAround(a, b, { policy });
      expect(merge.conflicts.sort()).toEqual(["rmEdit", "same"]);
      const picked = policy === "ours" ? { rmEdit: "B", same: "B" } : { same: "A" };
      expect(await values(b.storage)).toEqual({ "a:only": "A", "b:only": "B", sameBoth: "X", shared: 1, ...picked });
    }
  });

  it("a resolver gets base, ours and theirs as stored text and returns bytes or null", async () => {
    const { a, b } = await divergedPair();
    const calls: unknown[][] = [];
    const policy = (key: string, base: string | null, ours: string | null, theirs: string | null) => {
      calls.push([key, base, ours, theirs]);
      const joined = [base, ours, theirs].map((text) => JSON.parse(text ?? "null")).join("+");
      return key === "same" ? new TextEncoder().encode(JSON.stringify(joined)) : null;
    };
    await syncAround(a, b, { policy });
    expect(calls.sort()).toEqual([
      ["rmEdit", '"base"', '"B"', null],
      ["same", '"base"', '"B"', '"A"'],
    ]);
    expect(await values(a.storage)).toEqual({ "a:only": "A", "b:only": "B", same: "base+B+A", sameBoth: "X", shared: 1 });
    fsck(a.dir);
  });

  it("merges keys nested below other keys, fanned-out directories and histories without a common commit", async () => {
    const remote = gitInitBare("sync-remote");
    const a = clone(remote);
    const b = clone(remote);
    await a.storage.setItems(Array.from({ length: 1100 }, (_, i) => ({ key: `user:${i}`, value: i })));
    await a.storage.setItem("user:1:avatar", "a.png");
    await b.storage.setItem("user:1", "from B");
    await b.storage.setItem("user:2000", 2000);
    await a.sync();
    const merge = await b.sync({ policy: "ours" });
    expect(merge).toMatchObject({ merged: true, conflicts: ["user:1"] });
    await a.sync();
    expect(treeOf(a.dir)).toBe(treeOf(b.dir));
    expect(await a.storage.getItem("user:1")).toBe("from B");
    expect(await a.storage.getItem("user:1:avatar")).toBe("a.png");
    expect(await a.storage.getItem("user:2000")).toBe(2000);
    expect((await a.storage.getKeys("user")).length).toBe(1102);
    fsck(b.dir);
  });

  it("works with a named remote, a file:// URL and a plain path to a non-bare repository", async () => {
    const bare = gitInitBare("sync-remote");
    const named = clone("origin");
    gitCli(named.dir, ["remote", "add", "origin", bare]);
    await named.storage.setItem("k", "named");
    expect(await named.sync()).toMatchObject({ pushed: true });
    expect(gitCli(named.dir, ["rev-parse", "refs/stowage-remotes/origin/stowage/default"])).toBe(gitCli(bare, ["rev-parse", REF]));

    const viaUrl = clone(`file://${bare}`);
    expect(await viaUrl.sync()).toMatchObject({ fastForwarded: true });
    expect(await viaUrl.storage.getItem("k")).toBe("named");

    const worktree = tempDir("sync-worktree");
    gitCli(worktree, ["init", "-q", "-b", "main"]);
    expect(await viaUrl.driver.sync(worktree)).toMatchObject({ pushed: true });
    expect(gitCli(worktree, ["show", `${REF}:k`])).toBe('"named"');
  });

  it("retries when another clone pushes between its fetch and its push", async () => {
    const { remote, a, b } = await pair({ k: "base" });
    await a.storage.setItem("fromA", "A");
    await b.storage.setItem("fromB", "B");
    const marker = letOtherPushFirst(a, b, remote);
    const result = await a.sync();
    expect(existsSync(marker)).toBe(true);
    expect(result).toMatchObject({ pushed: true, merged: true });
    expect(gitCli(remote, ["rev-parse", REF])).toBe(result.tip);
    expect(await b.sync()).toMatchObject({ fastForwarded: true });
    expect(await values(b.storage)).toEqual({ fromA: "A", fromB: "B", k: "base" });
  });

  it("is E_CONFLICT when the remote moved before every push of the rounds allowed", async () => {
    const { remote, a, b } = await pair({ k: "base" });
    await a.storage.setItem("fromA", "A");
    await b.storage.setItem("fromB", "B");
    const marker = letOtherPushFirst(a, b, remote);
    const error = await a.sync({ retries: 0 }).catch((failure: unknown) => failure);
    expect(existsSync(marker)).toBe(true);
    expect(isStorageError(error, "E_CONFLICT")).toBe(true);
    expect((error as Error).message).toMatch(/1 times, last .*keeps moving/);
    expect(await a.sync()).toMatchObject({ pushed: true, merged: true });
  });

  it("is E_CONFLICT at once when the remote refuses the push without having moved", async () => {
    const { remote, a } = await pair({ k: "base" });
    writeFileSync(join(remote, "hooks", "pre-receive"), "#!/bin/sh\necho no >&2\nexit 1\n");
    chmodSync(join(remote, "hooks", "pre-receive"), 0o755);
    await a.storage.setItem("k", "A");
    const error = await a.sync().catch((failure: unknown) => failure);
    expect(isStorageError(error, "E_CONFLICT")).toBe(true);
    expect((error as Error).message).toMatch(/pre-receive hook declined.*did not move/);
  });

  it("re-merges when the local ref moves during the merge", async () => {
    const { a, b } = await divergedPair();
    await a.sync();
    let calls = 0;
    const policy = (key: string) => {
      calls++;
      // A local write lands while the first merge is being built: its CAS fails and the merge is redone on the new tip.
      if (calls === 1) b.driver.setItem!("local:during", '"merge"', {});
      return key === "same" ? '"resolved"' : null;
    };
    const result = await b.sync({ policy });
    expect(calls).toBe(4);
    expect(result).toMatchObject({ merged: true, pushed: true });
    expect(await b.storage.getItem("local:during")).toBe("merge");
    expect(await b.storage.getItem("same")).toBe("resolved");
    expect(gitCli(b.dir, ["show", `${REF}^1:local/during`])).toBe('"merge"');
  });

  it("ignores GIT_DIR and GIT_OBJECT_DIRECTORY inherited from a git hook", async () => {
    const remote = gitInitBare("sync-remote");
    const elsewhere = gitInitBare("sync-elsewhere");
    const a = clone(remote);
    await a.storage.setItem("k", "v");
    vi.stubEnv("GIT_DIR", elsewhere);
    vi.stubEnv("GIT_OBJECT_DIRECTORY", join(elsewhere, "objects"));
    try {
      expect(await a.sync()).toMatchObject({ pushed: true });
    } finally {
      vi.unstubAllEnvs();
    }
    expect(gitCli(remote, ["show", `${REF}:k`])).toBe('"v"');
    expect(gitCli(elsewhere, ["for-each-ref"])).toBe("");
  });

  it("the driver's reads and watch see the ref the sync moved", async () => {
    const { a, b } = await pair({ k: "base" });
    const events: string[] = [];
    const unwatch = await b.storage.watch((event, key) => events.push(`${event} ${key}`));
    expect(await b.storage.getItem("k")).toBe("base");
    await a.storage.setItem("k", "new");
    await a.sync();
    await b.sync();
    expect(await b.storage.getItem("k")).toBe("new");
    await vi.waitFor(() => expect(events).toContain("update k"), { timeout: 10_000 });
    await unwatch();
  });

  it("refuses remote names that would be options and runs no command from a hostile name", async () => {
    const victim = join(tempDir("sync-hostile"), "pwned");
    const a = clone("unused");
    await a.storage.setItem("k", "v");
    const hostile = [`--upload-pack=touch ${victim}`, `--receive-pack=touch ${victim}`, `-oProxyCommand=touch ${victim}`];
    for (const remote of hostile) expect(await codeOf(a.driver.sync(remote))).toBe("E_INVALID_OPTION");
    for (const remote of [`$(touch ${victim})`, `\`touch ${victim}\``, `ext::sh -c touch% ${victim}`, `x; touch ${victim}`]) {
      expect(await codeOf(a.driver.sync(remote))).toBe("E_UNAVAILABLE");
    }
    expect(existsSync(victim)).toBe(false);
  });

  it("an unreachable remote is E_UNAVAILABLE with git's words", async () => {
    const a = clone("unused");
    await a.storage.setItem("k", "v");
    const error = await a.driver.sync(join(tempDir("sync-missing"), "nothing-here")).catch((failure: unknown) => failure);
    expect(isStorageError(error, "E_UNAVAILABLE")).toBe(true);
    expect((error as Error).message).toMatch(/does not appear to be a git repository/);
    expect(await codeOf(a.driver.sync("http://127.0.0.1:1/store.git"))).toBe("E_UNAVAILABLE");
    expect(await codeOf(a.driver.sync("origin", { policy: "newest" as never }))).toBe("E_INVALID_OPTION");
  });

  it("refuses unknown and malformed sync options before git runs", async () => {
    const remote = gitInitBare("sync-remote");
    const a = clone(remote);
    await a.storage.setItem("k", "v");
    const bad: unknown[] = [{ polcy: "ours" }, { retries: -1 }, { retries: 1.5 }, { timeout: 0 }, { timeout: Number.NaN }, { env: { GIT_SSH_COMMAND: 1 } }, { env: "x" }];
    for (const options of bad) {
      const error = await a.driver.sync(remote, options as SyncOptions).catch((failure: unknown) => failure);
      expect(isStorageError(error, "E_INVALID_OPTION"), JSON.stringify(options)).toBe(true);
    }
    expect(((await a.driver.sync(remote, { polcy: "ours" } as SyncOptions).catch((failure: unknown) => failure)) as Error).message).toMatch(
      /unknown option polcy \(known: policy, retries, timeout, env\)/,
    );
    expect(gitCli(remote, ["for-each-ref"])).toBe("");
    expect(await a.sync({ retries: 0, timeout: 60_000, env: { GIT_TRACE: "0" } })).toMatchObject({ pushed: true });
    expect(await a.driver.sync(remote, null as never)).toMatchObject({ pushed: false });
  });

  it("fetches and pushes notes refs with refspecs", async () => {
    const remote = gitInitBare("sync-remote");
    const { a } = await pair({ k: "v" }, remote);
    const tip = gitCli(a.dir, ["rev-parse", REF]);
    gitCli(a.dir, ["notes", "--ref=refs/notes/receipts", "add", "-m", "checked", tip]);
    const repoA = Repository.open(a.dir);
    expect((await pushRefspecs(repoA, remote, ["refs/notes/*:refs/notes/*"]))[0]).toMatchObject({ ref: "refs/notes/receipts", ok: true });
    const other = Repository.init(tempDir("sync-notes"));
    await fetchRefspecs(other, remote, [`+${REF}:${REF}`, "+refs/notes/*:refs/notes/*"]);
    expect(gitCli(other.gitDir, ["notes", "--ref=refs/notes/receipts", "show", tip])).toBe("checked");
    expect(await codeOf(fetchRefspecs(other, remote, ["+refs/notes/none:refs/notes/none"]))).toBe("E_NOT_FOUND");
    expect(await codeOf(fetchRefspecs(other, remote, ["--upload-pack=x"]))).toBe("E_INVALID_OPTION");
  });
});

describe("mergeBase", () => {
  /** Commits with chosen times and parents, in a new repository. */
  function history() {
    const repo = Repository.init(tempDir("merge-base"));
    const tree = repo.writeTree([]);
    expect(tree).toBe(EMPTY_TREE);
    const commit = (time: number, ...parents: ObjectId[]) => {
      const who = { name: "t", email: "t@x", timestamp: time, timezone: "+0000" };
      return repo.writeCommit({ tree, parents, author: who, committer: who, extraHeaders: [], message: `${time}\n` });
    };
    return { repo, commit, read: (id: ObjectId) => repo.readCommit(id) };
  }

  it("finds the fork point, an ancestor, and nothing for unrelated histories; agrees with git merge-base", () => {
    const { repo, commit, read } = history();
    const root = commit(1);
    const fork = commit(2, root);
    const left = commit(5, commit(3, fork));
    const right = commit(7, commit(6, commit(4, fork)));
    expect(mergeBase(read, left, right)).toBe(fork);
    expect(mergeBase(read, left, fork)).toBe(fork);
    expect(mergeBase(read, left, left)).toBe(left);
    expect(mergeBase(read, left, commit(9))).toBeUndefined();
    expect(gitCli(repo.gitDir, ["merge-base", left, right])).toBe(fork);
  });

  it("takes the newest of the best common ancestors of a criss-cross merge", () => {
    const { repo, commit, read } = history();
    const root = commit(1);
    const a1 = commit(2, root);
    const b1 = commit(3, root);
    // Each side merged the other's first commit: a1 and b1 are both best common ancestors.
    const a2 = commit(4, a1, b1);
    const b2 = commit(5, b1, a1);
    expect(mergeBase(read, commit(6, a2), commit(7, b2))).toBe(b1);
    expect(gitCli(repo.gitDir, ["merge-base", "--all", a2, b2]).split("\n").sort()).toEqual([a1, b1].sort());
  });
});

describe("git driver sync from a hostile remote", () => {
  /** A bare remote whose objects are made with stock git's plumbing (hash-object, mktree, commit-tree, update-ref). */
  function hostileRemote() {
    const remote = gitInitBare("sync-hostile-remote");
    const blob = (text: string): string => gitCli(remote, ["hash-object", "-w", "--stdin"], text);
    // mktree takes "<mode> <type> <id>\t<name>" lines and checks nothing about the names.
    const tree = (...lines: string[]): string => gitCli(remote, ["mktree"], lines.map((line) => `${line}\n`).join(""));
    const commit = (treeId: string, parent?: string): string => gitCli(remote, ["commit-tree", "-m", "hostile", ...(parent === undefined ? [] : ["-p", parent]), treeId]);
    const publish = (tip: string): string => {
      gitCli(remote, ["update-ref", REF, tip]);
      return tip;
    };
    return { remote, blob, tree, commit, publish };
  }

  /** A clone holding `mine` syncs with `remote`: E_CORRUPT, and everything local stays as it was and keeps working. */
  async function expectRefused(remote: string, message: RegExp): Promise<Clone> {
    const a = clone(remote, "sync-victim");
    await a.storage.setItem("mine", 1);
    const before = gitCli(a.dir, ["rev-parse", REF]);
    const error = await a.sync().catch((failure: unknown) => failure);
    expect(isStorageError(error, "E_CORRUPT"), String(error)).toBe(true);
    expect((error as Error).message).toMatch(message);
    expect(gitCli(a.dir, ["rev-parse", REF])).toBe(before);
    expect(gitCli(a.dir, ["for-each-ref", "--format=%(refname)", "refs/stowage-remotes/"])).toBe("");
    expect(await a.storage.getKeys()).toEqual(["mine"]);
    fsck(a.dir);
    // What was refused troubles no later operation: maintenance, writes, listing, stock git.
    a.driver.maintenance({ all: true, grace: 0 });
    await a.storage.setItem("after", 2);
    expect((await a.storage.getKeys()).sort()).toEqual(["after", "mine"]);
    fsck(a.dir);
    return a;
  }

  it("refuses a tip whose tree holds `.` and `..`: git's fsck refuses the objects, nothing is kept", async () => {
    const { remote, blob, tree, commit, publish } = hostileRemote();
    const x = blob("x");
    publish(commit(tree(`100644 blob ${x}\t.`, `100644 blob ${x}\t..`, `100644 blob ${x}\tok`)));
    const a = await expectRefused(remote, /fsck refuses.*hasDot/s);
    // Not one of the remote's objects came in (a loose `x` blob, say).
    expect(gitFails(a.dir, ["cat-file", "-e", x]).status).not.toBe(0);
  });

  it("refuses a clean tip whose history holds a .gitmodules with a disallowed URL", async () => {
    const { remote, blob, tree, commit, publish } = hostileRemote();
    const modules = blob('[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/stowage-pwned\n');
    const first = commit(tree(`100644 blob ${modules}\t.gitmodules`));
    publish(commit(tree(`100644 blob ${blob('"fine"')}\tok`), first));
    await expectRefused(remote, /fsck refuses.*gitmodulesUrl/s);
  });

  it("refuses fsck-clean trees that are not a stowage layout, and restores a tracking ref it had", async () => {
    const { remote, blob, tree, commit, publish } = hostileRemote();
    const x = blob('"x"');
    const key = `100644 blob ${x}\tk`;
    const layouts: [string, string][] = [
      [tree(`100644 blob ${x}\t100%`), "a name the key encoding does not write"],
      [tree(`100644 blob ${x}\ta:b`), "a name the key encoding does not write"],
      [tree(`120000 blob ${x}\tlink`), "mode 120000"],
      [tree(`160000 commit ${"1".repeat(40)}\tsub`), "mode 160000"],
      [tree(`040000 tree ${EMPTY_TREE}\tempty`, key), "an empty subtree"],
      [tree(`100644 blob ${x}\t%value`), "a value entry outside a key's directory"],
      [tree(`040000 tree ${tree(key)}\t%x00`, key), "a key beside fan-out buckets"],
      [tree(`040000 tree ${tree(`040000 tree ${tree(key)}\t%x00`)}\tdir`), "fan-out bucket its hash does not pick"],
      [tree(`040000 tree ${tree(`100644 blob ${x}\t%value`, `100644 blob ${x}\t%value2`)}\tdir`), "a name the key encoding does not write"],
    ];
    for (const [treeId, why] of layouts) {
      const tip = publish(commit(treeId));
      const a = await expectRefused(remote, new RegExp(`${tip} is refused, the local ref is unchanged: .*${why.replace(/[()%]/g, "\\$&")}`));
      // A tracking ref that held an accepted commit is put back, not left on the refused one.
      const good = publish(commit(tree(key)));
      const synced = await a.sync();
      expect(synced).toMatchObject({ fetched: good, merged: true, pushed: true });
      publish(tip);
      expect(await codeOf(a.sync())).toBe("E_CORRUPT");
      expect(gitCli(a.dir, ["rev-parse", trackingRef(remote, REF)])).toBe(synced.tip);
      expect(gitCli(a.dir, ["rev-parse", REF])).toBe(synced.tip);
      fsck(a.dir);
    }
  });

  it("refuses a key deeper than the driver's key limits, walking the 600 nested trees without recursion", async () => {
    const { remote, blob, commit, publish } = hostileRemote();
    const repo = Repository.open(remote);
    let id = repo.writeTree([{ mode: "100644", name: "leaf", id: blob('"deep"') }]);
    for (let depth = 0; depth < 600; depth++) id = repo.writeTree([{ mode: "40000", name: "d", id }]);
    publish(commit(id));
    await expectRefused(remote, /a key longer or deeper than the key limits/);
  });

  it("refuses a remote ref that is not a commit", async () => {
    const { remote, blob, publish } = hostileRemote();
    publish(blob("not a commit"));
    await expectRefused(remote, /is a blob, not a commit/);
  });

  it("a clean tip whose older commits hold a submodule or a symlink is taken; history, maintenance and fsck keep working", async () => {
    const { remote, blob, tree, commit, publish } = hostileRemote();
    const old = commit(tree(`160000 commit ${"2".repeat(40)}\tsub`, `120000 blob ${blob("target")}\tlink`, `100644 blob ${blob('"one"')}\tk`));
    publish(commit(tree(`100644 blob ${blob('"two"')}\tk`), old));
    const a = clone(remote);
    expect(await a.sync()).toMatchObject({ fastForwarded: true });
    expect((await a.storage.getHistory("k")).map((entry) => entry.value)).toEqual(["two", "one"]);
    await a.storage.setItem("mine", 1);
    expect(await a.sync()).toMatchObject({ pushed: true });
    expect(await values(a.storage)).toEqual({ k: "two", mine: 1 });
    a.driver.maintenance({ all: true, grace: 0 });
    expect(await a.storage.getItem("k")).toBe("two");
    fsck(a.dir);
  });

  it("accepts a tree stock git wrote in the stowage layout: plain names, nested keys, a value beside keys below it", async () => {
    const { remote, blob, tree, commit, publish } = hostileRemote();
    const user = tree(`100644 blob ${blob('"ada"')}\t%value`, `100644 blob ${blob("1")}\tage`);
    publish(commit(tree(`100644 blob ${blob('"hi"')}\tgreeting`, `040000 tree ${user}\tuser`, `100644 blob ${blob('"dot"')}\t%2Egit`)));
    const a = clone(remote);
    expect(await a.sync()).toMatchObject({ fastForwarded: true });
    expect(await values(a.storage)).toEqual({ ".git": "dot", greeting: "hi", user: "ada", "user:age": 1 });
    fsck(a.dir);
  });
});
