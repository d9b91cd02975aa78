import { randomBytes } from "node:crypto";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterAll, describe, expect, it } from "vitest";
import { createStorage, normalizeKey, type Storage } from "../../src/index.js";
import natsKv, { decodeKey, encodeKey, encodeToken } from "../../src/drivers/nats-kv.js";
import { eventually, testDriver } from "../../src/testing/index.js";
import { reachable, serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";
import { codeOf, freePort, rawKeysRoundTrip } from "../helpers/checks.js";
import { privateServer, survivesOutage } from "../helpers/outage.js";
import { exitsOnItsOwn } from "../helpers/workers.js";
import { KIT_TTL, withDateAhead } from "../helpers/clock.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

const servers = process.env.STOWAGE_NATS_SERVERS ?? "127.0.0.1:4222";
// Every driver this file makes gets its own bucket, so parallel runs and test files never meet.
const RUN = `stowage-test-${process.pid}-${Date.now().toString(36)}`;
const buckets: string[] = [];
const freshBucket = () => {
  const bucket = `${RUN}-${buckets.length}`;
  buckets.push(bucket);
  return bucket;
};


/** A private nats-server with JetStream on a free loopback port and its own store: ours to stop and start. */
async function privateNats() {
  const dir = tempDir("nats-private");
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const args = ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir];
  return { address, ...privateServer("nats-server", "nats-server", args, () => reachable(address)) };
}

describe("nats-kv key encoding", () => {
  it("maps segments onto tokens readably and reversibly", () => {
    expect(encodeKey("user:1:settings")).toBe("user.1.settings");
    expect(encodeKey("a.b:c=d")).toBe("a=2Eb.c=3Dd");
    expect(encodeKey("space in:ключ")).toBe("space=20in.=D0=BA=D0=BB=D1=8E=D1=87");
    for (const key of ["a.b..c.", "=3D", "*:>", "'\"%_\\*?[.>", "🚀✨", "x".repeat(1024), "-_", "A=B=C"]) {
      expect(encodeKey(key)).toMatch(/^[-_=.A-Za-z0-9]+$/);
      expect(decodeKey(encodeKey(key))).toBe(key);
    }
    // Keys of plain characters take a shortcut that must agree with the per-token encoding.
    for (const key of ["user:1", "a::b", ":x:", "under_score-dash:9", ""]) {
      expect(encodeKey(key)).toBe(key.split(":").map(encodeToken).join("."));
      expect(decodeKey(encodeKey(key))).toBe(key);
    }
  });
});

describe("nats-kv options", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(natsKv, { servers, bucket: "b", history: 2 });
  });

  it("refuses a bucket name so long that no key would fit its subjects", () => {
    expect(() => natsKv({ servers, bucket: "b".repeat(3800) })).toThrow(expect.objectContaining({ code: "E_INVALID_OPTION" }));
    expect(natsKv({ servers, bucket: "b".repeat(3700) }).keyLimits!.bytes).toBeGreaterThan(0);
  });
});

if (await serviceUp("NATS", servers)) {
  afterAll(async () => {
    const nc = await connect({ servers });
    const jsm = await jetstreamManager(nc);
    for (const bucket of buckets) {
      // A bucket a test never opened does not exist: nothing to delete.
      await jsm.streams.delete(`KV_${bucket}`).catch((error: unknown) => {
        if (!/not found/i.test(String(error))) throw error;
      });
    }
    await nc.close();
  });

  testDriver({ name: "nats-kv", driver: () => natsKv({ servers, bucket: freshBucket() }), ttl: KIT_TTL });

  describe("nats-kv driver", () => {
    const open: Storage[] = [];
    const storageAt = (bucket: string) => {
      const storage = createStorage({ driver: natsKv({ servers, bucket }) });
      open.push(storage);
      return storage;
    };
    afterAll(async () => {
      await Promise.all(open.map((storage) => storage.dispose()));
    });

    it("round-trips hostile keys and lists them by prefix through subject filters", async () => {
      const storage = storageAt(freshBucket());
      const keys = [
        `long:${"k".repeat(1024)}`,
        `quotes:'single':"double"`,
        "pattern:%_\\*[.]>",
        "pattern:*",
        "pattern:>",
        "unicode:ключ:日本語:🚀",
        "space: in : key ",
        "dots:a.b..c.",
        "equals:=3D:=",
      ];
      for (const [index, key] of keys.entries()) await storage.setItem(key, index);
      for (const [index, key] of keys.entries()) expect(await storage.getItem(key)).toBe(index);
      expect((await storage.getKeys()).sort()).toEqual(keys.map(normalizeKey).sort());
      expect((await storage.getKeys("pattern")).sort()).toEqual(["pattern:%_:*[.]>", "pattern:*", "pattern:>"].sort());
      // Below the core's key rules the driver takes any key as it is.
      await rawKeysRoundTrip(storage, ["a?b", "c\\d", "[*?]", "x.y>z", `'"%_`, "tab\tkey"]);
    });

    it("listings and history leave no consumer on the server, also a listing broken off early", async () => {
      const bucket = freshBucket();
      const storage = storageAt(bucket);
      await storage.setItems(Array.from({ length: 20 }, (_, i) => ({ key: `k:${i}`, value: i })));
      await storage.setItem("k:1", "again");
      expect((await storage.getKeys("k")).length).toBe(20);
      expect((await storage.getHistory("k:1")).length).toBe(2);
      for await (const batch of storage.iterateKeys("k", { batchSize: 5 })) {
        expect(batch.length).toBe(5);
        break;
      }
      const nc = await connect({ servers });
      try {
        const jsm = await jetstreamManager(nc);
        const consumers: string[] = [];
        for await (const consumer of jsm.consumers.list(`KV_${bucket}`)) consumers.push(consumer.name);
        expect(consumers).toEqual([]);
      } finally {
        await nc.close();
      }
    });

    it("the ttl option is the bucket's max_age: the server drops every entry older than it", async () => {
      const bucket = freshBucket();
      const storage = createStorage({ driver: natsKv({ servers, bucket, ttl: 1000 }) });
      open.push(storage);
      await storage.setItem("short", "lived");
      expect(await storage.getItem("short")).toBe("lived");
      const nc = await connect({ servers });
      try {
        expect((await (await new Kvm(nc).open(bucket)).status()).ttl).toBe(1000);
      } finally {
        await nc.close();
      }
      await eventually(async () => expect(await storage.hasItem("short")).toBe(false), 10_000);
    });

    it("stores values as bytes, readable with any NATS KV client", async () => {
      const bucket = freshBucket();
      const storage = storageAt(bucket);
      const bytes = randomBytes(4096);
      await storage.setItemRaw("bin:a", bytes);
      await storage.setItem("text:a", "héllo");
      const nc = await connect({ servers });
      try {
        const kv = await new Kvm(nc).open(bucket);
        expect(Buffer.from((await kv.get("bin.a"))!.value).equals(bytes)).toBe(true);
        expect((await kv.get("text.a"))!.string()).toBe('"héllo"');
      } finally {
        await nc.close();
      }
    });

    it("values above max_payload go in chunks and round-trip; removal drops the chunks", async () => {
      const bucket = freshBucket();
      const storage = storageAt(bucket);
      const big = randomBytes(3 * 1024 * 1024 + 7);
      await storage.setItemRaw("big:a", big);
      expect(Buffer.from((await storage.getItemRaw("big:a"))!).equals(big)).toBe(true);
      expect((await storage.getMeta("big:a")).size).toBe(big.length);
      expect(await storage.getKeys()).toEqual(["big:a"]);
      const nc = await connect({ servers });
      try {
        const kv = await new Kvm(nc).open(bucket);
        const chunkKeys = async () => {
          const found: string[] = [];
          for await (const key of await kv.keys("=chunks.>")) found.push(key);
          return found;
        };
        expect((await chunkKeys()).length).toBe(4);
        await storage.removeItem("big:a");
        expect(await chunkKeys()).toEqual([]);
      } finally {
        await nc.close();
      }
    });

    it("a large write collects the chunk sets no kept version names any more", async () => {
      const bucket = freshBucket();
      // history 1: only the newest version is kept; with the default timeout (5 s), sets older than 10 s are collected.
      const storage = createStorage({ driver: natsKv({ servers, bucket, history: 1 }) });
      open.push(storage);
      const nc = await connect({ servers });
      try {
        const kv = await new Kvm(nc).open(bucket);
        const chunkSets = async () => {
          const ids = new Set<string>();
          for await (const key of await kv.keys("=chunks.>")) ids.add(key.split(".").at(-2)!);
          return ids.size;
        };
        await storage.setItemRaw("big", randomBytes(2 * 1024 * 1024));
        await storage.setItemRaw("big", randomBytes(2 * 1024 * 1024));
        // The first set is unnamed but young: a writer could still be about to name it.
        expect(await chunkSets()).toBe(2);
        // Past the grace without waiting for it.
        await withDateAhead(20_000, async () => {
          const last = randomBytes(2 * 1024 * 1024);
          await storage.setItemRaw("big", last);
          expect(await chunkSets()).toBe(1);
          expect(Buffer.from((await storage.getItemRaw("big"))!).equals(last)).toBe(true);
        });
      } finally {
        await nc.close();
      }
    });

    it("CAS guards a chunked write too", async () => {
      const storage = storageAt(freshBucket());
      await storage.setItem("c", 1);
      const { etag } = await storage.getMeta("c");
      await storage.setItem("c", 2);
      expect(await codeOf(() => storage.setItemRaw("c", randomBytes(2 * 1024 * 1024), { ifMatch: etag }))).toBe("E_CONFLICT");
      expect(await storage.getItem("c")).toBe(2);
    });

    it("per-key TTL: the expiry travels with the entry, so another process sees it", async () => {
      const bucket = freshBucket();
      const writer = storageAt(bucket);
      const reader = storageAt(bucket);
      await writer.setItem("ttl:a", "soon", { ttl: 60_000 });
      expect((await reader.getMeta("ttl:a")).ttl).toBeGreaterThan(0);
      expect(await reader.getItem("ttl:a")).toBe("soon");
      await withDateAhead(120_000, async () => {
        expect(await reader.getItem("ttl:a")).toBeNull();
        expect(await reader.getKeys("ttl")).toEqual([]);
        // A create-only write succeeds over an expired entry.
        await writer.setItem("ttl:a", "again", { ifNoneMatch: "*" });
        expect(await reader.getItem("ttl:a")).toBe("again");
      });
    });

    it("watch sees writes made through another storage object", async () => {
      const bucket = freshBucket();
      const writer = storageAt(bucket);
      const watcher = storageAt(bucket);
      await writer.setItem("init", 0);
      const events: string[] = [];
      const unwatch = await watcher.watch((event, key) => events.push(`${event} ${key}`));
      await writer.setItem("x:1", "a");
      await writer.removeItem("x:1");
      await writer.setItemRaw("x:big", randomBytes(2 * 1024 * 1024));
      const deadline = Date.now() + 10_000;
      while (events.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      await unwatch();
      // Chunk entries are not keys: watchers see only the entry that names them.
      expect(events).toEqual(["update x:1", "remove x:1", "update x:big"]);
    });

    it("history keeps the bucket's depth of versions and reads them back", async () => {
      const storage = createStorage({ driver: natsKv({ servers, bucket: freshBucket(), history: 3 }) });
      open.push(storage);
      for (let i = 1; i <= 5; i++) await storage.setItem("h", i);
      const history = await storage.getHistory("h");
      expect(history.map((entry) => entry.value)).toEqual([5, 4, 3]);
      expect(await storage.getItem("h", { version: history[2]!.version })).toBe(3);
      expect(await codeOf(() => storage.getItem("h", { version: "1" }))).toBe("E_NOT_FOUND");
      expect(await codeOf(() => storage.getItem("h", { version: "nope" }))).toBe("E_INVALID_OPTION");
    });

    it("refuses transactions, bad options and keys too long for a subject", async () => {
      const storage = storageAt(freshBucket());
      expect(await codeOf(() => storage.transaction(async (tx) => tx.setItem("a", 1)))).toBe("E_UNSUPPORTED");
      expect(() => natsKv({ bucket: "bad.name" })).toThrow(/Invalid bucket name/);
      expect(() => natsKv({ history: 65 })).toThrow(/history/);
      expect(await codeOf(() => storage.setItem("ü".repeat(1024), 1))).toBe("E_INVALID_KEY");
    });

    it("a server that is not there fails with E_UNAVAILABLE within the timeout", async () => {
      const port = await freePort();
      const storage = createStorage({ driver: natsKv({ servers: `127.0.0.1:${port}`, timeout: 500 }) });
      const started = Date.now();
      expect(await codeOf(() => storage.getItem("a"))).toBe("E_UNAVAILABLE");
      expect(await codeOf(() => storage.setItem("a", 1))).toBe("E_UNAVAILABLE");
      // Not a speed check: a call must not outlive its timeout by much (no hang).
      expect(Date.now() - started).toBeLessThan(5000);
      await storage.dispose();
    });

    it("a server stopped mid-run: calls fail with E_UNAVAILABLE, work again after restart, and no acknowledged write is lost", async () => {
      const server = await privateNats();
      await server.start();
      const storage = createStorage({ driver: natsKv({ servers: server.address, bucket: "fault", timeout: 1000 }) });
      try {
        await survivesOutage(storage, server, { timeout: 1000, recovery: 30_000 });
      } finally {
        await storage.dispose();
        await server.stop();
      }
    }, 90_000);

    it("dispose() leaves nothing that keeps the process alive", async () => {
      await exitsOnItsOwn("nats-kv", freshBucket(), { STOWAGE_NATS_SERVERS: servers });
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s
  });

  describe("nats-kv key limits and batched writes", () => {
    it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
      checkKeyLimit(createStorage({ driver: natsKv({ servers, bucket: freshBucket() }) })));

    it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: natsKv({ servers, bucket: freshBucket() }) })));
  });
}
