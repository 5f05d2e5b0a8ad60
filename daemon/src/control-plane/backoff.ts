/**
 * Exponential backoff with full jitter (delay drawn uniformly from [0, min(cap, base·2^n)]), so a
 * fleet of daemons that lost the same control plane does not reconnect in lock-step.
 *
 * The attempt counter n counts failures since the control plane last proved it was serving, and
 * goes back to 0 (the next delay is drawn from [0, base) again) when a stream
 * - delivered a message (`reset()`: the SyncAck a control plane sends on SyncRequest, or any
 *   command), or
 * - stayed open for `resetAfterMs` (default 5 s) before it ended (`opened()` … `next()`): a control
 *   plane that holds the stream but is slow to answer (e.g. reconciling many attachments before its
 *   SyncAck) and is then restarted must not push the next outage's delays towards the cap.
 * A stream that ends sooner without a message (a proxy answering UNAVAILABLE at once, a control
 * plane that crashes on every SyncRequest) keeps counting, so such a peer is not hammered at the
 * base rate. Without the reset, the counter grew across every outage and after 20 restarts in a
 * row the next reconnect waited up to the cap (issue 13).
 */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
  /** A stream open at least this long has proven the control plane serves (default 5000). */
  readonly resetAfterMs?: number;
  /** Injectable for tests; must return a number in [0, 1). */
  readonly random?: () => number;
  /** Injectable clock for tests (ms). */
  readonly now?: () => number;
}

export const DEFAULT_RESET_AFTER_MS = 5000;

export class Backoff {
  private attempt = 0;
  private openedAtMs: number | null = null;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly resetAfterMs: number;

  constructor(private readonly opts: BackoffOptions) {
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
    this.resetAfterMs = opts.resetAfterMs ?? DEFAULT_RESET_AFTER_MS;
  }

  /** The ceiling for the next delay (before jitter). */
  ceilingMs(): number {
    // 2^attempt grows past the cap quickly; clamp the exponent so the number stays finite.
    return Math.min(this.opts.capMs, this.opts.baseMs * 2 ** Math.min(this.attempt, 30));
  }

  /** A stream to the control plane is open (the transport connected and the call started). */
  opened(): void {
    this.openedAtMs = this.now();
  }

  /**
   * The connection failed or its stream ended: returns the delay before the next attempt and
   * advances the attempt counter — after resetting it if the stream that just ended had stayed
   * open for resetAfterMs.
   */
  next(): number {
    if (this.openedAtMs !== null && this.now() - this.openedAtMs >= this.resetAfterMs) this.attempt = 0;
    this.openedAtMs = null;
    const delay = Math.floor(this.random() * this.ceilingMs());
    this.attempt++;
    return delay;
  }

  /** The control plane has proven it is serving (the stream delivered a message). */
  reset(): void {
    this.attempt = 0;
  }

  attempts(): number {
    return this.attempt;
  }
}
