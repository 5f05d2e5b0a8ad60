import { cidrContains, formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import type { HostAddresses } from "./host-addresses.js";

/**
 * Tenant isolation in the DNS server (SPEC §8): which source addresses an attachment's server
 * answers. Anything else is dropped without a reply (no amplification, no information).
 *
 * - interface attachment naming its workload (`netfence.workload-ips`): exactly those addresses;
 * - interface attachment without: addresses on the on-link prefixes of the interface holding
 *   `dns.listen_addr` (the bridge or tap subnet the workloads sit on) and the host's own addresses;
 * - cgroup attachment: loopback and the host's own addresses (its processes run on this host).
 *
 * The kernel side (task K) also drops a tenant's packets to another tenant's DNS port; this check
 * holds on its own for hosts outside, unattached sources and spoofing neighbours. Decisions are
 * cached per source text (bounded) and recomputed when the host's addresses change.
 */

export interface SourceAccessOptions {
  readonly kind: "interface" | "cgroup";
  readonly workloadAddresses: readonly string[];
  readonly listenHost: string;
  readonly host: HostAddresses;
}

const LOOPBACK: readonly Cidr[] = [parseCidr("127.0.0.0/8"), parseCidr("::1/128")];
const CACHE_SIZE = 1024;

export class SourceAccess {
  private readonly workload: ReadonlySet<string> | null;
  private readonly cache = new Map<string, boolean>();
  private cachedVersion = -1;

  constructor(private readonly opts: SourceAccessOptions) {
    this.workload =
      opts.kind === "interface" && opts.workloadAddresses.length > 0 ? new Set(opts.workloadAddresses.map((a) => formatCidr(parseCidr(a)))) : null;
  }

  /** A description for logs ("workload 10.0.0.2", "on-link 10.0.0.0/24 + host", "loopback + host"). */
  describe(): string {
    if (this.workload !== null) return `workload ${[...this.workload].map((k) => k.slice(0, k.lastIndexOf("/"))).join(",")}`;
    if (this.opts.kind === "cgroup") return "loopback + host addresses";
    return `on-link ${this.opts.host.onLinkPrefixes(this.opts.listenHost).map(formatCidr).join(",") || "(none)"} + host addresses`;
  }

  /** Whether a query from `address` (as Node reports the peer) may be answered. */
  allows(address: string): boolean {
    const version = this.opts.host.version;
    if (version !== this.cachedVersion) {
      this.cache.clear();
      this.cachedVersion = version;
    }
    const hit = this.cache.get(address);
    if (hit !== undefined) return hit;
    const verdict = this.decide(address);
    if (this.cache.size >= CACHE_SIZE) this.cache.clear();
    this.cache.set(address, verdict);
    return verdict;
  }

  private decide(address: string): boolean {
    let source: Cidr;
    try {
      source = parseCidr(address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address);
    } catch {
      return false;
    }
    const key = formatCidr(source);
    if (this.workload !== null) return this.workload.has(key);
    if (this.opts.host.addressKeys().has(key)) return true;
    const ranges = this.opts.kind === "cgroup" ? LOOPBACK : this.opts.host.onLinkPrefixes(this.opts.listenHost);
    return ranges.some((r) => cidrContains(r, source));
  }
}
