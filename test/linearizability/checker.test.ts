import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { checkLinearizable, searchLinearization, type CheckResult, type TimedOp } from "./checker.js";
import { HistoryRecorder, loadHistory, parseHistory, validateOperation, type Operation } from "./history.js";
import { ILLEGAL, kvRegisterModel, registerModel } from "./model.js";
import { generateLinearizable, rng } from "./random-history.js";

// ---------------------------------------------------------------------------
// Builders: `[call, ret]`, with ret undefined for an unknown outcome.

type Interval = readonly [number, number | undefined];

class Hist {
  readonly ops: Operation[] = [];
  constructor(private readonly key = "k") {}
  put(client: string, value: string, [call, ret]: Interval, key = this.key): this {
    this.ops.push({ id: this.ops.length, clientId: client, kind: "put", key, input: { value }, call, ret });
    return this;
  }
  del(client: string, [call, ret]: Interval, key = this.key): this {
    this.ops.push({ id: this.ops.length, clientId: client, kind: "delete", key, call, ret });
    return this;
  }
  /** `value` undefined with ret undefined = an unknown-outcome get. */
  get(client: string, value: string | null | undefined, [call, ret]: Interval, key = this.key): this {
    const op: Operation = { id: this.ops.length, clientId: client, kind: "get", key, call, ret };
    if (value !== undefined) op.output = { value };
    this.ops.push(op);
    return this;
  }
  cas(client: string, expected: string | null, value: string, ok: boolean | undefined, [call, ret]: Interval, key = this.key): this {
    const op: Operation = { id: this.ops.length, clientId: client, kind: "cas", key, input: { expected, value }, call, ret };
    if (ok !== undefined) op.output = { ok };
    this.ops.push(op);
    return this;
  }
}

function assertOk(ops: readonly Operation[]): void {
  const r = checkLinearizable(ops);
  assert.equal(r.result, "ok", r.result === "illegal" ? r.explanation : r.result === "unknown" ? r.reason : "");
}

function assertIllegal(ops: readonly Operation[], key = "k"): Extract<CheckResult, { result: "illegal" }> {
  const r = checkLinearizable(ops);
  assert.equal(r.result, "illegal", "expected a violation");
  assert.ok(r.result === "illegal");
  assert.equal(r.key, key);
  assert.ok(r.explanation.includes(JSON.stringify(key)), `the explanation names the key:\n${r.explanation}`);
  assert.ok(r.ops.length > 0 && r.ops.every((o) => o.key === key), "result.ops are the key's operations");
  assert.equal(r.ops.length, ops.filter((o) => o.key === key).length);
  return r;
}

// ---------------------------------------------------------------------------
// A brute-force reference: tries every order respecting real time, with
// unknown-outcome operations optional. Exponential; for tiny histories only.

function bruteForceLinearizable(ops: readonly Operation[]): boolean {
  const byKey = new Map<string, Operation[]>();
  for (const op of ops) byKey.set(op.key, [...(byKey.get(op.key) ?? []), op]);
  for (const list of byKey.values()) {
    const n = list.length;
    const placed = new Array<boolean>(n).fill(false);
    const go = (state: string | null, left: number): boolean => {
      if (left === 0) return true;
      for (let i = 0; i < n; i++) {
        const op = list[i] as Operation;
        if (placed[i] === true) continue;
        // op may go next iff no unplaced operation returned before op's call.
        const blocked = list.some((o, j) => j !== i && placed[j] !== true && o.ret !== undefined && o.ret < op.call);
        if (blocked) continue;
        const next = kvRegisterModel.step(state, op);
        if (next === ILLEGAL) continue;
        placed[i] = true;
        const ok = go(next, left - (op.ret !== undefined ? 1 : 0));
        placed[i] = false;
        if (ok) return true;
      }
      return false;
    };
    if (!go(null, list.filter((o) => o.ret !== undefined).length)) return false;
  }
  return true;
}

/** Checks that a witness order is legal: model steps, every known op present, real time respected. */
function assertWitness(ops: readonly TimedOp<Operation>[], order: readonly number[]): void {
  let s = kvRegisterModel.init();
  const pos = new Map<number, number>();
  order.forEach((idx, p) => pos.set(idx, p));
  assert.equal(pos.size, order.length, "no operation twice");
  for (const idx of order) {
    const next = kvRegisterModel.step(s, (ops[idx] as TimedOp<Operation>).op);
    assert.notEqual(next, ILLEGAL, `witness step ${idx} is legal`);
    s = next as string | null;
  }
  ops.forEach((a, i) => {
    if (a.ret !== undefined) assert.ok(pos.has(i), `known op ${i} is linearized`);
  });
  for (const [i, pi] of pos) {
    for (const [j, pj] of pos) {
      const a = ops[i] as TimedOp<Operation>;
      const b = ops[j] as TimedOp<Operation>;
      if (a.ret !== undefined && a.ret < b.call) assert.ok(pi < pj, `real time: ${i} before ${j}`);
    }
  }
}

function timedOps(ops: readonly Operation[], key: string): TimedOp<Operation>[] {
  return ops
    .filter((o) => o.key === key && !(o.kind === "get" && o.ret === undefined))
    .map((op) => ({ op, call: op.call, ret: op.ret }));
}

// ---------------------------------------------------------------------------

describe("linearizability checker: known-good histories", () => {
  test("empty history", () => {
    assertOk([]);
  });

  test("sequential history of every kind", () => {
    const h = new Hist()
      .get("a", null, [0, 1])
      .put("a", "x", [2, 3])
      .get("b", "x", [4, 5])
      .cas("a", "x", "y", true, [6, 7])
      .cas("b", "x", "z", false, [8, 9])
      .get("a", "y", [10, 11])
      .del("b", [12, 13])
      .get("a", null, [14, 15])
      .cas("a", null, "w", true, [16, 17])
      .get("b", "w", [18, 19]);
    assertOk(h.ops);
  });

  test("concurrent overlapping put and get: either order is valid", () => {
    for (const seen of [null, "x"]) {
      const h = new Hist().put("a", "x", [0, 10]).get("b", seen, [2, 8]);
      assertOk(h.ops);
    }
  });

  test("concurrent writes may take effect in either order", () => {
    for (const seen of ["x", "y"]) {
      const h = new Hist().put("a", "x", [0, 10]).put("b", "y", [1, 9]).get("c", seen, [11, 12]).get("a", seen, [13, 14]);
      assertOk(h.ops);
    }
  });

  test("a read returns the value of a put that is still in flight", () => {
    const h = new Hist().put("a", "old", [0, 1]).put("a", "new", [2, 20]).get("b", "new", [3, 4]).get("c", "new", [5, 6]);
    assertOk(h.ops);
  });

  test("touching intervals (ret === call) count as concurrent", () => {
    const h = new Hist().put("a", "x", [0, 5]).get("b", null, [5, 6]);
    assertOk(h.ops);
  });

  test("unknown-outcome put whose value is read later", () => {
    const h = new Hist().put("a", "x", [0, 1]).put("a", "y", [2, undefined]).get("b", "y", [50, 51]).get("b", "y", [52, 53]);
    assertOk(h.ops);
  });

  test("unknown-outcome put that is never read", () => {
    const h = new Hist().put("a", "x", [0, 1]).put("a", "y", [2, undefined]).get("b", "x", [50, 51]).get("c", "x", [52, 53]);
    assertOk(h.ops);
  });

  test("unknown-outcome put read after a later completed write was read", () => {
    // y may take effect long after its call: after z, which was read first.
    const h = new Hist().put("a", "y", [0, undefined]).put("b", "z", [5, 6]).get("c", "z", [7, 8]).get("c", "y", [9, 10]);
    assertOk(h.ops);
  });

  test("unknown-outcome cas and delete, and a dropped unknown get", () => {
    const h = new Hist()
      .put("a", "x", [0, 1])
      .cas("a", "x", "y", undefined, [2, undefined])
      .get("b", "y", [10, 11])
      .del("b", [12, undefined])
      .get("c", "y", [13, 14])
      .get("c", "nonsense", [15, undefined]); // unknown outcome: its output is ignored
    h.ops[5] = { ...h.ops[5], output: undefined } as Operation;
    assertOk(h.ops);
  });

  test("keys are independent", () => {
    const h = new Hist().put("a", "x", [0, 1], "k1").put("a", "x2", [2, 3], "k2").get("b", "x", [4, 5], "k1").get("b", null, [0, 0.5], "k2");
    assertOk(h.ops);
  });
});

describe("linearizability checker: known-bad histories", () => {
  test("stale read after a completed write", () => {
    const h = new Hist().put("a", "old", [0, 1]).put("b", "new", [2, 3]).get("c", "old", [4, 5]);
    const r = assertIllegal(h.ops);
    assert.match(r.explanation, /get returned "old"/);
  });

  test("a read of a value never written", () => {
    const h = new Hist().put("a", "x", [0, 1]).get("b", "ghost", [2, 3]);
    const r = assertIllegal(h.ops);
    assert.match(r.explanation, /"ghost"/);
  });

  test("two sequential reads go backwards (new, then old) with no intervening write", () => {
    const h = new Hist().put("a", "old", [0, 1]).put("a", "new", [2, 100]).get("b", "new", [3, 4]).get("b", "old", [5, 6]);
    assertIllegal(h.ops);
  });

  test("cas ok:true although another completed put changed the value", () => {
    const h = new Hist().put("a", "x", [0, 1]).put("b", "y", [2, 3]).cas("a", "x", "z", true, [4, 5]);
    assertIllegal(h.ops);
  });

  test("cas ok:false although the value was the expected one", () => {
    const h = new Hist().put("a", "x", [0, 1]).cas("b", "x", "z", false, [2, 3]);
    assertIllegal(h.ops);
  });

  test("lost write: a completed put, then strictly later a get of the older value", () => {
    const h = new Hist("acct")
      .put("a", "v1", [0, 1])
      .put("z", "unrelated", [0, 30], "other")
      .get("y", "v1", [2, 3])
      .put("b", "v2", [4, 5])
      .get("z", "unrelated", [31, 32], "other")
      .get("c", "v1", [40, 41]);
    const r = assertIllegal(h.ops, "acct");
    assert.equal(r.ops.length, 4);
  });

  test("a read after a completed delete returns the deleted value", () => {
    const h = new Hist().put("a", "x", [0, 1]).del("a", [2, 3]).get("b", "x", [4, 5]);
    assertIllegal(h.ops);
  });

  test("an unknown-outcome put cannot take effect before its call", () => {
    const h = new Hist().put("a", "x", [0, 1]).get("b", "y", [2, 3]).put("c", "y", [5, undefined]);
    assertIllegal(h.ops);
  });

  test("once an unknown-outcome put is read, an older value cannot come back", () => {
    const h = new Hist().put("a", "x", [0, 1]).put("a", "y", [2, undefined]).get("b", "y", [10, 11]).get("b", "x", [12, 13]);
    assertIllegal(h.ops);
  });

  test("the violation is reported for the right key, and explained", () => {
    const h = new Hist()
      .put("a", "x", [0, 1], "good")
      .get("b", "x", [2, 3], "good")
      .put("a", "p", [0, 1], "bad")
      .put("a", "q", [2, 3], "bad")
      .get("b", "p", [4, 5], "bad");
    const r = assertIllegal(h.ops, "bad");
    assert.match(r.explanation, /^key "bad" is not linearizable/);
    assert.match(r.explanation, /put\("q"\)/);
    assert.match(r.explanation, /the key holds "q" but the get returned "p"/);
  });
});

describe("linearizability checker: edge cases", () => {
  test("a time budget that runs out gives unknown", () => {
    // 28 fully concurrent puts and a get of a value none of them wrote: the
    // search has to try every subset of the puts.
    const h = new Hist();
    for (let i = 0; i < 28; i++) h.put(`c${i}`, `v${i}`, [0, 100]);
    h.get("r", "ghost", [0, 100]);
    const r = checkLinearizable(h.ops, { timeoutMs: 50 });
    assert.equal(r.result, "unknown");
    assert.ok(r.result === "unknown" && r.reason.includes('"k"'), "reason names the key");
  });

  test("malformed operations are rejected", () => {
    assert.throws(() => checkLinearizable([{ clientId: 1, kind: "put", key: "k", input: { value: "x" }, call: 5, ret: 4 }]), /before call/);
    assert.throws(() => checkLinearizable([{ clientId: 1, kind: "get", key: "k", call: 0, ret: 1 }]), /completed get needs output/);
    assert.throws(() => validateOperation({ clientId: 1, kind: "incr", key: "k", call: 0 }), /unknown kind/);
  });

  test("agrees with a brute-force search on small random histories", () => {
    const r = rng(12345);
    const values = [null, "a", "b"] as const;
    let legal = 0;
    let illegal = 0;
    for (let iter = 0; iter < 1500; iter++) {
      const h = new Hist();
      const n = 1 + Math.floor(r() * 7);
      for (let i = 0; i < n; i++) {
        const call = Math.floor(r() * 10);
        const ret = r() < 0.2 ? undefined : call + Math.floor(r() * 5);
        const v = values[Math.floor(r() * 3)] ?? null;
        const w = r() < 0.5 ? "a" : "b";
        const x = r();
        if (x < 0.3) h.put(`c${i}`, w, [call, ret]);
        else if (x < 0.65) h.get(`c${i}`, ret === undefined ? undefined : v, [call, ret]);
        else if (x < 0.75) h.del(`c${i}`, [call, ret]);
        else h.cas(`c${i}`, v, w, ret === undefined ? undefined : r() < 0.5, [call, ret]);
      }
      const expected = bruteForceLinearizable(h.ops);
      const got = checkLinearizable(h.ops);
      assert.equal(got.result, expected ? "ok" : "illegal", `history: ${JSON.stringify(h.ops)}`);
      if (expected) legal++;
      else illegal++;
      const search = searchLinearization(registerModel(h.ops), timedOps(h.ops, "k"));
      if (search.result === "ok") assertWitness(timedOps(h.ops, "k"), search.order);
    }
    assert.ok(legal > 200 && illegal > 200, `both outcomes exercised (${legal} legal, ${illegal} illegal)`);
  });

  test("agrees with the plain algorithm on medium random histories with many unknown outcomes", () => {
    const r = rng(777);
    let legal = 0;
    let illegal = 0;
    for (let seed = 1; seed <= 150; seed++) {
      const g = generateLinearizable({ seed, ops: 24 + (seed % 17), clients: 3 + (seed % 4), keys: 1, unknownRate: 0.25, maxThink: 1 });
      // Perturb some outputs so that both verdicts occur.
      const values = [null, ...g.ops.flatMap((o) => (o.kind === "put" || o.kind === "cas" ? [o.input.value] : []))];
      const ops = g.ops.map((o): Operation => {
        if (r() > 0.06 || o.output === undefined) return o;
        if (o.kind === "get") return { ...o, output: { value: values[Math.floor(r() * values.length)] ?? null } };
        if (o.kind === "cas") return { ...o, output: { ok: !o.output.ok } };
        return o;
      });
      const timed = timedOps(ops, "key-0");
      const fast = searchLinearization(registerModel(ops), timed);
      const plain = searchLinearization(kvRegisterModel, timed, { reductions: false });
      assert.equal(fast.result, plain.result, `seed ${seed}: ${JSON.stringify(ops)}`);
      if (fast.result === "ok") {
        assertWitness(timed, fast.order);
        legal++;
      } else illegal++;
    }
    assert.ok(legal > 25 && illegal > 25, `both outcomes exercised (${legal} legal, ${illegal} illegal)`);
  });
});

describe("linearizability checker: randomized histories", () => {
  test("simulated linearizable histories pass; a mutated read is caught", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const g = generateLinearizable({ seed, ops: 150, clients: 5, keys: 3, unknownRate: 0.08 });
      const ok = checkLinearizable(g.ops);
      assert.equal(ok.result, "ok", `seed ${seed}: ${ok.result === "illegal" ? ok.explanation : ""}`);
      for (const key of ["key-0", "key-1", "key-2"]) {
        const s = searchLinearization(kvRegisterModel, timedOps(g.ops, key));
        assert.equal(s.result, "ok");
        if (s.result === "ok") assertWitness(timedOps(g.ops, key), s.order);
      }

      const r = rng(seed * 7919);
      const gets = g.ops.filter((o): o is Extract<Operation, { kind: "get" }> => o.kind === "get" && o.output !== undefined);
      assert.ok(gets.length > 0);

      // A value nobody ever wrote.
      const victim = gets[Math.floor(r() * gets.length)] as Extract<Operation, { kind: "get" }>;
      const mutated = g.ops.map((o) => (o === victim ? { ...victim, output: { value: "never-written" } } : o));
      const bad = checkLinearizable(mutated);
      assert.equal(bad.result, "illegal", `seed ${seed}: a read of a never-written value`);
      assert.ok(bad.result === "illegal" && bad.key === victim.key && bad.explanation.includes(JSON.stringify(victim.key)));

      // A value whose only writer was called after the read returned.
      const future = gets.flatMap((gop) => {
        const w = g.ops.find((o) => o.key === gop.key && o.kind === "put" && gop.ret !== undefined && o.call > gop.ret);
        return w !== undefined && w.kind === "put" ? [{ gop, value: w.input.value }] : [];
      });
      const f = future[Math.floor(r() * future.length)];
      if (f !== undefined) {
        const mutated2 = g.ops.map((o) => (o === f.gop ? { ...f.gop, output: { value: f.value } } : o));
        const bad2 = checkLinearizable(mutated2);
        assert.equal(bad2.result, "illegal", `seed ${seed}: a read from the future`);
        assert.ok(bad2.result === "illegal" && bad2.key === f.gop.key);
      }
    }
  });

  test("performance: ~2,000 operations, 4 keys, 8 concurrent clients", () => {
    const g = generateLinearizable({ seed: 2024, ops: 2000, clients: 8, keys: 4, unknownRate: 0.03 });
    const ok = checkLinearizable(g.ops, { timeoutMs: 30_000 });
    assert.equal(ok.result, "ok", ok.result === "illegal" ? ok.explanation : ok.result === "unknown" ? ok.reason : "");

    // A violation near the end of a long partition: the search must exhaust it.
    const gets = g.ops.filter((o) => o.kind === "get" && o.output !== undefined);
    const victim = gets[gets.length - 5] as Operation;
    const mutated = g.ops.map((o) => (o === victim ? { ...o, output: { value: "never-written" } } : o)) as Operation[];
    const bad = checkLinearizable(mutated, { timeoutMs: 30_000 });
    assert.equal(bad.result, "illegal");
    assert.ok(bad.result === "illegal" && bad.key === victim.key);
  });
});

describe("history recorder", () => {
  test("records calls and returns on its clock; failed ops are dropped, pending ones are unknown", () => {
    let t = 0;
    const rec = new HistoryRecorder({ now: () => t++ });
    const p = rec.invoke("c1", "put", "k", { value: "x" });
    rec.ok(p);
    const g = rec.invoke("c2", "get", "k");
    rec.ok(g, { value: "x" });
    const c = rec.invoke("c1", "cas", "k", { expected: "x", value: "y" });
    rec.unknown(c);
    const f = rec.invoke("c3", "put", "k", { value: "z" });
    rec.fail(f);
    rec.invoke("c4", "delete", "k"); // never completes
    const ops = rec.operations();
    assert.deepEqual(
      ops.map((o) => [o.id, o.kind, o.call, o.ret]),
      [
        [0, "put", 0, 1],
        [1, "get", 2, 3],
        [2, "cas", 4, undefined],
        [4, "delete", 6, undefined],
      ],
    );
    assert.deepEqual(ops[1]?.output, { value: "x" });
    assert.equal(checkLinearizable(ops).result, "ok");
    assert.throws(() => rec.ok(p), /already completed/);
    assert.throws(() => rec.unknown(99), /no operation #99/);
    // @ts-expect-error: a cas must report { ok }
    assert.throws(() => rec.ok(rec.invoke("c1", "cas", "k", { expected: null, value: "v" }), { value: "x" }), /needs output/);
  });

  test("save / load round-trips a failing history", async () => {
    const rec = new HistoryRecorder();
    rec.ok(rec.invoke(1, "put", "k", { value: "a" }));
    rec.ok(rec.invoke(1, "put", "k", { value: "b" }));
    rec.ok(rec.invoke(2, "get", "k"), { value: "a" });
    rec.unknown(rec.invoke(3, "put", "k", { value: "c" }));
    const r = checkLinearizable(rec.operations());
    assert.equal(r.result, "illegal");

    const dir = await mkdtemp(join(tmpdir(), "pgraft-lin-"));
    try {
      const path = join(dir, "history.json");
      await rec.save(path);
      const text = await readFile(path, "utf8");
      assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(rec.toJSON())));
      const loaded = await loadHistory(path);
      assert.deepEqual(loaded, rec.operations().map((o) => validateOperation(o)));
      assert.equal(loaded[3]?.ret, undefined);
      assert.equal(checkLinearizable(loaded).result, "illegal");
      assert.deepEqual(parseHistory(JSON.parse(JSON.stringify(loaded))), loaded);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
