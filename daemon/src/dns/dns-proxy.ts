import { NetfenceError } from "@netfence/proto/errors";

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

/** The DNS proxy of a daemon without a control plane: proxy mode cannot be served. */
export const NO_CONTROL_PLANE_PROXY: DnsProxy = {
  queryDns: () => Promise.reject(new NetfenceError("UNAVAILABLE", "DNS proxy mode needs a control plane (control_plane.url)")),
};
