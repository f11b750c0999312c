// A discrete-event scheduler over a simulated clock (milliseconds). Events at
// the same time run in the order they were scheduled, so runs are deterministic.
export interface SimEvent {
  time: number;
  seq: number;
  /** Lazily rendered for traces and failure reports. */
  describe: () => string;
  run: () => void;
}

export class Scheduler {
  now = 0;
  executed = 0;
  private seq = 0;
  private readonly heap: SimEvent[] = [];
  /** Called before every event (tracing). */
  beforeEach: ((ev: SimEvent) => void) | undefined;
  /** Called after every event (the invariant checks hang here). */
  afterEach: ((ev: SimEvent) => void) | undefined;

  after(delay: number, describe: () => string, run: () => void): void {
    this.at(this.now + Math.max(0, delay), describe, run);
  }

  at(time: number, describe: () => string, run: () => void): void {
    this.push({ time: Math.max(time, this.now), seq: this.seq++, describe, run });
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Run the next event; false when none is left. */
  step(): boolean {
    const ev = this.pop();
    if (!ev) return false;
    this.now = ev.time;
    this.executed++;
    this.beforeEach?.(ev);
    ev.run();
    this.afterEach?.(ev);
    return true;
  }

  /** Run events until the clock would pass `time` or `stop()` is true (checked after each event). */
  runUntil(time: number, stop?: () => boolean): boolean {
    while (this.heap.length > 0 && this.heap[0]!.time <= time) {
      this.step();
      if (stop?.()) return true;
    }
    this.now = Math.max(this.now, time);
    return false;
  }

  private less(a: SimEvent, b: SimEvent): boolean {
    return a.time < b.time || (a.time === b.time && a.seq < b.seq);
  }

  private push(ev: SimEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    if (!top) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
