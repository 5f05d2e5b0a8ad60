/**
 * Exponential backoff with full jitter (delay drawn uniformly from [0, min(cap, base·2^n)]), so a
 * fleet of daemons that lost the same control plane does not reconnect in lock-step.
 */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
  /** Injectable for tests; must return a number in [0, 1). */
  readonly random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
  }

  /** The ceiling for the next delay (before jitter). */
  ceilingMs(): number {
    // 2^attempt grows past the cap quickly; clamp the exponent so the number stays finite.
    return Math.min(this.opts.capMs, this.opts.baseMs * 2 ** Math.min(this.attempt, 30));
  }

  /** Returns the next delay and advances the attempt counter. */
  next(): number {
    const delay = Math.floor(this.random() * this.ceilingMs());
    this.attempt++;
    return delay;
  }

  /** Called once the control plane has proven it is serving (it sent us something). */
  reset(): void {
    this.attempt = 0;
  }

  attempts(): number {
    return this.attempt;
  }
}
