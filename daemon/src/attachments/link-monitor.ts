import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { Logger } from "pino";

/**
 * One rtnetlink event: a link appeared, changed (renamed, moved) or was deleted ("link"), or an
 * address was added to or removed from it ("address").
 */
export interface LinkEvent {
  readonly kind: "link" | "address";
  readonly ifindex: number;
  readonly name: string;
  readonly deleted: boolean;
}

/**
 * rtnetlink link and address events of the daemon's network namespace, from ONE `ip -o monitor link address` child
 * process for all attachments (Node has no netlink sockets; iproute2 is a dependency already).
 * `onUp()` when a (re)started monitor may have missed events — the caller sweeps once — and
 * `onDown()` when it died: the caller then polls until it is back. The child is restarted with a
 * backoff (1 s doubling to 30 s, back to 1 s after it ran a minute) and stopped by PID on stop().
 */
export class LinkMonitor {
  private child: ChildProcess | null = null;
  private stopped = true;
  private restartTimer: NodeJS.Timeout | null = null;
  private delayMs = 1000;
  private startedAt = 0;

  constructor(
    private readonly onEvent: (e: LinkEvent) => void,
    private readonly onUp: () => void,
    private readonly onDown: () => void,
    private readonly logger: Logger,
    private readonly command: readonly string[] = MONITOR_COMMAND,
  ) {}

  get running(): boolean {
    return this.child !== null;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.spawn();
  }

  stop(): void {
    this.stopped = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    this.child = null;
    child?.stdin?.end();
    if (child?.pid !== undefined && child.exitCode === null) child.kill("SIGTERM");
  }

  private spawn(): void {
    const [cmd, ...args] = this.command;
    // stdin is a pipe only the daemon holds: when the daemon dies (even by SIGKILL) it closes,
    // and the wrapper stops `ip` (which would otherwise live on until its next write fails).
    const child = spawn(cmd!, args, { stdio: ["pipe", "pipe", "ignore"] });
    child.stdin!.on("error", () => undefined);
    this.child = child;
    this.startedAt = Date.now();
    child.once("error", (err) => this.died(child, err.message));
    child.once("exit", (code, signal) => this.died(child, `exited (${signal ?? code})`));
    createInterface({ input: child.stdout! }).on("line", (line) => {
      const e = parseLinkLine(line);
      if (e !== null) this.onEvent(e);
    });
    // Unref'd: the monitor never keeps the daemon alive on its own.
    child.unref();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
    this.onUp();
  }

  private died(child: ChildProcess, why: string): void {
    if (this.child !== child) return;
    this.child = null;
    child.stdin?.destroy(); // ends the wrapper's reader too
    if (this.stopped) return;
    if (Date.now() - this.startedAt > 60_000) this.delayMs = 1000;
    this.logger.warn({ why, retryMs: this.delayMs }, "link monitor (ip monitor link) stopped; polling interfaces until it is back");
    this.onDown();
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.stopped) this.spawn();
    }, this.delayMs);
    this.restartTimer.unref();
    this.delayMs = Math.min(30_000, this.delayMs * 2);
  }
}

/**
 * `ip -o monitor link address` under a wrapper that ends it when stdin reaches EOF (the daemon exited or
 * closed it), and exits itself when `ip` does (so the daemon sees the monitor die).
 */
export const MONITOR_COMMAND: readonly string[] = [
  "sh", "-c",
  // An asynchronous list's stdin is /dev/null in sh: the reader gets the daemon's pipe as fd 3.
  'exec 3<&0; ip -o monitor link address </dev/null & p=$!; (read _ <&3; kill $p 2>/dev/null) & wait $p',
];

const LINE = /^(?:\[[A-Z]+\]\s*)?(Deleted\s+)?(\d+):\s+([^:@\s]+)(\S*)\s+(inet6?\s)?/;

/**
 * `[Deleted ]IFINDEX: NAME[@PEER]: <FLAGS> …` (a link) or `[Deleted ]IFINDEX: NAME    inet[6] …`
 * (an address), one line per event with -o. null for anything else.
 */
export function parseLinkLine(line: string): LinkEvent | null {
  const m = LINE.exec(line);
  if (m === null) return null;
  const kind = m[5] !== undefined && m[4] === "" ? "address" : "link";
  return { kind, ifindex: Number(m[2]), name: m[3]!, deleted: m[1] !== undefined };
}
