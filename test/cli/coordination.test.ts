import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseSince } from "../../src/cli/coordination.js";
import { tempDir } from "../helpers/tempDir.js";
import { programArgs, runnable, scriptArgs } from "../helpers/programs.js";
import { driverSource } from "../../tsup.config.js";

const CLI = programArgs("src/cli/main.ts");

/** Runs the CLI to its end, as a user would. */
function stowage(args: string[], cwd?: string, timeout?: number) {
  const result = spawnSync(process.execPath, [...CLI, ...args], { cwd, ...(timeout === undefined ? {} : { timeout }) });
  return { code: result.status, stdout: result.stdout.toString("utf8"), stderr: result.stderr.toString("utf8") };
}

/** Starts the CLI in the background: its process, a promise of how it ended, and a wait for a line on its stdout. */
function start(args: string[], options: { detached?: boolean } = {}) {
  const child = spawn(process.execPath, [...CLI, ...args], options);
  let stdout = "";
  let stderr = "";
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString("utf8");
    for (const waiter of waiters.filter((w) => stdout.includes(w.text))) waiter.resolve();
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const ended = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
  const printed = (text: string) => new Promise<void>((resolve) => (stdout.includes(text) ? resolve() : waiters.push({ text, resolve })));
  return { child, ended, printed, output: () => stdout };
}

/** SIGKILLs what a failed test left running (a process already gone is fine). */
function killLeftovers(pids: (number | undefined)[]): void {
  for (const pid of pids) {
    try {
      if (pid !== undefined) process.kill(pid, "SIGKILL");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  }
}

/** Resolves once `check` holds, looking every 20 ms (the test's own timeout bounds the wait). */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 20));
}

/** A shell script (run as an argument array: sh -c <script>) that prints "ready" and waits until `file` exists. */
const holdUntil = (file: string) => ["sh", "-c", `echo "ready $STOWAGE_LOCK_TOKEN"; while [ ! -f ${JSON.stringify(file)} ]; do sleep 0.05; done; echo done`];

describe("stowage lock, locks, receipts", () => {
  it("passes the command's exit code through, and its lock name, fence and token in the environment", () => {
    const store = `sqlite:${join(tempDir("cli-lock"), "s.db")}`;
    expect(stowage(["lock", "job", "--store", store, "--", "sh", "-c", "exit 3"]).code).toBe(3);
    expect(stowage(["lock", "job", "--store", store, "--", "true"]).code).toBe(0);
    const env = stowage(["lock", "job", "--store", store, "--", "sh", "-c", 'echo "$STOWAGE_LOCK_NAME $STOWAGE_LOCK_FENCE $STOWAGE_LOCK_TOKEN $STOWAGE_STORE"']);
    expect(env.code).toBe(0);
    // A first token is the clock's ms × 1000 (docs/coordination.md, Tokens); each holder after gets the next.
    const token = Number(new RegExp(`^job locks:job (\\d+) ${store}\n$`).exec(env.stdout)?.[1]);
    expect(token, env.stdout).toBeGreaterThan(0);
    expect(stowage(["lock", "job", "--store", store, "--", "sh", "-c", "echo $STOWAGE_LOCK_TOKEN"]).stdout).toBe(`${token + 1}\n`);
    // A signal death is 128 + its number, as shells report it.
    expect(stowage(["lock", "job", "--store", store, "--", "sh", "-c", "kill -TERM $$"]).code).toBe(143);
    const missing = stowage(["lock", "job", "--store", store, "--", "no-such-program-here"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/^stowage: E_NOT_FOUND: cannot run "no-such-program-here"[^\n]*\n$/);
  });

  it("two invocations on one name serialize: the second times out (exit 75) or waits, and gets a higher token", async () => {
    const dir = tempDir("cli-lock-serial");
    const store = `sqlite:${join(dir, "s.db")}`;
    const go = join(dir, "go");
    const first = start(["lock", "job", "--store", store, "--", ...holdUntil(go)]);
    await first.printed("ready");
    const timedOut = stowage(["lock", "job", "--store", store, "--wait", "100", "--", "sh", "-c", "echo ran"]);
    expect(timedOut.code).toBe(75);
    expect(timedOut.stdout).toBe("");
    expect(timedOut.stderr).toMatch(/^stowage: E_LOCK_TIMEOUT: \[locks\] locks:job: not acquired within 100 ms\n$/);
    // `locks` shows the holder while it holds.
    const held = stowage(["locks", "--store", store, "--json"]);
    expect(held.code).toBe(0);
    const [info] = held.stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(info).toMatchObject({ name: "job", token: expect.any(Number), pid: expect.any(Number), host: expect.any(String), owner: expect.any(String) });
    expect(stowage(["locks", "--store", store]).stdout).toMatch(new RegExp(`^job\ttoken=${info.token}\towner=[^\t]+\texpires=\\d{4}-[^\t]+\tpid=\\d+\thost=[^\t]+\n$`));
    const second = start(["lock", "job", "--store", store, "--wait", "60000", "--", "sh", "-c", 'echo "second $STOWAGE_LOCK_TOKEN"']);
    writeFileSync(go, "");
    const [a, b] = await Promise.all([first.ended, second.ended]);
    expect(a).toMatchObject({ code: 0, stdout: `ready ${info.token}\ndone\n` });
    expect(b).toMatchObject({ code: 0, stdout: `second ${info.token + 1}\n` });
    expect(stowage(["locks", "--store", store]).stdout).toBe("");
  }, 60_000);

  it("writes of concurrent invocations never interleave", async () => {
    const dir = tempDir("cli-lock-log");
    const store = `sqlite:${join(dir, "s.db")}`;
    const log = join(dir, "log");
    const script = `echo "start $STOWAGE_LOCK_TOKEN" >> ${JSON.stringify(log)}; sleep 0.2; echo "end $STOWAGE_LOCK_TOKEN" >> ${JSON.stringify(log)}`;
    const runs = [0, 1, 2].map(() => start(["lock", "job", "--store", store, "--wait", "60000", "--", "sh", "-c", script]));
    for (const run of await Promise.all(runs.map((r) => r.ended))) expect(run.code, run.stderr).toBe(0);
    const first = Number(/^start (\d+)\n/.exec(readFileSync(log, "utf8"))?.[1]);
    expect(readFileSync(log, "utf8")).toBe([0, 1, 2].map((n) => `start ${first + n}\nend ${first + n}\n`).join(""));
  }, 60_000);

  it("the command fences its own writes with the token and fence id from its environment; a stale token is E_FENCED", () => {
    const file = join(tempDir("cli-lock-fence"), "s.db");
    const store = `sqlite:${file}`;
    // A node program writing to the same store, fenced by STOWAGE_LOCK_FENCE and STOWAGE_LOCK_TOKEN; it prints the outcome.
    const script = `import { createStorage } from ${JSON.stringify(runnable("src/index.ts"))};
import sqlite from ${JSON.stringify(runnable(driverSource("sqlite")))};
const storage = createStorage({ driver: sqlite({ path: ${JSON.stringify(file)} }) });
const fence = { fenceId: process.env.STOWAGE_LOCK_FENCE, token: Number(process.env.STOWAGE_LOCK_TOKEN) };
try {
  await storage.setItem("release", "v" + fence.token, { fence });
  console.log("wrote " + fence.token);
} catch (error) {
  console.log(error.code);
} finally {
  await storage.dispose();
}`;
    const writer = [process.execPath, ...scriptArgs(script)];
    const wrote = stowage(["lock", "deploy", "--store", store, "--", ...writer]).stdout;
    const first = Number(/^wrote (\d+)\n$/.exec(wrote)?.[1]);
    expect(first, wrote).toBeGreaterThan(0);
    expect(stowage(["lock", "deploy", "--store", store, "--", ...writer]).stdout).toBe(`wrote ${first + 1}\n`);
    // The first holder writing late (paused past its lease, say) is refused, and the value stays.
    const stale = spawnSync(writer[0]!, writer.slice(1), { env: { ...process.env, STOWAGE_LOCK_FENCE: "locks:deploy", STOWAGE_LOCK_TOKEN: String(first) } });
    expect(stale.stdout.toString()).toBe("E_FENCED\n");
    expect(stowage(["get", "release", "--store", store]).stdout).toBe(`v${first + 1}\n`);
  }, 60_000);

  it("forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT to the command, exits with its code and releases the lock", async () => {
    const store = `sqlite:${join(tempDir("cli-lock-signal"), "s.db")}`;
    for (const [signal, code] of [["SIGTERM", 7], ["SIGINT", 8], ["SIGHUP", 9], ["SIGQUIT", 10]] as const) {
      const trap = `trap 'echo "got ${signal.slice(3)}"; exit ${code}' ${signal.slice(3)}; echo ready; while :; do sleep 0.05; done`;
      const run = start(["lock", "job", "--store", store, "--", "sh", "-c", trap]);
      await run.printed("ready");
      run.child.kill(signal);
      const ended = await run.ended;
      expect(ended.code, ended.stderr).toBe(code);
      expect(ended.stdout).toBe(`ready\ngot ${signal.slice(3)}\n`);
      // Released on the way out (a closed terminal included): the next one takes it at once.
      expect(stowage(["lock", "job", "--store", store, "--", "true"]).code, signal).toBe(0);
    }
    // Released on the way out: the next one takes it at once.
    expect(stowage(["lock", "job", "--store", store, "--", "true"]).code).toBe(0);
  }, 60_000);

  it("stops the command with SIGTERM when the lock is lost (the CLI paused past its lease), and says so", () => {
    const store = `sqlite:${join(tempDir("cli-lock-lost"), "s.db")}`;
    // The command stops its parent (the CLI) past the 300 ms lease, resumes it, and would run on for 20 s.
    const result = stowage(["lock", "job", "--store", store, "--ttl", "300", "--", "sh", "-c", "kill -STOP $PPID; sleep 1; kill -CONT $PPID; exec sleep 20"]);
    expect(result.code, result.stderr).toBe(143);
    expect(result.stderr).toMatch(/E_LOCK_LOST/);
  }, 60_000);

  it("SIGKILLs a command that ignores SIGTERM --kill-after ms after the lock is lost, and exits with E_LOCK_LOST", () => {
    const store = `sqlite:${join(tempDir("cli-lock-kill"), "s.db")}`;
    // Ignores SIGTERM (so does its sleep, which inherits that), stops the CLI past its lease, and would run on for ~30 s.
    const stubborn = `trap '' TERM; kill -STOP $PPID; sleep 1; kill -CONT $PPID; i=0; while [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done`;
    const result = stowage(["lock", "job", "--store", store, "--ttl", "300", "--kill-after", "200", "--", "sh", "-c", stubborn], undefined, 25_000);
    expect(result.code, result.stderr).toBe(137);
    expect(result.stderr).toMatch(/SIGKILL after 200 ms/);
    expect(result.stderr).toMatch(/outlived SIGTERM by 200 ms: SIGKILL/);
    expect(result.stderr).toMatch(/^stowage: E_LOCK_LOST: /m);
    expect(stowage(["lock", "job", "--store", store, "--kill-after", "-1", "--", "true"]).stderr).toMatch(/^stowage: E_INVALID_OPTION: --kill-after takes milliseconds >= 0/);
  }, 30_000);

  it("a ^C to the CLI's process group reaches the command once", async () => {
    const dir = tempDir("cli-lock-ctrl-c");
    const store = `sqlite:${join(dir, "s.db")}`;
    const counts = join(dir, "count");
    // Counts SIGINTs (each written down as it comes); on SIGTERM writes the final count and exits 0.
    const counter = `let n = 0; const fs = require("node:fs");
      process.on("SIGINT", () => fs.writeFileSync(${JSON.stringify(counts)}, String(++n)));
      process.on("SIGTERM", () => { fs.writeFileSync(${JSON.stringify(counts)}, "final " + n); process.exit(0); });
      console.log("ready", process.pid); setInterval(() => {}, 1000);`;
    // Detached: the CLI leads a process group of its own, as a shell's job does.
    const run = start(["lock", "job", "--store", store, "--", process.execPath, "-e", counter], { detached: true });
    await run.printed("ready");
    const pid = Number(/ready (\d+)/.exec(run.output())![1]);
    try {
      process.kill(-run.child.pid!, "SIGINT");
      await until(() => existsSync(counts));
      // SIGINT came before SIGTERM, to the CLI and so in its forwarding: a second SIGINT would be counted before "final".
      run.child.kill("SIGTERM");
      const ended = await run.ended;
      expect(ended.code, ended.stderr).toBe(0);
      expect(readFileSync(counts, "utf8")).toBe("final 1");
    } finally {
      killLeftovers([pid, run.child.pid]);
    }
  }, 60_000);

  it("^Z stops the command with the CLI, and fg resumes both", async () => {
    const store = `sqlite:${join(tempDir("cli-lock-tstp"), "s.db")}`;
    // Not sh: a shell's state shows D, not T, while a stop catches it starting a child.
    const run = start(["lock", "job", "--store", store, "--", process.execPath, "-e", "console.log('ready', process.pid); setInterval(() => {}, 1000)"], { detached: true });
    await run.printed("ready");
    const pid = Number(/ready (\d+)/.exec(run.output())![1]);
    const state = (p: number) => readFileSync(`/proc/${p}/stat`, "utf8").replace(/^.*\) /s, "")[0];
    try {
      process.kill(-run.child.pid!, "SIGTSTP");
      await until(() => state(pid) === "T" && state(run.child.pid!) === "T");
      process.kill(-run.child.pid!, "SIGCONT");
      await until(() => state(pid) !== "T" && state(run.child.pid!) !== "T");
      run.child.kill("SIGTERM");
      expect((await run.ended).code).toBe(143);
    } finally {
      killLeftovers([pid, run.child.pid]);
    }
  }, 60_000);

  it("--receipt records command, exit code, duration, output and the lock, and `receipts` prints it", () => {
    const store = `sqlite:${join(tempDir("cli-receipt"), "s.db")}`;
    const run = stowage(["lock", "deploy", "--store", store, "--receipt", "--", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    expect(run.code).toBe(5);
    // The output still reaches the terminal (tee).
    expect(run.stdout).toBe("out\n");
    expect(run.stderr).toBe("err\n");
    expect(stowage(["lock", "deploy", "--store", store, "--receipt", "--", "true"]).code).toBe(0);
    const recent = stowage(["receipts", "--store", store, "--recent", "1"]);
    expect(recent.code).toBe(0);
    expect(recent.stdout).toMatch(/^\d{4}-\d\d-\d\dT[^\t]+Z\texit=0\t\d+ms\t[^\t]+\ttrue\n$/);
    const [latest, earlier] = stowage(["receipts", "--store", store, "--json"]).stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(latest).toMatchObject({ command: "true", exitCode: 0, output: "", metadata: { lock: "deploy", token: earlier.metadata.token + 1, fenceId: "locks:deploy" } });
    expect(earlier).toMatchObject({ command: "sh -c echo out; echo err >&2; exit 5", exitCode: 5, metadata: { argv: ["sh", "-c", "echo out; echo err >&2; exit 5"], lock: "deploy", token: expect.any(Number) } });
    expect(earlier.output.split("\n").sort()).toEqual(["", "err", "out"]);
    expect(earlier.duration).toBeGreaterThanOrEqual(0);
    // Filters: --command matches the recorded command exactly; --since a duration or a date.
    expect(stowage(["receipts", "--store", store, "--command", "true", "--json"]).stdout.trim().split("\n")).toHaveLength(1);
    expect(stowage(["receipts", "--store", store, "--since", "1h"]).stdout.trim().split("\n")).toHaveLength(2);
    expect(stowage(["receipts", "--store", store, "--since", "2999-01-01"]).stdout).toBe("");
  }, 60_000);

  it("refuses stores without CAS (fs:) before running anything, and every bad argument with one line and exit 1", () => {
    const dir = tempDir("cli-lock-refused");
    const marker = join(dir, "ran");
    const fs = stowage(["lock", "job", "--store", `fs:${join(dir, "fs")}`, "--", "touch", marker]);
    expect(fs.code).toBe(1);
    expect(fs.stderr).toMatch(/^stowage: E_UNSUPPORTED: \[locks\] locks:job: locks need a driver flagged cas, and fs is not\n$/);
    expect(existsSync(marker)).toBe(false);
    const store = `sqlite:${join(dir, "s.db")}`;
    const failures = [
      ["lock", "job", "--store", store],
      ["lock", "job", "--store", store, "--ttl", "0", "--", "true"],
      ["lock", "job", "--store", store, "--ttl", "1.5", "--", "true"],
      ["lock", "job", "--store", store, "--wait", "-1", "--", "true"],
      ["lock", "job", "--store", store, "--wait", "soon", "--", "true"],
      ["lock", "a/b", "--store", store, "--", "true"],
      ["lock", "job", "--store", store, "true", "-x"],
      ["receipts", "--store", store, "--recent", "0"],
      ["receipts", "--store", store, "--recent", "x"],
      ["receipts", "--store", store, "--since", "yesterday"],
      ["receipts", "--store", store, "--since", "5 minutes"],
      ["receipts", "--store", `fs:${join(dir, "fs")}`],
      ["locks", "--store", `fs:${join(dir, "fs")}`, "--bogus"],
    ];
    for (const args of failures) {
      const result = stowage(args);
      expect(result.code, args.join(" ")).toBe(1);
      expect(result.stderr, args.join(" ")).toMatch(/^stowage: E_[A-Z_]+: [^\n]+\n$/);
    }
    expect(existsSync(marker)).toBe(false);
  }, 120_000);

  it("--since reads durations back from now and dates as given", () => {
    const now = Date.UTC(2026, 11, 7, 12);
    expect(parseSince("90s", now)).toBe(now - 90_000);
    expect(parseSince("2h", now)).toBe(now - 7_200_000);
    expect(parseSince("1.5d", now)).toBe(now - 129_600_000);
    expect(parseSince("2026-12-07", now)).toBe(Date.UTC(2026, 11, 7));
    expect(parseSince("2026-12-07T10:00:00Z", now)).toBe(Date.UTC(2026, 11, 7, 10));
    for (const bad of ["", "1", "h", "-1h", "2026-13-45", "tomorrow"]) expect(() => parseSince(bad, now), bad).toThrow(/--since takes/);
  });
});
