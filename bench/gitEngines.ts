import { rmSync } from "node:fs";
import { createStorage, type Driver, type Storage } from "stowage";
import git from "stowage/drivers/git";
import gitNotes from "stowage/drivers/git-notes";
import gitObjects from "stowage/drivers/git-objects";
import { median, tempRepo, timed as timeAsync } from "./helpers.js";

/**
 * The two "blobs in a tree on a ref, with group commit" engines side by side (issue #16, docs/git-engine.md,
 * "Why two engines"): the git driver's key store (src/git/store/kvStore.ts, incremental tree edits, optimistic
 * CAS) and TreeRef (src/git/store/treeRef.ts: a flat map of every name, the whole tree rebuilt under the ref's
 * lock), under git-notes and git-objects. For a store already holding `size` keys, it times one write (its own
 * commit) and one read, both sync, a group commit of 100 async writes, and the first read after another
 * process moved the ref (a fresh driver on the repository). Medians of several rounds.
 *
 * Run: npx tsx bench/gitEngines.ts [sizes…] (default 100 1000 10000; through the root tsconfig, on the sources).
 */

const ENGINES: Record<string, (dir: string) => Driver> = {
  "git (kvStore)": (dir) => git({ dir }),
  "git-notes (TreeRef)": (dir) => gitNotes({ dir }),
  // The ref named: a second driver on one index in a process (the fresh driver below) shares it on purpose.
  "git-objects (TreeRef)": (dir) => gitObjects({ dir, ref: "refs/stowage/objects" }),
};
const WRITES = 100;
const GROUP = 100;
const REOPENS = 5;

const value = (i: number, round = 0) => ({ id: i, name: `user-${i}`, email: `user${i}@example.com`, round });
const keyOf = (i: number) => `users:${Math.floor(i / 100)}:${i}`;

function timeEach(count: number, action: (i: number) => unknown): number {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    action(i);
    times.push(performance.now() - start);
  }
  return median(times);
}


interface Row {
  engine: string;
  size: number;
  write: number;
  read: number;
  group: number;
  reopenRead: number;
}

async function measure(engine: string, make: (dir: string) => Driver, size: number): Promise<Row> {
  const dir = tempRepo("engines");
  const storage: Storage = createStorage({ driver: make(dir) });
  try {
    // Filled in one commit (not measured).
    await storage.setItems(Array.from({ length: size }, (_, i) => ({ key: keyOf(i), value: value(i) })));
    const write = timeEach(WRITES, (i) => storage.setItemSync(keyOf((i * 7919) % size), value(i, 1)));
    const read = timeEach(WRITES, (i) => storage.getItemSync(keyOf((i * 104729) % size)));
    const groups: number[] = [];
    for (let round = 0; round < 5; round++) {
      groups.push(await timeAsync(() => Promise.all(Array.from({ length: GROUP }, (_, i) => storage.setItem(keyOf((i * 31 + round) % size), value(i, round + 2))))));
    }
    // A fresh driver reads the tip as a process would after another one wrote.
    const reopens: number[] = [];
    for (let round = 0; round < REOPENS; round++) {
      const other = createStorage({ driver: make(dir) });
      reopens.push(await timeAsync(async () => other.getItemSync(keyOf(round))));
      await other.dispose();
    }
    return { engine, size, write, read, group: median(groups), reopenRead: median(reopens) };
  } finally {
    await storage.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchGitEngines(sizes: number[] = [100, 1_000, 10_000]): Promise<Row[]> {
  const rows: Row[] = [];
  console.log(`\n## git engines: one sync write (own commit), one sync read, ${GROUP} async writes (one group commit), first read of a fresh driver; medians, ms`);
  console.log("| engine | keys stored | write | read | group of 100 | first read, fresh driver |");
  console.log("|---|---|---|---|---|---|");
  for (const size of sizes) {
    for (const [engine, make] of Object.entries(ENGINES)) {
      const row = await measure(engine, make, size);
      rows.push(row);
      const ms = (n: number) => n.toFixed(3);
      console.log(`| ${engine} | ${size.toLocaleString("en-US")} | ${ms(row.write)} | ${ms(row.read)} | ${ms(row.group)} | ${ms(row.reopenRead)} |`);
    }
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  await benchGitEngines(sizes.length > 0 ? sizes : undefined);
}
