import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import git from "../../src/drivers/git.js";
import gitRefs from "../../src/drivers/git-refs.js";
import { createStorage, type Driver } from "../../src/index.js";
import { manualClock } from "../helpers/clock.js";
import { tempDir } from "../helpers/tempDir.js";

// Repositories go to tmpfs where there is one: each injection point below gets a fresh one.
if (existsSync("/dev/shm")) process.env.TMPDIR = "/dev/shm";

/** The driver calls of A's read that B's write is slipped in front of. */
const WATCHED = ["getItem", "getItems", "getMeta", "hasItem", "removeItem", "commit"] as const;

type Call = { method: string; key: string };

/**
 * A's view of the store: every call of a watched method is recorded, and
 * `before(index)` runs (awaited) before the call with that index goes on.
 * `withCommit: false` hides the driver's commit, as a CAS driver without
 * transactions has it.
 */
function instrumented(inner: Driver, calls: Call[], before: (index: number) => Promise<void>, withCommit: boolean): Driver {
  const wrapped: Record<string, unknown> = { ...inner };
  delete wrapped.asyncWrites;
  if (!withCommit) {
    delete wrapped.commit;
    wrapped.flags = { ...inner.flags, transactions: false, sync: false };
  } else {
    wrapped.flags = { ...inner.flags, sync: false };
  }
  for (const method of WATCHED) {
    const original = (wrapped[method] ?? undefined) as ((...args: unknown[]) => unknown) | undefined;
    if (!original) continue;
    wrapped[method] = async (...args: unknown[]) => {
      const index = calls.length;
      const first = args[0];
      calls.push({ method, key: typeof first === "string" ? first : JSON.stringify(first) });
      await before(index);
      return original.apply(inner, args);
    };
  }
  return wrapped as unknown as Driver;
}

/**
 * A reads `k` once its expiry has passed, and B (another driver on the same
 * repository) refreshes `k` with the same content — the same etag on a
 * content-hash driver — just before A's call number `at`. Returns what B
 * sees afterwards and A's calls.
 */
async function raceAt(make: (dir: string) => Driver, at: number, withCommit: boolean) {
  const dir = tempDir("purge-race");
  const b = createStorage({ driver: make(dir) });
  const calls: Call[] = [];
  let armed = false;
  // A's clock starts at B's time and is moved past the expiry: B's refresh (1,000 s) stays ahead of it.
  const clock = manualClock(Date.now());
  const a = createStorage({
    clock,
    driver: instrumented(
      make(dir),
      calls,
      async (index) => {
        if (!armed || index !== at) return;
        await b.setItem("k", "same", { ttl: 1_000_000 });
      },
      withCommit,
    ),
  });
  await a.setItem("k", "same", { ttl: 1 });
  clock.advance(10);
  calls.length = 0;
  armed = true;
  await a.getItem("k");
  armed = false;
  const seen = { value: await b.getItem("k"), ttl: (await b.getMeta("k")).ttl, calls: [...calls] };
  await a.dispose();
  await b.dispose();
  return seen;
}

const drivers: [string, (dir: string) => Driver][] = [
  ["git", (dir) => git({ dir })],
  ["git-refs", (dir) => gitRefs({ dir })],
];

describe.each(drivers)("the expiry purge on %s (content-hash etags) never deletes a key another writer refreshed", (_name, make) => {
  it("with commit: value and sidecar go in one commit guarded by both versions, whenever the refresh lands", async () => {
    const { calls } = await raceAt(make, -1, true);
    expect(calls.some((call) => call.method === "commit")).toBe(true);
    for (let at = 0; at < calls.length; at++) {
      const seen = await raceAt(make, at, true);
      expect(seen.value, `refresh before call ${at} (${JSON.stringify(calls[at])})`).toBe("same");
      expect(seen.ttl, `refresh before call ${at}`).toBeGreaterThan(900_000);
    }
    // Unraced, the expired key is purged: value and sidecar both gone.
    const dir = tempDir("purge-plain");
    const clock = manualClock();
    const storage = createStorage({ driver: make(dir), clock });
    await storage.setItem("k", "v", { ttl: 1 });
    clock.advance(1);
    expect(await storage.getItem("k")).toBe(null);
    expect(await storage.getKeys()).toEqual([]);
    await storage.dispose();
  }, 120_000);

  it("CAS without commit: the sidecar goes first, guarded; only the documented gap between the two removals is left", async () => {
    const { calls } = await raceAt(make, -1, false);
    const removals = calls.flatMap((call, index) => (call.method === "removeItem" ? [index] : []));
    expect(removals.map((index) => calls[index]!.key)).toEqual(["k$", "k"]);
    for (let at = 0; at < calls.length; at++) {
      // The gap docs/core.md names: a same-content rewrite after the sidecar is removed matches the value's guard.
      if (at === removals[1]) continue;
      const seen = await raceAt(make, at, false);
      expect(seen.value, `refresh before call ${at} (${JSON.stringify(calls[at])})`).toBe("same");
      expect(seen.ttl, `refresh before call ${at}`).toBeGreaterThan(900_000);
    }
  }, 120_000);
});
