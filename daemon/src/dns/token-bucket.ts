/**
 * A token bucket for a per-attachment queries-per-second quota: `ratePerSecond` tokens a second,
 * refilled continuously, holding at most `burst` (one second's worth by default). `take()` is
 * O(1) and allocation-free: it runs for every query.
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number = ratePerSecond,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.lastMs = now();
  }

  /** Takes one token; false when the bucket is empty (over quota). */
  take(): boolean {
    const now = this.now();
    const elapsed = now - this.lastMs;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
      this.lastMs = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
