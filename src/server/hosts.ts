import { StorageError } from "../core/errors.js";

/**
 * Host names: the server's own bind address, and the `Host` a request names.
 * Without a token a server on loopback answers only requests addressed to a
 * loopback name, so a web page that rebinds its own DNS name to 127.0.0.1
 * (DNS rebinding) cannot reach it: its requests carry its own name as Host.
 */

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
/** A host and an optional port, as `Host` carries them: `name`, `name:80`, `[v6]`, `[v6]:80`. */
const HOST_HEADER = /^(\[[0-9a-f:.]+\]|[a-z0-9._~!$&'()*+,;=%-]+)(?::(\d{0,5}))?$/i;

/** Whether a host name or address (no port; IPv6 with or without brackets) is this machine only. */
export function isLoopback(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  const bare = name.startsWith("[") && name.endsWith("]") ? name.slice(1, -1) : name;
  if (bare === "::1" || bare === "0:0:0:0:0:0:0:1") return true;
  const v4 = IPV4.exec(bare.startsWith("::ffff:") ? bare.slice(7) : bare);
  return v4 !== null && Number(v4[1]) === 127 && v4.slice(2).every((octet) => Number(octet) <= 255);
}

/** The host name a `Host` value names, lower case, without port or trailing dot; undefined when the value is malformed. */
export function hostName(value: string): string | undefined {
  const match = HOST_HEADER.exec(value.trim());
  if (!match) return undefined;
  return match[1]!.toLowerCase().replace(/\.$/, "");
}

/** The `allowedHosts` option as a set of lower-case names; refuses what could never match a `Host`. */
export function checkAllowedHosts(hosts: unknown): ReadonlySet<string> | undefined {
  if (hosts === undefined) return undefined;
  if (!Array.isArray(hosts)) throw new StorageError("E_INVALID_OPTION", `[server] allowedHosts must be an array of host names, got ${typeof hosts}`);
  const names = new Set<string>();
  for (const host of hosts) {
    const name = typeof host === "string" ? hostName(host) : undefined;
    // A port, a scheme or a path make the entry differ from the name it parses to.
    if (name === undefined || name !== (host as string).toLowerCase().replace(/\.$/, "")) {
      throw new StorageError("E_INVALID_OPTION", `[server] allowedHosts takes host names without port or scheme (example.com, [::1]), got ${JSON.stringify(host)}`);
    }
    names.add(name);
  }
  return names;
}
