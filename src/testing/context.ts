import { afterEach, beforeEach, expect, it } from "vitest";
import { isStorageError, type StorageErrorCode } from "../core/errors.js";
import { DEFAULT_KEY_LIMITS, type Driver, type DriverFlags, type Storage } from "../core/types.js";

/** What the tests of a driver see. */
export interface DriverTestContext {
  storage: Storage;
  driver: Driver;
}

/**
 * How big the kit's large-data tests are. `"full"`: a 10 MB value and
 * 10,000 keys, for backends with real limits (packet sizes, request limits,
 * quotas). `"small"`: a 1 MB value and 1,000 keys, for suites whose store is
 * memory, where the full sizes find nothing more and only cost time.
 */
export type KitScale = "full" | "small";

export interface DriverTestOptions {
  /**
   * Name of the describe block.
   * @default "driver contract"
   */
  name?: string;
  /** Makes a driver over a fresh, empty store. Called once for the suite, and again by the mount and dispose tests. */
  driver: () => Driver | Promise<Driver>;
  /**
   * How long to wait for watch events and expiry, in ms.
   * @default 5000
   */
  timeout?: number;
  /**
   * TTL used by the expiry tests, in ms; raise it for drivers with coarse native expiry.
   * @default 200
   */
  ttl?: number;
  /**
   * Size of the large-value and many-keys tests ({@link KitScale}).
   * @default "full"
   */
  scale?: KitScale;
  /**
   * Titles of contract tests to skip, for a third-party driver with a known
   * gap (vitest reports each as skipped). stowage's own suites skip only what
   * the server behind the http driver lacks (docs/testing.md, `skip`).
   * @default []
   */
  skip?: string[];
  /** Your driver's own tests, run with the same context. */
  additionalTests?: (context: DriverTestContext) => void;
}

/** The sizes a {@link KitScale} stands for. */
export interface KitSizes {
  /** Bytes of the large value. */
  bigValue: number;
  /** Keys written by the many-keys test. */
  manyKeys: number;
  /** `batchSize` the many-keys test pages with. */
  batchSize: number;
  /** Keys read back in one `getItems`. */
  readBack: number;
}

const SIZES: Record<KitScale, KitSizes> = {
  full: { bigValue: 10 * 1024 * 1024, manyKeys: 10_000, batchSize: 700, readBack: 1000 },
  small: { bigValue: 1024 * 1024, manyKeys: 1000, batchSize: 70, readBack: 100 },
};

/** A capability a test needs: vitest reports the test as skipped on a driver without it. */
export interface Needs {
  when: (flags: DriverFlags) => boolean;
  /** Why it is skipped otherwise, shown by vitest. */
  note: string;
}

/** Needs `flag` declared (or, with `present: false`, not declared). */
export function needsFlag(flag: "sync" | "cas" | "transactions" | "history", present = true): Needs {
  return {
    when: (flags) => (flags[flag] === true) === present,
    note: present ? `the driver is not flagged ${flag}` : `the driver is flagged ${flag}`,
  };
}

/** What every capability module registers its tests with. */
export interface Kit {
  /** The suite's storage and driver, set before the tests run (read `context.driver.flags` inside a test). */
  context: DriverTestContext;
  timeout: number;
  ttl: number;
  sizes: KitSizes;
  /** Makes another driver over a fresh, empty store (options.driver). */
  makeDriver: () => Driver | Promise<Driver>;
  /**
   * Registers a contract test (inside a block that calls {@link clearAround}).
   * With `needs`, a driver without the capability reports the test as
   * skipped rather than passed.
   */
  test(title: string, fn: () => Promise<void>, needs?: Needs): void;
}

/**
 * Clears the store before and after every test of the describe block it is
 * called in: a test sets up what it reads, and leaves nothing to the next.
 */
export function clearAround(context: DriverTestContext): void {
  beforeEach(async () => {
    await context.storage.clear();
  });
  afterEach(async () => {
    await context.storage.clear();
  });
}

/** Builds the {@link Kit} the capability modules share. */
export function createKit(options: DriverTestOptions, context: DriverTestContext): Kit {
  const skipped = new Set(options.skip ?? []);
  return {
    context,
    timeout: options.timeout ?? 5000,
    ttl: options.ttl ?? 200,
    sizes: SIZES[options.scale ?? "full"],
    makeDriver: options.driver,
    test(title, fn, needs) {
      if (skipped.has(title)) return void it.skip(title, fn);
      it(title, async ({ skip }) => {
        // skip(note): a form vitest has had since 3.0, the oldest the peer range takes.
        if (needs && !needs.when(context.driver.flags ?? {})) skip(needs.note);
        await fn();
      });
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check` passes, retrying until `timeout`; then fails with its last error. */
export async function eventually(check: () => void | Promise<void>, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(25);
    }
  }
}

/** Fails unless `action` throws (or rejects with) a StorageError of `code`. */
export async function expectCode(action: () => unknown, code: StorageErrorCode): Promise<void> {
  let caught: unknown;
  try {
    await action();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a StorageError ${code}`).toBeDefined();
  expect(isStorageError(caught), `expected a StorageError, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

/** Runs named actions in turn, each expected to fail with `code`; a failure names the action. */
export async function expectEachCode(actions: [string, () => Promise<unknown>][], code: StorageErrorCode): Promise<void> {
  for (const [name, action] of actions) {
    await expectCode(action, code).catch((error: unknown) => {
      throw new Error(`${name}: ${String(error)}`, { cause: error });
    });
  }
}

export const sorted = (keys: string[]) => [...keys].sort();

/**
 * The longest key a driver's limits allow (segments of at most 100 bytes: a
 * limit on one segment's length is the driver's to declare lower) and the
 * deepest (one-byte segments).
 */
export function keysAtLimits(driver: Driver): { atBytes: string; atSegments: string } {
  const { bytes, segments } = driver.keyLimits ?? DEFAULT_KEY_LIMITS;
  const atBytes = Array.from({ length: Math.ceil(bytes / 101) }, (_, index) => `${index}`.padEnd(100, "b"))
    .join(":")
    .slice(0, bytes)
    .replace(/:$/, "x");
  const atSegments = Array.from({ length: segments }, (_, index) => String(index % 10)).join(":");
  return { atBytes, atSegments };
}
