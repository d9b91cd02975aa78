import { reachable } from "../test/helpers/services.js";
import type { Target } from "./targets.js";

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

const SERVERS: ServerBench[] = [];

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
