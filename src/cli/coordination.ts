/**
 * `stowage lock`, `stowage locks` and `stowage receipts`: the coordination
 * module (src/coordination, docs/coordination.md) from the shell. A command
 * runs as a child process (an argument array, never a shell string) while
 * the CLI holds and renews the lock.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants } from "node:os";
import { Option, type Command } from "commander";
import { createLocks, type Lock } from "../coordination/locks.js";
import { createReceipts, type Receipt } from "../coordination/receipts.js";
import { isStorageError, StorageError } from "../core/errors.js";
import type { Storage } from "../core/types.js";
import { withStorage, write, type CliIo } from "./program.js";
import { DEFAULT_STORE } from "./storeUrl.js";

/** The exit code of `stowage lock` when the lock is not acquired within `--wait` (sysexits' EX_TEMPFAIL: try again later). */
export const LOCK_TIMEOUT_EXIT = 75;
/** How long a command has after SIGTERM, once the lock is lost, before SIGKILL (`--kill-after`): time to clean up, not to go on. */
const DEFAULT_KILL_AFTER = 5000;
/** The most output a receipt keeps (the last part: a failing command says why at its end). */
const MAX_OUTPUT = 1024 * 1024;
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

interface LockCommandOptions {
  store: string;
  prefix: string;
  ttl?: number;
  wait: number;
  killAfter: number;
  receipt?: boolean;
}

interface LocksCommandOptions {
  store: string;
  prefix: string;
  json?: boolean;
}

interface ReceiptsCommandOptions {
  store: string;
  recent: number;
  command?: string;
  since?: number;
  json?: boolean;
}

/** How a child ended, and what it printed when that was captured. */
interface ChildResult {
  exitCode: number;
  output: string;
  truncated: boolean;
}

function invalid(message: string): StorageError {
  return new StorageError("E_INVALID_OPTION", message);
}

/** A parser for an integer option of at least `min` (commander calls it with the text given). */
function integerAtLeast(flag: string, min: number, what: string): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(number) || number < min) throw invalid(`${flag} takes ${what}, got ${JSON.stringify(value)}`);
    return number;
  };
}

/**
 * `--since`: a duration back from now (`90s`, `15m`, `2h`, `7d`, `500ms`, `1w`)
 * or a date (`2026-12-07`, `2026-12-07T10:00:00Z`). Dates must start with
 * YYYY-MM-DD: `Date.parse` takes "1" as the year 2001.
 */
export function parseSince(value: string, now = Date.now()): number {
  const duration = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)$/.exec(value);
  if (duration) return Math.max(0, Math.floor(now - Number(duration[1]) * DURATION_UNITS[duration[2]!]!));
  const date = /^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(value) ? Date.parse(value) : NaN;
  if (Number.isNaN(date) || date < 0) throw invalid(`--since takes a duration (90s, 15m, 2h, 7d) or a date (2026-12-07, 2026-12-07T10:00:00Z), got ${JSON.stringify(value)}`);
  return date;
}

/** A signal death as shells report it: 128 + the signal's number. */
function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? constants.signals[signal] : 0);
}

/** What the child finds in its environment to know, and fence with, the lock it runs under. */
function lockEnv(lock: Lock, store: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    STOWAGE_STORE: store,
    STOWAGE_LOCK_NAME: lock.name,
    STOWAGE_LOCK_TOKEN: String(lock.token),
    STOWAGE_LOCK_FENCE: lock.fenceId,
    STOWAGE_LOCK_OWNER: lock.owner,
  };
}

/** Keeps the last MAX_OUTPUT characters of what passes through. */
function outputTail(): { add(chunk: Buffer): void; text(): { output: string; truncated: boolean } } {
  let chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  return {
    add(chunk) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > 2 * MAX_OUTPUT) {
        const all = Buffer.concat(chunks);
        chunks = [all.subarray(all.length - MAX_OUTPUT)];
        size = MAX_OUTPUT;
        truncated = true;
      }
    },
    text() {
      const all = Buffer.concat(chunks);
      const kept = all.length > MAX_OUTPUT ? all.subarray(all.length - MAX_OUTPUT) : all;
      return { output: kept.toString("utf8"), truncated: truncated || kept.length < all.length };
    },
  };
}

/** Copies the child's stdout and stderr through to ours as they come, and keeps their tail for the receipt. */
function tee(child: ChildProcess, io: CliIo): () => { output: string; truncated: boolean } {
  const tail = outputTail();
  child.stdout?.on("data", (chunk: Buffer) => tail.add(chunk));
  child.stderr?.on("data", (chunk: Buffer) => tail.add(chunk));
  child.stdout?.pipe(io.stdout, { end: false });
  child.stderr?.pipe(process.stderr, { end: false });
  return () => tail.text();
}

/** The signals sent to the CLI that go on to the command's process group (the terminal's ^C, ^\\, a closed terminal, `kill`). */
const FORWARDED: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"];

/**
 * Sends `signal` to the child's process group (the child leads it: it was
 * started detached), so a `sh -c` wrapper's own children get it too, as they
 * would from the terminal. A group already gone (ESRCH) has nothing left to stop.
 *
 * @throws StorageError `E_IO` when the signal cannot be sent for another reason
 */
function signalGroup(child: ChildProcess | undefined, signal: NodeJS.Signals): void {
  if (child?.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return;
    throw new StorageError("E_IO", `cannot send ${signal} to the command (pid ${child.pid}): ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Lets the command follow the CLI's job control: ^Z (SIGTSTP) stops the
 * command's group and then the CLI itself; SIGCONT (fg, bg) resumes the group.
 * Needed because the detached group is in no terminal's foreground: the
 * terminal's SIGTSTP never reaches it, and a SIGTSTP sent to it would be
 * discarded (an orphaned process group), so SIGSTOP is used.
 * Returns the function that undoes it.
 */
function followJobControl(child: () => ChildProcess | undefined): () => void {
  const stop = () => {
    signalGroup(child(), "SIGSTOP");
    process.kill(process.pid, "SIGSTOP");
  };
  const resume = () => signalGroup(child(), "SIGCONT");
  process.on("SIGTSTP", stop);
  process.on("SIGCONT", resume);
  return () => {
    process.off("SIGTSTP", stop);
    process.off("SIGCONT", resume);
  };
}

/**
 * Runs `argv` holding `lock`, in a process group (and session) of its own so
 * that a signal sent to the CLI's group (^C in a terminal) reaches the command
 * once, through the CLI, not twice. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent
 * to the CLI go on to the command's group; a lost lock stops it with SIGTERM,
 * then SIGKILL after `--kill-after` ms. Resolves when it exits.
 *
 * @throws StorageError `E_NOT_FOUND` when the program does not exist, `E_IO` when it cannot be started
 */
function runChild(argv: string[], lock: Lock, options: LockCommandOptions, io: CliIo): Promise<ChildResult> {
  const [file, ...args] = argv as [string, ...string[]];
  // Listening before the spawn: a signal that came between it and the listening would kill the CLI and orphan the command.
  // Node runs signal listeners from its event loop, so by the time one runs the spawn below has returned.
  let started: ChildProcess | undefined;
  const forward = (signal: NodeJS.Signals) => signalGroup(started, signal);
  for (const signal of FORWARDED) process.on(signal, forward);
  const stopFollowing = followJobControl(() => started);
  const stopListening = () => {
    for (const signal of FORWARDED) process.off(signal, forward);
    stopFollowing();
  };
  try {
    started = spawn(file, args, { env: lockEnv(lock, options.store), detached: true, stdio: options.receipt ? ["inherit", "pipe", "pipe"] : "inherit" });
  } catch (error) {
    stopListening();
    io.exitCode = 126;
    throw new StorageError("E_IO", `cannot run ${JSON.stringify(file)}: ${(error as Error).message}`, { cause: error });
  }
  const child = started;
  const captured = options.receipt ? tee(child, io) : () => ({ output: "", truncated: false });
  let killTimer: NodeJS.Timeout | undefined;
  const stopOnLoss = () => {
    const why = lock.signal.reason instanceof Error ? lock.signal.reason.message : "lock lost";
    process.stderr.write(`stowage: ${why}: stopping the command (SIGTERM, SIGKILL after ${options.killAfter} ms)\n`);
    signalGroup(child, "SIGTERM");
    // A command that ignores SIGTERM must not run on unlocked.
    killTimer = setTimeout(() => {
      process.stderr.write(`stowage: the command outlived SIGTERM by ${options.killAfter} ms: SIGKILL\n`);
      signalGroup(child, "SIGKILL");
    }, options.killAfter);
  };
  lock.signal.addEventListener("abort", stopOnLoss, { once: true });
  // A listener added to a signal that already aborted never fires: the lock can be lost before this line (the CLI
  // paused past its lease between the spawn and here, by the command itself perhaps), and the command must not run on.
  if (lock.signal.aborted) stopOnLoss();
  const cleanUp = () => {
    stopListening();
    lock.signal.removeEventListener("abort", stopOnLoss);
    clearTimeout(killTimer);
  };
  return new Promise((resolve, reject) => {
    child.once("error", (error: NodeJS.ErrnoException) => {
      cleanUp();
      const code = error.code === "ENOENT" ? "E_NOT_FOUND" : "E_IO";
      io.exitCode = error.code === "ENOENT" ? 127 : 126;
      reject(new StorageError(code, `cannot run ${JSON.stringify(file)}: ${error.message}`, { cause: error }));
    });
    // "close", not "exit": the captured output is complete only once the pipes closed.
    child.once("close", (code, signal) => {
      cleanUp();
      resolve({ exitCode: exitCodeOf(code, signal), ...captured() });
    });
  });
}

/** The receipt of one `stowage lock --receipt` run, with the lock in its metadata. */
function receiptOf(argv: string[], lock: Lock, started: number, result: ChildResult): Receipt {
  const lostReason = lock.signal.aborted ? lock.signal.reason : undefined;
  return {
    id: `${started.toString(36)}-${randomBytes(6).toString("hex")}`,
    command: argv.join(" "),
    timestamp: started,
    duration: Date.now() - started,
    exitCode: result.exitCode,
    output: result.output,
    ...(lostReason === undefined ? {} : { error: lostReason instanceof Error ? lostReason.message : String(lostReason) }),
    metadata: { argv, lock: lock.name, token: lock.token, fenceId: lock.fenceId, owner: lock.owner, ...(result.truncated ? { outputTruncated: true } : {}) },
  };
}

/** `stowage lock <name> -- <command…>`: the command's exit code becomes ours (io.exitCode). */
async function lockAndRun(io: CliIo, name: string, argv: string[], options: LockCommandOptions): Promise<void> {
  if (argv.length === 0) throw invalid("lock needs a command to run: stowage lock <name> -- <command…>");
  await withStorage(options, async (storage) => {
    const locks = createLocks(storage, { prefix: options.prefix });
    // Made before the lock is taken, so a store without transactions is refused before the command runs.
    const receipts = options.receipt ? createReceipts(storage) : undefined;
    const acquire = { wait: options.wait, ...(options.ttl === undefined ? {} : { ttl: options.ttl }) };
    await locks
      .withLock(
        name,
        async (lock) => {
          const started = Date.now();
          const result = await runChild(argv, lock, options, io);
          io.exitCode = result.exitCode;
          // Stored while the lock is still held, so receipts of one lock are in the order the commands ran.
          await receipts?.store(receiptOf(argv, lock, started, result));
        },
        acquire,
      )
      .catch((error: unknown) => {
        if (isStorageError(error, "E_LOCK_TIMEOUT")) io.exitCode = LOCK_TIMEOUT_EXIT;
        throw error;
      });
  });
}

/** Epoch ms as an ISO time (UTC). */
const iso = (ms: number) => new Date(ms).toISOString();

/** `stowage locks`: one line (or JSON line) per held lock. */
async function listLocks(io: CliIo, options: LocksCommandOptions): Promise<void> {
  await withStorage(options, async (storage) => {
    const held = await createLocks(storage, { prefix: options.prefix }).list();
    for (const info of held) {
      const line = options.json
        ? JSON.stringify(info)
        : [info.name, `token=${info.token}`, `owner=${info.owner}`, `expires=${iso(info.expiresAt)}`, `pid=${info.pid}`, `host=${info.host}`].join("\t");
      await write(io, line + "\n");
    }
  });
}

/** `stowage receipts`: the newest receipts first, one line (or JSON line) each. */
async function listReceipts(io: CliIo, options: ReceiptsCommandOptions): Promise<void> {
  await withStorage(options, async (storage: Storage) => {
    const filter = options.command === undefined ? {} : { command: options.command };
    const found = await createReceipts(storage).find(filter, { limit: options.recent, ...(options.since === undefined ? {} : { since: options.since }) });
    for (const receipt of found) {
      const line = options.json
        ? JSON.stringify(receipt)
        : [iso(receipt.timestamp), `exit=${receipt.exitCode}`, `${receipt.duration}ms`, receipt.id, receipt.command].join("\t");
      await write(io, line + "\n");
    }
  });
}

/** Registers `lock`, `locks` and `receipts` (docs/cli.md, "Locks and receipts"). */
export function registerCoordination(program: Command, io: CliIo): void {
  const store = () => new Option("-s, --store <url>", "store URL (locks need a driver flagged cas, receipts one flagged transactions: sqlite:, postgres://, …)").default(DEFAULT_STORE);
  const prefix = () => new Option("--prefix <key>", "key under which the lock records live (createLocks' prefix)").default("locks");

  program
    .command("lock <name> [command...]")
    .description("run a command while holding lock <name> (renewed); exits with the command's exit code")
    .addOption(store())
    .addOption(prefix())
    .option("--ttl <ms>", "lease length in ms, renewed every ttl/3 (default 30000)", integerAtLeast("--ttl", 1, "milliseconds >= 1"))
    .option("--wait <ms>", "how long to wait for the lock", integerAtLeast("--wait", 0, "milliseconds >= 0"), 0)
    .option("--kill-after <ms>", "when the lock is lost, how long the command has after SIGTERM before SIGKILL", integerAtLeast("--kill-after", 0, "milliseconds >= 0"), DEFAULT_KILL_AFTER)
    .option("--receipt", "record a receipt of the run (its stdout and stderr are captured as they pass through)")
    .action((name: string, argv: string[], options: LockCommandOptions) => lockAndRun(io, name, argv, options));

  program
    .command("locks")
    .description("list held locks: name, token, owner, expiry, pid, host")
    .addOption(store())
    .addOption(prefix())
    .option("--json", "one JSON line per lock")
    .action((options: LocksCommandOptions) => listLocks(io, options));

  program
    .command("receipts")
    .description("list execution receipts, newest first")
    .addOption(store())
    .option("-n, --recent <n>", "at most this many (the newest)", integerAtLeast("--recent", 1, "an integer >= 1"), 20)
    .option("--command <command>", "only receipts of this command (as `stowage lock` records it: its arguments joined by spaces)")
    .option("--since <date|duration>", "only receipts from this date, or from this long ago (90s, 15m, 2h, 7d)", (value: string) => parseSince(value))
    .option("--json", "one JSON line per receipt, output and metadata included")
    .action((options: ReceiptsCommandOptions) => listReceipts(io, options));
}
