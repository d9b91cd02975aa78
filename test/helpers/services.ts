import { connect } from "node:net";

/**
 * Whether a server accepts TCP connections at `address` (`host:port` or a URL
 * with both). A missing server skips its tests with a printed notice, except
 * under `STOWAGE_REQUIRE_SERVICES=1` (set by `.ci/run`), where it fails them.
 */
export async function serviceUp(name: string, address: string): Promise<boolean> {
  if (await reachable(address)) return true;
  if (process.env.STOWAGE_REQUIRE_SERVICES === "1") {
    throw new Error(`${name} is required (STOWAGE_REQUIRE_SERVICES=1) but nothing answers at ${address}`);
  }
  console.warn(`[stowage tests] ${name} is not reachable at ${address}: its tests are skipped`);
  return false;
}

/** Whether something accepts TCP connections at `address` (`host:port` or a URL with both). */
export async function reachable(address: string): Promise<boolean> {
  const { hostname, port } = new URL(address.includes("://") ? address : `tcp://${address}`);
  const host = hostname.replace(/^\[|\]$/g, "");
  const socket = connect({ host, port: Number(port), timeout: 2000 });
  const connected = await new Promise<boolean>((resolve) => {
    socket.once("connect", () => resolve(true));
    socket.once("timeout", () => resolve(false));
    // A refused or unresolvable address is the answer the probe asks for, not a failure of it.
    socket.once("error", () => resolve(false));
  });
  socket.destroy();
  return connected;
}
