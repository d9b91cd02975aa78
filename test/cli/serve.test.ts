import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { createStorage as createUnstorage } from "unstorage";
import unstorageHttp from "unstorage/drivers/http";
import { afterEach, describe, expect, it } from "vitest";
import { createStorage } from "../../src/index.js";
import fsDriver from "../../src/drivers/fs.js";
import { git } from "../git/gitCli.js";
import { freePort } from "../helpers/checks.js";
import { tempDir } from "../helpers/tempDir.js";
import { programArgs } from "../helpers/programs.js";

const CLI = programArgs("src/cli/main.ts");

interface Running {
  child: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
}

const running: Running[] = [];

/** Starts the CLI as a long-running child process, collecting what it prints. */
function start(args: string[], cwd: string): Running {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd });
  const run: Running = { child, stdout: "", stderr: "" };
  child.stdout.on("data", (chunk: Buffer) => (run.stdout += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (run.stderr += chunk.toString("utf8")));
  running.push(run);
  return run;
}

afterEach(() => {
  for (const { child } of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

/** Resolves with the first match of `pattern` in what `read` returns, polling until 20 s have passed. */
async function waitFor(read: () => string, pattern: RegExp): Promise<RegExpMatchArray> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const match = pattern.exec(read());
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`no ${pattern} in: ${read()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function exited(child: ChildProcessWithoutNullStreams): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null) return Promise.resolve({ code: child.exitCode, signal: null });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

async function serve(cwd: string, extra: string[] = []): Promise<{ child: ChildProcessWithoutNullStreams; url: string }> {
  const run = start(["serve", "--port", "0", ...extra], cwd);
  const [, url] = await waitFor(() => run.stdout, /serving .* at (http:\/\/\S+\/)/);
  return { child: run.child, url: url! };
}

const MIB = 1024 * 1024;

/** PUTs `count` MiB of raw bytes (each chunk `seed` stamped with its number), chunked as it is made; resolves with their SHA-256. */
function upload(url: string, count: number, seed: Buffer): Promise<string> {
  const hash = createHash("sha256");
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "PUT", headers: { "content-type": "application/octet-stream" } }, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve(hash.digest("hex")) : reject(new Error(`PUT answered ${res.statusCode}`))));
    });
    req.on("error", reject);
    void (async () => {
      for (let i = 0; i < count; i++) {
        const chunk = Buffer.from(seed);
        chunk.writeUInt32BE(i);
        hash.update(chunk);
        if (!req.write(chunk)) await once(req, "drain");
      }
      req.end();
    })();
  });
}

/** GETs a raw value, hashing it as it arrives. */
function download(url: string): Promise<{ length: number; digest: string }> {
  const hash = createHash("sha256");
  let length = 0;
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { accept: "application/octet-stream" } }, (res) => {
      if (Number(res.headers["content-length"]) <= 0) reject(new Error("no content-length"));
      res.on("data", (chunk: Buffer) => {
        length += chunk.length;
        hash.update(chunk);
      });
      res.on("end", () => resolve({ length, digest: hash.digest("hex") }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("stowage serve", () => {
  it("serves the default store (git:./.stowage), prints its URL, exits cleanly on SIGTERM", async () => {
    const cwd = tempDir("cli-serve");
    const { child, url } = await serve(cwd);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect((await fetch(url + "greeting", { method: "PUT", body: "hello" })).status).toBe(200);
    expect(await (await fetch(url + "greeting")).text()).toBe('"hello"');
    expect(await (await fetch(url)).json()).toEqual(["greeting"]);
    child.kill("SIGTERM");
    expect(await exited(child)).toEqual({ code: 0, signal: null });
    expect(git(join(cwd, ".stowage"), ["show", "refs/stowage/default:greeting"])).toBe('"hello"');
  });

  it("unstorage's own http driver against `stowage serve --store fs:<dir> --host --port`", async () => {
    const cwd = tempDir("cli-serve-unstorage");
    const dir = join(cwd, "data");
    const port = await freePort();
    const run = start(["serve", "--store", `fs:${dir}`, "--host", "127.0.0.1", "--port", String(port)], cwd);
    const [, url] = await waitFor(() => run.stdout, /serving .* at (http:\/\/\S+\/)/);
    expect(url).toBe(`http://127.0.0.1:${port}/`);
    const client = createUnstorage({ driver: unstorageHttp({ base: url! }) });
    await client.setItem("users:ada", { name: "Ada", langs: ["en"] });
    await client.setItem("users:bob", "plain text");
    await client.setItemRaw("files:blob", new Uint8Array([0, 1, 2, 255]));
    expect(await client.getItem("users:ada")).toEqual({ name: "Ada", langs: ["en"] });
    expect(await client.getItem("users:bob")).toBe("plain text");
    expect(await client.hasItem("users:ada")).toBe(true);
    expect((await client.getKeys("users")).sort()).toEqual(["users:ada", "users:bob"]);
    await client.removeItem("users:bob");
    expect(await client.hasItem("users:bob")).toBe(false);
    run.child.kill("SIGTERM");
    expect((await exited(run.child)).code).toBe(0);
    // What the server stored is in the fs store the flag named.
    const stored = createStorage({ driver: fsDriver({ base: dir }) });
    expect(await stored.getItem("users:ada")).toEqual({ name: "Ada", langs: ["en"] });
    expect([...(await stored.getItemRaw("files:blob"))!]).toEqual([0, 1, 2, 255]);
    expect(await stored.getKeys("users")).toEqual(["users:ada"]);
    await stored.dispose();
  });

  it("a 256 MiB value goes up and comes back down through an fs store without the server holding it: its peak memory grows far less", async () => {
    const cwd = tempDir("cli-serve-stream");
    const { child, url } = await serve(cwd, ["--store", `fs:${join(cwd, "data")}`, "--max-body-size", String(512 * MIB)]);
    // Peak resident memory of the server process (Linux).
    const peak = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))![1]) * 1024;
    await upload(url + "warm", 4, randomBytes(MIB));
    await download(url + "warm");
    const before = peak();
    const sent = await upload(url + "video", 256, randomBytes(MIB));
    expect(statSync(join(cwd, "data", "video")).size).toBe(256 * MIB);
    const received = await download(url + "video");
    expect(received.length).toBe(256 * MIB);
    expect(received.digest).toBe(sent);
    const growth = peak() - before;
    expect(growth, `the server's peak memory grew by ${Math.round(growth / MIB)} MiB`).toBeLessThan(96 * MIB);
    child.kill("SIGTERM");
    expect((await exited(child)).code).toBe(0);
  });

  it("--token and --read-only; SIGINT also shuts down cleanly", async () => {
    const cwd = tempDir("cli-serve-auth");
    spawnSync(process.execPath, [...CLI, "set", "k", "1"], { cwd });
    const { child, url } = await serve(cwd, ["--token", "s3cret", "--read-only"]);
    expect((await fetch(url + "k")).status).toBe(401);
    const auth = { authorization: "Bearer s3cret" };
    expect(await (await fetch(url + "k", { headers: auth })).text()).toBe("1");
    expect((await fetch(url + "k", { method: "PUT", body: "2", headers: auth })).status).toBe(405);
    child.kill("SIGINT");
    expect(await exited(child)).toEqual({ code: 0, signal: null });
  });

  it("refuses a non-loopback --host without a token, and an empty token, before opening the store", () => {
    const cwd = tempDir("cli-serve-exposed");
    const run = (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const result = spawnSync(process.execPath, [...CLI, "serve", "--port", "0", ...args], { cwd, env: { ...process.env, ...env } });
      return { code: result.status, stderr: result.stderr.toString() };
    };
    const exposed = run(["--host", "0.0.0.0"]);
    expect(exposed.code).toBe(1);
    expect(exposed.stderr).toMatch(/^stowage: E_INVALID_OPTION: refusing to serve on 0\.0\.0\.0 without a token: anyone who can reach it could read and write the store\. .*--insecure.*\n$/);
    expect(run(["--token", ""]).stderr).toMatch(/^stowage: E_INVALID_OPTION: --token must be non-empty.*\n$/);
    expect(run([], { STOWAGE_TOKEN: "" }).stderr).toMatch(/^stowage: E_INVALID_OPTION: \$STOWAGE_TOKEN must be non-empty.*\n$/);
    expect(run(["--allowed-host", "kv.example:80"]).stderr).toMatch(/^stowage: E_INVALID_OPTION: .*allowedHosts.*\n$/);
    // Nothing was created: the default store is opened only once the options pass.
    expect(readdirSync(cwd)).toEqual([]);
  });

  it("--insecure serves a non-loopback address without a token, and says so", async () => {
    const cwd = tempDir("cli-serve-insecure");
    const run = start(["serve", "--port", "0", "--host", "0.0.0.0", "--insecure", "--store", "memory:"], cwd);
    const [, url] = await waitFor(() => run.stdout, /serving .* at (http:\/\/\S+\/)/);
    expect(run.stderr).toMatch(/warning: serving without a token/);
    const port = new URL(url!).port;
    expect((await fetch(`http://127.0.0.1:${port}/k`, { method: "PUT", body: "1" })).status).toBe(200);
    run.child.kill("SIGTERM");
    expect((await exited(run.child)).code).toBe(0);
  });

  it("without a token, only a loopback Host or an --allowed-host is answered (DNS rebinding)", async () => {
    const cwd = tempDir("cli-serve-host");
    const { child, url } = await serve(cwd, ["--store", "memory:", "--allowed-host", "kv.example"]);
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(url + "k", { method: "PUT", headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on("error", reject);
        req.end("1");
      });
    expect(await status("evil.example")).toBe(421);
    expect(await status("localhost")).toBe(200);
    expect(await status("kv.example")).toBe(200);
    child.kill("SIGTERM");
    expect((await exited(child)).code).toBe(0);
  });

  it("a port in use is one error line and exit code 1", async () => {
    const cwd = tempDir("cli-serve-busy");
    const { child, url } = await serve(cwd);
    const port = new URL(url).port;
    const second = spawnSync(process.execPath, [...CLI, "serve", "--port", port], { cwd });
    expect(second.status).toBe(1);
    expect(second.stderr.toString()).toMatch(/^stowage: E_IO: Cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE.*\n$/);
    child.kill("SIGTERM");
    expect((await exited(child)).code).toBe(0);
  });
});

describe("the README's Quick start", () => {
  const root = join(import.meta.dirname, "../..");

  it("its first command is `npm install && npm start`, and `npm start` serves the built CLI without building again", async () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const quickStart = /## Quick start\s+```sh\n([^`]*)```/.exec(readme)![1]!.trim().split("\n");
    expect(quickStart).toEqual(["npm install && npm start", "npm test"]);
    const scripts = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
    expect(scripts.start).toBe("node dist/cli/main.js serve");
    // `npm install` builds dist through prepare; start must not build (nor link through npx) a second time.
    expect(scripts.prestart).toBeUndefined();
    const built = statSync(join(root, "dist/cli/main.js")).mtimeMs;
    const cwd = tempDir("quick-start");
    const child = spawn("npm", ["start", "--prefix", root, "--", "--port", "0", "--store", `fs:${join(cwd, "data")}`], { cwd, detached: true });
    const run: Running = { child: child as ChildProcessWithoutNullStreams, stdout: "", stderr: "" };
    child.stdout.on("data", (chunk: Buffer) => (run.stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (run.stderr += chunk.toString("utf8")));
    try {
      const [, url] = await waitFor(() => run.stdout + run.stderr, /serving .* at (http:\/\/\S+\/)/);
      expect((await fetch(url + "users/ada", { method: "PUT", body: '{"name":"Ada"}' })).status).toBe(200);
      expect(await (await fetch(url + "users/ada")).json()).toEqual({ name: "Ada" });
    } finally {
      // npm runs the server as its child: the signal goes to the whole group.
      process.kill(-child.pid!, "SIGTERM");
      await exited(run.child);
    }
    expect(statSync(join(root, "dist/cli/main.js")).mtimeMs).toBe(built);
  });
});

describe("stowage watch", () => {
  it("prints changes under a base as JSON lines until interrupted", async () => {
    const cwd = tempDir("cli-watch");
    const run = start(["watch", "a"], cwd);
    await waitFor(() => run.stderr, /watching/);
    const set = (args: string[]) => spawnSync(process.execPath, [...CLI, ...args], { cwd });
    set(["set", "other", "1"]);
    set(["set", "a:b", "1"]);
    set(["set", "a:c", "2"]);
    set(["del", "a:c"]);
    await waitFor(() => run.stdout, /\{"event":"remove","key":"a:c"\}\n/);
    run.child.kill("SIGINT");
    expect(await exited(run.child)).toEqual({ code: 0, signal: null });
    const events = run.stdout.trim().split("\n").map((line) => JSON.parse(line) as unknown);
    expect(events).toEqual(
      expect.arrayContaining([
        { event: "update", key: "a:b" },
        { event: "update", key: "a:c" },
        { event: "remove", key: "a:c" },
      ]),
    );
    expect(events).not.toContainEqual({ event: "update", key: "other" });
  });

  it("refuses a store without a change feed", () => {
    const result = spawnSync(process.execPath, [...CLI, "watch", "--store", `fs-lite:${tempDir("cli-watch-lite")}`]);
    expect(result.status).toBe(1);
    expect(result.stderr.toString()).toMatch(/^stowage: E_UNSUPPORTED: .*\n$/);
  });
});
