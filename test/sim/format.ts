// Compact, human-readable renderings for traces and failure messages.
import { MessageType, type ConfState, type Entry, type Message, type RaftStatus, type Ready } from "../../src/consensus/types.js";
import { entryDigest } from "./state-machine.js";

export function fmtEntries(ents: readonly Entry[]): string {
  if (ents.length === 0) return "[]";
  const first = ents[0]!;
  const last = ents[ents.length - 1]!;
  if (ents.length <= 3) return `[${ents.map((e) => `${e.index}@${e.term}:${entryDigest(e)}`).join(" ")}]`;
  return `[${first.index}@${first.term}..${last.index}@${last.term} (${ents.length})]`;
}

export function fmtMsg(m: Message): string {
  const parts = [`${MessageType[m.type] ?? m.type} ${m.from}→${m.to} t${m.term}`];
  switch (m.type) {
    case MessageType.App:
      parts.push(`prev=${m.index}@${m.logTerm} ents=${fmtEntries(m.entries)} commit=${m.commit}`);
      break;
    case MessageType.AppResp:
      parts.push(m.reject ? `REJECT idx=${m.index} hint=${m.rejectHint}@${m.logTermHint ?? "-"}` : `idx=${m.index}`);
      break;
    case MessageType.Vote:
    case MessageType.PreVote:
      parts.push(`last=${m.index}@${m.logTerm}${m.context ? " (transfer)" : ""}`);
      break;
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      parts.push(m.reject ? "REJECT" : "granted");
      break;
    case MessageType.Heartbeat:
      parts.push(`commit=${m.commit}${m.context ? ` ctx=${ctxStr(m.context)}` : ""}`);
      break;
    case MessageType.HeartbeatResp:
      if (m.context) parts.push(`ctx=${ctxStr(m.context)}`);
      break;
    case MessageType.Snap:
      if (m.snapshot) parts.push(`snap=${m.snapshot.meta.index}@${m.snapshot.meta.term} conf=${fmtConf(m.snapshot.meta.conf)}`);
      break;
    case MessageType.ReadIndex:
    case MessageType.ReadIndexResp:
      parts.push(`idx=${m.index} ctx=${ctxStr(m.context)}`);
      break;
    default:
      break;
  }
  return parts.join(" ");
}

export function ctxStr(ctx: Uint8Array | undefined): string {
  if (!ctx) return "-";
  return Buffer.from(ctx.buffer, ctx.byteOffset, ctx.byteLength).toString("latin1");
}

export function fmtConf(c: ConfState): string {
  return `{v:${c.voters.join(",")}${c.learners.length ? ` l:${c.learners.join(",")}` : ""}}`;
}

export function fmtReady(rd: Ready): string {
  const parts: string[] = [];
  if (rd.softState) parts.push(`soft=${rd.softState.role}/lead${rd.softState.leader}`);
  if (rd.hardState) parts.push(`hard=t${rd.hardState.term}/v${rd.hardState.vote}/c${rd.hardState.commit}`);
  if (rd.snapshot) parts.push(`snap=${rd.snapshot.meta.index}@${rd.snapshot.meta.term}`);
  if (rd.entries.length) parts.push(`ents=${fmtEntries(rd.entries)}`);
  if (rd.committedEntries.length) parts.push(`apply=${fmtEntries(rd.committedEntries)}`);
  if (rd.messages.length) parts.push(`msgs=${rd.messages.length}`);
  if (rd.readStates.length) parts.push(`reads=${rd.readStates.map((r) => `${ctxStr(r.context)}@${r.index}`).join(",")}`);
  return parts.join(" ") || "(empty)";
}

export function fmtStatus(s: RaftStatus): string {
  const prs = [...s.progress].map(([id, p]) => `${id}:${p.state}/m${p.match}/n${p.next}${p.inflightMsgs ? `/inflight${p.inflightMsgs}` : ""}${p.pendingSnapshot ? `/snap${p.pendingSnapshot}` : ""}${p.recentActive ? "" : "/inactive"}`).join(" ");
  return (
    `node ${s.id}: ${s.role} t${s.term} vote=${s.vote} lead=${s.leader} commit=${s.commit} applied=${s.applied} ` +
    `log=[${s.firstIndex}..${s.lastIndex}] conf=${fmtConf(s.conf)}${s.leadTransferee ? ` transferee=${s.leadTransferee}` : ""}${prs ? ` progress={${prs}}` : ""}`
  );
}

export const confKey = (c: ConfState): string =>
  `${[...c.voters].sort((a, b) => a - b).join(",")}|${[...c.learners].sort((a, b) => a - b).join(",")}`;
