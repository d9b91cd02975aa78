import { afterAll, beforeAll, describe } from "vitest";
import { createCoreStorage } from "../core/storage.js";
import { casTests } from "./cas.js";
import { clearAround, createKit, type DriverTestContext, type DriverTestOptions } from "./context.js";
import { fenceTests } from "./fence.js";
import { historyTests } from "./history.js";
import { keyTests } from "./keys.js";
import { listingTests } from "./listing.js";
import { metaTests } from "./meta.js";
import { mountingTests } from "./mounting.js";
import { streamTests } from "./streams.js";
import { syncTests } from "./sync.js";
import { transactionTests } from "./transactions.js";
import { ttlTests } from "./ttl.js";
import { unstorageTests } from "./unstorage.js";
import { valueTests } from "./values.js";
import { watchTests } from "./watch.js";

export { eventually, type DriverTestContext, type DriverTestOptions, type KitScale } from "./context.js";
export { testLocks, type LockTestOptions } from "./locks.js";

/**
 * Registers the stowage driver contract as vitest tests: everything
 * unstorage's driver tests check, plus the sync API, TTL, meta, CAS and the
 * declared etag kind, transactions, fenced writes, history, watch, raw bytes, streams, large
 * values, many keys, odd keys, mounting and dispose — one module per
 * capability. Capabilities are taken from `driver.flags`: a declared
 * capability must work, an undeclared one must be refused with
 * E_UNSUPPORTED; a test of a capability the driver lacks is reported as
 * skipped. Every test clears the store before and after itself, so the tests
 * run in any order (`vitest --sequence.shuffle`).
 */
export function testDriver(options: DriverTestOptions): void {
  const context = {} as DriverTestContext;
  const kit = createKit(options, context);

  describe(options.name ?? "driver contract", () => {
    beforeAll(async () => {
      context.driver = await options.driver();
      context.storage = createCoreStorage({ driver: context.driver });
    });

    afterAll(async () => {
      await context.storage?.dispose();
    });

    unstorageTests(kit);

    describe("stowage's contract", () => {
      clearAround(context);
      valueTests(kit);
      syncTests(kit);
      ttlTests(kit);
      metaTests(kit);
      casTests(kit);
      transactionTests(kit);
      fenceTests(kit);
      historyTests(kit);
      watchTests(kit);
      streamTests(kit);
      listingTests(kit);
      keyTests(kit);
      mountingTests(kit);
    });

    options.additionalTests?.(context);
  });
}
