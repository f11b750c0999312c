// Linearizability checking of KV client histories.
//
// The store is a map of independent registers, and linearizability is local
// (a history is linearizable iff each key's sub-history is), so the history
// is partitioned by key and every partition is checked on its own.
//
// A partition is checked with the Wing–Gong algorithm as improved by Lowe:
//  - the operations' call and return events form a doubly linked list in time
//    order (at equal times calls come first, so touching intervals count as
//    concurrent);
//  - a depth-first search linearizes one operation at a time: any operation
//    whose call precedes the first remaining return event may go next, if the
//    model accepts it; it is then "lifted" out of the list (call and return),
//    and put back when the search backtracks;
//  - reaching a return event means that operation had to be linearized before
//    this point and was not: backtrack;
//  - a cache of configurations (set of linearized operations as a bitset, model
//    state) already explored prunes the search: two paths reaching the same
//    configuration have the same futures. The model may identify states that
//    no operation of the partition can tell apart (registerModel merges all
//    values nobody reads), so more paths meet.
//
// Forced moves: a read-only operation (Model.readOnly: a get, a failed cas)
// with a known outcome that is a candidate and legal now may go first in any
// completion, so it is placed without trying other orders. This keeps the
// search close to linear for histories with many concurrent reads.
//
// Operations with an unknown outcome have their return at +∞: they may be
// linearized at any point after their call, or never. The search succeeds as
// soon as every operation with a known return is linearized. Since each of
// them could otherwise be tried at every step, these reductions apply:
//  - they are tried only after the candidates with a known return, from
//    lists of their own (those that observe the state, then blind writes);
//  - the cache compares their part of the configuration by inclusion: a
//    configuration is subsumed by an explored one with the same known
//    operations and state and a subset of the unknown ones (which can still
//    take effect later, or never);
//  - one is placed only if it changes the state, and only right before an
//    operation that observes it: not before a blind write (Model.blind: put,
//    delete), which would erase it, nor before an operation it commutes with
//    (e.g. a get that is legal without it), which it may as well follow; a
//    look-ahead skips it at once when no such operation is a candidate;
//  - blind writes with the same effect are interchangeable once called: only
//    the first pending one is tried.
// `searchLinearization(…, { reductions: false })` turns all of this off: the
// plain algorithm with an exact cache, kept as a reference for tests.
//
// Unknown outcomes still make the search space grow (any pending one may be
// what explains a read), and so does concurrency on one key: histories with
// many of both on a single key can exhaust `timeoutMs`, which then yields
// "unknown" rather than a verdict.
import { performance } from "node:perf_hooks";
import { validateOperation, type Operation } from "./history.js";
import { ILLEGAL, partitionByKey, registerModel, type Model } from "./model.js";

export interface CheckOptions {
  /** Time budget for the whole history; unlimited by default. */
  timeoutMs?: number;
}

export type CheckResult =
  | { result: "ok" }
  | {
      result: "illegal";
      /** The key whose sub-history is not linearizable. */
      key: string;
      /** Human-readable: the longest legal order found and the operation that cannot follow it. */
      explanation: string;
      /** All operations on that key, by call time. */
      ops: Operation[];
    }
  | { result: "unknown"; reason: string };

/** An operation as the search sees it: its interval, and the payload the model steps on. */
export interface TimedOp<O> {
  op: O;
  call: number;
  /** undefined = unknown outcome (return at +∞, linearizing it is optional). */
  ret: number | undefined;
}

export type SearchResult<S> =
  | {
      result: "ok";
      /** A witness: indices of the linearized operations in linearization order. */
      order: number[];
    }
  | { result: "timeout" }
  | {
      result: "illegal";
      /** The deepest legal prefix the search reached (indices, in order)... */
      prefix: number[];
      /** ...the state after it... */
      state: S;
      /** ...and the operation whose return event it could not get past. */
      blocker: number;
    };

interface Ev {
  idx: number;
  isCall: boolean;
  time: number;
  /** A call's return event (operations with a known return only). */
  match: Ev | null;
  prev: Ev;
  next: Ev | null;
}

interface Frame<S> {
  node: Ev;
  state: S;
  phase: 1 | 2 | 3;
  limit: number;
}

interface CacheEntry<S> {
  known: Uint32Array;
  unknown: Uint32Array;
  state: S;
  /** The restriction the configuration was explored under (see Restriction). */
  after: number;
  before: S | undefined;
}

function sentinel(): Ev {
  const e = { idx: -1, isCall: false, time: -Infinity, match: null, next: null } as unknown as Ev;
  e.prev = e;
  return e;
}

function wordsEqual(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** a ⊆ b */
function wordsSubset(a: Uint32Array, b: Uint32Array): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    if ((x & (b[i] as number)) !== x) return false;
  }
  return true;
}

function zobristKeys(n: number): Int32Array {
  // splitmix32, fixed seed: the checker is deterministic.
  const keys = new Int32Array(n);
  let s = 0x2545f491;
  for (let i = 0; i < n; i++) {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    keys[i] = z ^ (z >>> 16);
  }
  return keys;
}

export interface SearchOptions {
  /** A performance.now() value after which the search gives up; none by default. */
  deadline?: number;
  /**
   * The reductions described above (forced moves; for unknown-outcome
   * operations subsumption, the restrictions, look-ahead and symmetry); on
   * by default. Off, this is the plain algorithm with an exact cache: a slow
   * reference for tests.
   */
  reductions?: boolean;
}

/** Searches for a linearization of `ops` (one partition) under `model`. */
export function searchLinearization<S, O>(model: Model<S, O>, ops: readonly TimedOp<O>[], options: SearchOptions = {}): SearchResult<S> {
  const deadline = options.deadline ?? Infinity;
  const reduce = options.reductions ?? true;
  const n = ops.length;
  const known = new Uint8Array(n);
  const bit = new Int32Array(n);
  let nKnown = 0;
  let nUnknown = 0;
  for (let i = 0; i < n; i++) {
    const t = ops[i] as TimedOp<O>;
    if (t.ret !== undefined) {
      if (!(t.ret >= t.call)) throw new RangeError(`operation ${i}: ret ${t.ret} before call ${t.call}`);
      known[i] = 1;
      bit[i] = nKnown++;
    } else {
      bit[i] = nUnknown++;
    }
  }
  if (nKnown === 0) return { result: "ok", order: [] };

  // The event list of the operations with a known return.
  const head = sentinel();
  const events: Ev[] = [];
  // The calls of the operations with an unknown outcome: those that observe
  // the state, and the blind writes.
  const blind = reduce ? model.blind?.bind(model) : undefined;
  const ohead = sentinel();
  const ocalls: Ev[] = [];
  const bhead = sentinel();
  const bcalls: Ev[] = [];
  for (let i = 0; i < n; i++) {
    const t = ops[i] as TimedOp<O>;
    const call: Ev = { idx: i, isCall: true, time: t.call, match: null, prev: head, next: null };
    if (t.ret === undefined) {
      (blind !== undefined && blind(t.op) ? bcalls : ocalls).push(call);
    } else {
      const ret: Ev = { idx: i, isCall: false, time: t.ret, match: null, prev: head, next: null };
      call.match = ret;
      events.push(call, ret);
    }
  }
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? 0 : a.isCall ? -1 : 1) || a.idx - b.idx);
  ocalls.sort((a, b) => a.time - b.time || a.idx - b.idx);
  bcalls.sort((a, b) => a.time - b.time || a.idx - b.idx);
  for (const [h, list] of [
    [head, events],
    [ohead, ocalls],
    [bhead, bcalls],
  ] as const) {
    let prev = h;
    for (const e of list) {
      e.prev = prev;
      prev.next = e;
      prev = e;
    }
  }

  // Blind unknown-outcome writes with the same effect are interchangeable
  // once called: only the first pending one (in call order) of each such
  // class is ever placed.
  const twins = new Map<number, number[]>();
  if (blind !== undefined) {
    const classes: { state: S; members: number[] }[] = [];
    for (const e of bcalls) {
      const effect = model.step(model.init(), (ops[e.idx] as TimedOp<O>).op);
      if (effect === ILLEGAL) throw new Error(`model ${model.name}: a blind write is illegal in the initial state`);
      let c = classes.find((k) => model.equal(k.state, effect));
      if (c === undefined) classes.push((c = { state: effect, members: [] }));
      c.members.push(e.idx);
      twins.set(e.idx, c.members);
    }
  }
  const placed = new Uint8Array(n);
  /** Whether the blind unknown-outcome write u is the first pending one of its class. */
  const firstTwin = (u: number): boolean => {
    for (const m of twins.get(u) ?? []) {
      if (m === u) return true;
      if (placed[m] === 0) return false;
    }
    return true;
  };

  const zobrist = zobristKeys(nKnown);
  const knownBits = new Uint32Array((nKnown + 31) >>> 5);
  const unknownBits = new Uint32Array((nUnknown + 31) >>> 5);
  let zKnown = 0;
  const cache = new Map<number, CacheEntry<S>[]>();

  // A configuration reached by placing an unknown-outcome operation u (from
  // state `before`) is explored under a restriction on the next operation
  // (see below), so the cache records it: `after` = u's index, or -1 for
  // none. An entry covers a new configuration when it has the same known
  // operations and state, a subset of its unknown operations, and no
  // restriction or the very same one.
  const covers = (e: CacheEntry<S>, unknown: Uint32Array, state: S, after: number, before: S | undefined): boolean =>
    model.equal(e.state, state) &&
    (reduce ? wordsSubset(e.unknown, unknown) : wordsEqual(e.unknown, unknown)) &&
    (e.after === -1 || (e.after === after && model.equal(e.before as S, before as S)));

  /** Records the configuration unless an explored one covers it; true if it is new. */
  const visit = (key: number, state: S, after: number, before: S | undefined): boolean => {
    const entry = (): CacheEntry<S> => ({ known: knownBits.slice(), unknown: unknownBits.slice(), state, after, before });
    const bucket = cache.get(key);
    if (bucket === undefined) {
      cache.set(key, [entry()]);
      return true;
    }
    let superseded = false;
    for (const e of bucket) {
      if (!wordsEqual(e.known, knownBits)) continue;
      if (covers(e, unknownBits, state, after, before)) return false;
      if (reduce && !superseded && model.equal(e.state, state) && wordsSubset(unknownBits, e.unknown) && (after === -1 || (e.after === after && model.equal(e.before as S, before as S)))) {
        superseded = true;
      }
    }
    if (superseded) {
      const mine = entry();
      const kept = bucket.filter((e) => !(wordsEqual(e.known, knownBits) && covers(mine, e.unknown, e.state, e.after, e.before)));
      kept.push(mine);
      cache.set(key, kept);
    } else {
      bucket.push(entry());
    }
    return true;
  };
  const toggle = (idx: number): void => {
    const b = bit[idx] as number;
    const mask = 1 << (b & 31);
    if (known[idx] === 1) {
      knownBits[b >>> 5] = (knownBits[b >>> 5] as number) ^ mask;
      zKnown ^= zobrist[b] as number;
    } else {
      unknownBits[b >>> 5] = (unknownBits[b >>> 5] as number) ^ mask;
    }
  };

  const lift = (e: Ev): void => {
    placed[e.idx] = 1;
    e.prev.next = e.next;
    if (e.next !== null) e.next.prev = e.prev;
    const r = e.match;
    if (r !== null) {
      r.prev.next = r.next;
      if (r.next !== null) r.next.prev = r.prev;
    }
  };

  const unlift = (e: Ev): void => {
    placed[e.idx] = 0;
    const r = e.match;
    if (r !== null) {
      r.prev.next = r;
      if (r.next !== null) r.next.prev = r;
    }
    e.prev.next = e;
    if (e.next !== null) e.next.prev = e;
  };

  /**
   * Whether `op` may be placed right after the unknown-outcome operation
   * `u`, which was placed in state `before` and led to `after`; `next` is the
   * state `op` leads to (not ILLEGAL).
   *
   * Placing `op` right after `u` is pointless when
   *  - op is a blind write: the same order without u reaches the same state
   *    and leaves u available;
   *  - "op then u" is legal and ends in the same state as "u then op", and op
   *    has a known outcome (u has no return, so it can always move later), or
   *    op has an unknown outcome too and comes first in `ops` (one order of
   *    two commuting unknown operations is enough).
   * Every linearization can be rewritten into one without these patterns and
   * without unknown-outcome operations that change nothing (each rewrite
   * drops an unknown-outcome operation, moves one past a known one, or
   * removes an inversion between two unknown ones, so rewriting terminates),
   * and the search only skips orders with one of the patterns or such no-ops,
   * so it stays complete.
   */
  const mayFollow = (u: number, before: S, opIdx: number, op: O, next: S): boolean => {
    if (blind !== undefined && blind(op)) return false;
    if (known[opIdx] === 0 && opIdx > u) return true;
    const first = model.step(before, op);
    if (first === ILLEGAL) return true;
    const swapped = model.step(first, (ops[u] as TimedOp<O>).op);
    return swapped === ILLEGAL || !model.equal(swapped, next);
  };

  /**
   * Whether anything may follow the unknown-outcome operation `u` (placed in
   * `before`, leading to `after`): a cheap look-ahead that saves recording a
   * configuration which would be a dead end at once.
   */
  const hasFollower = (u: number, before: S, after: S, limit: number): boolean => {
    for (let e = head.next; e !== null && e.isCall; e = e.next) {
      const op = (ops[e.idx] as TimedOp<O>).op;
      const next = model.step(after, op);
      if (next !== ILLEGAL && mayFollow(u, before, e.idx, op, next)) return true;
    }
    for (let e = ohead.next; e !== null && e.time <= limit; e = e.next) {
      if (e.idx === u) continue;
      const op = (ops[e.idx] as TimedOp<O>).op;
      const next = model.step(after, op);
      if (next !== ILLEGAL && !model.equal(next, after) && mayFollow(u, before, e.idx, op, next)) return true;
    }
    return false;
  };

  let state = model.init();
  visit(zKnown ^ Math.imul(model.hash(state), 0x9e3779b1), state, -1, undefined);
  let remaining = nKnown;
  const stack: Frame<S>[] = [];
  // Phase 1 walks the candidate calls with a known return (those before the
  // first return event); phase 2 then walks the unknown-outcome calls made no
  // later than that return event (`limit`) that observe the state, and phase
  // 3 the unknown-outcome blind writes; after that, backtrack.
  let phase: 1 | 2 | 3 = 1;
  let limit = 0;
  let node: Ev | null = head.next;
  let bestDepth = -1;
  let best: { prefix: number[]; state: S; blocker: number } | null = null;
  const checkTime = deadline !== Infinity;
  let iterations = 0;
  const readOnly = reduce ? model.readOnly?.bind(model) : undefined;
  let fresh = readOnly !== undefined;

  for (;;) {
    if (checkTime && (++iterations & 0x3ff) === 0 && performance.now() > deadline) return { result: "timeout" };
    const top = stack[stack.length - 1];
    // The restriction: the operation placed last has an unknown outcome.
    const after = reduce && top !== undefined && known[top.node.idx] === 0 ? top : undefined;

    if (fresh && readOnly !== undefined) {
      // A forced move: a read-only candidate with a known outcome that is
      // legal now may go first in any completion (it changes nothing, and
      // nothing still unplaced returned before its call), so it is placed
      // without trying alternatives.
      fresh = false;
      let forced: Ev | null = null;
      for (let e = head.next; e !== null && e.isCall; e = e.next) {
        const op = (ops[e.idx] as TimedOp<O>).op;
        if (readOnly(op) && model.step(state, op) !== ILLEGAL) {
          forced = e;
          break;
        }
      }
      if (forced !== null) {
        const op = (ops[forced.idx] as TimedOp<O>).op;
        let ok = after === undefined || mayFollow(after.node.idx, after.state, forced.idx, op, state);
        if (ok) {
          toggle(forced.idx);
          ok = visit(zKnown ^ Math.imul(model.hash(state), 0x9e3779b1), state, -1, undefined);
          if (ok) {
            // phase 3 with limit -∞: when this frame is popped, backtrack further.
            stack.push({ node: forced, state, phase: 3, limit: -Infinity });
            lift(forced);
            if (--remaining === 0) return { result: "ok", order: stack.map((f) => f.node.idx) };
            phase = 1;
            node = head.next;
            fresh = true;
            continue;
          }
          toggle(forced.idx);
        }
        // Every completion may start with the forced move, and that one is
        // explored (or excluded) elsewhere: this configuration is done.
        phase = 3;
        node = null;
      }
    }
    if (phase === 1) {
      if (node === null || !node.isCall) {
        limit = node === null ? Infinity : node.time;
        phase = 2;
        node = ohead.next;
        continue;
      }
    } else if (node === null || node.time > limit) {
      if (phase === 2 && after === undefined) {
        // (Blind writes never follow an unknown-outcome operation.)
        phase = 3;
        node = bhead.next;
        continue;
      }
      // Dead end: nothing more can go before the first remaining return.
      if (stack.length > bestDepth) {
        bestDepth = stack.length;
        let r = head.next;
        while (r !== null && r.isCall) r = r.next;
        best = { prefix: stack.map((f) => f.node.idx), state, blocker: r === null ? -1 : r.idx };
      }
      stack.pop();
      if (top === undefined) break;
      unlift(top.node);
      toggle(top.node.idx);
      if (known[top.node.idx] === 1) remaining++;
      state = top.state;
      phase = top.phase;
      limit = top.limit;
      node = top.node.next;
      continue;
    }

    const idx = node.idx;
    const op = (ops[idx] as TimedOp<O>).op;
    const next = model.step(state, op);
    if (
      next !== ILLEGAL &&
      (after === undefined || mayFollow(after.node.idx, after.state, idx, op, next)) &&
      // An unknown-outcome operation that changes nothing may as well never
      // have happened, and one that nothing may follow is a dead end.
      (known[idx] === 1 ||
        !reduce ||
        (!model.equal(next, state) && (phase !== 3 || firstTwin(idx)) && hasFollower(idx, state, next, limit)))
    ) {
      toggle(idx);
      const key = zKnown ^ Math.imul(model.hash(next), 0x9e3779b1);
      if (known[idx] === 1 || !reduce ? visit(key, next, -1, undefined) : visit(key, next, idx, state)) {
        stack.push({ node, state, phase, limit });
        state = next;
        lift(node);
        if (known[idx] === 1 && --remaining === 0) return { result: "ok", order: stack.map((f) => f.node.idx) };
        phase = 1;
        node = head.next;
        fresh = readOnly !== undefined;
        continue;
      }
      toggle(idx);
    }
    node = node.next;
  }

  if (best === null) throw new Error("linearizability search ended without exploring anything");
  return { result: "illegal", ...best };
}

const MAX_PREFIX_LINES = 12;
const MAX_PENDING_LINES = 10;

function explain<S, O extends Operation>(
  key: string,
  model: Model<S, O>,
  timed: readonly TimedOp<O>[],
  r: Extract<SearchResult<S>, { result: "illegal" }>,
  droppedGets: number,
): string {
  const unknown = timed.filter((t) => t.ret === undefined).length;
  const lines: string[] = [];
  lines.push(
    `key ${JSON.stringify(key)} is not linearizable: no legal order of its ${timed.length} operations respects real time` +
      (unknown > 0 ? ` (${unknown} with an unknown outcome, which may also never have taken effect)` : "") +
      (droppedGets > 0 ? `; ${droppedGets} get(s) with an unknown outcome ignored` : "") +
      ".",
  );
  const blocker = timed[r.blocker];
  if (blocker === undefined) return lines.join("\n");
  lines.push(
    `The longest legal order found places ${r.prefix.length} operation(s)` + (r.prefix.length === 0 ? "." : ":"),
  );
  const from = Math.max(0, r.prefix.length - MAX_PREFIX_LINES);
  if (from > 0) lines.push(`  … ${from} earlier operation(s)`);
  let s = model.init();
  for (let i = 0; i < r.prefix.length; i++) {
    const t = timed[r.prefix[i] as number] as TimedOp<O>;
    const after = model.step(s, t.op);
    if (after === ILLEGAL) throw new Error("internal: the reported prefix is not legal");
    s = after;
    if (i >= from) lines.push(`  ${i + 1}. ${model.describeOp(t.op)}  ⇒ ${model.describeState(s)}`);
  }
  lines.push(`after which the key holds ${model.describeState(r.state)}, and`);
  lines.push(`  ${model.describeOp(blocker.op)}`);
  const why =
    model.step(r.state, blocker.op) === ILLEGAL
      ? model.explainIllegal(r.state, blocker.op)
      : "it is legal there, but no continuation satisfies the operations that follow";
  lines.push(`returned before it could take effect: ${why}.`);

  const placed = new Set(r.prefix);
  const bret = blocker.ret ?? Infinity;
  const pending = timed
    .map((t, i) => ({ t, i }))
    .filter(({ t, i }) => i !== r.blocker && !placed.has(i) && t.call <= bret)
    .sort((a, b) => a.t.call - b.t.call);
  if (pending.length > 0) {
    lines.push("Other operations that could have taken effect before it returned:");
    for (const { t } of pending.slice(0, MAX_PENDING_LINES)) lines.push(`  ${model.describeOp(t.op)}`);
    if (pending.length > MAX_PENDING_LINES) lines.push(`  … and ${pending.length - MAX_PENDING_LINES} more`);
  }
  return lines.join("\n");
}

/**
 * Checks a KV client history for linearizability, one key at a time (keys in
 * sorted order). Throws a TypeError on a malformed operation.
 */
export function checkLinearizable(history: readonly Operation[], options: CheckOptions = {}): CheckResult {
  history.forEach((op, i) => validateOperation(op, `operation ${i}`));
  const { timeoutMs } = options;
  const deadline = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
  const partitions = partitionByKey(history);
  let checked = 0;
  for (const [key, keyOps] of partitions) {
    // A get whose outcome is unknown neither changes the state nor tells us
    // anything: drop it.
    const timed: TimedOp<Operation>[] = [];
    for (const op of keyOps) {
      if (op.kind === "get" && op.ret === undefined) continue;
      timed.push({ op, call: op.call, ret: op.ret });
    }
    const model = registerModel(keyOps);
    const r = searchLinearization(model, timed, { deadline });
    if (r.result === "timeout") {
      return {
        result: "unknown",
        reason:
          `the time budget of ${timeoutMs} ms ran out while checking key ${JSON.stringify(key)} ` +
          `(${timed.length} operations); ${checked} of ${partitions.size} key(s) were checked and found linearizable`,
      };
    }
    if (r.result === "illegal") {
      return {
        result: "illegal",
        key,
        explanation: explain(key, model, timed, r, keyOps.length - timed.length),
        ops: [...keyOps].sort((a, b) => a.call - b.call),
      };
    }
    checked++;
  }
  return { result: "ok" };
}
