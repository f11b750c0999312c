// host:port parsing shared by every option that names an endpoint, and the
// resolution check pgraft_add_node and `pgraft add-node` warn with.
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

export interface HostPort {
  host: string;
  port: number;
}

const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/;

/** Parse "host:port" (IPv6 as "[::1]:7400"). Returns an error message instead of throwing. */
export function parseHostPort(raw: string): HostPort | string {
  const s = raw.trim();
  const at = s.lastIndexOf(":");
  if (at <= 0) return `"${raw}" is not host:port`;
  const host = s.slice(0, at);
  const portText = s.slice(at + 1);
  if (!HOST.test(host)) return `"${raw}": "${host}" is not a valid host name or address`;
  if (!/^\d{1,5}$/.test(portText)) return `"${raw}": port "${portText}" is not a number`;
  const port = Number(portText);
  if (port < 1 || port > 65535) return `"${raw}": port ${port} is outside 1..65535`;
  return { host, port };
}

export const formatHostPort = (a: HostPort): string => `${a.host}:${a.port}`;

/** Why `host` does not resolve from this process (bounded to 2 s), or undefined when it does or is an IP address. */
export async function unresolvableHost(host: string): Promise<string | undefined> {
  const bare = host.replace(/^\[|\]$/g, "");
  if (isIP(bare)) return undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      lookup(bare),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer within 2 s")), 2_000);
      }),
    ]);
    return undefined;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" ? code : e instanceof Error ? e.message : String(e);
  } finally {
    clearTimeout(timer);
  }
}
