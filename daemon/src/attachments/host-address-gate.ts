/**
 * When to read the host's addresses again for the TTL collection's "did the host gain or lose an
 * address?" check (maintenance.ts asks every second). Reading them is a netlink dump of every
 * link and address (os.networkInterfaces): with 500 veths in the daemon's namespace that one
 * call, every second, was most of the daemon's idle CPU (issue 13). With rtnetlink address events
 * (the target watcher's link monitor) the addresses are read again only after an address event,
 * a monitor restart, every `sweepMs` as a safety net, and on every ask while events are not live.
 */
export class HostAddressGate {
  private dirty = true;
  private readAtMs = Number.NEGATIVE_INFINITY;
  private last = 0;

  constructor(
    private readonly read: () => number,
    private readonly eventsLive: () => boolean,
    private readonly sweepMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** An address event, or the monitor started or stopped. */
  changed(): void {
    this.dirty = true;
  }

  version(): number {
    const now = this.now();
    if (this.dirty || !this.eventsLive() || now - this.readAtMs >= this.sweepMs) {
      this.dirty = false;
      this.readAtMs = now;
      this.last = this.read();
    }
    return this.last;
  }
}
