// Random linearizable KV histories for testing the checker: concurrent
// clients run operations against a simulated register per key; every
// operation that takes effect is given a linearization point inside its
// [call, ret] interval (for an unknown outcome: anywhere after its call, or
// never), and outputs are computed by applying the operations in the order
// of their linearization points. Put and cas values are unique.
import { seededRandom } from "../../src/consensus/random.js";
import type { ClientId, Operation } from "./history.js";

/** The project's seeded PRNG (mulberry32), floats in [0, 1). */
export const rng = seededRandom;

export interface GenerateOptions {
  seed: number;
  ops: number;
  clients: number;
  keys: number;
  /** Fraction of operations whose outcome is unknown. */
  unknownRate?: number;
  /** Longest operation duration. */
  maxDuration?: number;
  /** Longest pause between a client's operations. */
  maxThink?: number;
}

export interface GeneratedHistory {
  ops: Operation[];
  /** Operation ids in the order of their linearization points (the effective ones only). */
  linearization: number[];
}

export function generateLinearizable(o: GenerateOptions): GeneratedHistory {
  const r = rng(o.seed);
  const unknownRate = o.unknownRate ?? 0.05;
  const maxDuration = o.maxDuration ?? 10;
  const maxThink = o.maxThink ?? 3;
  const keys = Array.from({ length: o.keys }, (_, i) => `key-${i}`);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const clock = Array.from({ length: o.clients }, () => r() * maxThink);
  const written = new Map<string, string[]>(keys.map((k) => [k, []]));
  const ops: Operation[] = [];
  const points: { id: number; at: number }[] = [];
  let values = 0;

  for (let id = 0; id < o.ops; id++) {
    let c = 0;
    for (let i = 1; i < o.clients; i++) if ((clock[i] as number) < (clock[c] as number)) c = i;
    const clientId: ClientId = `c${c}`;
    const call = clock[c] as number;
    const duration = r() * maxDuration;
    const unknown = r() < unknownRate;
    const ret = unknown ? undefined : call + duration;
    clock[c] = call + duration + r() * maxThink;
    const key = pick(keys);
    const seen = written.get(key) as string[];
    const x = r();
    let op: Operation;
    if (x < 0.35) {
      const value = `v${values++}`;
      seen.push(value);
      op = { id, clientId, kind: "put", key, input: { value }, call, ret };
    } else if (x < 0.7) {
      op = { id, clientId, kind: "get", key, call, ret };
    } else if (x < 0.8) {
      op = { id, clientId, kind: "delete", key, call, ret };
    } else {
      const y = r();
      const expected = y < 0.5 ? (seen[seen.length - 1] ?? null) : y < 0.8 || seen.length === 0 ? null : pick(seen);
      const value = `v${values++}`;
      seen.push(value);
      op = { id, clientId, kind: "cas", key, input: { expected, value }, call, ret };
    }
    ops.push(op);
    if (ret !== undefined) points.push({ id, at: call + r() * duration });
    else if (r() < 0.5) points.push({ id, at: call + r() * 4 * maxDuration }); // took effect, maybe long after
  }

  points.sort((a, b) => a.at - b.at || a.id - b.id);
  const store = new Map<string, string | null>();
  for (const { id } of points) {
    const op = ops[id] as Operation;
    const cur = store.get(op.key) ?? null;
    switch (op.kind) {
      case "put":
        store.set(op.key, op.input.value);
        break;
      case "delete":
        store.set(op.key, null);
        break;
      case "get":
        if (op.ret !== undefined) op.output = { value: cur };
        break;
      case "cas": {
        const ok = cur === op.input.expected;
        if (ok) store.set(op.key, op.input.value);
        if (op.ret !== undefined) op.output = { ok };
        break;
      }
    }
  }
  return { ops, linearization: points.map((p) => p.id) };
}
