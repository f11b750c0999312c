// A test state machine that records every applied value in order.
import { EntryType, type Entry } from "../../src/consensus/types.js";

export class ListSm {
  values: string[] = [];
  apply(e: Entry): number {
    if (e.type === EntryType.Normal) this.values.push(new TextDecoder().decode(e.data));
    return this.values.length;
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify(this.values));
  }
  restore(d: Uint8Array): void {
    this.values = d.byteLength ? (JSON.parse(new TextDecoder().decode(d)) as string[]) : [];
  }
}
