import { DNS_QUOTA_LIMITS } from "../../daemon/src/dns/dns-quotas.js";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import type { BenchDaemon } from "../daemon/daemon-process.js";

/**
 * A benchmark's daemon with one attachment: the `dns:` block of the DNS benchmarks, the Attach
 * through the DaemonService as an operator does it, and the detach-and-stop of the clean-up.
 */

/**
 * The DNS benchmarks measure what one server can do, so the per-attachment quotas (which bound a
 * tenant at 1000 q/s and 128 upstream queries in flight by default) are set to the maxima; the
 * tenant-isolation side of quotas is bench/flood's.
 */
const q = DNS_QUOTA_LIMITS;
export const MAX_QUOTAS_YAML = `quotas: { qps: ${q.qps}, inflight: ${q.inflight}, learned: ${q.learned}, answer_records: ${q.answerRecords}, tcp_connections: ${q.tcpConnections}, tcp_per_source: ${q.tcpPerSource} }`;

/** The `dns:` block: one server on 127.0.0.1:`port`, the upstream on 127.0.0.1:`upstreamPort`, min TTL 300 s, maximal quotas. */
export function benchDnsYaml(port: number, upstreamPort: number): string {
  return `dns: { listen_addr: 127.0.0.1, port_min: ${port}, port_max: ${port}, upstream: "127.0.0.1:${upstreamPort}", min_ttl: 300s, port_guard: false, ${MAX_QUOTAS_YAML} }`;
}

/** Allowlist with DNS in allowlist mode for *.bench.test (the names of DnsNameFiles). */
export const BENCH_TEST_ALLOWLIST_YAML = `default_policy: { mode: allowlist, dns: { mode: allowlist, allow_domains: ["*.bench.test"], deny_domains: ["*.denied.bench.test"] } }`;

/** Attaches interface `ifname` through the daemon's DaemonService. */
export async function attachInterface(daemon: BenchDaemon, ifname: string): Promise<{ id: string; dnsAddress: string }> {
  const client = new DaemonClient(daemon.socket);
  try {
    const res = await client.attach({ target: { case: "interfaceName", value: ifname }, metadata: {} });
    return { id: res.id, dnsAddress: res.dnsAddress };
  } finally {
    client.close();
  }
}

/** The clean-up: detach, then SIGTERM; never throws (it runs in `finally`). */
export async function detachAndStop(daemon: BenchDaemon, id: string): Promise<void> {
  const client = new DaemonClient(daemon.socket);
  await client.detach(id).catch(() => undefined);
  client.close();
  await daemon.stop("SIGTERM").catch(() => undefined);
}
