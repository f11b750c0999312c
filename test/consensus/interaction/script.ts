// The datadriven script format and its command interpreter.
//
// A script is a sequence of blocks; lines outside blocks that are blank or
// start with '#' are comments. A block is
//
//   command arg key=value key=(1 2 3)
//   [more argument lines]
//   ----
//   expected output (no blank lines; "ok" when a command prints nothing)
//   <blank line>
//
// Commands are documented in COMMANDS below.
import { NotLeaderError } from "../../../src/consensus/errors.js";
import type { ReadOnlyOption } from "../../../src/consensus/config.js";
import type { ConfChangeType } from "../../../src/consensus/confchange.js";
import { MessageType, type Message, type NodeId } from "../../../src/consensus/types.js";
import { bytes, DEFAULT_CLUSTER, defaultNodeOptions, fmtConf, fmtEntry, fmtError, fmtIds, fmtMsg, fmtSnapshot, Harness, type LogLevel, type NodeOptions } from "./harness.js";

// ------------------------------------------------------------------ parsing

export interface Block {
  /** 1-based line of the command. */
  line: number;
  input: string[];
  expected: string[];
}

export type Piece = { kind: "text"; line: string } | { kind: "block"; block: Block };

export function parseScript(text: string): Piece[] {
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const pieces: Piece[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i]!;
    if (line.trim() === "" || line.startsWith("#")) {
      pieces.push({ kind: "text", line });
      i++;
      continue;
    }
    const start = i;
    const input: string[] = [];
    while (i < lines.length && lines[i] !== "----") input.push(lines[i++]!);
    if (i >= lines.length) throw new Error(`line ${start + 1}: command without a "----" separator`);
    i++; // ----
    const expected: string[] = [];
    while (i < lines.length && lines[i] !== "") expected.push(lines[i++]!);
    if (i < lines.length) i++; // the blank line ends the block
    pieces.push({ kind: "block", block: { line: start + 1, input, expected } });
  }
  return pieces;
}

export function renderScript(pieces: Piece[], outputs: Map<Block, string[]>): string {
  const out: string[] = [];
  for (const p of pieces) {
    if (p.kind === "text") {
      out.push(p.line);
      continue;
    }
    out.push(...p.block.input, "----", ...(outputs.get(p.block) ?? p.block.expected), "");
  }
  while (out.length && out[out.length - 1] === "") out.pop();
  return out.join("\n") + "\n";
}

interface Args {
  cmd: string;
  pos: string[];
  kv: Map<string, string>;
}

function tokenize(s: string): string[] {
  const toks: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (/\s/.test(ch) && depth === 0) {
      if (cur) toks.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (depth !== 0) throw new Error(`unbalanced parentheses in ${JSON.stringify(s)}`);
  if (cur) toks.push(cur);
  return toks;
}

function parseArgs(input: string[]): Args {
  const toks = tokenize(input.join(" "));
  const cmd = toks.shift();
  if (!cmd) throw new Error("empty command");
  const pos: string[] = [];
  const kv = new Map<string, string>();
  for (const t of toks) {
    const eq = t.indexOf("=");
    if (eq > 0 && !t.startsWith("(")) kv.set(t.slice(0, eq), t.slice(eq + 1));
    else pos.push(t);
  }
  return { cmd, pos, kv };
}

function int(s: string | undefined, what: string): number {
  if (s === undefined) throw new Error(`missing ${what}`);
  const n = Number(s);
  if (!Number.isInteger(n)) throw new Error(`${what}: not an integer: ${s}`);
  return n;
}

function idList(s: string): NodeId[] {
  const inner = s.startsWith("(") && s.endsWith(")") ? s.slice(1, -1) : s;
  return inner
    .split(/[\s,]+/)
    .filter((x) => x !== "")
    .map((x) => int(x, "node id"));
}

function bool(s: string): boolean {
  if (s === "true") return true;
  if (s === "false") return false;
  throw new Error(`not a boolean: ${s}`);
}

// ----------------------------------------------------------------- commands

const MSG_TYPES = new Map<string, MessageType>(
  Object.entries(MessageType)
    .filter((e): e is [string, MessageType] => typeof e[1] === "number")
    .map(([k, v]) => [k, v]),
);

function msgType(s: string): MessageType {
  const t = MSG_TYPES.get(s);
  if (t === undefined) throw new Error(`unknown message type ${s}`);
  return t;
}

/** Runs blocks against one harness; each script file gets a fresh interpreter. */
export class Interpreter {
  readonly h = new Harness();

  run(block: Block): string[] {
    let a: Args;
    try {
      a = parseArgs(block.input);
    } catch (e) {
      return [`script error: ${(e as Error).message}`];
    }
    const fn = COMMANDS[a.cmd];
    if (!fn) throw new Error(`line ${block.line}: unknown command ${a.cmd}`);
    fn(this.h, a);
    const out = this.h.takeOutput();
    return out.length ? out : ["ok"];
  }
}

type Command = (h: Harness, a: Args) => void;

const one = (a: Args): NodeId => int(a.pos[0], `${a.cmd}: node id`);

const COMMANDS: Record<string, Command> = {
  /** log-level none|info|debug — which core log lines appear in the trace. */
  "log-level": (h, a) => {
    const l = a.pos[0] as LogLevel;
    if (!["none", "info", "debug"].includes(l)) throw new Error(`bad log level ${l}`);
    h.logLevel = l;
  },

  /**
   * add-nodes <n> [voters=(..) learners=(..) index=<i>] [max-inflight=..]
   * [max-inflight-bytes=..] [max-size-per-msg=..] [election-tick=..]
   * [heartbeat-tick=..] [prevote=bool] [checkquorum=bool] [read-only=safe|lease]
   * [cluster=<id>]. Without voters= the nodes are empty (joining).
   */
  "add-nodes": (h, a) => {
    const count = int(a.pos[0], "add-nodes: count");
    const opts: NodeOptions = defaultNodeOptions();
    const voters = a.kv.get("voters");
    const learners = a.kv.get("learners");
    const conf = voters !== undefined ? { voters: idList(voters), learners: learners ? idList(learners) : [] } : undefined;
    const index = a.kv.has("index") ? int(a.kv.get("index"), "index") : 0;
    for (const [k, v] of a.kv) {
      switch (k) {
        case "voters":
        case "learners":
        case "index":
          break;
        case "max-inflight":
          opts.maxInflightMsgs = int(v, k);
          break;
        case "max-inflight-bytes":
          opts.maxInflightBytes = int(v, k);
          break;
        case "max-size-per-msg":
          opts.maxSizePerMsg = int(v, k);
          break;
        case "max-uncommitted-size":
          opts.maxUncommittedEntriesSize = int(v, k);
          break;
        case "election-tick":
          opts.electionTick = int(v, k);
          break;
        case "heartbeat-tick":
          opts.heartbeatTick = int(v, k);
          break;
        case "prevote":
          opts.preVote = bool(v);
          break;
        case "checkquorum":
          opts.checkQuorum = bool(v);
          break;
        case "read-only":
          opts.readOnlyOption = v as ReadOnlyOption;
          break;
        case "cluster":
          opts.clusterId = v;
          break;
        default:
          throw new Error(`add-nodes: unknown option ${k}`);
      }
    }
    const ids = h.addNodes(count, conf, index, opts);
    for (const id of ids) {
      const st = h.node(id).raw.status();
      h.emit(`node ${id}: term:${st.term} commit:${st.commit} first:${st.firstIndex} last:${st.lastIndex} ${fmtConf(st.conf)}`);
    }
  },

  /** campaign <id> — start an election now (pre-vote first when enabled). */
  campaign: (h, a) => {
    h.node(one(a)).raw.campaign();
  },

  /** tick <id> <n> — n ticks. */
  tick: (h, a) => {
    h.tick(one(a), int(a.pos[1], "tick count"));
  },

  /** tick-election <id> — electionTick ticks (one election timeout). */
  "tick-election": (h, a) => {
    const id = one(a);
    h.tick(id, h.node(id).opts.electionTick);
  },

  /** tick-heartbeat <id> — heartbeatTick ticks. */
  "tick-heartbeat": (h, a) => {
    const id = one(a);
    h.tick(id, h.node(id).opts.heartbeatTick);
  },

  /** propose <id> <data> — a normal proposal; prints the error code if refused. */
  propose: (h, a) => {
    try {
      const r = h.node(one(a)).raw.propose(bytes(a.pos[1] ?? ""));
      h.emit(`proposed at ${r.term}/${r.index}`);
    } catch (e) {
      h.emit(fmtError(e));
    }
  },

  /** propose-conf-change <id> addVoter|addLearner|removeNode <node> */
  "propose-conf-change": (h, a) => {
    const type = a.pos[1] as ConfChangeType;
    const nodeId = Number(a.pos[2]);
    try {
      const r = h.node(one(a)).raw.proposeConfChange({ type, nodeId });
      h.emit(`proposed at ${r.term}/${r.index}`);
    } catch (e) {
      h.emit(fmtError(e));
    }
  },

  /** transfer-leadership from=<id> to=<id> */
  "transfer-leadership": (h, a) => {
    const from = int(a.kv.get("from"), "from");
    const to = int(a.kv.get("to"), "to");
    try {
      h.node(from).raw.transferLeader(to);
    } catch (e) {
      h.emit(fmtError(e));
    }
  },

  /** read-index <id> <ctx> */
  "read-index": (h, a) => {
    try {
      h.node(one(a)).raw.readIndex(bytes(a.pos[1] ?? ""));
    } catch (e) {
      if (e instanceof NotLeaderError) h.emit(fmtError(e));
      else throw e;
    }
  },

  /** process-ready <id>... — handle one Ready per node (in the order given). */
  "process-ready": (h, a) => {
    for (const p of a.pos) {
      const id = int(p, "node id");
      if (!h.processReady(id)) h.emit(`> ${id}: no Ready`);
    }
  },

  /**
   * deliver-msgs [<id>...] [drop=(ids)] [type=<MessageType>] — deliver the queued
   * messages addressed to the given nodes (all nodes when none are given);
   * drop= discards (without delivering) every queued message to those nodes;
   * type= restricts both to one message type.
   */
  "deliver-msgs": (h, a) => {
    const type = a.kv.has("type") ? msgType(a.kv.get("type")!) : undefined;
    const ofType = (m: Message) => type === undefined || m.type === type;
    const drop = a.kv.has("drop") ? idList(a.kv.get("drop")!) : [];
    const to = a.pos.map((p) => int(p, "node id"));
    if (drop.length) h.deliver(() => false, (m) => drop.includes(m.to) && ofType(m));
    const targets = to.length ? to : drop.length ? [] : h.ids();
    for (const id of [...targets].sort((x, y) => x - y)) h.deliver((m) => m.to === id && ofType(m));
  },

  /** print-msgs — the messages on the wire, without delivering them. */
  "print-msgs": (h) => {
    for (const m of h.queue) h.emit(fmtMsg(m));
  },

  /** stabilize [<id>...] — process Readies and deliver messages until quiet. */
  stabilize: (h, a) => {
    const ids = a.pos.length ? a.pos.map((p) => int(p, "node id")) : h.ids();
    h.stabilize(ids);
  },

  /** status <id> — role, term, commit, applied, progress, rejection counters. */
  status: (h, a) => {
    const id = one(a);
    const s = h.node(id).raw.status();
    h.emit(`${id}: ${s.role} term:${s.term} vote:${s.vote} leader:${s.leader} commit:${s.commit} applied:${s.applied} first:${s.firstIndex} last:${s.lastIndex}`);
    h.emit(fmtConf(s.conf));
    for (const [pid, p] of [...s.progress].sort((x, y) => x[0] - y[0])) {
      let l = `  ${pid}: ${p.state} match:${p.match} next:${p.next}`;
      if (p.learner) l += " learner";
      if (p.state === "replicate") l += ` inflight:${p.inflightMsgs}`;
      if (p.state === "snapshot") l += ` pendingSnapshot:${p.pendingSnapshot}`;
      if (!p.recentActive) l += " inactive";
      h.emit(l);
    }
    const rej = Object.entries(s.rejected)
      .map(([k, v]) => `${k}:${v}`)
      .join(" ");
    h.emit(`rejected: ${rej}`);
    h.emit(`elections:${s.electionsStarted} transferee:${s.leadTransferee}`);
  },

  /** raft-log <id> — the durable log (storage) of a node. */
  "raft-log": (h, a) => {
    const n = h.node(one(a));
    const first = n.storage.firstIndex();
    const last = n.storage.lastIndex();
    const snap = n.storage.snapshot();
    if (snap.meta.index > 0) h.emit(`snapshot ${fmtSnapshot(snap)}`);
    if (last < first) {
      h.emit(`log is empty: first index=${first}, last index=${last}`);
      return;
    }
    for (const e of n.storage.entries(first, last + 1, Number.MAX_SAFE_INTEGER)) h.emit(fmtEntry(e));
  },

  /** state-machine <id> — what the node has applied. */
  "state-machine": (h, a) => {
    const n = h.node(one(a));
    h.emit(`applied:${n.appliedIndex} [${n.sm.map((e) => `${e.index}:${e.data}`).join(" ")}]`);
  },

  /** partition (1) (2 3) — only nodes in the same group can talk; heal undoes it. */
  partition: (h, a) => {
    h.partition(a.pos.map(idList));
  },

  heal: (h) => {
    h.heal();
  },

  /** compact <id> <index> — snapshot the state machine at index and compact the storage. */
  compact: (h, a) => {
    const id = one(a);
    const s = h.compact(id, int(a.pos[1], "index"));
    h.emit(`node ${id}: snapshot ${fmtSnapshot(s)}; log now starts at ${h.node(id).storage.firstIndex()}`);
  },

  /** restart <id> — rebuild the RawNode from its storage (volatile state lost). */
  restart: (h, a) => {
    const id = one(a);
    h.restart(id);
    const st = h.node(id).raw.status();
    h.emit(`node ${id} restarted: term:${st.term} vote:${st.vote} commit:${st.commit} applied:${st.applied} ${fmtConf(st.conf)}`);
  },

  /**
   * inject <receiver> type=<T> from=<id> to=<id> term=<t> [cluster=<c>] [index=<i>]
   * [log-term=<t>] [commit=<c>] [reject=bool] [ctx=<s>] — step a hand-made message
   * straight into <receiver> (bypassing the network), e.g. one from a stranger.
   */
  inject: (h, a) => {
    const receiver = one(a);
    const m: Message = {
      type: msgType(a.kv.get("type") ?? ""),
      clusterId: a.kv.get("cluster") ?? DEFAULT_CLUSTER,
      from: int(a.kv.get("from"), "from"),
      to: a.kv.has("to") ? int(a.kv.get("to"), "to") : receiver,
      term: int(a.kv.get("term") ?? "0", "term"),
      logTerm: int(a.kv.get("log-term") ?? "0", "log-term"),
      index: int(a.kv.get("index") ?? "0", "index"),
      entries: [],
      commit: int(a.kv.get("commit") ?? "0", "commit"),
      reject: a.kv.has("reject") ? bool(a.kv.get("reject")!) : false,
      rejectHint: 0,
      ...(a.kv.has("ctx") ? { context: bytes(a.kv.get("ctx")!) } : {}),
    };
    h.emit(`> ${receiver} receiving ${fmtMsg(m)}`);
    try {
      h.node(receiver).raw.step(m);
    } catch (e) {
      h.emit(fmtError(e));
    }
  },

  /** conf <id> — the membership a node has applied. */
  conf: (h, a) => {
    const s = h.node(one(a)).raw.status();
    h.emit(fmtConf(s.conf));
  },

  /** ids — list the nodes (sanity). */
  ids: (h) => {
    h.emit(fmtIds(h.ids()));
  },
};
