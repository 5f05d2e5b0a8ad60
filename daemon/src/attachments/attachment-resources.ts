import net from "node:net";
import { formatHostPort } from "@netfence/proto/parse";
import type { Logger } from "pino";
import type { AttachMethodPreference, AttachSpec, TargetSpec } from "../datapath/filter.js";
import { DEFAULT_DNS_QUOTAS, type DnsQuotas } from "../dns/dns-quotas.js";
import type { AttachOptions } from "./attach-options.js";
import type { AttachmentRecord } from "./attachment-record.js";
import type { DnsServerFactory, DnsServerHandle, HeldPort } from "../dns/dns-servers.js";
import type { AttachmentRegistry } from "./registry.js";
import { freePorts, lowestFreePort } from "./allocation.js";

/** The daemon's DNS settings the attachments are given (config `dns.*`). */
export interface AttachmentDnsConfig {
  readonly listenAddr: string;
  readonly portMin: number;
  readonly portMax: number;
  /** Defaults of every attachment's quotas (DEFAULT_DNS_QUOTAS when absent). */
  readonly quotas?: DnsQuotas;
  /** Query types refused unless an attachment says otherwise (none when absent). */
  readonly refuseTypes?: readonly number[];
}

/** An attachment's DNS quotas: the daemon's defaults, overridden by its attach options. */
export function quotasOf(defaults: DnsQuotas | undefined, rec: { readonly options: AttachOptions }): DnsQuotas {
  return { ...(defaults ?? DEFAULT_DNS_QUOTAS), ...rec.options.quotas };
}

/**
 * What an attachment is given besides its policy: the attach spec the filter gets (slot, DNS
 * redirect, guards, attach method), its DNS port (allocated by binding when the factory can) and
 * its DNS server, its quotas. Pure derivation from the daemon's settings and the registry; the
 * components that run inside the queue use it.
 */
export class AttachmentResources {
  constructor(
    private readonly dns: AttachmentDnsConfig,
    private readonly dnsServers: DnsServerFactory,
    private readonly registry: AttachmentRegistry,
    private readonly log: Logger,
    private readonly attachMethod?: AttachMethodPreference,
  ) {}

  get portRange(): { readonly portMin: number; readonly portMax: number } {
    return this.dns;
  }

  attachSpec(id: string, slot: number, target: TargetSpec, dnsPort: number, options: AttachOptions): AttachSpec {
    const { listenAddr: listen, portMin, portMax } = this.dns;
    return {
      id,
      slot,
      target,
      dns: { ipv4: net.isIPv4(listen) ? listen : null, ipv6: net.isIPv6(listen) ? listen : null, port: dnsPort, portMin, portMax },
      guards: options.guards,
      method: this.attachMethod,
    };
  }

  /** The attach spec of an existing record (re-creation, integrity restore). */
  specOf(rec: Pick<AttachmentRecord, "id" | "slot" | "target" | "dnsPort" | "options">): AttachSpec {
    return this.attachSpec(rec.id, rec.slot, rec.target, rec.dnsPort, rec.options);
  }

  get method(): AttachMethodPreference | undefined {
    return this.attachMethod;
  }

  quotasOf(rec: { readonly options: AttachOptions }): DnsQuotas {
    return quotasOf(this.dns.quotas, rec);
  }

  startDns(rec: AttachmentRecord, held?: HeldPort): Promise<DnsServerHandle> {
    const o = rec.options;
    return this.dnsServers.start(rec.id, { host: this.dns.listenAddr, port: rec.dnsPort }, () => rec.state.dns, {
      kind: rec.target.kind,
      quotas: this.quotasOf(rec),
      refuseTypes: o.refuseTypes ?? this.dns.refuseTypes ?? [],
      workloadAddresses: o.guards.workloadAddresses,
      held,
    });
  }

  dnsAddress(port: number): string {
    return formatHostPort(this.dns.listenAddr, port);
  }

  /**
   * A DNS port for a new attachment: allocated by binding when the factory can (ports held by
   * other processes are skipped and reported), else the lowest one no attachment uses.
   */
  async reservePort(): Promise<{ port: number; held: HeldPort | null }> {
    const used = this.registry.usedPorts();
    const { listenAddr, portMin, portMax } = this.dns;
    const reserve = this.dnsServers.reservePort;
    if (reserve === undefined) return { port: lowestFreePort(used, portMin, portMax), held: null };
    const candidates = freePorts(used, portMin, portMax);
    if (candidates.length === 0) lowestFreePort(used, portMin, portMax); // throws RESOURCE_EXHAUSTED with the usual message
    const { held, taken } = await reserve.call(this.dnsServers, listenAddr, candidates);
    if (taken.length > 0) {
      this.log.warn(
        { taken: taken.map((t) => `${t.port} ${t.holder}`), port: held.port },
        `DNS ports held by other processes were skipped: ${taken.map((t) => `${t.port} (${t.holder})`).join(", ")}`,
      );
    }
    return { port: held.port, held };
  }
}
