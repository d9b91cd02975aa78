import { randomBytes } from "node:crypto";
import { existsSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createStorage, isStorageError, type Storage } from "../../src/index.js";
import git from "../../src/drivers/git.js";
import { encodeKeyName } from "../../src/git/store/keyNames.js";
import { Repository } from "../../src/git/repo/repository.js";
import { testDriver } from "../../src/testing/index.js";
import { KIT_TTL } from "../helpers/clock.js";
import { git as gitCli, gitBytes, gitFails } from "../git/gitCli.js";
import { tempDir } from "../helpers/tempDir.js";
import { bothGuardsConflict } from "../helpers/gitGuards.js";
import { killWhileWriting, runWorkers } from "../helpers/workers.js";
import { stressCount } from "../helpers/stress.js";

const REF = "refs/stowage/default";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The kit's store, kept for the stock-git checks after the suite. */
const kitDirs: string[] = [];

testDriver({
  name: "git",
  // A TTL write (value and expiry in one commit) counts its ttl from before the commit: 200 ms is not enough on a loaded machine.
  ttl: KIT_TTL,
  driver: () => {
    const dir = tempDir("git-kit");
    kitDirs.push(dir);
    return git({ dir });
  },
  additionalTests: () => {
    it("leaves the kit's repositories valid for git fsck --strict", () => {
      expect(kitDirs.length).toBeGreaterThan(0);
      for (const dir of kitDirs) fsck(dir);
    });
  },
});

function open(dir: string, options: Parameters<typeof git>[0] = { dir }): Storage {
  return createStorage({ driver: git({ ...options, dir }) });
}

/** `git fsck --strict`: exit status 0 (dangling objects are reported but allowed). */
function fsck(dir: string): void {
  const output = gitCli(dir, ["fsck", "--strict", "--no-progress"]);
  expect(output).not.toMatch(/^(error|missing|broken|bad)/m);
}

async function eventually(check: () => void, timeout = 5000): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(25);
    }
  }
}

describe("git driver", () => {
  it("ifMatch with ifNoneMatch is E_CONFLICT on setItem, setItems and a transaction, the right etag too; nothing written, git fsck clean", async () => {
    const dir = tempDir("git-both-guards");
    const storage = open(dir);
    await bothGuardsConflict(storage, dir);
    await storage.dispose();
  });

  it("is readable with git show, git log -p and git cat-file", async () => {
    const dir = tempDir("git-inspect");
    const storage = open(dir);
    await storage.setItem("user:1", { name: "Ada" });
    await storage.setItem("user:2", "two");
    await storage.setItem("user:1", { name: "Ada Lovelace" });
    await storage.removeItem("user:2");
    expect(gitCli(dir, ["show", `${REF}:user/1`])).toBe('{"name":"Ada Lovelace"}');
    const log = gitCli(dir, ["log", "-p", "--format=%s", REF, "--", "user/1"]);
    expect(log).toContain("stowage: set user:1");
    expect(log).toContain('+{"name":"Ada"}');
    expect(log).toContain('+{"name":"Ada Lovelace"}');
    expect(gitCli(dir, ["log", "--format=%s", REF, "--", "user/2"]).split("\n")).toEqual(["stowage: remove user:2", "stowage: set user:2"]);
    const { etag } = await storage.getMeta("user:1");
    expect(gitCli(dir, ["cat-file", "-p", etag as string])).toBe('{"name":"Ada Lovelace"}');
    expect(gitCli(dir, ["cat-file", "-t", gitCli(dir, ["rev-parse", REF])])).toBe("commit");
    fsck(dir);
    await storage.dispose();
  });

  it("makes one commit per write, with the author and message template given", async () => {
    const dir = tempDir("git-commits");
    const storage = open(dir, { dir, author: { name: "Grace", email: "grace@example.com" }, message: "kv {op} {key} ({count})" });
    storage.setItemSync("a", 1);
    storage.setItemSync("b", 2);
    await storage.setItems([
      { key: "c", value: 3 },
      { key: "d", value: 4 },
    ]);
    storage.removeItemSync("a");
    storage.clearSync();
    expect(gitCli(dir, ["log", "--format=%an <%ae>|%s", REF]).split("\n")).toEqual([
      "Grace <grace@example.com>|kv clear * (0)",
      "Grace <grace@example.com>|kv remove a (1)",
      "Grace <grace@example.com>|kv setItems c (+1 more) (2)",
      "Grace <grace@example.com>|kv set b (1)",
      "Grace <grace@example.com>|kv set a (1)",
    ]);
    // The reflog records every move too.
    expect(gitCli(dir, ["reflog", "show", "--format=%gs", REF]).split("\n")).toHaveLength(5);
    fsck(dir);
    await storage.dispose();
  });

  // Reading every key after git gc (from packs): test/drivers/git-gc.test.ts, with the other git drivers.

  it("reads a commit made with git commit-tree + git update-ref, and watch reports its changes", async () => {
    const dir = tempDir("git-external");
    const storage = open(dir);
    await storage.setItem("cfg:name", "old");
    await storage.setItem("cfg:gone", 1);
    const events: string[] = [];
    const unwatch = await storage.watch((event, key) => events.push(`${event} ${key}`));
    const run = (args: string[], input?: string) => gitBytes(dir, args, input).toString().trim();
    const blob = run(["hash-object", "-w", "--stdin"], '"new"');
    const added = run(["hash-object", "-w", "--stdin"], "42");
    // The cfg tree edited by hand: name changed, added added, gone removed.
    const cfgLines = run(["ls-tree", `${REF}:cfg`])
      .split("\n")
      .filter((line) => !line.endsWith("\tgone"))
      .map((line) => (line.endsWith("\tname") ? `100644 blob ${blob}\tname` : line));
    cfgLines.push(`100644 blob ${added}\tadded`);
    const cfgTree = run(["mktree"], `${cfgLines.join("\n")}\n`);
    const rootLines = run(["ls-tree", REF])
      .split("\n")
      .map((line) => (line.endsWith("\tcfg") ? `040000 tree ${cfgTree}\tcfg` : line));
    const tree = run(["mktree"], `${rootLines.join("\n")}\n`);
    const old = run(["rev-parse", REF]);
    const commit = run(["commit-tree", tree, "-p", old, "-m", "by hand"]);
    run(["update-ref", REF, commit, old]);
    await eventually(() => expect(events.sort()).toEqual(["remove cfg:gone", "update cfg:added", "update cfg:name"]));
    expect(await storage.getItem("cfg:name")).toBe("new");
    expect(await storage.getItem("cfg:added")).toBe(42);
    expect(await storage.hasItem("cfg:gone")).toBe(false);
    expect((await storage.getHistory("cfg:name")).map((entry) => [entry.value, entry.message, entry.author])).toEqual([
      ["new", "by hand", "Ada <ada@example.com>"],
      ["old", "stowage: set cfg:name", "stowage <stowage@localhost>"],
    ]);
    // Our next write builds on git's commit.
    await storage.setItem("cfg:after", true);
    expect(run(["rev-parse", `${REF}~1`])).toBe(commit);
    await unwatch();
    await storage.dispose();
  });

  it("works on a branch checked out in a worktree: git commit there is read and watched", async () => {
    const dir = tempDir("git-worktree");
    gitCli(dir, ["init", "-q", "-b", "main"]);
    gitCli(dir, ["commit", "-q", "--allow-empty", "-m", "root"]);
    const storage = open(dir, { dir, ref: "refs/heads/data" });
    await storage.setItem("notes:first", "one");
    const events: string[] = [];
    const unwatch = await storage.watch((event, key) => events.push(`${event} ${key}`));
    const worktree = join(tempDir("git-wt"), "wt");
    gitCli(dir, ["worktree", "add", "-q", worktree, "data"]);
    expect(gitCli(worktree, ["show", "HEAD:notes/first"])).toBe('"one"');
    writeFileSync(join(worktree, "notes", "second"), '"two"');
    gitCli(worktree, ["add", "notes/second"]);
    gitCli(worktree, ["commit", "-q", "-m", "second note"]);
    await eventually(() => expect(events).toEqual(["update notes:second"]));
    expect(await storage.getItem("notes:second")).toBe("two");
    expect(await storage.getKeys("notes")).toEqual(["notes:first", "notes:second"]);
    await unwatch();
    await storage.dispose();
    fsck(dir);
  });

  it("round-trips hostile values exactly, and git cat-file prints the same bytes", async () => {
    const dir = tempDir("git-hostile-values");
    const storage = open(dir);
    const all = new Uint8Array(256);
    for (let i = 0; i < 256; i++) all[i] = i;
    const texts = [`it's "quoted"`, "$(rm -rf /)", "`touch /tmp/pwned`", "line\nbreak\r\n", "nul\0byte", "; ls | cat && echo $HOME"];
    for (const [i, text] of texts.entries()) await storage.setItem(`text:${i}`, text);
    await storage.setItemRaw("raw:all", all);
    const big = randomBytes(50 * 1024 * 1024);
    await storage.setItemRaw("raw:big", big);
    for (const [i, text] of texts.entries()) expect(await storage.getItem(`text:${i}`)).toBe(text);
    expect(Buffer.from((await storage.getItemRaw("raw:all"))!).equals(Buffer.from(all))).toBe(true);
    expect(Buffer.from((await storage.getItemRaw("raw:big"))!).equals(big)).toBe(true);
    expect(gitBytes(dir, ["cat-file", "blob", `${REF}:raw/all`]).equals(Buffer.from(all))).toBe(true);
    expect(gitBytes(dir, ["cat-file", "blob", `${REF}:raw/big`]).equals(big)).toBe(true);
    expect(gitBytes(dir, ["cat-file", "blob", `${REF}:text/1`]).toString()).toBe(JSON.stringify(texts[1]));
    fsck(dir);
    await storage.dispose();
  }, 60_000);

  it("round-trips hostile keys, git fsck --strict stays clean, plain keys stay plain paths", async () => {
    const dir = tempDir("git-hostile-keys");
    const storage = open(dir);
    const keys = [
      "a..b",
      "..hidden",
      "x:...",
      "refs.lock",
      "a:b.lock",
      "at@{1}",
      "with space:and  two",
      "ключ:日本語:🚀",
      ".git",
      ".GIT:config",
      ".gitmodules",
      ".gitattributes",
      "git~1",
      "GITMOD~1",
      ".git.",
      "%",
      "%25",
      "%value",
      "%ab",
      "50%:off",
      "tab\there",
      "new\nline",
      "$(id)",
      "`id`",
      "'quote\"",
      "k".repeat(2000),
      "lone\ud800surrogate",
    ];
    for (const [i, key] of keys.entries()) await storage.setItem(key, { i });
    // A key that is also a prefix of hostile ones.
    await storage.setItem(".git:x", "below .git");
    for (const [i, key] of keys.entries()) expect(await storage.getItem(key), key).toEqual({ i });
    expect((await storage.getKeys()).sort()).toEqual([...keys, ".git:x"].sort());
    // Harmful content under names git checks (.gitmodules) does not reach fsck: the names are escaped.
    await storage.setItemRaw(".gitmodules", new TextEncoder().encode('[submodule "x"]\n\tpath = ../../x\n\turl = --upload-pack=evil\n'));
    fsck(dir);
    expect(gitCli(dir, ["show", `${REF}:with space/and  two`])).toBe('{"i":6}');
    expect(gitCli(dir, ["show", `${REF}:a..b`])).toBe('{"i":0}');
    expect(gitCli(dir, ["show", `${REF}:${encodeKeyName(".git")}/%value`])).toBe('{"i":8}');
    expect(gitCli(dir, ["ls-tree", "--name-only", REF]).split("\n")).toContain("%2Egit");
    await storage.dispose();
    // The driver also takes keys the core refuses (a lone `.`), without reaching outside the tree.
    const driver = git({ dir });
    driver.setItem!(".", "dot", {});
    driver.setItem!("..", "dots", {});
    expect(driver.getItem(".", {})).toBe("dot");
    expect(driver.getItem("..", {})).toBe("dots");
    expect(gitCli(dir, ["ls-tree", "--name-only", REF]).split("\n")).toEqual(expect.arrayContaining(["%2E", "%2E."]));
    fsck(dir);
    await driver.dispose!();
  });

  it("fans a large directory out into hash buckets, still readable and listable", async () => {
    const dir = tempDir("git-fanout");
    const storage = open(dir, { dir, fanout: 32 });
    await storage.setItem("flat", "top");
    await storage.setItems(Array.from({ length: 500 }, (_, i) => ({ key: `user:${i}`, value: i })));
    await storage.setItem("user", "the directory's own value");
    await storage.setItem("user:7:deep", "below a fanned entry");
    const names = gitCli(dir, ["ls-tree", "--name-only", `${REF}:user`]).split("\n");
    expect(names).toContain("%value");
    expect(names.filter((name) => /^%x[0-9a-f]{2}$/.test(name)).length).toBeGreaterThan(16);
    expect((await storage.getKeys("user")).length).toBe(501);
    expect(await storage.getKeys(undefined, { maxDepth: 0 })).toEqual(expect.arrayContaining(["flat", "user"]));
    for (let i = 0; i < 500; i++) expect(await storage.getItem(`user:${i}`)).toBe(i);
    expect(await storage.getItem("user:7:deep")).toBe("below a fanned entry");
    await storage.removeItem("user:3");
    expect(await storage.hasItem("user:3")).toBe(false);
    expect((await storage.getHistory("user:3")).map((entry) => entry.value)).toEqual([null, 3]);
    await storage.clear("user");
    expect(await storage.getItem("user")).toBe("the directory's own value");
    expect(await storage.getKeys("user")).toEqual([]);
    expect(gitCli(dir, ["show", `${REF}:user`])).toBe('"the directory\'s own value"');
    fsck(dir);
    await storage.dispose();
  });

  it("reads a key as of any commit, and lists only the commits that changed it", async () => {
    const dir = tempDir("git-history");
    const storage = open(dir);
    for (let i = 0; i < 30; i++) await storage.setItem(`h:${i % 3}`, i);
    const history = await storage.getHistory("h:1");
    expect(history.map((entry) => entry.value)).toEqual([28, 25, 22, 19, 16, 13, 10, 7, 4, 1]);
    const logged = gitCli(dir, ["log", "--format=%H", REF, "--", "h/1"]).split("\n");
    expect(history.map((entry) => entry.version)).toEqual(logged);
    expect(await storage.getItem("h:1", { version: history[5]!.version })).toBe(13);
    expect(await storage.getItem("h:2", { version: history[5]!.version })).toBe(11);
    expect((await storage.getHistory("h:1", { limit: 3 })).length).toBe(3);
    const error = await storage.getItem("h:1", { version: "not-a-commit" }).catch((caught: unknown) => caught);
    expect(isStorageError(error, "E_INVALID_OPTION")).toBe(true);
    await storage.dispose();
  });

  it("group commit: 100 concurrent setItem calls make far fewer commits, each resolving once its commit is on the ref", async () => {
    const dir = tempDir("git-group");
    const storage = open(dir);
    await storage.setItem("start", 0);
    const before = Number(gitCli(dir, ["rev-list", "--count", REF]));
    const observer = Repository.open(dir);
    const checker = git({ dir });
    const seenOnRef: boolean[] = [];
    await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        storage.setItem(`g:${i}`, i).then(() => {
          // Read through another instance, from the ref file: the write must already be there.
          seenOnRef.push(observer.refs.resolve(REF) !== undefined && checker.getItem(`g:${i}`, {}) === String(i));
        }),
      ),
    );
    expect(seenOnRef).toHaveLength(100);
    expect(seenOnRef.every(Boolean)).toBe(true);
    const commits = Number(gitCli(dir, ["rev-list", "--count", REF])) - before;
    expect(commits).toBeGreaterThanOrEqual(1);
    expect(commits).toBeLessThanOrEqual(10);
    await checker.dispose!();
    await storage.dispose();
  });

  it("group commit: a failing guard fails only its own caller", async () => {
    const storage = open(tempDir("git-guards"));
    await storage.setItem("taken", 1);
    const results = await Promise.allSettled([
      storage.setItem("a", 1),
      storage.setItem("taken", 2, { ifNoneMatch: "*" }),
      storage.setItem("b", 2),
      storage.transaction(async (tx) => {
        await tx.setItem("tx:1", 1);
        await tx.setItem("tx:2", 2);
      }),
    ]);
    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(isStorageError((results[1] as PromiseRejectedResult).reason, "E_CONFLICT")).toBe(true);
    expect(await storage.getItems(["a", "taken", "b", "tx:1", "tx:2"])).toEqual([
      { key: "a", value: 1 },
      { key: "taken", value: 1 },
      { key: "b", value: 2 },
      { key: "tx:1", value: 1 },
      { key: "tx:2", value: 2 },
    ]);
    await storage.dispose();
  });

  it("two instances writing the same ref re-apply on the moved tip and lose nothing", async () => {
    const dir = tempDir("git-two");
    const first = open(dir);
    const second = open(dir);
    await Promise.all([
      ...Array.from({ length: 50 }, (_, i) => first.setItem(`one:${i}`, i)),
      ...Array.from({ length: 50 }, (_, i) => second.setItem(`two:${i}`, i)),
    ]);
    for (let i = 0; i < 50; i++) first.setItemSync(`sync:${i}`, i);
    expect((await second.getKeys()).length).toBe(150);
    await first.dispose();
    await second.dispose();
  });

  const increments = stressCount(50, 250);
  it(`several processes: 4 x ${increments} CAS increments of one counter end at exactly ${4 * increments}`, async () => {
    const dir = tempDir("git-multi");
    await open(dir).dispose();
    await runWorkers(4, ["git", dir, "increment", String(increments)]);
    const storage = open(dir);
    expect(await storage.getItem("counter")).toBe(4 * increments);
    await storage.dispose();
    fsck(dir);
  }, 300_000);

  const kills = stressCount(3, 20);
  it(`a process killed mid-write loses no acknowledged write, and git fsck stays clean (${kills} kills)`, async () => {
    for (let round = 0; round < kills; round++) {
      const dir = tempDir("git-crash");
      await killWhileWriting("git", dir, (path) => git({ dir: path }));
      fsck(dir);
    }
  }, 300_000);

  it("keeps the number of packs bounded: one pack per commit, small packs merged past packLimit", async () => {
    const dir = tempDir("git-packs");
    const driver = git({ dir, packLimit: 8 });
    const storage = createStorage({ driver });
    for (let i = 0; i < 60; i++) await storage.setItem(`p:${i % 20}`, i);
    const packs = Number(/^packs: (\d+)$/m.exec(gitCli(dir, ["count-objects", "-v"]))![1]);
    expect(packs).toBeGreaterThan(0);
    expect(packs).toBeLessThanOrEqual(9);
    expect(gitCli(dir, ["count-objects", "-v"])).toMatch(/^count: 0$/m);
    for (let i = 40; i < 60; i++) expect(await storage.getItem(`p:${i % 20}`)).toBe(i);
    expect((await storage.getHistory("p:3")).map((entry) => entry.value)).toEqual([43, 23, 3]);
    fsck(dir);
    await storage.dispose();
  });

  it("maintenance(): packs loose objects, prunes old unreachable ones, keeps everything reachable, with another instance's writes in flight", async () => {
    const dir = tempDir("git-maintenance");
    const driver = git({ dir });
    const storage = createStorage({ driver });
    for (let i = 0; i < 10; i++) await storage.setItem(`m:${i}`, i);
    // Loose objects written by stock git: one reachable through a commit of ours, one unreachable and old, one unreachable and new.
    const kept = gitCli(dir, ["hash-object", "-w", "--stdin"], "kept by a commit");
    const old = gitCli(dir, ["hash-object", "-w", "--stdin"], "old garbage");
    const fresh = gitCli(dir, ["hash-object", "-w", "--stdin"], "new garbage");
    const past = new Date(Date.now() - 30 * 24 * 3600 * 1000);
    utimesSync(join(dir, "objects", old.slice(0, 2), old.slice(2)), past, past);
    utimesSync(join(dir, "objects", kept.slice(0, 2), kept.slice(2)), past, past);
    const writer = open(dir);
    const writing = (async () => {
      for (let i = 0; i < 30; i++) await writer.setItem(`w:${i}`, i);
    })();
    await storage.setItemRaw("m:kept", new TextEncoder().encode("kept by a commit"));
    const result = driver.maintenance({ all: true });
    await writing;
    expect(result.looseObjectsPruned).toBe(1);
    // Only the reachable loose object is packed; the new garbage stays loose, to age out by its own date.
    expect(result.looseObjectsPacked).toBe(1);
    expect(gitFails(dir, ["cat-file", "-e", old]).status).not.toBe(0);
    expect(gitCli(dir, ["cat-file", "-p", fresh])).toBe("new garbage");
    expect(existsSync(join(dir, "objects", fresh.slice(0, 2), fresh.slice(2)))).toBe(true);
    expect(gitCli(dir, ["cat-file", "-p", kept])).toBe("kept by a commit");
    const reopened = open(dir);
    for (let i = 0; i < 10; i++) expect(await reopened.getItem(`m:${i}`)).toBe(i);
    for (let i = 0; i < 30; i++) expect(await reopened.getItem(`w:${i}`)).toBe(i);
    fsck(dir);
    await Promise.all([storage.dispose(), writer.dispose(), reopened.dispose()]);
  });

  it("refuses bad options", () => {
    expect(() => git({ dir: "" })).toThrow(/needs a dir/);
    expect(() => git({ dir: tempDir("git-bad"), ref: "refs/bad..name" })).toThrow(/Not a valid ref name/);
    expect(() => git({ dir: tempDir("git-bad"), ref: "heads/main" })).toThrow(/Not a valid ref name/);
  });
});
