import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { afterAll, describe, expect, it } from "vitest";
import { createStorage, normalizeKey, type Storage } from "../../src/index.js";
import etcd from "../../src/drivers/etcd.js";
import { testDriver } from "../../src/testing/index.js";
import { reachable, serviceUp } from "../helpers/services.js";
import { tempDir } from "../helpers/tempDir.js";
import { codeOf, freePort, rawKeysRoundTrip } from "../helpers/checks.js";
import { privateServer, survivesOutage } from "../helpers/outage.js";
import { exitsOnItsOwn } from "../helpers/workers.js";
import { checkFailsAlone, checkKeyLimit, checkUnknownOption } from "../helpers/limits.js";

const hosts = process.env.STOWAGE_ETCD_HOSTS ?? "http://127.0.0.1:2379";
// Every driver this file makes gets its own prefix, so parallel runs and test files never meet.
const RUN = `stowage-test-${process.pid}-${Date.now().toString(36)}`;
let made = 0;
const freshPrefix = () => `${RUN}/${made++}/`;


/** A private etcd on free loopback ports with its own data dir: ours to stop and start. */
async function privateEtcd() {
  const dir = tempDir("etcd-private");
  const [client, peer] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${client}`;
  const peerUrl = `http://127.0.0.1:${peer}`;
  const args = [
    "--name", "stowage-private",
    "--data-dir", join(dir, "data"),
    "--listen-client-urls", url,
    "--advertise-client-urls", url,
    "--listen-peer-urls", peerUrl,
    "--initial-advertise-peer-urls", peerUrl,
    "--initial-cluster", `stowage-private=${peerUrl}`,
  ];
  return { url, ...privateServer("etcd", "etcd", args, () => reachable(url)) };
}

// Runs without a server too, so the file always has a suite (vitest fails a file with none).
describe("etcd options", () => {
  it("refuses a bad timeout, maxTxnOps or chunkSize before connecting", async () => {
    expect(await codeOf(() => etcd({ hosts, timeout: 0 }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => etcd({ hosts, maxTxnOps: 2 }))).toBe("E_INVALID_OPTION");
    expect(await codeOf(() => etcd({ hosts, chunkSize: 0 }))).toBe("E_INVALID_OPTION");
  });
});

describe("etcd options", () => {
  it("refuses an option it does not know, naming the known ones", () => {
    checkUnknownOption(etcd, { hosts, prefix: "p/", maxTxnOps: 64 });
  });
});

if (await serviceUp("etcd", hosts)) {
  afterAll(async () => {
    const admin = new Etcd3({ hosts });
    await admin.delete().prefix(`${RUN}/`);
    admin.close();
  });

  // etcd leases count whole seconds (2 s at least with default election settings).
  // The kit's 10 MB value goes in 1 MiB chunks: no server flag needed.
  testDriver({ name: "etcd", driver: () => etcd({ hosts, prefix: freshPrefix() }), ttl: 2000, timeout: 10_000 });

  describe("etcd driver", () => {
    const open: Storage[] = [];
    const storageAt = (prefix: string, timeout?: number) => {
      const storage = createStorage({ driver: etcd({ hosts, prefix, timeout }) });
      open.push(storage);
      return storage;
    };
    afterAll(async () => {
      await Promise.all(open.map((storage) => storage.dispose()));
    });

    it("round-trips hostile keys and lists them by prefix", async () => {
      const storage = storageAt(freshPrefix());
      const keys = [
        `long:${"k".repeat(1024)}`,
        `quotes:'single':"double"`,
        "pattern:%_\\*[.]>",
        "pattern:*",
        "pattern:>",
        "unicode:ключ:日本語:🚀",
        "space: in : key ",
        "dots:a.b..c.",
      ];
      for (const [index, key] of keys.entries()) await storage.setItem(key, index);
      for (const [index, key] of keys.entries()) expect(await storage.getItem(key)).toBe(index);
      expect((await storage.getKeys()).sort()).toEqual(keys.map(normalizeKey).sort());
      expect((await storage.getKeys("pattern")).sort()).toEqual(["pattern:%_:*[.]>", "pattern:*", "pattern:>"].sort());
      // Below the core's key rules the driver takes any key as it is.
      await rawKeysRoundTrip(storage, ["a?b", "c\\d", "[*?]", "x.y>z", `'"%_`, "tab\tkey"]);
    });

    it("stores raw bytes as bytes and text as UTF-8, readable with any etcd client", async () => {
      const prefix = freshPrefix();
      const storage = storageAt(prefix);
      const bytes = randomBytes(4096);
      await storage.setItemRaw("bin", bytes);
      await storage.setItem("text", "héllo");
      const admin = new Etcd3({ hosts });
      try {
        expect((await admin.get(`${prefix}bin`).buffer())!.equals(bytes)).toBe(true);
        // Text is stored as the serializer wrote it: JSON for a string value.
        expect(await admin.get(`${prefix}text`).string()).toBe('"héllo"');
      } finally {
        admin.close();
      }
    });

    it("values above chunkSize go in chunks: round-trip, history, CAS, removal", async () => {
      const prefix = freshPrefix();
      const storage = storageAt(prefix);
      const chunkKeys = async () => {
        const admin = new Etcd3({ hosts });
        try {
          return (await admin.getAll().prefix(`${prefix}\0\0big\0`).keys()).length;
        } finally {
          admin.close();
        }
      };
      const first = randomBytes(3 * 1024 * 1024 + 5);
      await storage.setItemRaw("big", first);
      expect(Buffer.from((await storage.getItemRaw("big"))!).equals(first)).toBe(true);
      expect((await storage.getMeta("big")).size).toBe(first.length);
      expect(await chunkKeys()).toBe(4);
      const { etag } = await storage.getMeta("big");
      const second = randomBytes(2 * 1024 * 1024);
      await storage.setItemRaw("big", second, { ifMatch: etag });
      // The older set is dropped in the same transaction; its version still reads back as of its revision.
      expect(await chunkKeys()).toBe(2);
      expect(Buffer.from((await storage.getItemRaw("big"))!).equals(second)).toBe(true);
      expect(Buffer.from(await storage.getItem<string>("big", { version: etag! }) ?? "", "latin1").length).toBeGreaterThan(0);
      const history = await storage.getHistory<string>("big");
      expect(history).toHaveLength(2);
      expect(Buffer.from(history[1]!.value!).equals(Buffer.from(first.toString()))).toBe(true);
      expect(await codeOf(() => storage.setItemRaw("big", first, { ifMatch: etag }))).toBe("E_CONFLICT");
      expect(await chunkKeys()).toBe(2);
      await storage.removeItem("big");
      expect(await chunkKeys()).toBe(0);
      expect(await storage.getKeys()).toEqual([]);
    });

    it("TTL: a lease per write, visible to etcd and in getMeta", async () => {
      const prefix = freshPrefix();
      const storage = storageAt(prefix);
      await storage.setItem("lease:a", 1, { ttl: 3000 });
      const meta = await storage.getMeta("lease:a");
      expect(meta.ttl).toBeGreaterThan(0);
      expect(meta.ttl).toBeLessThanOrEqual(3000);
      const admin = new Etcd3({ hosts });
      try {
        const found = await admin.kv.range({ key: Buffer.from(`${prefix}lease:a`) });
        expect(found.kvs[0]!.lease).not.toBe("0");
      } finally {
        admin.close();
      }
    });

    it("watch sees writes made through another storage object", async () => {
      const prefix = freshPrefix();
      const writer = storageAt(prefix);
      const watcher = storageAt(prefix);
      const events: string[] = [];
      const unwatch = await watcher.watch((event, key) => events.push(`${event} ${key}`));
      await writer.setItem("x:1", "a");
      await writer.removeItem("x:1");
      await writer.setItem("x:2", "b", { ttl: 2000 });
      const deadline = Date.now() + 10_000;
      while (events.length < 4 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      await unwatch();
      // The lease ending removes x:2: etcd reports that too.
      expect(events).toEqual(["update x:1", "remove x:1", "update x:2", "remove x:2"]);
    });

    it("history walks revisions, steps over removals, and ends at compaction", async () => {
      const prefix = freshPrefix();
      const storage = storageAt(prefix);
      await storage.setItem("h", "one");
      await storage.removeItem("h");
      await storage.setItem("h", "two");
      await storage.setItem("h", "three");
      const history = await storage.getHistory("h");
      expect(history.map((entry) => entry.value)).toEqual(["three", "two", null, "one"]);
      const admin = new Etcd3({ hosts });
      try {
        // Compacting to the newest revision drops every older one.
        await admin.kv.compact({ revision: history[0]!.version, physical: true });
      } finally {
        admin.close();
      }
      expect(await codeOf(() => storage.getItem("h", { version: history[3]!.version }))).toBe("E_NOT_FOUND");
      expect((await storage.getHistory("h")).map((entry) => entry.value)).toEqual(["three"]);
      expect(await codeOf(() => storage.getItem("h", { version: "not-a-revision" }))).toBe("E_INVALID_OPTION");
    });

    it("a server that is not there fails with E_UNAVAILABLE within the timeout", async () => {
      const port = await freePort();
      const storage = createStorage({ driver: etcd({ hosts: `http://127.0.0.1:${port}`, timeout: 500 }) });
      const started = Date.now();
      expect(await codeOf(() => storage.getItem("a"))).toBe("E_UNAVAILABLE");
      expect(await codeOf(() => storage.setItem("a", 1))).toBe("E_UNAVAILABLE");
      // Not a speed check: a call must not outlive its timeout by much (no hang, no retry loop).
      expect(Date.now() - started).toBeLessThan(5000);
      await storage.dispose();
    });

    it("a server stopped mid-run: calls fail with E_UNAVAILABLE, work again after restart, and no acknowledged write is lost", async () => {
      const server = await privateEtcd();
      await server.start();
      const storage = createStorage({ driver: etcd({ hosts: server.url, prefix: "fault/", timeout: 1000 }) });
      try {
        await survivesOutage(storage, server, { timeout: 1000, recovery: 20_000 });
      } finally {
        await storage.dispose();
        await server.stop();
      }
    }, 60_000);

    it("dispose() leaves nothing that keeps the process alive", async () => {
      await exitsOnItsOwn("etcd", freshPrefix(), { STOWAGE_ETCD_HOSTS: hosts });
    }, 120_000); // worker processes: a loaded 2-core machine can take minutes, not the default 30 s
  });

  describe("etcd key limits and batched writes", () => {
    it("stores a key of its declared byte limit, and refuses one byte more with E_INVALID_KEY, writing nothing", () =>
      checkKeyLimit(createStorage({ driver: etcd({ hosts, prefix: freshPrefix() }) })));

    it("writes awaited together: one whose guard fails fails alone, the others land", () => checkFailsAlone(createStorage({ driver: etcd({ hosts, prefix: freshPrefix() }) })));

    it("setItems, getItems and clear of 200 keys of 64 KiB each: transactions count key bytes, so none passes the request limit", async () => {
      const storage = createStorage({ driver: etcd({ hosts, prefix: freshPrefix() }) });
      try {
        const keys = Array.from({ length: 200 }, (_, i) => `${String(i).padStart(3, "0")}${"k".repeat(storage.getMount().driver.keyLimits!.bytes - 3)}`);
        await storage.setItems(keys.map((key, i) => ({ key, value: i })));
        expect((await storage.getItems(keys)).map((entry) => entry.value)).toEqual(keys.map((_, i) => i));
        await storage.clear();
        expect(await storage.getKeys()).toEqual([]);
      } finally {
        await storage.dispose();
      }
    }, 120_000);
  });
}
