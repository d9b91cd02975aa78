import { execFile, fork, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Result } from "autocannon";
import { valueOf, type ServerKind, type ServerMessage } from "./httpServer.js";

/**
 * `npm run bench -- http`: stowage's storage server against unstorage's
 * (`unstorage/server`, on h3), both over the same driver (stowage's memory
 * driver, which mounts in unstorage too), each in a process of its own
 * (bench/httpServer.ts), loaded on loopback: GET and PUT of ~100-byte JSON
 * values, 50 connections. Besides req/s, each server's CPU time per
 * request, which other load on the machine blurs least. Goal: stowage >=
 * 1.2x unstorage in req/s.
 *
 * Two generators, each run where it is installed: autocannon (a
 * devDependency) and wrk (`apt-get install wrk`). autocannon spends more
 * CPU per request than either server, so on a 2-core machine its req/s
 * measure mostly autocannon; wrk, in C, spends a fraction of that, so the
 * server is what runs out first and req/s measure the server. The goal is
 * judged on wrk's runs where wrk is there.
 */

const CONNECTIONS = 50;
const DURATION = 2;
/**
 * Runs per server and workload, the servers taking turns; each server's
 * figures are its totals over all its runs. Load that comes and goes on the
 * machine so falls on both alike. (A best-of-5 let one lucky run of one
 * server decide: unstorage's PUT ranged from 28k to 33k req/s in one bench.)
 */
const ROUNDS = 8;
/** Seconds of untimed load each server takes first, so neither is timed while its code warms up. */
const WARMUP = 1;
const GOAL = 1.2;

const BODY = JSON.stringify(valueOf(1));
const SERVER_SCRIPT = fileURLToPath(new URL("./httpServer.ts", import.meta.url));

/** A server process: its URL, its CPU time so far (µs), and a way to end it. */
interface ServerProcess {
  url: string;
  cpu: () => Promise<number>;
  close: () => void;
}

/** The next message of a server process; its exit before one fails the bench. */
function nextMessage(child: ChildProcess): Promise<ServerMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ServerMessage) => {
      child.off("exit", onExit);
      resolve(message);
    };
    const onExit = (code: number | null) => {
      child.off("message", onMessage);
      reject(new Error(`bench server process exited with ${String(code)}`));
    };
    child.once("message", onMessage);
    child.once("exit", onExit);
  });
}

/** Starts a server in a process of its own (this one's node flags, so tsx and the bench tsconfig apply). */
async function startServer(kind: ServerKind): Promise<ServerProcess> {
  const child = fork(SERVER_SCRIPT, [kind], { execArgv: process.execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const started = await nextMessage(child);
  if (!("url" in started)) throw new Error(`bench server ${kind} sent ${JSON.stringify(started)} before its URL`);
  return {
    url: started.url,
    cpu: async () => {
      const reply = nextMessage(child);
      child.send("cpu");
      const message = await reply;
      if (!("cpu" in message)) throw new Error(`bench server ${kind} answered ${JSON.stringify(message)} for its CPU time`);
      return message.cpu;
    },
    close: () => void child.send("close"),
  };
}

const AUTOCANNON = createRequire(import.meta.url).resolve("autocannon/autocannon.js");
const PATH = "bench/user/1";

type Method = "GET" | "PUT";

/** What one load run reports. */
interface Load {
  /** Requests per second. */
  rate: number;
  /** Requests answered. */
  total: number;
}

/** A load generator: runs `method` against `url` for `seconds` in a child process; any error or non-2xx answer fails it. */
type Generator = (url: string, method: Method, seconds: number) => Promise<Load>;

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
  });
}

const autocannon: Generator = async (url, method, seconds) => {
  const args = [AUTOCANNON, "-c", String(CONNECTIONS), "-d", String(seconds), "-j", "-m", method];
  if (method === "PUT") args.push("-b", BODY, "-H", "content-type=application/json");
  args.push(url + PATH);
  const result = JSON.parse(await run(process.execPath, args)) as Result;
  if (result.errors > 0 || result.non2xx > 0) throw new Error(`${method} ${url}: ${result.errors} errors, ${result.non2xx} non-2xx answers`);
  return { rate: result.requests.average, total: result.requests.total };
};

/** wrk takes a PUT's method, body and headers from a Lua script. */
function wrkScript(dir: string): string {
  const file = join(dir, "put.lua");
  writeFileSync(file, `wrk.method = "PUT"\nwrk.body = [[${BODY}]]\nwrk.headers["Content-Type"] = "application/json"\n`);
  return file;
}

function wrk(script: string): Generator {
  return async (url, method, seconds) => {
    const args = ["-t1", `-c${CONNECTIONS}`, `-d${seconds}s`];
    if (method === "PUT") args.push("-s", script);
    const out = await run("wrk", [...args, url + PATH]);
    const total = /(\d+) requests in/.exec(out);
    const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
    if (!total || !rate) throw new Error(`wrk printed no totals:\n${out}`);
    if (/Non-2xx|Socket errors/.test(out)) throw new Error(`${method} ${url}: wrk saw failures:\n${out}`);
    return { rate: Number(rate[1]), total: Number(total[1]) };
  };
}

function hasWrk(): boolean {
  return spawnSync("wrk", ["--version"]).error === undefined;
}

interface Run {
  /** Requests per second. */
  rate: number;
  /** Server CPU time per request, in microseconds. */
  cpu: number;
}

/** What a server's runs add up to. */
interface Totals {
  /** Requests answered. */
  requests: number;
  /** Seconds under load. */
  seconds: number;
  /** Server CPU time, in microseconds. */
  cpu: number;
}

async function load(generator: Generator, server: ServerProcess, method: Method, totals: Totals): Promise<void> {
  const before = await server.cpu();
  const result = await generator(server.url, method, DURATION);
  totals.cpu += (await server.cpu()) - before;
  totals.requests += result.total;
  totals.seconds += result.total / result.rate;
}

export interface HttpBenchResult {
  /** The method, and the generator in brackets. */
  workload: string;
  /** Each server's req/s over all its runs. */
  stowage: number;
  unstorage: number;
  ratio: number;
  /** Server CPU per request over all runs, in µs. */
  stowageCpu: number;
  unstorageCpu: number;
  met: boolean;
}

const format = (n: number) => Math.round(n).toLocaleString("en-US");

/**
 * Each server's req/s and CPU per request over ROUNDS runs of one workload,
 * the servers taking turns to go first, each in a fresh process warmed up
 * by WARMUP seconds of the same load.
 */
async function measure(generator: Generator, method: Method): Promise<Record<ServerKind, Run>> {
  const totals = { unstorage: { requests: 0, seconds: 0, cpu: 0 }, stowage: { requests: 0, seconds: 0, cpu: 0 } };
  const servers: Partial<Record<ServerKind, ServerProcess>> = {};
  try {
    servers.unstorage = await startServer("unstorage");
    servers.stowage = await startServer("stowage");
    for (const server of [servers.unstorage, servers.stowage]) await generator(server.url, method, WARMUP);
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (["unstorage", "stowage"] as const) : (["stowage", "unstorage"] as const);
      for (const name of order) await load(generator, servers[name]!, method, totals[name]);
    }
  } finally {
    servers.unstorage?.close();
    servers.stowage?.close();
  }
  const run = ({ requests, seconds, cpu }: Totals): Run => ({ rate: requests / seconds, cpu: cpu / requests });
  return { unstorage: run(totals.unstorage), stowage: run(totals.stowage) };
}

/** Runs GET and PUT against both servers with each generator installed, and prints req/s, server CPU per request and ratios. */
export async function runHttp(): Promise<HttpBenchResult[]> {
  const results: HttpBenchResult[] = [];
  const dir = mkdtempSync(join(tmpdir(), "stowage-bench-http-"));
  const generators: [string, Generator][] = [["autocannon", autocannon]];
  if (hasWrk()) generators.push(["wrk", wrk(wrkScript(dir))]);
  else console.log("\n(wrk is not installed: autocannon alone, whose own cost per request caps both servers' req/s)");
  try {
    console.log(`\nHTTP storage servers, each in its own process: ${CONNECTIONS} connections, ${ROUNDS} alternating runs of ${DURATION} s each after ${WARMUP} s of warm-up, totals, ${BODY.length}-byte values, memory driver`);
    for (const [name, generator] of generators) {
      for (const method of ["GET", "PUT"] as const) {
        const { stowage, unstorage } = await measure(generator, method);
        const ratio = stowage.rate / unstorage.rate;
        const workload = `${method} (${name})`;
        results.push({ workload, stowage: stowage.rate, unstorage: unstorage.rate, ratio, stowageCpu: stowage.cpu, unstorageCpu: unstorage.cpu, met: ratio >= GOAL });
        console.log(
          `  ${workload.padEnd(16)} stowage ${format(stowage.rate).padStart(8)} req/s ${stowage.cpu.toFixed(0).padStart(5)} µs CPU/req` +
            `   unstorage ${format(unstorage.rate).padStart(8)} req/s ${unstorage.cpu.toFixed(0).padStart(5)} µs CPU/req` +
            `   ${ratio.toFixed(2)}x req/s, ${(unstorage.cpu / stowage.cpu).toFixed(2)}x less CPU`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // The goal is judged on the generator that leaves the server to run out first.
  const judged = generators[generators.length - 1]![0];
  for (const result of results.filter((r) => r.workload.endsWith(`(${judged})`))) {
    console.log(`  ${result.met ? "met " : "MISS"} stowage server ${result.workload}: ${result.ratio.toFixed(2)}x unstorage server (goal >= ${GOAL}x)`);
  }
  return results;
}
