import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../../daemon/src/config.js";
import { formatCidr } from "@netfence/proto/parse";

describe("loadConfig", () => {
  it("refuses a wildcard DNS listen address and bad quotas, query types and protected_deny entries", () => {
    expect(() => loadConfig({ env: {}, text: "dns: { listen_addr: 0.0.0.0 }" })).toThrow(/dns.listen_addr: "0.0.0.0" is a wildcard/);
    expect(() => loadConfig({ env: {}, text: "dns: { listen_addr: '::' }" })).toThrow(/wildcard/);
    expect(() => loadConfig({ env: {}, text: "dns: { quotas: { qps: 0 } }" })).toThrow(/dns.quotas.qps/);
    expect(() => loadConfig({ env: {}, text: "dns: { refuse_types: [TXT, BOGUS] }" })).toThrow(/"BOGUS" is not a DNS query type/);
    expect(() => loadConfig({ env: {}, text: "protected_deny: [10.0.0.0/33]" })).toThrow(/protected_deny/);
    const c = loadConfig({ env: { NETFENCE_DNS_REFUSE_TYPES: "txt,any", NETFENCE_PROTECTED_DENY: "169.254.169.254/32" }, text: "dns: { quotas: { answer_records: 4 } }" });
    expect(c.dns.refuseTypes).toEqual([16, 255]);
    expect(c.dns.quotas.answerRecords).toBe(4);
    expect(c.protected.map((p) => [formatCidr(p.cidr), p.action])).toEqual([["169.254.169.254/32", "deny"]]);
    // YAML reads an unquoted NULL as null: it is the NULL query type.
    expect(loadConfig({ env: {}, text: "dns: { refuse_types: [TXT, NULL, ANY] }" }).dns.refuseTypes).toEqual([16, 10, 255]);
  });

  it("has the SPEC §4 defaults", () => {
    const c = loadConfig({ env: {} });
    expect(c.socket).toBe("/var/run/netfence.sock");
    expect(c.dataDir).toBeNull();
    expect(c.logLevel).toBe("info");
    expect(c.dns).toEqual({
      listenAddr: "127.0.0.1", portMin: 11000, portMax: 11500, upstream: "8.8.8.8:53", minTtlSeconds: 300, answerCacheEntries: 1024,
      quotas: { qps: 1000, inflight: 128, learned: 16384, answerRecords: 32, tcpConnections: 32, tcpPerSource: 8 },
      refuseTypes: [], portGuard: true, portGuardCgroup: null,
    });
    expect(c.controlPlane.url).toBeNull();
    expect(c.controlPlane.subscribeAckTimeoutMs).toBe(5000);
    expect(c.controlPlane.heartbeatIntervalMs).toBe(30_000);
    expect(c.controlPlane.tls).toBeNull();
    expect(c.metadata).toEqual({});
    expect(c.bpf.pinRoot).toBe("/sys/fs/bpf/netfence");
    expect(c.defaultPolicy.mode).toBe("disabled");
    expect(c.metrics.listen).toBeNull();
  });

  it("reads YAML, nested keys and durations", () => {
    const c = loadConfig({
      env: {},
      text: [
        "socket: /tmp/x.sock",
        "data_dir: /var/lib/netfence",
        "dns: { port_min: 12000, port_max: 12010, upstream: '10.0.0.53:53', min_ttl: 1m }",
        "control_plane: { url: 'cp.example:9000', subscribe_ack_timeout: 250ms, heartbeat_interval: 1m30s, token: abc }",
        "metadata: { region: eu, rack: 7 }",
        "default_policy:",
        "  mode: allowlist",
        "  allow_cidrs: [10.0.0.0/8, '2001:db8::1']",
        "  dns: { mode: allowlist, allow_domains: ['*.example.com', pypi.org] }",
        "protected: [{ cidr: 192.0.2.10, protocol: tcp, port: 22 }]",
      ].join("\n"),
    });
    expect(c.socket).toBe("/tmp/x.sock");
    expect(c.dns.portMin).toBe(12000);
    expect(c.dns.minTtlSeconds).toBe(60);
    expect(c.controlPlane.subscribeAckTimeoutMs).toBe(250);
    expect(c.controlPlane.heartbeatIntervalMs).toBe(90_000);
    expect(c.metadata).toEqual({ region: "eu", rack: "7" });
    expect(c.defaultPolicy.allowCidrs.map((r) => formatCidr(r.cidr))).toEqual(["10.0.0.0/8", "2001:db8::1/128"]);
    expect(c.defaultPolicy.dns.allowDomains).toEqual([
      { domain: "example.com", includeSubdomains: true },
      { domain: "pypi.org", includeSubdomains: false },
    ]);
    expect(c.protected).toHaveLength(1);
    expect(c.protected[0]!.protocol).toBe(6);
    expect(c.protected[0]!.port).toBe(22);
  });

  it("lets NETFENCE_* environment variables override the file", () => {
    const c = loadConfig({
      text: "dns: { port_min: 12000 }\nlog_level: warn",
      env: {
        NETFENCE_DNS_PORT_MIN: "13000",
        NETFENCE_DNS_PORT_MAX: "13005",
        NETFENCE_CONTROL_PLANE_URL: "127.0.0.1:7000",
        NETFENCE_METADATA: "a=1,b=2",
        NETFENCE_DEFAULT_POLICY_ALLOW_CIDRS: "10.1.0.0/16, 10.2.0.0/16",
        NETFENCE_CONTROL_PLANE_SUBSCRIBE_ACK_TIMEOUT: "2s",
      },
    });
    expect(c.dns.portMin).toBe(13000);
    expect(c.dns.portMax).toBe(13005);
    expect(c.logLevel).toBe("warn");
    expect(c.controlPlane.url).toBe("127.0.0.1:7000");
    expect(c.metadata).toEqual({ a: "1", b: "2" });
    expect(c.defaultPolicy.allowCidrs).toHaveLength(2);
    expect(c.controlPlane.subscribeAckTimeoutMs).toBe(2000);
  });

  it("accepts several control-plane addresses as a list or comma-separated, and names a bad one (issue 16)", () => {
    expect(loadConfig({ env: {}, text: "control_plane: { url: [cp1.example:50051, '10.0.0.2:50051'] }" }).controlPlane.url).toBe("cp1.example:50051,10.0.0.2:50051");
    expect(loadConfig({ env: { NETFENCE_CONTROL_PLANE_URL: "a:1, b:2" } }).controlPlane.url).toBe("a:1,b:2");
    expect(() => loadConfig({ env: {}, text: "control_plane: { url: [a:1, nope] }" })).toThrow('control_plane.url: "nope" is not a host:port address');
  });

  it("accepts protected entries as JSON in the environment", () => {
    const c = loadConfig({ env: { NETFENCE_PROTECTED: '[{"cidr":"192.0.2.10/32","protocol":"udp","port":53},{"cidr":"2001:db8::/64"}]' } });
    expect(c.protected.map((e) => [formatCidr(e.cidr), e.protocol, e.port])).toEqual([["192.0.2.10/32", 17, 53], ["2001:db8::/64", 0, 0]]);
    expect(() => loadConfig({ env: { NETFENCE_PROTECTED: "10.0.0.0/8" } })).toThrow("protected: expected a JSON list");
  });

  it("reports every problem at once, each naming its key", () => {
    let err: unknown;
    try {
      loadConfig({
        env: { NETFENCE_DNS_LISTEN_ADDR: "not-an-ip" },
        text: "bogus: 1\ndns: { port_min: 12000, port_max: 11000, nope: 2 }\ncontrol_plane: { subscribe_ack_timeout: soon }\nlog_level: loud\ndefault_policy: { allow_cidrs: [10.0.0.0/33] }",
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    const text = problems.join("\n");
    expect(text).toContain("bogus: unknown key");
    expect(text).toContain("dns.nope: unknown key");
    expect(text).toContain("dns.port_min: 12000 is greater than dns.port_max");
    expect(text).toContain("control_plane.subscribe_ack_timeout");
    expect(text).toContain("log_level");
    expect(text).toContain("dns.listen_addr");
    expect(text).toContain("default_policy.allow_cidrs");
    expect((err as Error).message).not.toContain("\n");
  });

  it.each([
    ["dns.port_max: 70000", "dns.port_max"],
    ["dns.upstream: 8.8.8.8", "dns.upstream"],
    ["control_plane.url: 5", "control_plane"],
    ["control_plane: { heartbeat_interval: 5x }", "control_plane.heartbeat_interval"],
    ["protected: [{ cidr: 10.0.0.0/8, protocol: icmp }]", "protected[0].protocol"],
    ["bpf: { pin_root: relative/dir }", "bpf.pin_root"],
    ["default_policy: { mode: allow-some }", "default_policy.mode"],
    ["default_policy: { dns: { allow_domains: ['bad..name'] } }", "default_policy.dns.allow_domains"],
    ["metrics: { listen: nowhere }", "metrics.listen"],
    ["history: { max_entries: 5 }", "history.max_entries"],
    ["history: { max_entries: 1000000 }", "history.max_entries"],
    ["history: { max_age: forever }", "history.max_age"],
    ["- a list", "mapping"],
  ])("rejects %s naming %s", (text, key) => {
    expect(() => loadConfig({ env: {}, text })).toThrow(key);
  });

  it("history.max_entries / history.max_age: defaults, file and environment", () => {
    expect(loadConfig({ env: {} }).history).toEqual({ maxEntries: 10_000, maxAgeMs: 30 * 24 * 3600_000 });
    expect(loadConfig({ env: {}, text: "history: { max_entries: 500, max_age: 2d }" }).history).toEqual({ maxEntries: 500, maxAgeMs: 2 * 24 * 3600_000 });
    expect(loadConfig({ env: { NETFENCE_HISTORY_MAX_ENTRIES: "50" } }).history.maxEntries).toBe(50);
  });

  it("loads the example config shipped in examples/", () => {
    const c = loadConfig({ env: {}, file: new URL("../../../examples/netfenced.yaml", import.meta.url).pathname });
    expect(c.defaultPolicy.mode).toBe("allowlist");
    expect(c.defaultPolicy.dns.allowDomains).toContainEqual({ domain: "debian.org", includeSubdomains: true });
    expect(c.protected).toHaveLength(1);
    expect(c.dataDir).toBe("/var/lib/netfence");
  });

  it("reports an unreadable file with its path", () => {
    expect(() => loadConfig({ env: {}, file: "/nonexistent/netfence.yaml" })).toThrow("/nonexistent/netfence.yaml");
  });
});
