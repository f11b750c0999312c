// Pieces of the pod end-to-end tests: a sidecar process started as a pod is
// (no command-line options, everything from the environment), consecutive free
// ports for a peer template `127.0.0.1:{i+BASE}`, and a small HTTP GET.
import { createServer } from "node:net";
import { SidecarProcess } from "../integration/harness.js";
import { ephemeralLow } from "../support/ports.js";

/** A sidecar started as a pod is: `pgraft sidecar` and nothing on its command line but what the chart passes. */
export class PodProcess extends SidecarProcess {
  override args(): string[] {
    return ["sidecar"];
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen({ port, host: "127.0.0.1", exclusive: true }, () => s.close(() => res(true)));
  });
}

/** `n` consecutive free ports (the template adds the ordinal to a base port). */
export async function consecutivePorts(n: number): Promise<number> {
  const high = ephemeralLow() - n;
  for (let tries = 0; tries < 200; tries++) {
    const base = 20_000 + Math.floor(Math.random() * (high - 20_000));
    const ok = await Promise.all(Array.from({ length: n }, (_, i) => bindable(base + i)));
    if (ok.every(Boolean)) return base;
  }
  throw new Error(`no ${n} consecutive free ports`);
}

export async function http(port: number, path: string): Promise<{ code: number; body: Record<string, unknown>; text: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(2_000) });
  const text = await r.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // /metrics is text
  }
  return { code: r.status, body, text };
}

