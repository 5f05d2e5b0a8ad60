/** Proxy-mode decision source (ControlPlane.QueryDns), implemented by the control-plane client. */
export interface DnsProxyAnswer {
  readonly allow: boolean;
  readonly addToFilter: boolean;
  /** The control plane's own answer; empty = resolve upstream. */
  readonly ips: readonly string[];
  readonly ttlSeconds: number;
}

export interface DnsProxy {
  queryDns(attachmentId: string, domain: string, queryType: string): Promise<DnsProxyAnswer>;
}
