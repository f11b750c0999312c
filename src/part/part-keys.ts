// Where a part keeps its progress in the replicated KV store, beside the
// catalog's PART_* state (both are Raft commands, so a restarted sidecar or a
// new coordinator reads exactly how far a part got). Keys carry the parting
// node's sequence number, so a node dropped and created again under the same
// name never sees an earlier part's records.
import type { DataNode } from "../cluster/node-groups.js";

const base = (p: DataNode): string => `pgraft.internal/part/${p.name}@${p.seqId}`;

/** A remaining node has applied everything it could get from the parting node directly (PARTING). */
export const drainedKey = (p: DataNode, node: string): string => `${base(p)}/drained/${node}`;
/** A remaining node stopped receiving from the parting node; its progress for it (PART_CATCHUP). */
export const stoppedKey = (p: DataNode, node: string): string => `${base(p)}/stopped/${node}`;
/** The coordinator's catch-up plan. */
export const planKey = (p: DataNode): string => `${base(p)}/plan`;
/** A remaining node has every change of the parting node the plan's source has. */
export const caughtUpKey = (p: DataNode, node: string): string => `${base(p)}/caught-up/${node}`;
/** What the part waits for, in words (for operators: the coordinator's last word). */
export const statusKey = (p: DataNode): string => `${base(p)}/status`;

export interface DrainedRecord {
  /** The receiver's durable position on the parting node's WAL, if it ever had one. */
  at: string | null;
}

export interface StoppedRecord {
  /** This node's durable progress for the parting node's origin ("0/0": none). */
  progress: string;
  /** This node has all of the parting node's changes up to here (≥ progress; see DataPlane PeerProgress). */
  has?: string;
}

export interface PartPlan {
  /** The remaining node with the most of the parting node's changes. */
  source: string;
  /** A position on the source after it stopped receiving from the parting node (the catch-up stream stops there). */
  endLsn: string;
  /** How far the source has the parting node's changes: a node that has them that far has nothing to catch up. */
  target: string;
  /** How far each remaining node had them when the plan was made. */
  progress: Record<string, string>;
  /** Remaining nodes left out as a last resort (unreachable for too long). */
  skipped: string[];
}

export interface CaughtUpRecord {
  progress: string;
  /** Transactions applied by the catch-up (0: it had them already). */
  applied: number;
  source: string;
  /** False when the source's stream ended with this node's progress still below the source's (see CatchUpResult). */
  complete?: boolean;
}

export interface PartStatusRecord {
  by: string;
  message: string;
}

/** A record, or undefined when absent or not what we wrote (an unreadable record is treated as missing). */
export function parseRecord<T>(raw: string | undefined): T | undefined {
  if (raw === undefined || raw === "") return undefined;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return undefined;
  }
}
