import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isStorageError } from "../../src/core/errors.js";
import { tempDir } from "../helpers/tempDir.js";

// Stock git, isolated from the user's and system's configuration.
const home = mkdtempSync(join(tmpdir(), "stowage-git-home-"));
export const gitEnv: NodeJS.ProcessEnv = {
  ...process.env,
  HOME: home,
  XDG_CONFIG_HOME: home,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_AUTHOR_NAME: "Ada",
  GIT_AUTHOR_EMAIL: "ada@example.com",
  GIT_COMMITTER_NAME: "Ada",
  GIT_COMMITTER_EMAIL: "ada@example.com",
  GIT_AUTHOR_DATE: "1700000000 +0100",
  GIT_COMMITTER_DATE: "1700000000 +0100",
};

/** Runs stock git with an argument array; returns stdout as bytes. */
export function gitBytes(cwd: string, args: string[], input?: Uint8Array | string): Buffer {
  return execFileSync("git", args, { cwd, env: gitEnv, input, stdio: ["pipe", "pipe", "pipe"], maxBuffer: 256 * 1024 * 1024 });
}

/** Runs stock git; returns stdout as trimmed text. */
export function git(cwd: string, args: string[], input?: Uint8Array | string): string {
  return gitBytes(cwd, args, input).toString("utf8").trim();
}

/** Runs stock git expecting failure; returns its exit status and stderr. */
export function gitFails(cwd: string, args: string[]): { status: number; stderr: string } {
  try {
    execFileSync("git", args, { cwd, env: gitEnv, stdio: ["ignore", "pipe", "pipe"] });
    return { status: 0, stderr: "" };
  } catch (error) {
    const failure = error as { status: number; stderr: Buffer };
    return { status: failure.status, stderr: failure.stderr.toString() };
  }
}

/** A new bare repository made by stock git. */
export function gitInitBare(label = "git"): string {
  const dir = tempDir(label);
  git(dir, ["init", "--bare", "-q", "-b", "main"]);
  return dir;
}

/** The StorageError code `run` throws, or undefined when it returns (other errors propagate). */
export function errorCode(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    if (isStorageError(error)) return error.code;
    throw error;
  }
  return undefined;
}
