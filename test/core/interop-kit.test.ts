import unstorageMemory from "unstorage/drivers/memory";
import unstorageFsLite from "unstorage/drivers/fs-lite";
import { testDriver } from "../../src/testing/index.js";
import type { Driver } from "../../src/index.js";
import { tempDir } from "../helpers/tempDir.js";

// unstorage's own drivers, mounted in stowage, run stowage's whole contract.
// The skips are unstorage's known behaviour, not stowage's: its memory driver
// keeps the caller's Uint8Array by reference, and its fs-lite driver throws a
// plain ENOTDIR (seen here as E_DRIVER) for a key below another key, and
// cannot declare key limits, so the core's defaults (65,536 bytes) pass keys
// longer than a file name may be.
testDriver({
  name: "unstorage memory in stowage",
  driver: () => unstorageMemory() as Driver,
  scale: "small",
  skip: ["a value read or written cannot be changed from outside"],
});

testDriver({
  name: "unstorage fs-lite in stowage",
  driver: () => unstorageFsLite({ base: tempDir("unstorage-fs-lite") }) as Driver,
  skip: ["a key that is a prefix of another key", "keys at the driver's key limits are stored"],
});
