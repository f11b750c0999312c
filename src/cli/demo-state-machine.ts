// The demo's replicated state: a small key-value map. (The real catalog and KV
// store of the sidecar live in src/cluster, from the next milestone on.)
import { EntryType, type Entry } from "../consensus/types.js";
import type { StateMachine } from "../consensus/driver.js";

export interface PutCommand {
  op: "put";
  key: string;
  value: string;
}

export const encodePut = (key: string, value: string): Uint8Array =>
  new TextEncoder().encode(JSON.stringify({ op: "put", key, value } satisfies PutCommand));

export class DemoKv implements StateMachine {
  readonly data = new Map<string, string>();
  appliedIndex = 0;

  apply(e: Entry): number {
    this.appliedIndex = e.index;
    if (e.type !== EntryType.Normal) return e.index;
    const cmd = JSON.parse(new TextDecoder().decode(e.data)) as PutCommand;
    if (cmd.op === "put") this.data.set(cmd.key, cmd.value);
    return e.index;
  }

  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify([...this.data]));
  }

  restore(data: Uint8Array): void {
    this.data.clear();
    if (data.byteLength === 0) return;
    for (const [k, v] of JSON.parse(new TextDecoder().decode(data)) as [string, string][]) this.data.set(k, v);
  }
}
