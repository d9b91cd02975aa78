import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isStorageError } from "../../../src/core/errors.js";
import { isValidRefName, Repository, ZERO_ID } from "../../../src/git/index.js";
import { errorCode, git, gitFails, gitInitBare } from "../gitCli.js";
import { programArgs } from "../../helpers/programs.js";
import { stressCount } from "../../helpers/stress.js";

const WORKER = "test/git/refs/casWorker.ts";
const KILLS = stressCount(3, 10);


/** Increments the counter held (as a blob) by `ref`, retrying on conflicts; awaits between read and write to interleave. */
async function increment(repo: Repository, ref: string): Promise<void> {
  for (;;) {
    const current = repo.refs.resolve(ref);
    const value = current === undefined ? 0 : Number(repo.readBlob(current).toString());
    await new Promise((resolve) => setImmediate(resolve));
    const next = repo.writeBlob(Buffer.from(String(value + 1)));
    try {
      await repo.refs.updateAsync(ref, next, { expected: current ?? null });
      return;
    } catch (error) {
      if (!isStorageError(error, "E_CONFLICT")) throw error;
    }
  }
}

/** A commit (of an empty tree) with `message`: refs/heads and git reflog want commits. */
function commitOf(repo: Repository, message: string): string {
  const sig = { name: "T", email: "t@t", timestamp: 1, timezone: "+0000" };
  return repo.writeCommit({ tree: repo.writeTree([]), parents: [], author: sig, committer: sig, extraHeaders: [], message: `${message}\n` });
}

function counter(dir: string, ref: string): number {
  return Number(git(dir, ["cat-file", "blob", ref]));
}

describe("ref names", () => {
  const names = [
    "refs/heads/main",
    "refs/heads/a..b",
    "refs/heads/a@{b",
    "refs/heads/a@b",
    "refs/heads/x.lock",
    "refs/heads/x.lock/y",
    "refs/heads/x.locked",
    "refs/heads/trailing.",
    "refs/heads//double",
    "refs/heads/trailing/",
    "/refs/heads/lead",
    "refs/heads/.hidden",
    "refs/heads/in.side",
    "refs/heads/tab\there",
    "refs/heads/nl\nhere",
    "refs/heads/del\x7fhere",
    "refs/heads/sp ace",
    "refs/heads/til~de",
    "refs/heads/car^et",
    "refs/heads/co:lon",
    "refs/heads/que?ry",
    "refs/heads/st*ar",
    "refs/heads/br[acket",
    "refs/heads/back\\slash",
    "@",
    "refs/@",
    "refs/heads/@",
    "HEAD",
    "main",
    "refs/heads/ünïcødé",
    "refs/heads/-dash",
    "refs/heads/a/.b",
    "refs/heads/a.",
    "refs/heads/.",
    "refs/heads/..",
    "refs/stowage/kv/user:1",
    "",
  ];

  it("agree with git check-ref-format (with and without --allow-onelevel)", () => {
    const dir = gitInitBare();
    for (const name of names) {
      for (const oneLevel of [false, true]) {
        const args = ["check-ref-format", ...(oneLevel ? ["--allow-onelevel"] : []), name];
        const gitSays = gitFails(dir, args).status === 0;
        expect({ name, oneLevel, valid: isValidRefName(name, { allowOneLevel: oneLevel }) }).toEqual({ name, oneLevel, valid: gitSays });
      }
    }
  });

  it("an invalid name is refused with E_INVALID_KEY", () => {
    const repo = Repository.open(gitInitBare());
    const id = repo.writeBlob(Buffer.from("x"));
    expect(errorCode(() => repo.refs.update("refs/heads/a..b", id))).toBe("E_INVALID_KEY");
    expect(errorCode(() => repo.refs.update("heads/main", id))).toBe("E_INVALID_KEY");
    expect(errorCode(() => repo.refs.update("refs/heads/x", "nope"))).toBe("E_INVALID_VALUE");
  });
});

describe("ref updates", () => {
  it("compare-and-swap succeeds on the expected value and fails with E_CONFLICT otherwise", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const [a, b, c] = ["a", "b", "c"].map((v) => repo.writeBlob(Buffer.from(v))) as [string, string, string];
    const ref = "refs/stowage/test";
    repo.refs.update(ref, a, { expected: null });
    expect(git(dir, ["rev-parse", ref])).toBe(a);
    expect(errorCode(() => repo.refs.update(ref, b, { expected: null }))).toBe("E_CONFLICT");
    expect(errorCode(() => repo.refs.update(ref, b, { expected: c }))).toBe("E_CONFLICT");
    repo.refs.update(ref, b, { expected: a });
    expect(git(dir, ["rev-parse", ref])).toBe(b);
    repo.refs.update(ref, c);
    expect(repo.refs.resolve(ref)).toBe(c);
    expect(errorCode(() => repo.refs.update("refs/stowage/new", a, { expected: b }))).toBe("E_CONFLICT");
    expect(repo.refs.resolve("refs/stowage/new")).toBeUndefined();
    expect(existsSync(join(dir, "refs/stowage/test.lock"))).toBe(false);
  });

  it("a lock held by another writer makes us wait, then E_UNAVAILABLE; we never clobber it", async () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir, { lockTimeout: 100 });
    const id = repo.writeBlob(Buffer.from("x"));
    const lock = join(dir, "refs/heads/main.lock");
    writeFileSync(lock, "someone else\n");
    const started = Date.now();
    expect(errorCode(() => repo.refs.update("refs/heads/main", id))).toBe("E_UNAVAILABLE");
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(readFileSync(lock, "utf8")).toBe("someone else\n");
    await expect(repo.refs.updateAsync("refs/heads/main", id)).rejects.toMatchObject({ code: "E_UNAVAILABLE" });
    // Released while we wait: the update goes through.
    setTimeout(() => rmSync(lock), 30);
    await repo.refs.updateAsync("refs/heads/main", id, { expected: null });
    expect(git(dir, ["rev-parse", "main"])).toBe(id);
  });

  it("stock git respects the same lock, and we see git's updates", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const [a, b] = ["a", "b"].map((v) => repo.writeBlob(Buffer.from(v))) as [string, string];
    repo.refs.update("refs/stowage/main", a);
    writeFileSync(join(dir, "refs/stowage/main.lock"), "");
    const failed = gitFails(dir, ["update-ref", "refs/stowage/main", b]);
    expect(failed.status).not.toBe(0);
    expect(failed.stderr).toMatch(/lock/);
    rmSync(join(dir, "refs/stowage/main.lock"));
    git(dir, ["update-ref", "refs/stowage/main", b, a]);
    expect(repo.refs.resolve("refs/stowage/main")).toBe(b);
    expect(errorCode(() => repo.refs.update("refs/stowage/main", a, { expected: a }))).toBe("E_CONFLICT");
  });

  it("reads packed-refs (with peeled tags) after git pack-refs --all; updates and deletes packed refs", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const [a, b] = ["a", "b"].map((v) => commitOf(repo, v)) as [string, string];
    git(dir, ["update-ref", "refs/heads/one", a]);
    git(dir, ["update-ref", "refs/heads/two", a]);
    git(dir, ["update-ref", "refs/stowage/kv/three", b]);
    const tag = git(dir, ["mktag"], `object ${a}\ntype commit\ntag t1\ntagger T <t@t> 1 +0000\n\nmsg\n`);
    git(dir, ["update-ref", "refs/tags/t1", tag]);
    git(dir, ["pack-refs", "--all"]);
    expect(existsSync(join(dir, "refs/heads/one"))).toBe(false);
    expect(readFileSync(join(dir, "packed-refs"), "utf8")).toContain(`^${a}`);
    expect(repo.refs.resolve("refs/heads/one")).toBe(a);
    expect(repo.refs.list("refs/tags/")).toEqual([{ name: "refs/tags/t1", id: tag, peeled: a }]);
    expect(repo.refs.list("refs/heads/").map((r) => r.name)).toEqual(["refs/heads/one", "refs/heads/two"]);
    // CAS against the packed value; the loose file then overrides it.
    expect(errorCode(() => repo.refs.update("refs/heads/one", b, { expected: b }))).toBe("E_CONFLICT");
    repo.refs.update("refs/heads/one", b, { expected: a });
    expect(git(dir, ["rev-parse", "refs/heads/one"])).toBe(b);
    // Delete a packed-only ref: its line goes from packed-refs.
    expect(errorCode(() => repo.refs.delete("refs/heads/two", { expected: b }))).toBe("E_CONFLICT");
    expect(repo.refs.delete("refs/heads/two", { expected: a })).toBe(true);
    expect(gitFails(dir, ["rev-parse", "--verify", "-q", "refs/heads/two"]).status).not.toBe(0);
    expect(readFileSync(join(dir, "packed-refs"), "utf8")).not.toContain("refs/heads/two");
    // Delete a ref that is loose and packed: both go.
    expect(repo.refs.delete("refs/heads/one")).toBe(true);
    expect(gitFails(dir, ["rev-parse", "--verify", "-q", "refs/heads/one"]).status).not.toBe(0);
    expect(repo.refs.delete("refs/heads/one")).toBe(false);
    expect(git(dir, ["show-ref"])).toBe(`${b} refs/stowage/kv/three\n${tag} refs/tags/t1`);
    expect(git(dir, ["fsck", "--strict", "--no-dangling"])).toBe("");
  });

  it("a ref cannot be created where another ref is a directory or file (git's D/F rule)", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const id = repo.writeBlob(Buffer.from("x"));
    repo.refs.update("refs/stowage/a", id);
    expect(errorCode(() => repo.refs.update("refs/stowage/a/b", id))).toBe("E_CONFLICT");
    repo.refs.update("refs/stowage/c/d", id);
    expect(errorCode(() => repo.refs.update("refs/stowage/c", id))).toBe("E_CONFLICT");
    git(dir, ["pack-refs", "--all"]);
    expect(errorCode(() => repo.refs.update("refs/stowage/a/b", id))).toBe("E_CONFLICT");
    // Once c/d is deleted, its emptied directories go, and c can be created.
    expect(repo.refs.delete("refs/stowage/c/d")).toBe(true);
    repo.refs.update("refs/stowage/c", id, { expected: null });
    expect(git(dir, ["rev-parse", "refs/stowage/c"])).toBe(id);
    // An empty directory left by a crash does not block a ref either.
    mkdirSync(join(dir, "refs/stowage/e"));
    repo.refs.update("refs/stowage/e", id, { expected: null });
    repo.refs.update("refs/stowage/x/y/z", id);
    repo.refs.delete("refs/stowage/x/y/z");
    expect(existsSync(join(dir, "refs/stowage/x"))).toBe(false);
    expect(existsSync(join(dir, "logs/refs/stowage/x"))).toBe(false);
    expect(existsSync(join(dir, "refs/stowage"))).toBe(true);
    expect(git(dir, ["fsck", "--no-dangling"])).toBe("");
  });

  it("writes a reflog line per update that git reflog shows; deletion removes it", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir, { identity: { name: "Stow Age", email: "s@example.com" } });
    const [a, b] = ["a", "b"].map((v) => commitOf(repo, v)) as [string, string];
    const ref = "refs/stowage/logged";
    repo.refs.update(ref, a, { message: "create\nit" });
    repo.refs.update(ref, b, { expected: a, message: "second" });
    expect(git(dir, ["reflog", "show", "--format=%H|%gs|%gn|%ge", ref])).toBe(`${b}|second|Stow Age|s@example.com\n${a}|create it|Stow Age|s@example.com`);
    const log = repo.refs.reflog(ref);
    expect(log.map((entry) => [entry.old, entry.new, entry.message])).toEqual([
      [ZERO_ID, a, "create it"],
      [a, b, "second"],
    ]);
    expect(readFileSync(join(dir, "logs", ref), "utf8")).toMatch(new RegExp(`^${ZERO_ID} ${a} Stow Age <s@example.com> \\d+ [+-]\\d{4}\tcreate it\n`));
    repo.refs.delete(ref);
    expect(existsSync(join(dir, "logs", ref))).toBe(false);
  });

  it("HEAD is symbolic: updates through it move its target", () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    const id = repo.writeBlob(Buffer.from("x"));
    expect(repo.refs.read("HEAD")).toEqual({ symbolic: "refs/heads/main" });
    repo.refs.update("HEAD", id, { expected: null, message: "via HEAD" });
    expect(git(dir, ["rev-parse", "refs/heads/main"])).toBe(id);
    expect(repo.refs.reflog("HEAD").map((entry) => entry.message)).toEqual(["via HEAD"]);
    expect(repo.refs.reflog("refs/heads/main").map((entry) => entry.message)).toEqual(["via HEAD"]);
    repo.refs.setSymbolic("HEAD", "refs/heads/other");
    expect(git(dir, ["symbolic-ref", "HEAD"])).toBe("refs/heads/other");
    expect(repo.refs.resolve("HEAD")).toBeUndefined();
  });
});

describe("crashes", () => {
  it(`a writer killed with SIGKILL at random moments (${KILLS} times) leaves a repository git fsck accepts and loses no acknowledged update`, async () => {
    const dir = gitInitBare();
    for (let round = 0; round < KILLS; round++) {
      const child = spawn(process.execPath, programArgs(WORKER, [dir, "refs/stowage/counter", "1000000", "engine", "print"]), {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      await new Promise<void>((resolve) => {
        const onData = () => {
          if (output.split("\n").length < 5) return;
          child.stdout.off("data", onData);
          setTimeout(resolve, Math.random() * 100);
        };
        child.stdout.on("data", onData);
      });
      child.kill("SIGKILL");
      await new Promise((resolve) => child.on("exit", resolve));
      const acknowledged = output.split("\n").filter(Boolean).map(Number);
      // A kill between lock and rename leaves a stale lock, as with git: the operator removes it.
      rmSync(join(dir, "refs/stowage/counter.lock"), { force: true });
      expect(counter(dir, "refs/stowage/counter")).toBeGreaterThanOrEqual(acknowledged[acknowledged.length - 1]!);
      expect(git(dir, ["fsck", "--strict", "--no-dangling"])).toBe("");
    }
  }, 120_000);
});

describe("concurrent compare-and-swap", () => {
  it("20 async updaters in one process x 10 increments end at exactly 200", async () => {
    const dir = gitInitBare();
    const repo = Repository.open(dir);
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let i = 0; i < 10; i++) await increment(repo, "refs/stowage/counter");
      }),
    );
    expect(counter(dir, "refs/stowage/counter")).toBe(200);
    expect(repo.refs.reflog("refs/stowage/counter")).toHaveLength(200);
  });

  it("3 engine processes and 1 git CLI process increment one counter without losing an update", async () => {
    const dir = gitInitBare();
    const runs: Array<[string, number]> = [
      ["engine", 60],
      ["engine", 60],
      ["engine", 60],
      ["git", 15],
    ];
    await Promise.all(
      runs.map(([mode, count]) => {
        const child = spawn(process.execPath, programArgs(WORKER, [dir, "refs/stowage/counter", String(count), mode]), {
          stdio: ["ignore", "inherit", "inherit"],
        });
        return new Promise<void>((resolve, reject) => child.on("exit", (status) => (status === 0 ? resolve() : reject(new Error(`${mode} worker exited ${status}`)))));
      }),
    );
    expect(counter(dir, "refs/stowage/counter")).toBe(195);
    expect(git(dir, ["fsck", "--no-dangling"])).toBe("");
  }, 60_000);
});
