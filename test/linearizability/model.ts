// Sequential specifications for the linearizability checker.
//
// A model is a deterministic state machine: `step` applies one operation to a
// state and returns the next state, or ILLEGAL when the operation's recorded
// output is impossible in that state. States are immutable values; `equal`
// and `hash` let the checker recognise a configuration it has already
// explored (they may identify states no checked operation can tell apart).
//
// The KV store is a map of independent registers, so the checker partitions a
// history by key and checks each key against `registerModel(ops of the key)`
// separately.
import type { Operation } from "./history.js";

export const ILLEGAL: unique symbol = Symbol("illegal");
export type Illegal = typeof ILLEGAL;

export interface Model<S, O> {
  readonly name: string;
  init(): S;
  /** The state after `op`, or ILLEGAL if `op`'s output cannot be observed in `state`. */
  step(state: S, op: O): S | Illegal;
  /**
   * An equivalence on states that the operations checked cannot tell apart:
   * if equal(a, b), every operation is legal in a iff it is in b, and leads
   * to equal states.
   */
  equal(a: S, b: S): boolean;
  /** A 32-bit hash consistent with `equal`. */
  hash(state: S): number;
  describeState(state: S): string;
  describeOp(op: O): string;
  /** Why `op` is illegal in `state` (only called when step returned ILLEGAL). */
  explainIllegal(state: S, op: O): string;
  /**
   * Optional: true if `op` is a blind write, legal in every state and leading
   * to a state that does not depend on the one before (put, delete). The
   * checker uses it to skip placing an unknown-outcome operation right before
   * a blind write, which would overwrite its effect.
   */
  blind?(op: O): boolean;
  /**
   * Optional: true if `op` leaves every state in which it is legal unchanged
   * (get, a failed cas). The checker places such an operation as soon as it
   * is legal, without trying other orders.
   */
  readOnly?(op: O): boolean;
}

/** The value of one key; null = absent. */
export type RegisterState = string | null;

export function describeValue(v: string | null): string {
  return v === null ? "absent" : JSON.stringify(v);
}

function fmtTime(t: number): string {
  return Number.isInteger(t) ? String(t) : t.toFixed(3);
}

/** e.g. `#7 client 2: cas("a" → "b") → ok [12.5, 14.0]`. */
export function describeOperation(op: Operation): string {
  let what: string;
  switch (op.kind) {
    case "put":
      what = `put(${describeValue(op.input.value)})`;
      break;
    case "delete":
      what = "delete()";
      break;
    case "get":
      what = op.output === undefined ? "get() → ?" : `get() → ${describeValue(op.output.value)}`;
      break;
    case "cas":
      what =
        `cas(${describeValue(op.input.expected)} → ${describeValue(op.input.value)})` +
        (op.output === undefined ? "" : op.output.ok ? " → ok" : " → failed");
      break;
  }
  const when = op.ret === undefined ? `[${fmtTime(op.call)}, outcome unknown]` : `[${fmtTime(op.call)}, ${fmtTime(op.ret)}]`;
  const id = op.id === undefined ? "" : `#${op.id} `;
  return `${id}client ${String(op.clientId)}: ${what} ${when}`;
}

function hashString(s: string): number {
  // FNV-1a over UTF-16 code units.
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The values some operation can tell apart from others: get outputs and cas expectations. */
export function observedValues(ops: readonly Operation[]): Set<string | null> {
  const seen = new Set<string | null>();
  for (const op of ops) {
    if (op.kind === "get" && op.output !== undefined) seen.add(op.output.value);
    else if (op.kind === "cas") seen.add(op.input.expected);
  }
  return seen;
}

const UNOBSERVED_HASH = 0x27d4eb2f;

/**
 * One key of the KV store:
 *  - put(v) sets v; delete() sets absent;
 *  - get() must return the current value (null when absent);
 *  - cas(expected, v) succeeds iff current === expected (null = absent) and then
 *    sets v; a cas reported ok:false must find current !== expected;
 *  - an operation whose outcome is unknown always steps (a cas with an unknown
 *    outcome swaps iff current === expected); "it never took effect" is
 *    covered by the checker not requiring it to be linearized at all.
 *
 * Given the operations of the partition to check, states are compared up to
 * what those operations can observe: operations only compare the current
 * value with get outputs and cas expectations, so all values that are
 * neither behave alike and count as one state (`equal`, `hash`). Without
 * operations, states are compared exactly.
 */
export function registerModel(partition?: readonly Operation[]): Model<RegisterState, Operation> {
  const observed = partition === undefined ? undefined : observedValues(partition);
  const unobserved = (s: RegisterState): boolean => observed !== undefined && !observed.has(s);
  return {
    name: "kv-register",
    init: () => null,
    step(state, op) {
      switch (op.kind) {
        case "put":
          return op.input.value;
        case "delete":
          return null;
        case "get":
          if (op.output === undefined) return state;
          return op.output.value === state ? state : ILLEGAL;
        case "cas": {
          const matches = state === op.input.expected;
          if (op.output === undefined) return matches ? op.input.value : state;
          if (op.output.ok) return matches ? op.input.value : ILLEGAL;
          return matches ? ILLEGAL : state;
        }
      }
    },
    equal: (a, b) => a === b || (unobserved(a) && unobserved(b)),
    hash: (s) => (unobserved(s) ? UNOBSERVED_HASH : s === null ? 0x5bd1e995 : hashString(s)),
    describeState: describeValue,
    describeOp: describeOperation,
    blind: (op) => op.kind === "put" || op.kind === "delete",
    readOnly: (op) => op.kind === "get" || (op.kind === "cas" && op.output !== undefined && !op.output.ok),
    explainIllegal(state, op) {
      const holds = `the key holds ${describeValue(state)}`;
      switch (op.kind) {
        case "get":
          return `${holds} but the get returned ${op.output === undefined ? "?" : describeValue(op.output.value)}`;
        case "cas":
          return op.output?.ok === true
            ? `${holds} but the cas expecting ${describeValue(op.input.expected)} succeeded`
            : `${holds} but the cas expecting ${describeValue(op.input.expected)} failed`;
        default:
          return `${op.kind} is always legal`;
      }
    },
  };
}

/** The register model with exact state comparison. */
export const kvRegisterModel: Model<RegisterState, Operation> = registerModel();

/** Splits a history by key, keeping each key's operations in input order. Keys come out sorted. */
export function partitionByKey<O extends { key: string }>(ops: readonly O[]): Map<string, O[]> {
  const byKey = new Map<string, O[]>();
  for (const op of ops) {
    const list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, [op]);
    else list.push(op);
  }
  return new Map([...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
