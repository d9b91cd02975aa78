import { reachable } from "../test/helpers/services.js";
import { target, type Target } from "./targets.js";

/**
 * Server drivers in the main bench: each entry connects stowage's driver and
 * the raw client (its peer) to a server on loopback. A server that does not
 * answer is left out with a notice, so the bench runs wherever it is started.
 */
interface ServerBench {
  name: string;
  /** `host:port` or a URL, probed before connecting. */
  address: string;
  targets: () => Promise<Target[]>;
}

const SERVERS: ServerBench[] = [
  {
    // stowage's redis driver against ioredis used by hand (same GET/SET/MGET/MSET with JSON) and against unstorage's redis driver.
    name: "Redis",
    address: process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379",
    targets: async () => {
      const url = process.env.STOWAGE_REDIS_URL ?? "redis://127.0.0.1:6379";
      const [{ Redis }, { createStorage }, { default: redis }, { createStorage: createUnstorage }, { default: unstorageRedis }] = await Promise.all([
        import("ioredis"),
        import("../src/index.js"),
        import("../src/drivers/redis.js"),
        import("unstorage"),
        import("unstorage/drivers/redis"),
      ]);
      const run = `stowage-bench:${process.pid}`;
      const raw = new Redis(url);
      const rawPrefix = `${run}:raw:`;
      const parse = (text: string | null) => (text === null ? null : JSON.parse(text));
      const rawKeys = async () => {
        const keys: string[] = [];
        let cursor = "0";
        do {
          const [next, page] = await raw.scan(cursor, "MATCH", `${rawPrefix}*`, "COUNT", 1000);
          cursor = next;
          for (const key of page) keys.push(key.slice(rawPrefix.length));
        } while (cursor !== "0");
        return keys;
      };
      const stowage = createStorage({ driver: redis({ url, base: `${run}:stowage` }) });
      const stowageVsUnstorage = createStorage({ driver: redis({ url, base: `${run}:stowage-u` }) });
      const unstorage = createUnstorage({ driver: unstorageRedis({ url, base: `${run}:unstorage` }) });
      const drop = (storage: { clear(): Promise<void>; dispose(): Promise<void> }) => () => void storage.clear().then(() => storage.dispose());
      return [
        target("ioredis (raw)", undefined, {
          setItem: (key, value) => raw.set(rawPrefix + key, JSON.stringify(value)),
          getItem: async (key) => parse(await raw.get(rawPrefix + key)),
          hasItem: async (key) => (await raw.exists(rawPrefix + key)) === 1,
          getKeys: rawKeys,
          setItems: (items) => raw.mset(items.flatMap(({ key, value }) => [rawPrefix + key, JSON.stringify(value)])),
          getItems: async (keys) => (await raw.mget(keys.map((key) => rawPrefix + key))).map((text, index) => ({ key: keys[index], value: parse(text) })),
        }, () => void rawKeys().then(async (keys) => {
          for (let i = 0; i < keys.length; i += 1000) await raw.unlink(keys.slice(i, i + 1000).map((key) => rawPrefix + key));
          await raw.quit();
        })),
        target("stowage redis", "ioredis (raw)", stowage, drop(stowage)),
        target("unstorage redis", undefined, unstorage, drop(unstorage)),
        target("stowage redis (vs unstorage)", "unstorage redis", stowageVsUnstorage, drop(stowageVsUnstorage)),
      ];
    },
  },
];

export async function serverTargets(): Promise<Target[]> {
  const targets: Target[] = [];
  for (const server of SERVERS) {
    if (!(await reachable(server.address))) {
      console.warn(`bench: ${server.name} is not reachable at ${server.address}; left out`);
      continue;
    }
    targets.push(...(await server.targets()));
  }
  return targets;
}
