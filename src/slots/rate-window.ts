// A rate from a running total sampled whenever someone asks (the data plane's
// status): the increase over the oldest sample at least `minSpanMs` old,
// per second. Undefined until such a sample exists, or when the total went
// down (a receiver started again and counts from zero): no rate is better
// than a wrong one.
export class RateWindow {
  private samples: { at: number; total: number }[] = [];

  constructor(
    private readonly minSpanMs = 60_000,
    private readonly keepMs = 10 * 60_000,
  ) {}

  /** Record `total` at `at` (ms) and return the rate per second over at least minSpanMs, when known. */
  sample(total: number, at: number = Date.now()): number | undefined {
    const last = this.samples[this.samples.length - 1];
    if (last && total < last.total) this.samples = []; // a reset
    this.samples.push({ at, total });
    while (this.samples.length > 1 && at - this.samples[0]!.at > this.keepMs) this.samples.shift();
    // The newest sample that is at least minSpanMs old: the rate over the span closest to minSpanMs.
    let base: { at: number; total: number } | undefined;
    for (const s of this.samples) if (at - s.at >= this.minSpanMs) base = s;
    return base ? ((total - base.total) * 1000) / (at - base.at) : undefined;
  }
}
