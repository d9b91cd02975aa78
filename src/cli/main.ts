#!/usr/bin/env node
import { CommanderError } from "commander";
import { isStorageError, StorageError } from "../core/errors.js";
import { buildProgram, type CliIo } from "./program.js";

/** Commander's outcomes that are no failure: help or a version asked for, printed on stdout. */
const ANSWERED = new Set(["commander.helpDisplayed", "commander.version"]);

/** What a failure prints: `E_CODE: message`, whatever threw it. */
function describe(error: unknown): string {
  if (isStorageError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof CommanderError) {
    // A bare `stowage` asks commander for help on stderr: as a failure it is one line too.
    const message = error.code === "commander.help" ? "no command given (stowage --help lists them)" : error.message.replace(/^error: /, "");
    return `E_INVALID_OPTION: ${message}`;
  }
  // Anything else is a failure below stowage's own checks: its message still fits on one line.
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return `E_DRIVER: ${message}`;
}

/**
 * Runs the CLI; every failure is one line on stderr (`stowage: E_CODE: message`)
 * and exit code 1, unless the command chose another (`stowage lock`: its
 * child's code, 75 for a lock not acquired in time).
 */
async function main(argv: string[]): Promise<number> {
  const io: CliIo = { stdout: process.stdout, stdin: process.stdin };
  const program = buildProgram(io);
  // A closed stdout (`stowage keys | head -1`) also emits its failure as an event, which would crash the process with a stack trace.
  let stdoutFailure: Error | undefined;
  process.stdout.on("error", (error) => (stdoutFailure ??= error));
  try {
    await program.parseAsync(argv);
    if (stdoutFailure) throw new StorageError("E_IO", `Cannot write to stdout: ${stdoutFailure.message}`, { cause: stdoutFailure });
    return io.exitCode ?? 0;
  } catch (error) {
    if (error instanceof CommanderError && ANSWERED.has(error.code)) return 0;
    process.stderr.write(`stowage: ${describe(error).replace(/\s*\n\s*/g, " ")}\n`);
    // A failure never exits 0, even after a command chose 0 (a receipt that could not be stored after the child succeeded).
    return io.exitCode || 1;
  }
}

process.exitCode = await main(process.argv);
