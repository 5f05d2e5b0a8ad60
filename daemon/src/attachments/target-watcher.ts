import path from "node:path";
import type { Logger } from "pino";
import type { WatchedTarget } from "./registry.js";
import { targetAlive } from "./target.js";
import { LinkMonitor, type LinkEvent } from "./link-monitor.js";
import { watchDir, type DirWatch } from "./dir-events.js";

export interface TargetWatcherOptions {
  /** Events on (default): rtnetlink for interfaces, inotify for cgroups. Off: poll every fallbackPollMs. */
  readonly events?: boolean;
  /** How often the set of watched targets is brought up to date, and the poll period while events are unavailable (default 500). */
  readonly fallbackPollMs?: number;
  /** Safety sweep of every target even with events on (default 30 s). */
  readonly sweepIntervalMs?: number;
  /** The link monitor's command (tests). */
  readonly linkMonitorCommand?: readonly string[];
  /** Whether a target is still there (tests); default targetAlive. */
  readonly alive?: (t: WatchedTarget) => boolean;
  /** An address event, or the monitor (re)started or died (events may have been missed): see host-address-gate.ts. */
  readonly onAddressChange?: () => void;
}

/**
 * Notices that an attached interface or cgroup vanished (veth deleted with its namespace, moved
 * or renamed; container cgroup removed) and hands the id to `onGone` (the manager detaches,
 * cleans and reports REMOVED). Event-driven (issue 13: polling cost 10,000 syscalls per 10 s at
 * 500 attachments):
 * - interfaces: ONE `ip -o monitor link` for all attachments (link-monitor.ts); an event checks
 *   the attachments with that ifindex or name;
 * - cgroups: inotify on each distinct parent directory (a child cgroup's rmdir or rename is an
 *   event there); an event checks the attachments under that parent with that name.
 * Every fallbackPollMs (no syscall when nothing changed) the watch set follows the attachments,
 * and a target watched for the first time is checked once; while the link monitor is down, or for
 * targets that could not be watched, that tick is a poll. A sweep of every target runs every
 * sweepIntervalMs as a safety net, and poll() is the sweep.
 */
export class TargetWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly reported = new Set<string>();
  private busy = false;
  private readonly events: boolean;
  private readonly fallbackPollMs: number;
  private readonly sweepIntervalMs: number;
  private readonly alive: (t: WatchedTarget) => boolean;
  private lastSweep = 0;
  private linkMonitor: LinkMonitor | null = null;
  /** Until this time a (re)started link monitor may not be subscribed yet: interfaces are polled. */
  private linkSettledAt = Number.POSITIVE_INFINITY;
  private readonly known = new Map<string, WatchedTarget>();
  private readonly parents = new Map<string, DirWatch>();
  /** Cgroup targets whose parent could not be watched: polled every tick. */
  private readonly unwatched = new Set<string>();
  /** Targets to check again at the next tick (a check that overlapped a pass, or whose clean-up failed). */
  private readonly retry = new Set<string>();

  constructor(
    private readonly targets: () => readonly WatchedTarget[],
    private readonly onGone: (id: string) => Promise<void>,
    private readonly logger: Logger,
    opts: TargetWatcherOptions | number = {},
  ) {
    const o = typeof opts === "number" ? { events: false, fallbackPollMs: opts } : opts;
    this.events = o.events ?? true;
    this.fallbackPollMs = o.fallbackPollMs ?? 500;
    this.sweepIntervalMs = o.sweepIntervalMs ?? 30_000;
    this.alive = o.alive ?? ((t) => targetAlive(t.target, t.ifindex));
    if (this.events) {
      const addressChange = o.onAddressChange ?? ((): void => undefined);
      this.linkMonitor = new LinkMonitor(
        (e) => (e.kind === "link" ? this.onLinkEvent(e) : addressChange()),
        () => {
          this.linkSettledAt = Date.now() + 1000;
          addressChange();
        },
        () => {
          this.linkSettledAt = Number.POSITIVE_INFINITY;
          addressChange();
        },
        logger,
        o.linkMonitorCommand,
      );
    }
  }

  /** rtnetlink events are being received (the link monitor runs). */
  get linkEventsLive(): boolean {
    return this.linkMonitor?.running ?? false;
  }

  start(): void {
    if (this.timer !== null) return;
    this.linkMonitor?.start();
    this.lastSweep = Date.now();
    this.timer = setInterval(() => void this.tick(), this.fallbackPollMs);
    this.timer.unref();
    void this.tick(); // watch (and check once) what is attached already
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.linkMonitor?.stop();
    for (const w of this.parents.values()) w.close();
    this.parents.clear();
    this.known.clear();
  }

  /** One sweep over every target; returns the ids found gone (exported for tests). */
  async poll(): Promise<string[]> {
    this.lastSweep = Date.now();
    return this.check(this.targets());
  }

  private async tick(): Promise<void> {
    if (!this.events || Date.now() - this.lastSweep >= this.sweepIntervalMs) {
      await this.poll();
      if (this.events) this.sync();
      return;
    }
    const fresh = this.sync();
    const linkPolled = Date.now() < this.linkSettledAt;
    const retry = new Set(this.retry);
    this.retry.clear();
    const due = [...this.known.values()].filter(
      (t) => fresh.has(t.id) || retry.has(t.id) || this.unwatched.has(t.id) || (linkPolled && t.target.kind === "interface"),
    );
    if (due.length > 0) await this.check(due);
  }

  /** Brings `known` and the cgroup parent watches up to date; returns the ids seen for the first time. */
  private sync(): Set<string> {
    const current = this.targets();
    const fresh = new Set<string>();
    const ids = new Set<string>();
    for (const t of current) {
      ids.add(t.id);
      if (this.known.has(t.id)) continue;
      this.known.set(t.id, t);
      fresh.add(t.id);
    }
    for (const id of [...this.known.keys()]) {
      if (!ids.has(id)) {
        this.known.delete(id);
        this.unwatched.delete(id);
        this.retry.delete(id);
      }
    }
    const wanted = new Set<string>();
    for (const t of this.known.values()) {
      if (t.target.kind !== "cgroup") continue;
      const parent = path.dirname(t.target.path);
      wanted.add(parent);
      if (!this.parents.has(parent)) {
        const w = watchDir(parent, (name) => this.onCgroupEvent(parent, name), () => this.parentLost(parent));
        if (w !== null) this.parents.set(parent, w);
      }
      if (this.parents.has(parent)) this.unwatched.delete(t.id);
      else this.unwatched.add(t.id);
    }
    for (const [parent, w] of this.parents) {
      if (wanted.has(parent)) continue;
      w.close();
      this.parents.delete(parent);
    }
    return fresh;
  }

  private onLinkEvent(e: LinkEvent): void {
    const hit = [...this.known.values()].filter(
      (t) => t.target.kind === "interface" && (t.target.name === e.name || (t.ifindex !== 0 && t.ifindex === e.ifindex)),
    );
    if (hit.length > 0) void this.check(hit);
  }

  private onCgroupEvent(parent: string, name: string | null): void {
    if (name === null || name === path.basename(parent)) {
      // Not told which entry, or the parent itself went: check everything under it and watch it afresh.
      this.parentLost(parent);
      return;
    }
    const dir = path.join(parent, name);
    const hit = [...this.known.values()].filter((t) => t.target.kind === "cgroup" && t.target.path === dir);
    if (hit.length > 0) void this.check(hit);
  }

  private parentLost(parent: string): void {
    this.parents.get(parent)?.close();
    this.parents.delete(parent);
    const under = [...this.known.values()].filter((t) => t.target.kind === "cgroup" && path.dirname(t.target.path) === parent);
    // Checked now; re-watched (and checked once more) by the next tick's sync.
    for (const t of under) this.known.delete(t.id);
    if (under.length > 0) void this.check(under);
  }

  private async check(targets: readonly WatchedTarget[]): Promise<string[]> {
    if (this.busy) {
      // A pass is running: the next tick checks these.
      for (const t of targets) this.retry.add(t.id);
      return [];
    }
    this.busy = true;
    const gone: string[] = [];
    try {
      const live = new Set(this.targets().map((t) => t.id));
      for (const t of targets) {
        if (!live.has(t.id) || this.reported.has(t.id) || this.alive(t)) continue;
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
            this.retry.add(id); // retried from the next tick
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
