import os from "node:os";
import { formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";

/**
 * The host's own addresses and on-link prefixes, as seen in the daemon's network namespace
 * (os.networkInterfaces), read again at most once per `maxAgeMs` — cheap enough to ask per DNS
 * query. Used by the DNS rebinding guard (a DNS answer never opens the host's own addresses) and
 * by the DNS servers' source check (tenant isolation: who may ask an attachment's server).
 */

export interface HostInterfaceAddress {
  readonly ifname: string;
  /** The address as a /32 or /128. */
  readonly address: Cidr;
  /** Its on-link prefix (the interface's netmask applied). */
  readonly network: Cidr;
}

export type InterfaceReader = () => NodeJS.Dict<os.NetworkInterfaceInfo[]>;

export class HostAddresses {
  private list: HostInterfaceAddress[] = [];
  private keys: Set<string> = new Set();
  private readAtMs = -Infinity;
  private versionValue = 0;

  constructor(
    private readonly read: InterfaceReader = os.networkInterfaces,
    private readonly now: () => number = Date.now,
    private readonly maxAgeMs = 1000,
  ) {}

  /** Changes whenever the set of addresses read changes (cache invalidation for users). */
  get version(): number {
    this.refresh();
    return this.versionValue;
  }

  /** Every address of the host, as canonical prefix text ("10.0.0.1/32", "fe80::1/128"). */
  addressKeys(): ReadonlySet<string> {
    this.refresh();
    return this.keys;
  }

  all(): readonly HostInterfaceAddress[] {
    this.refresh();
    return this.list;
  }

  /**
   * The on-link prefix of `address` on this host: the network of the interface entry that holds
   * it (the bridge or tap subnet of a `dns.listen_addr`). Other prefixes of the same interface are
   * not included: a second subnet routed over the same bridge is not "the listen address's
   * subnet". Empty when no interface has the address.
   */
  onLinkPrefixes(address: string): Cidr[] {
    this.refresh();
    let key: string;
    try {
      key = formatCidr(parseCidr(address));
    } catch {
      return [];
    }
    return this.list.filter((a) => formatCidr(a.address) === key).map((a) => a.network);
  }

  private refresh(): void {
    const now = this.now();
    if (now - this.readAtMs < this.maxAgeMs) return;
    this.readAtMs = now;
    const list: HostInterfaceAddress[] = [];
    let interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
    try {
      interfaces = this.read();
    } catch {
      return; // keep the last known set
    }
    for (const [ifname, infos] of Object.entries(interfaces)) {
      for (const info of infos ?? []) {
        try {
          const address = parseCidr(info.address);
          const network = info.cidr !== null ? parseCidr(info.cidr) : address;
          list.push({ ifname, address, network });
        } catch {
          // an address form we cannot parse (never seen on Linux); not one of ours to guard
        }
      }
    }
    const keys = new Set(list.map((a) => formatCidr(a.address)));
    if (keys.size !== this.keys.size || [...keys].some((k) => !this.keys.has(k))) this.versionValue++;
    this.list = list;
    this.keys = keys;
  }
}
