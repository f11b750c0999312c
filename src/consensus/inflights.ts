// The App messages in flight to one follower: a bound on their number and bytes
// is the flow control that keeps a slow follower from drowning in entries.
export class Inflights {
  private readonly items: { index: number; bytes: number }[] = [];
  private totalBytes = 0;

  constructor(
    readonly maxCount: number,
    readonly maxBytes: number,
  ) {}

  add(index: number, bytes: number): void {
    this.items.push({ index, bytes });
    this.totalBytes += bytes;
  }

  /** Free every message whose last index is ≤ index (acknowledged). */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.items.length && this.items[n]!.index <= index) {
      this.totalBytes -= this.items[n]!.bytes;
      n++;
    }
    if (n) this.items.splice(0, n);
  }

  /** Forget the oldest message (it was probably lost). */
  freeFirst(): void {
    const first = this.items.shift();
    if (first) this.totalBytes -= first.bytes;
  }

  full(): boolean {
    return this.items.length >= this.maxCount || (this.maxBytes > 0 && this.totalBytes >= this.maxBytes);
  }

  count(): number {
    return this.items.length;
  }

  bytes(): number {
    return this.totalBytes;
  }

  reset(): void {
    this.items.length = 0;
    this.totalBytes = 0;
  }
}
