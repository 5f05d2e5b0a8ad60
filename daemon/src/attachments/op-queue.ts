/**
 * The single writer's queue: every kernel-changing operation (attach, detach, command, DNS
 * inserts, TTL garbage collection) runs here one at a time, in submission order, so gRPC calls,
 * the control-plane stream, DNS servers and timers can never interleave half-applied changes.
 * A failing operation rejects only its own promise; the queue keeps going.
 *
 * Operations are typed: each names its kind from the closed set below (what a log line, a
 * metric or a debugger shows as running), and only the components that own that kind submit it.
 */
export type OpKind =
  | "restore" // attachments/startup.ts
  | "attach-reserve" // attachments/attach-flow.ts
  | "attach-install"
  | "detach"
  | "target-gone"
  | "command" // attachments/command-applier.ts
  | "learned-write" // attachments/learned-writer.ts
  | "learned-recheck"
  | "expiry" // attachments/maintenance.ts
  | "integrity"
  | "orphan-adopt" // attachments/orphan-ops.ts
  | "orphan-detach"
  | "stop"; // attachments/manager.ts

export interface Operation<T> {
  readonly kind: OpKind;
  run(): Promise<T>;
}

export class OpQueue {
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;
  private running: OpKind | null = null;

  submit<T>(op: Operation<T>): Promise<T> {
    this.pending++;
    const result = this.tail.then(() => {
      this.running = op.kind;
      return op.run();
    });
    const done = (): void => {
      this.pending--;
      this.running = null;
    };
    this.tail = result.then(done, done);
    return result;
  }

  /** Shorthand for submit({ kind, run }). */
  run<T>(kind: OpKind, run: () => Promise<T>): Promise<T> {
    return this.submit({ kind, run });
  }

  /** Operations submitted and not yet finished (metrics, tests). */
  get depth(): number {
    return this.pending;
  }

  /** The kind of the operation running now, or null. */
  get current(): OpKind | null {
    return this.running;
  }

  /** Resolves once everything submitted so far has finished. */
  idle(): Promise<void> {
    return this.tail;
  }
}
