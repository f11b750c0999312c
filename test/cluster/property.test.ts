// Property tests over random command sequences (valid, invalid and garbage,
// with membership changes): determinism across a snapshot/restore in the middle,
// idempotent replay, and the KV store against a plain reference model.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { encodeCommand, encodeMemberContext, type Command } from "../../src/cluster/commands.js";
import { ClusterState } from "../../src/cluster/state.js";
import { encodeConfChange, type ConfChangeType } from "../../src/consensus/confchange.js";
import { EntryType, type Entry } from "../../src/consensus/types.js";
import { hex } from "./helpers.js";

const key = fc.constantFrom("a", "a/b", "a/c", "ab", "b", "\u00e9", "\uFF61", "\u{1F600}", "");
const value = fc.constantFrom("1", '"s"', '{"a":1}', "[1,2]", "null", "not json", "{");
const leaseId = fc.integer({ min: 1, max: 3 });
const now = fc.integer({ min: 0, max: 200 });
const rev = fc.integer({ min: 0, max: 12 });

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("kv.put" as const), key, value }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("kv.put" as const), key, value, ifModRevision: rev }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("kv.put" as const), key, value, leaseId }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("kv.delete" as const), key }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("kv.delete" as const), key, ifModRevision: rev }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("kv.deletePrefix" as const), prefix: fc.constantFrom("a", "a/", "\u00e9", "") }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("lease.grant" as const), leaseId, ttlMs: fc.integer({ min: 1, max: 100 }), nowMs: now }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("lease.keepAlive" as const), leaseId, nowMs: now }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("lease.revoke" as const), leaseId }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("lease.expire" as const), leaseIds: fc.array(leaseId, { maxLength: 3 }), nowMs: now }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("config.set" as const),
      name: fc.constantFrom("heartbeat_interval", "election_timeout", "debug", "kv_max_key_bytes", "kv_max_value_bytes", "nope"),
      value: fc.constantFrom("75ms", "600ms", "1.5s", "on", "false", "3", "64", "abc"),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("config.reset" as const), name: fc.constantFrom("heartbeat_interval", "election_timeout", "kv_max_key_bytes") }) },
  { weight: 1, arbitrary: fc.constant({ op: "config.save" as const }) },
  {
    weight: 1,
    arbitrary: fc.record(
      {
        op: fc.constant("member.update" as const),
        id: fc.integer({ min: 1, max: 4 }),
        name: fc.constantFrom("n1", "n2", "x", ""),
        httpAddress: fc.constantFrom("", "h:8008"),
        postgresDsn: fc.constantFrom("host=h", "password=p", ""),
      },
      { requiredKeys: ["op", "id"] },
    ),
  },
  { weight: 1, arbitrary: fc.constant({ op: "noop" as const }) },
);

type Step = { kind: "cmd"; cmd: Command } | { kind: "conf"; type: ConfChangeType; nodeId: number; ctx: boolean } | { kind: "raw"; bytes: Uint8Array };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 20, arbitrary: command.map((cmd): Step => ({ kind: "cmd", cmd })) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("conf" as const), type: fc.constantFrom<ConfChangeType>("addVoter", "addLearner", "removeNode"), nodeId: fc.integer({ min: 1, max: 4 }), ctx: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((bytes): Step => ({ kind: "raw", bytes })) },
);

/** Log entries for the steps, with occasional index gaps (empty entries the driver skips). */
function toEntries(steps: Step[], gaps: boolean[]): Entry[] {
  let index = 1;
  return steps.map((s, i) => {
    index += gaps[i] ? 2 : 1;
    const term = 1;
    switch (s.kind) {
      case "cmd":
        return { term, index, type: EntryType.Normal, data: encodeCommand(s.cmd) };
      case "raw":
        return { term, index, type: EntryType.Normal, data: s.bytes };
      case "conf": {
        const context = s.ctx ? encodeMemberContext({ name: `m${s.nodeId}`, raftAddress: `10.0.0.${s.nodeId}:7400` }) : undefined;
        return { term, index, type: EntryType.ConfChange, data: encodeConfChange({ type: s.type, nodeId: s.nodeId, ...(context ? { context } : {}) }) };
      }
    }
  });
}

const founding = { members: [{ id: 1, name: "n1", raftAddress: "10.0.0.1:7400" }] };

const scenario = fc
  .array(step, { minLength: 1, maxLength: 80, size: "max" })
  .chain((steps) => fc.record({ steps: fc.constant(steps), gaps: fc.array(fc.boolean(), { minLength: steps.length, maxLength: steps.length }), cut: fc.integer({ min: 0, max: steps.length }) }));

describe("ClusterState properties", () => {
  test("same entries with a snapshot/restore in the middle: same results, byte-identical snapshots", () => {
    fc.assert(
      fc.property(scenario, ({ steps, gaps, cut }) => {
        const entries = toEntries(steps, gaps);
        const a = new ClusterState(founding);
        const b = new ClusterState(founding);
        const resultsA = entries.map((e) => a.apply(e));
        for (const e of entries.slice(0, cut)) b.apply(e);
        // Restart: a fresh instance restores b's snapshot, then the WAL is replayed from
        // an older point (everything), so entries up to the cut must be skipped.
        const c = new ClusterState(founding);
        c.restore(b.snapshot());
        const resultsC = entries.map((e) => c.apply(e));
        for (let i = 0; i < entries.length; i++) {
          if (i < cut) {
            const r = resultsC[i]!;
            assert.ok(!r.ok && r.code === "ALREADY_APPLIED", `entry ${i}`);
          } else assert.deepEqual(resultsC[i], resultsA[i], `entry ${i}`);
        }
        assert.equal(hex(c.snapshot()), hex(a.snapshot()));
        assert.deepEqual(c.kvList(""), a.kvList(""));
        assert.deepEqual(c.members(), a.members());
        assert.deepEqual(c.config(), a.config());
        assert.deepEqual(c.leases(), a.leases());
        // And a snapshot restores to itself.
        const d = new ClusterState();
        d.restore(a.snapshot());
        assert.equal(hex(d.snapshot()), hex(a.snapshot()));
      }),
      { numRuns: 300 },
    );
  });

  test("the KV store agrees with a reference model of etcd's rules", () => {
    interface M {
      value: string;
      create: number;
      mod: number;
      version: number;
    }
    const isJson = (v: string): boolean => {
      try {
        JSON.parse(v);
        return true;
      } catch {
        return false;
      }
    };
    const kvCommand: fc.Arbitrary<Command> = fc.oneof(
      fc.record({ op: fc.constant("kv.put" as const), key, value }),
      fc.record({ op: fc.constant("kv.put" as const), key, value, ifModRevision: rev }),
      fc.record({ op: fc.constant("kv.delete" as const), key }),
      fc.record({ op: fc.constant("kv.delete" as const), key, ifModRevision: rev }),
      fc.record({ op: fc.constant("kv.deletePrefix" as const), prefix: fc.constantFrom("a", "a/", "\u00e9") }),
    );
    fc.assert(
      fc.property(fc.array(kvCommand, { maxLength: 100, size: "max" }), (cmds) => {
        const s = new ClusterState();
        const model = new Map<string, M>();
        let revision = 0;
        cmds.forEach((cmd, i) => {
          const r = s.apply({ term: 1, index: i + 1, type: EntryType.Normal, data: encodeCommand(cmd) });
          switch (cmd.op) {
            case "kv.put": {
              const cur = model.get(cmd.key);
              const casOk = cmd.ifModRevision === undefined || (cur?.mod ?? 0) === cmd.ifModRevision;
              const valid = cmd.key !== "" && isJson(cmd.value);
              assert.equal(r.ok, valid && casOk, JSON.stringify(cmd));
              if (!r.ok) break;
              revision++;
              model.set(cmd.key, { value: cmd.value, create: cur?.create ?? revision, mod: revision, version: (cur?.version ?? 0) + 1 });
              break;
            }
            case "kv.delete": {
              const cur = model.get(cmd.key);
              const casOk = cmd.ifModRevision === undefined || (cur?.mod ?? 0) === cmd.ifModRevision;
              assert.equal(r.ok, cmd.key !== "" && casOk && cur !== undefined, JSON.stringify(cmd));
              if (!r.ok) break;
              revision++;
              model.delete(cmd.key);
              break;
            }
            case "kv.deletePrefix": {
              const gone = [...model.keys()].filter((k) => k.startsWith(cmd.prefix));
              assert.ok(r.ok && r.deleted === gone.length);
              if (gone.length) revision++;
              for (const k of gone) model.delete(k);
              break;
            }
            default:
              break;
          }
          assert.equal(s.revision, revision);
        });
        const expected = [...model.entries()]
          .sort(([x], [y]) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
          .map(([k, m]) => ({ key: k, value: m.value, createRevision: m.create, modRevision: m.mod, version: m.version, lease: 0 }));
        assert.deepEqual(s.kvList("").kvs, expected);
        for (const p of ["a", "a/", "\u00e9", "\u{1F600}"]) {
          assert.deepEqual(
            s.kvList(p).kvs,
            expected.filter((e) => e.key.startsWith(p)),
          );
        }
      }),
      { numRuns: 300 },
    );
  });
});
