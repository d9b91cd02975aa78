/**
 * The slice harness every side-by-side bench shares: targets of one group
 * (a target and its peer) take turns in short slices, so that load on the
 * machine falls on each alike, and the ratios come from one run.
 */

/** What the harness needs of a target: its name, and the name of the target it is compared with. */
export interface Measured {
  name: string;
  peer?: string;
}

/** `ops` operations per sample, so the harness's own per-sample cost does not blur the ratios. */
export type SliceWorkload<T> = { name: string; ops: number; run: (target: T, i: number) => unknown };

/**
 * Each workload runs in slices: every target in turn runs for SLICE_MS, the
 * order rotating, SLICES times over (after WARMUP_SLICES untimed ones), and a
 * target's ops/s are its operations over its time in all slices. Load that
 * comes and goes on the machine, and the scheduler's habit of sometimes
 * running a client and its server on one core (a round trip then takes half
 * as long on this VM), so fall on every target alike. Best-of passes of half
 * a second, run one target after the other, let one lucky pass decide a
 * ratio: the same redis driver measured 0.9x and 1.8x of itself that way.
 */
const SLICES = 40;
const SLICE_MS = 25;
const WARMUP_SLICES = 4;
/**
 * Slow operations (a batch of 1,000 writes to a server takes 15-50 ms) get
 * slices on until each target has run this many samples or for MAX_MS, so
 * that one slow operation weighs little against a target's whole time (40
 * slices gave such targets one or two samples each).
 */
const MIN_SAMPLES = 100;
const MAX_MS = 4000;

const collectGarbage = (globalThis as { gc?: (options?: { type: "minor" | "major" }) => void }).gc;

/**
 * Targets that are compared, directly or through a shared peer: each group
 * is measured on its own. Interleaving every target with every other would
 * give the first target of a group, after another group's slice, a server
 * fresh from idling, which the scheduler tends to put on the client's own
 * core: raw ioredis ran 2.3x its own speed that way, in every slice.
 */
function comparedGroups<T extends Measured>(targets: T[]): T[][] {
  const groups: T[][] = [];
  const groupOf = new Map<string, T[]>();
  for (const target of targets) {
    const joined = groupOf.get(target.name) ?? (target.peer === undefined ? undefined : groupOf.get(target.peer));
    const group = joined ?? [];
    if (!joined) groups.push(group);
    group.push(target);
    groupOf.set(target.name, group);
    if (target.peer !== undefined) groupOf.set(target.peer, group);
  }
  return groups;
}

/** Ops/s of each target on `workload`, measured in interleaved slices (see SLICES) within its group. */
export async function measure<T extends Measured>(workload: SliceWorkload<T>, targets: T[]): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  for (const group of comparedGroups(targets)) Object.assign(result, await measureGroup(workload, group));
  return result;
}

async function measureGroup<T extends Measured>(workload: SliceWorkload<T>, targets: T[]): Promise<Record<string, number>> {
  const next = targets.map(() => 0);
  const ops = targets.map(() => 0);
  const ms = targets.map(() => 0);
  const samples = targets.map(() => 0);
  const enough = () => targets.every((_, t) => samples[t]! >= MIN_SAMPLES || ms[t]! >= MAX_MS);
  collectGarbage?.({ type: "major" });
  for (let slice = -WARMUP_SLICES; slice < SLICES || !enough(); slice++) {
    for (let turn = 0; turn < targets.length; turn++) {
      const t = (slice + WARMUP_SLICES + turn) % targets.length;
      // The young garbage of the target before stays out of this one's time.
      collectGarbage?.({ type: "minor" });
      const start = performance.now();
      let now = start;
      let done = 0;
      let runs = 0;
      try {
        do {
          await workload.run(targets[t]!, next[t]!++);
          done += workload.ops;
          runs++;
          now = performance.now();
        } while (now - start < SLICE_MS);
      } catch (error) {
        throw new Error(`${workload.name} on ${targets[t]!.name} failed`, { cause: error });
      }
      if (slice < 0) continue;
      ops[t]! += done;
      ms[t]! += now - start;
      samples[t]! += runs;
    }
  }
  return Object.fromEntries(targets.map((target, t) => [target.name, (ops[t]! / ms[t]!) * 1000]));
}

export const format = (n: number) => Math.round(n).toLocaleString("en-US");

export function printWorkload(name: string, targets: Measured[], opsPerSecond: Record<string, number>): void {
  console.log(`\n${name}`);
  for (const target of targets) {
    const ops = opsPerSecond[target.name]!;
    const peerOps = target.peer ? opsPerSecond[target.peer] : undefined;
    const ratio = peerOps ? `  ${(ops / peerOps).toFixed(2)}x ${target.peer}` : "";
    console.log(`  ${target.name.padEnd(28)} ${format(ops).padStart(12)} ops/s${ratio}`);
  }
}

