// Free TCP ports on 127.0.0.1 for test servers (sidecars, PostgreSQL), shared
// by every test helper so that two helpers in one process never hand out the
// same port.
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** The lower bound of the kernel's ephemeral port range (ports picked for outgoing connections). */
export function ephemeralLow(): number {
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low && low > 12_000) return low;
  } catch {
    // not Linux: fall through
  }
  return 32_768;
}

function tryBind(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => res(true)));
  });
}

function bindZero(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen({ port: 0, host: "127.0.0.1", exclusive: true }, () => {
      const a = s.address();
      s.close(() => (a && typeof a === "object" ? res(a.port) : rej(new Error("no port"))));
    });
  });
}

/** Ports handed out by this process: never handed out twice, even once their server is down. */
const claimedPorts = new Set<number>();

/**
 * `n` distinct ports that are free now on 127.0.0.1, each checked by binding it.
 * They are taken below the ephemeral range: a port from there (port 0) could be
 * handed to some outgoing connection while its server is down for a restart,
 * and the server could not bind it again. Falls back to port 0 if that range is busy.
 * Another process can still take a port before its server binds it: callers
 * that can, retry on "address in use" with a new port.
 */
export async function freePorts(n: number): Promise<number[]> {
  const low = 10_000;
  const high = ephemeralLow();
  const out: number[] = [];
  for (let tries = 0; out.length < n && tries < 2_000; tries++) {
    const p = low + Math.floor(Math.random() * (high - low));
    if (claimedPorts.has(p) || out.includes(p)) continue;
    if (await tryBind(p)) out.push(p);
  }
  while (out.length < n) {
    const p = await bindZero();
    if (!claimedPorts.has(p) && !out.includes(p)) out.push(p);
  }
  for (const p of out) claimedPorts.add(p);
  return out;
}

export async function freePort(): Promise<number> {
  const [p] = await freePorts(1);
  return p!;
}
