#!/usr/bin/env node
import { CommanderError } from "commander";
import { isStorageError } from "../core/errors.js";
import { buildProgram } from "./program.js";

/** Runs the CLI; failures become one line on stderr and a non-zero exit code. */
async function main(argv: string[]): Promise<number> {
  const program = buildProgram({ stdout: process.stdout, stdin: process.stdin });
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    // Commander has already printed its own usage error and help.
    if (error instanceof CommanderError) return error.exitCode;
    const message = isStorageError(error) ? `${error.code}: ${error.message}` : String(error);
    process.stderr.write(`stowage: ${message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv);
