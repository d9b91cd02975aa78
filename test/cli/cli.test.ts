import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { closeSync, existsSync, openSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isStorageError } from "../../src/index.js";
import { driverFromUrl } from "../../src/cli/storeUrl.js";
import { git } from "../git/gitCli.js";
import { serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";
import { programArgs } from "../helpers/programs.js";

const CLI = programArgs("src/cli/main.ts");

/** Runs the CLI in its own process, as a user would. */
function stowage(args: string[], options: { cwd?: string; input?: Buffer | string } = {}) {
  const result = spawnSync(process.execPath, [...CLI, ...args], {
    cwd: options.cwd,
    input: options.input,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr.toString("utf8") };
}

describe("stowage CLI", () => {
  it("set, get, keys, meta and del on the default store (git:./.stowage)", () => {
    const cwd = tempDir("cli");
    expect(stowage(["set", "user:ada", '{"name":"Ada"}'], { cwd }).code).toBe(0);
    expect(stowage(["set", "greeting", "hello world"], { cwd }).code).toBe(0);
    expect(git(join(cwd, ".stowage"), ["show", "refs/stowage/default:user/ada"])).toBe('{"name":"Ada"}');
    expect(stowage(["get", "user:ada"], { cwd }).stdout.toString()).toBe('{"name":"Ada"}\n');
    expect(stowage(["get", "greeting"], { cwd }).stdout.toString()).toBe("hello world\n");
    expect(stowage(["keys"], { cwd }).stdout.toString().split("\n").filter(Boolean).sort()).toEqual(["greeting", "user:ada"]);
    const meta = JSON.parse(stowage(["meta", "greeting"], { cwd }).stdout.toString());
    expect(meta.size).toBe(13);
    expect(stowage(["del", "greeting"], { cwd }).code).toBe(0);
    expect(stowage(["keys"], { cwd }).stdout.toString()).toBe("user:ada\n");
  });

  it("--store, --string, values from stdin", () => {
    const dir = tempDir("cli-store");
    const store = `fs-lite:${dir}`;
    stowage(["set", "n", "456", "--string", "--store", store]);
    stowage(["set", "from-stdin", "--store", store], { input: "[1,2]" });
    expect(stowage(["get", "n", "--store", store]).stdout.toString()).toBe("456\n");
    expect(readFileSync(join(dir, "n"), "utf8")).toBe('"456"');
    expect(stowage(["get", "from-stdin", "--store", store]).stdout.toString()).toBe("[1,2]\n");
  });

  it("--raw moves bytes through stdin and stdout unchanged", () => {
    const store = `fs:${tempDir("cli-raw")}`;
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    expect(stowage(["set", "bin", "--raw", "--store", store], { input: bytes }).code).toBe(0);
    expect(stowage(["get", "bin", "--raw", "--store", store]).stdout.equals(bytes)).toBe(true);
  });

  it("errors are one line and a non-zero exit", () => {
    const cwd = tempDir("cli-errors");
    const missing = stowage(["get", "nope"], { cwd });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('stowage: E_NOT_FOUND: No value at "nope"\n');
    const invalid = stowage(["set", "a/../b", "1"], { cwd });
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^stowage: E_INVALID_KEY: .*\n$/);
    const badStore = stowage(["get", "k", "--store", "nosuch:x"], { cwd });
    expect(badStore.code).toBe(1);
    expect(badStore.stderr.trim().split("\n")).toHaveLength(1);
    expect(stowage(["frobnicate"], { cwd }).code).not.toBe(0);
  });

  it("every failure, usage errors and malformed store URLs included, is one `stowage: E_… message` line and exit code 1", () => {
    const cwd = tempDir("cli-failures");
    const failures: string[][] = [
      [],
      ["frobnicate"],
      ["get"],
      ["get", "a", "b"],
      ["get", "k", "--bogus"],
      ["set", "k", "v", "--ttl", "soon"],
      ["set", "k", "v", "--raw"],
      ["keys", "--max-depth", "-1"],
      ["log", "k", "--limit", "0"],
      ["gc", "--prune", "later"],
      ["serve", "--port", "70000"],
      ["serve", "--max-body-size", "0"],
      ["sync", "origin", "--policy", "mine"],
      ["get", "k", "--store", "nosuch:x"],
      ["get", "k", "--store", "sqlite:"],
      ["keys", "--store", "etcd://127.0.0.1:2379/%zz"],
      ["keys", "--store", "nats://127.0.0.1:4222/%E0%A4%A"],
      ["keys", "--store", "mysql://u:%zz@127.0.0.1/db"],
      ["keys", "--store", "http://%zz/"],
      ["get", "k", "--store", "http://127.0.0.1:1/"],
      ["set", "a/../b", "1", "--store", "memory:"],
      ["keys", "?", "--store", "memory:"],
      ["watch", "a/../b", "--store", "memory:"],
    ];
    for (const args of failures) {
      const result = stowage(args, { cwd });
      expect(result.code, args.join(" ")).toBe(1);
      expect(result.stderr, args.join(" ")).toMatch(/^stowage: E_[A-Z_]+: [^\n]+\n$/);
      expect(result.stdout.toString(), args.join(" ")).toBe("");
    }
    // Help asked for is no failure: it goes to stdout.
    const help = stowage(["--help"], { cwd });
    expect(help.code).toBe(0);
    expect(help.stdout.toString()).toMatch(/^Usage: stowage/);
    expect(stowage(["serve", "--help"], { cwd }).stdout.toString()).toMatch(/--insecure/);
    // Two dozen processes: slow on a loaded 2-core machine.
  }, 180_000);

  it("a directory as stdin (`set k < /`) is one E_IO line and exit 1, with --raw too, and nothing is stored", () => {
    const dir = tempDir("cli-stdin-dir");
    const stdin = openSync(tempDir("cli-stdin-is-a-dir"), "r");
    try {
      for (const extra of [[], ["--raw"]]) {
        const result = spawnSync(process.execPath, [...CLI, "set", "k", ...extra, "--store", `fs:${dir}`], { stdio: [stdin, "pipe", "pipe"] });
        expect(result.status, extra.join(" ")).toBe(1);
        expect(result.stderr.toString("utf8")).toMatch(/^stowage: E_IO: Cannot read stdin: EISDIR[^\n]*\n$/);
      }
    } finally {
      closeSync(stdin);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it("store URLs: every part is used or refused with E_INVALID_OPTION (queries, fragments, hosts, credentials, text after memory:)", async () => {
    const dir = tempDir("cli-urls");
    const refused = [
      "memory:?foo=1",
      "memory:x",
      `fs:${dir}/a?x=1`,
      `fs-lite:${dir}/a#frag`,
      "fs://data",
      `git:${dir}/g?bare=1`,
      `sqlite:${dir}/s.db?mode=ro`,
      `leveldb:${dir}/l?x`,
      `lmdb:${dir}/m#x`,
      "redis://127.0.0.1:6379/0?foo=1",
      "redis://127.0.0.1:6379/zero",
      "rediss://127.0.0.1:6379/#x",
      "postgres://u@127.0.0.1/db?sslmode=disable&bogus=1",
      "postgresql://u@127.0.0.1/db#x",
      "mysql://u@127.0.0.1/db?charset=latin1",
      "http://127.0.0.1:1/?a=1",
      "http://127.0.0.1:1/?",
      "https://u:p@127.0.0.1:1/",
      "nats://127.0.0.1:4222/bucket?x=1",
      "nats://u:p@127.0.0.1:4222/bucket",
      "etcd://127.0.0.1:2379/prefix#x",
      "etcd://u@127.0.0.1:2379/prefix",
    ];
    for (const url of refused) {
      const error = await driverFromUrl(url).catch((caught: unknown) => caught);
      expect(isStorageError(error, "E_INVALID_OPTION"), `${url}: ${String(error)}`).toBe(true);
    }
    // Nothing was created for the refused file stores.
    expect(readdirSync(dir)).toEqual([]);
    expect(existsSync("/data")).toBe(false);
    const memory = await driverFromUrl("memory:");
    expect(memory.name).toBe("memory");
    const result = stowage(["keys", "--store", "memory:?foo=1"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('stowage: E_INVALID_OPTION: The memory: store takes nothing after memory:, got "?foo=1"\n');
  });

  it("a stdout closed by its reader (`| head -c 10`) is one E_IO line, not a crash", async () => {
    const dir = tempDir("cli-epipe");
    writeFileSync(join(dir, "big"), Buffer.alloc(4 * 1024 * 1024, 7));
    const child = spawn(process.execPath, [...CLI, "get", "big", "--raw", "--store", `fs:${dir}`]);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    // Read a little, then close the pipe, as head does.
    child.stdout.once("data", () => child.stdout.destroy());
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toMatch(/^stowage: E_IO: Cannot write to stdout: [^\n]*EPIPE[^\n]*\n$/);
  });

  const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
  const etcdHost = new URL(process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379").host;
  it("reaches server stores by URL: redis:// and etcd://host/prefix", async () => {
    const run = `cli-${process.pid}-${Date.now().toString(36)}`;
    const stores = [];
    if (await serviceUp("Redis", redisUrl)) stores.push(redisUrl);
    if (await serviceUp("etcd", `http://${etcdHost}`)) stores.push(`etcd://${etcdHost}/${run}/`);
    for (const store of stores) {
      const key = `${run}:greeting`;
      expect(stowage(["set", key, '"hi"', "--store", store]).code).toBe(0);
      expect(stowage(["get", key, "--store", store]).stdout.toString()).toBe("hi\n");
      expect(stowage(["del", key, "--store", store]).code).toBe(0);
    }
    expect(stowage(["keys", "--store", "etcd:nohost"]).stderr).toMatch(/etcd:\/\/host:port\/name/);
  });

  it("log prints a key's history on a git store, newest first", () => {
    const store = `git:${tempDir("cli-git")}`;
    for (const value of ["1", "2", "3"]) expect(stowage(["set", "counter", value, "--store", store]).code).toBe(0);
    const lines = stowage(["log", "counter", "--store", store, "--limit", "2"]).stdout.toString().trim().split("\n").map((line) => JSON.parse(line));
    expect(lines.map((entry) => entry.value)).toEqual([3, 2]);
    expect(lines[0].version).toMatch(/^[0-9a-f]{40}$/);
    const refused = stowage(["log", "counter", "--store", `fs:${tempDir("cli-fs")}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/E_UNSUPPORTED/);
  });

  it("gc merges a git store's packs into one that stock git verifies", () => {
    const cwd = tempDir("cli-gc");
    const dir = join(cwd, ".stowage");
    for (const value of ["1", "2", "3"]) expect(stowage(["set", `k${value}`, value], { cwd }).code).toBe(0);
    // Each CLI write is one commit, written as a small pack.
    expect(git(dir, ["count-objects", "-v"])).toMatch(/^packs: 3$/m);
    const done = stowage(["gc", "--prune", "now"], { cwd });
    expect(done.stderr).toBe("");
    expect(JSON.parse(done.stdout.toString())).toMatchObject({ packsMerged: 3, looseObjectsPruned: 0 });
    const counts = git(dir, ["count-objects", "-v"]);
    expect(counts).toMatch(/^count: 0$/m);
    expect(counts).toMatch(/^packs: 1$/m);
    git(dir, ["fsck", "--strict"]);
    expect(stowage(["get", "k2"], { cwd }).stdout.toString()).toBe("2\n");
    const refused = stowage(["gc", "--store", `fs:${tempDir("cli-gc-fs")}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/E_UNSUPPORTED/);
    expect(stowage(["gc", "--prune", "soon"], { cwd }).stderr).toMatch(/E_INVALID_OPTION/);
  });
});
