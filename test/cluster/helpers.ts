// Shared helpers: feed commands to a ClusterState as committed log entries.
import { encodeConfChange, type ConfChange } from "../../src/consensus/confchange.js";
import { EntryType, type Entry } from "../../src/consensus/types.js";
import { encodeCommand, type Command } from "../../src/cluster/commands.js";
import { ClusterState, type ClusterStateOptions } from "../../src/cluster/state.js";
import type { CommandFailure, CommandOk, CommandResult } from "../../src/cluster/types.js";

export const normal = (index: number, data: Uint8Array): Entry => ({ term: 1, index, type: EntryType.Normal, data });
export const confEntry = (index: number, cc: ConfChange): Entry => ({ term: 1, index, type: EntryType.ConfChange, data: encodeConfChange(cc) });

/** A ClusterState plus the next log index to use. */
export class Log {
  next = 1;
  constructor(readonly state: ClusterState = new ClusterState()) {}

  static with(opts: ClusterStateOptions): Log {
    return new Log(new ClusterState(opts));
  }

  run(cmd: Command): CommandResult {
    return this.state.apply(normal(this.next++, encodeCommand(cmd)));
  }

  raw(data: Uint8Array): CommandResult {
    return this.state.apply(normal(this.next++, data));
  }

  conf(cc: ConfChange): CommandResult {
    return this.state.apply(confEntry(this.next++, cc));
  }

  /** Run and insist on success. */
  ok(cmd: Command): CommandOk {
    const r = this.run(cmd);
    if (!r.ok) throw new Error(`${cmd.op} failed: ${r.code}: ${r.message}`);
    return r;
  }

  /** Run and insist on failure. */
  fail(cmd: Command): CommandFailure {
    const r = this.run(cmd);
    if (r.ok) throw new Error(`${cmd.op} unexpectedly succeeded`);
    return r;
  }

  put(key: string, value: unknown, extra: { leaseId?: number; ifModRevision?: number } = {}): CommandResult {
    return this.run({ op: "kv.put", key, value: JSON.stringify(value), ...extra });
  }
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);
