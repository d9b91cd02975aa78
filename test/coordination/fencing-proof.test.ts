/**
 * The fencing proof of issue #17: 8 processes contend on one lock, each
 * holding making fenced appends to a log in the same store, while the test
 * SIGSTOPs holders past their lease and resumes them once another holder has
 * written. The log must show tokens that never go down, each token's entries
 * contiguous and written by the worker it was granted to, every append a worker
 * saw succeed and none it saw fenced out, and at least one resumed holder's
 * late write refused with E_FENCED. Runs on git-refs, sqlite, redis, postgres
 * and etcd, a few seconds each (longer under STOWAGE_STRESS=1).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Etcd3 } from "etcd3";
import pg from "pg";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import etcd from "../../src/drivers/etcd.js";
import gitRefs from "../../src/drivers/git-refs.js";
import postgres from "../../src/drivers/postgres.js";
import redis from "../../src/drivers/redis/index.js";
import sqlite from "../../src/drivers/sqlite.js";
import { createStorage, type Driver, type Storage } from "../../src/index.js";
import type { WorkerEvent } from "../helpers/fenceWorker.js";
import { programArgs } from "../helpers/programs.js";
import { serviceUp } from "../helpers/services.js";
import { stressCount } from "../helpers/stress.js";
import { runTables } from "../helpers/tableDrivers.js";
import { tempDir } from "../helpers/tempDir.js";

// Git repositories on tmpfs where there is one: every ref update creates lock files (as in git-refs.test.ts).
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

const RUN = `stowage-fence-proof-${process.pid}-${Date.now().toString(36)}`;
const redisUrl = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
const postgresUrl = process.env.STOWAGE_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const etcdHosts = process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379";

const WORKERS = 8;
/** Lease of every holding: short, so that pauses outlast it within a few seconds. */
const TTL = 500;
/** Appends per holding, and the pause between them (when the test pauses a holder). */
const WRITES = 4;
const GAP = 40;
/** The longest pause: past the lease, and well under the 5 s the drivers wait for a lock a paused process holds (sqlite's busy timeout, git's ref locks). */
const MAX_PAUSE = TTL + 2000;
/** How long the workers contend on each backend. */
const DURATION = stressCount(4000, 60_000);

/** One log entry, as the workers write it. */
interface Entry {
  token: number;
  worker: string;
  seq: number;
}

/** A worker process and what it reported. */
interface Worker {
  id: string;
  child: ChildProcess;
  events: WorkerEvent[];
  stderr: string;
  exited: Promise<number | null>;
  /** Token of the holding in progress (hold seen, its release not yet). */
  holding?: number;
  /** Whether its last event was an append with more to come in the same holding: it now sleeps before the next one. */
  between: boolean;
}

/** One SIGSTOP of a holder and what followed its SIGCONT. */
interface Pause {
  worker: Worker;
  token: number;
  /** Whether an append with a higher token was reported before the SIGCONT. */
  overtaken: boolean;
  /** The worker's events from its SIGCONT on. */
  after: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const randomBetween = (low: number, high: number) => low + Math.random() * (high - low);

let live: Worker[] = [];
/** Listeners waiting for an event of any worker. */
let listeners: Array<(worker: Worker, event: WorkerEvent) => void> = [];

// A failed test leaves no process behind: resumed first, so a stopped one can take the kill.
afterEach(async () => {
  const left = live.filter((worker) => worker.child.exitCode === null && worker.child.signalCode === null);
  for (const worker of left) {
    worker.child.kill("SIGCONT");
    worker.child.kill("SIGKILL");
  }
  await Promise.all(left.map((worker) => worker.exited));
  live = [];
  listeners = [];
});

function startWorker(id: string, driver: string, options: Record<string, unknown>): Worker {
  const child = spawn(process.execPath, programArgs("test/helpers/fenceWorker.ts", [id, driver, JSON.stringify(options), String(TTL), String(WRITES), String(GAP)]), {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const worker: Worker = {
    id,
    child,
    events: [],
    stderr: "",
    between: false,
    exited: new Promise((resolve) => child.once("exit", (code) => resolve(code))),
  };
  child.stderr!.on("data", (chunk: Buffer) => (worker.stderr += chunk.toString()));
  createInterface({ input: child.stdout! }).on("line", (line) => record(worker, JSON.parse(line) as WorkerEvent));
  return worker;
}

/** Keeps a worker's event and the state the pausing loop reads. */
function record(worker: Worker, event: WorkerEvent): void {
  worker.events.push(event);
  if (event.e === "hold") worker.holding = event.token;
  if (event.e === "released" || event.e === "lost") worker.holding = undefined;
  worker.between = event.e === "ok" && event.left > 0;
  for (const listener of listeners) listener(worker, event);
}

/** Resolves with the first event that `match` accepts, or undefined after `limit` ms. */
function nextEvent(match: (worker: Worker, event: WorkerEvent) => boolean, limit: number): Promise<Worker | undefined> {
  return new Promise((resolve) => {
    const done = (found: Worker | undefined) => {
      clearTimeout(timer);
      listeners = listeners.filter((other) => other !== listener);
      resolve(found);
    };
    const listener = (worker: Worker, event: WorkerEvent) => void (match(worker, event) && done(worker));
    const timer = setTimeout(() => done(undefined), limit);
    listeners.push(listener);
  });
}

/**
 * Pauses one holder at a random moment of its holding: half of the time
 * caught between two appends (so that its next step is a late append), else
 * anywhere from its taking the lock on (inside an append's commit too, while
 * it may hold the store's own locks). Keeps it stopped past its lease until
 * another holder reports an append with a higher token (or MAX_PAUSE), then
 * resumes it. Undefined when no holder was caught.
 */
async function pauseOne(): Promise<Pause | undefined> {
  const between = Math.random() < 0.5;
  const worker = await nextEvent((_, event) => (between ? event.e === "ok" && event.left > 0 : event.e === "hold"), 2000);
  if (!worker) return undefined;
  const token = worker.holding;
  await sleep(between ? randomBetween(0, GAP / 2) : randomBetween(0, WRITES * GAP));
  if (token === undefined || worker.holding !== token || (between && !worker.between)) return undefined;
  worker.child.kill("SIGSTOP");
  const stopped = Date.now();
  await sleep(TTL + 50);
  const overtaken = (w: Worker, event: WorkerEvent) => w !== worker && event.e === "ok" && event.token > token;
  const higherSeen = live.some((other) => other.events.some((event) => overtaken(other, event)));
  const overtook = higherSeen || (await nextEvent(overtaken, Math.max(0, MAX_PAUSE - (Date.now() - stopped)))) !== undefined;
  const after = worker.events.length;
  worker.child.kill("SIGCONT");
  return { worker, token, overtaken: overtook, after };
}

/** Contends for DURATION ms (longer until two late writes were refused) with WORKERS workers on `driver`, pausing holders; returns the pauses. */
async function contend(driver: string, options: Record<string, unknown>): Promise<{ workers: Worker[]; pauses: Pause[] }> {
  live = Array.from({ length: WORKERS }, (_, index) => startWorker(`w${index}`, driver, options));
  const workers = live;
  // Contention starts when every worker is connected: a start on a loaded machine takes seconds.
  await waitFor(() => workers.every((worker) => worker.events.some((event) => event.e === "ready")), 60_000, "every worker to connect");
  const pauses: Pause[] = [];
  const end = Date.now() + DURATION;
  // Past DURATION only while fewer than two late writes were refused yet (a loaded machine), up to a bound.
  const bound = end + 60_000;
  while (Date.now() < end || (pauses.filter(refusedLate).length < 2 && Date.now() < bound)) {
    const pause = await pauseOne();
    if (pause) pauses.push(pause);
    await sleep(randomBetween(50, 300));
  }
  for (const worker of workers) worker.child.stdin!.end();
  const codes = await Promise.all(workers.map((worker) => Promise.race([worker.exited, sleep(60_000).then(() => "hung")])));
  expect(
    codes.map((code, index) => ({ worker: workers[index]!.id, code, stderr: workers[index]!.stderr })),
    "every worker exits by itself, with 0",
  ).toEqual(workers.map((worker) => ({ worker: worker.id, code: 0, stderr: "" })));
  return { workers, pauses };
}

async function waitFor(condition: () => boolean, limit: number, what: string): Promise<void> {
  const deadline = Date.now() + limit;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(live.map((worker) => ({ id: worker.id, events: worker.events.length, stderr: worker.stderr })))}`);
    await sleep(20);
  }
}

/** The log as stored: entries in log order (keys are zero-padded positions). */
async function readLog(storage: Storage): Promise<Entry[]> {
  const count = (await storage.getItem<number>("count")) ?? 0;
  const keys = (await storage.getKeys("log")).sort();
  expect(keys, "the log has one entry per position up to count").toHaveLength(count);
  const items = await storage.getItems(keys);
  return items.map(({ value }) => value as Entry);
}

/** Runs the proof on `driver` (workers open it with `options`; the test reads it through `open()`). */
async function prove(driver: string, options: Record<string, unknown>, open: () => Driver): Promise<void> {
  const { workers, pauses } = await contend(driver, options);
  const storage = createStorage({ driver: open() });
  try {
    const log = await readLog(storage);
    checkLog(log, workers, pauses);
    const count = (kind: WorkerEvent["e"]) => workers.reduce((sum, worker) => sum + worker.events.filter((event) => event.e === kind).length, 0);
    // Evidence in the test output: how much contention and how many pauses the proof covered.
    console.info(
      `[fencing proof] ${driver}: ${log.length} appends by ${count("hold")} holdings, ${pauses.length} pauses (${pauses.filter((pause) => pause.overtaken).length} overtaken, ${pauses.filter(refusedLate).length} late appends refused), ${count("fenced")} fenced in all, ${count("conflict")} conflicts, ${count("lost")} lost leases`,
    );
  } finally {
    await storage.clear();
    await storage.dispose();
  }
}

/** Where the proof's assertions live: see the file's opening comment. */
function checkLog(log: Entry[], workers: Worker[], pauses: Pause[]): void {
  const excerpt = (at: number) => JSON.stringify(log.slice(Math.max(0, at - 5), at + 5));
  // Tokens never go down, so each token's entries are contiguous: no two holders' appends interleave.
  for (let index = 1; index < log.length; index++) {
    if (log[index]!.token < log[index - 1]!.token) throw new Error(`token went down at log position ${index}: ${excerpt(index)}`);
  }
  // Every token in the log was granted, to the worker that wrote it, and to no one else.
  const grantedTo = new Map<number, string>();
  for (const worker of workers) {
    for (const event of worker.events) {
      if (event.e !== "hold") continue;
      expect(grantedTo.get(event.token), `token ${event.token} granted twice`).toBeUndefined();
      grantedTo.set(event.token, worker.id);
    }
  }
  log.forEach((entry, index) => {
    if (grantedTo.get(entry.token) !== entry.worker) throw new Error(`log position ${index} holds token ${entry.token} written by ${entry.worker}, granted to ${grantedTo.get(entry.token)}: ${excerpt(index)}`);
  });
  // What the workers saw is what the log holds: every append that returned is there once, no fenced one is.
  const position = new Map(log.map((entry, index) => [`${entry.worker}#${entry.seq}`, index]));
  expect(position.size, "no append is in the log twice").toBe(log.length);
  for (const worker of workers) {
    for (const event of worker.events) {
      if (event.e === "ok") expect(position.has(`${worker.id}#${event.seq}`), `${worker.id}'s append ${event.seq} returned, so it is in the log`).toBe(true);
      if (event.e === "fenced") expect(position.has(`${worker.id}#${event.seq}`), `${worker.id}'s append ${event.seq} was fenced out, so it is not in the log`).toBe(false);
    }
  }
  checkPauses(log, pauses, position);
}

/** The appends a paused holder reported from its SIGCONT on, under the token it held when stopped. */
function lateWrites(pause: Pause): WorkerEvent[] {
  return pause.worker.events.slice(pause.after).filter((event) => (event.e === "ok" || event.e === "fenced") && event.token === pause.token);
}

/** Whether a holder resumed after a higher token wrote had its next append refused with E_FENCED. */
function refusedLate(pause: Pause): boolean {
  return pause.overtaken && lateWrites(pause)[0]?.e === "fenced";
}

/**
 * A paused holder resumed after a higher token wrote has its next append
 * refused with E_FENCED (unless that append had committed before the pause:
 * then it sits before the higher token), and at least one did.
 */
function checkPauses(log: Entry[], pauses: Pause[], position: Map<string, number>): void {
  let refused = 0;
  for (const pause of pauses) {
    if (refusedLate(pause)) refused++;
    for (const event of lateWrites(pause)) {
      if (event.e !== "ok") continue;
      const at = position.get(`${pause.worker.id}#${event.seq}`)!;
      const higher = log.findIndex((entry) => entry.token > pause.token);
      if (higher !== -1 && at > higher) throw new Error(`${pause.worker.id}'s late append ${event.seq} (token ${pause.token}) landed after token ${log[higher]!.token}`);
    }
  }
  expect(refused, `a resumed holder's late write was refused with E_FENCED (${pauses.length} pauses, ${pauses.filter((pause) => pause.overtaken).length} overtaken)`).toBeGreaterThan(0);
}

/** Opens the store once (a repository, a schema, a table made) so that the workers do not race to make it. */
async function prepare(driver: Driver): Promise<void> {
  const storage = createStorage({ driver });
  await storage.getItem("count");
  await storage.dispose();
}

const timeout = DURATION + 120_000;

describe("fencing proof: 8 processes, holders paused past their lease", () => {
  it("git-refs", { timeout }, async () => {
    const dir = tempDir("fence-proof-git-refs");
    await prepare(gitRefs({ dir })); // the repository exists before the workers race
    await prove("git-refs", { dir }, () => gitRefs({ dir }));
  });

  it("sqlite", { timeout }, async () => {
    const path = join(tempDir("fence-proof-sqlite"), "proof.db");
    await prepare(sqlite({ path })); // the schema exists before the workers race
    await prove("sqlite", { path }, () => sqlite({ path }));
  });

  it("redis", { timeout }, async ({ skip }) => {
    if (!(await serviceUp("Redis", redisUrl))) skip("no Redis");
    const options = { url: redisUrl, base: `${RUN}:${randomUUID()}` };
    await prove("redis", options, () => redis(options));
  });

  describe("postgres", () => {
    const { tables, fresh } = runTables();
    afterAll(async () => {
      if (tables.length === 0) return;
      const client = new pg.Client({ connectionString: postgresUrl });
      await client.connect();
      for (const table of tables) await client.query(`DROP TABLE IF EXISTS "${table}"`);
      await client.end();
    });
    it("postgres", { timeout }, async ({ skip }) => {
      if (!(await serviceUp("PostgreSQL", postgresUrl))) skip("no PostgreSQL");
      const options = { url: postgresUrl, table: fresh("fenceproof") };
      await prepare(postgres(options)); // the table exists before the workers race
      await prove("postgres", options, () => postgres(options));
    });
  });

  it("etcd", { timeout }, async ({ skip }) => {
    if (!(await serviceUp("etcd", etcdHosts))) skip("no etcd");
    const options = { hosts: etcdHosts, prefix: `${RUN}/` };
    try {
      await prove("etcd", options, () => etcd(options));
    } finally {
      const admin = new Etcd3({ hosts: etcdHosts });
      await admin.delete().prefix(options.prefix);
      admin.close();
    }
  });
});
