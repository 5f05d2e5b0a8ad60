/**
 * The single writer's queue: every kernel-changing operation (attach, detach, command, DNS
 * inserts, TTL garbage collection) runs here one at a time, in submission order, so gRPC calls,
 * the control-plane stream, DNS servers and timers can never interleave half-applied changes.
 * A failing operation rejects only its own promise; the queue keeps going.
 */
export class OpQueue {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => {
        this.pending--;
      },
      () => {
        this.pending--;
      },
    );
    return result;
  }

  /** Operations submitted and not yet finished (metrics, tests). */
  get depth(): number {
    return this.pending;
  }

  /** Resolves once everything submitted so far has finished. */
  idle(): Promise<void> {
    return this.tail;
  }
}
