// The face of the Raft core the simulator drives. It is the public API of
// src/consensus/raw-node.ts; the simulator only depends on this interface so
// the invariant checker and its self-tests can also run against fakes or a
// deliberately broken wrapper.
import type { ConfChange } from "../../src/consensus/confchange.js";
import type { RaftConfig } from "../../src/consensus/config.js";
import { RawNode } from "../../src/consensus/raw-node.js";
import type { Message, NodeId, RaftStatus, Ready } from "../../src/consensus/types.js";

export interface SimRaft {
  tick(): void;
  campaign(): void;
  propose(data: Uint8Array): { index: number; term: number };
  proposeConfChange(cc: ConfChange): { index: number; term: number };
  step(m: Message): void;
  transferLeader(to: NodeId): void;
  readIndex(context: Uint8Array): void;
  reportUnreachable(id: NodeId): void;
  reportSnapshot(id: NodeId, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(rd: Ready): void;
  status(): RaftStatus;
}

export type RaftFactory = (config: RaftConfig) => SimRaft;

export const rawNodeFactory: RaftFactory = (config) => new RawNode(config);
