// A child process that increments a counter ref N times by compare-and-swap,
// through stowage's engine or through the stock git CLI: `casWorker.ts <dir> <ref> <count> engine|git [print]`.
// With `print`, the engine prints each value once its update has returned.
import { execFileSync } from "node:child_process";
import { isStorageError } from "../../../src/core/errors.js";
import { Repository, ZERO_ID } from "../../../src/git/index.js";

const [dir, ref, countText, mode, print] = process.argv.slice(2) as [string, string, string, string, string | undefined];
const count = Number(countText);

function engine(): void {
  const repo = Repository.open(dir, { lockTimeout: 5000 });
  for (let done = 0; done < count; ) {
    const current = repo.refs.resolve(ref);
    const value = current === undefined ? 0 : Number(repo.readBlob(current).toString());
    const next = repo.writeBlob(Buffer.from(String(value + 1)));
    try {
      repo.refs.update(ref, next, { expected: current ?? null, message: `increment to ${value + 1}` });
      done++;
      if (print === "print") process.stdout.write(`${value + 1}\n`);
    } catch (error) {
      if (!isStorageError(error, "E_CONFLICT")) throw error;
    }
  }
}

function git(args: string[], input?: string): string {
  return execFileSync("git", args, { cwd: dir, input, stdio: ["pipe", "pipe", "pipe"] }).toString().trim();
}

function cli(): void {
  for (let done = 0; done < count; ) {
    let current = ZERO_ID;
    try {
      current = git(["rev-parse", "--verify", "-q", ref]);
    } catch (error) {
      if ((error as { status?: number }).status !== 1) throw error;
    }
    const value = current === ZERO_ID ? 0 : Number(git(["cat-file", "blob", current]));
    const next = git(["hash-object", "-w", "--stdin"], String(value + 1));
    try {
      git(["update-ref", ref, next, current]);
      done++;
    } catch (error) {
      // update-ref fails (status 128) when the old value differs or the lock is held: retry.
      if ((error as { status?: number }).status !== 128) throw error;
    }
  }
}

if (mode === "git") cli();
else engine();
