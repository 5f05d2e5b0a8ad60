import type { Logger } from "pino";
import type { WatchedTarget } from "./registry.js";
import { targetAlive } from "./target.js";

/**
 * Notices that an attached interface or cgroup vanished (veth deleted with its namespace,
 * container cgroup removed) by polling sysfs / the cgroup dir every `intervalMs` — cheap
 * (one stat per attachment) and well inside the 2 s the spec allows — and hands the id to
 * `onGone` (the manager detaches, cleans and reports REMOVED).
 */
export class TargetWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly reported = new Set<string>();
  private busy = false;

  constructor(
    private readonly targets: () => readonly WatchedTarget[],
    private readonly onGone: (id: string) => Promise<void>,
    private readonly logger: Logger,
    private readonly intervalMs = 500,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass; returns the ids found gone (exported for tests). */
  async poll(): Promise<string[]> {
    if (this.busy) return [];
    this.busy = true;
    const gone: string[] = [];
    try {
      const live = new Set<string>();
      for (const t of this.targets()) {
        live.add(t.id);
        if (this.reported.has(t.id) || targetAlive(t.target, t.ifindex)) continue;
        gone.push(t.id);
      }
      for (const id of this.reported) if (!live.has(id)) this.reported.delete(id);
      await Promise.all(
        gone.map(async (id) => {
          this.reported.add(id);
          this.logger.info({ attachmentId: id }, "attached target vanished");
          try {
            await this.onGone(id);
          } catch (err) {
            this.reported.delete(id);
            this.logger.error({ attachmentId: id, err }, "cleaning a vanished target failed; will retry");
          }
        }),
      );
    } finally {
      this.busy = false;
    }
    return gone;
  }
}
