/**
 * The control plane's addresses (control_plane.url: one "host:port" or several, comma-separated)
 * and which one the next connection attempt uses. The client starts with the first and, whenever
 * an attempt fails or a stream ends, moves to the next (round robin) before its usual backoff: a
 * fleet replica that dies leaves its daemons to the others, where the SyncRequest restores them.
 * A name with several DNS records is resolved by gRPC, whose pick_first balancer tries the
 * records in order within one attempt.
 */
export class AddressList {
  private readonly urls: readonly string[];
  private index = 0;

  constructor(url: string) {
    this.urls = url.split(",").map((u) => u.trim()).filter((u) => u !== "");
    if (this.urls.length === 0) throw new Error("control-plane url is empty");
  }

  /** The address of the current (or last) attempt. */
  current(): string {
    return this.urls[this.index]!;
  }

  /** Failover: the next attempt goes to the next address (no-op with one). */
  advance(): void {
    this.index = (this.index + 1) % this.urls.length;
  }
}
