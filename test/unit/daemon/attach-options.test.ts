import { describe, expect, it } from "vitest";
import { parseAttachOptions, storedAttachOptions } from "../../../daemon/src/attachments/attach-options.js";
import { CLOSED_GUARDS } from "../../../daemon/src/datapath/filter.js";

describe("netfence.* attach options", () => {
  it("defaults to the closed guards and no overrides; other metadata is ignored", () => {
    const o = parseAttachOptions({ app: "web", "team.netfence": "x" }, "interface");
    expect(o).toEqual({ direction: "ingress", guards: CLOSED_GUARDS, quotas: {}, refuseTypes: null });
  });

  it("parses every option", () => {
    const o = parseAttachOptions(
      {
        "netfence.direction": "egress",
        "netfence.open": "loopback, link-local",
        "netfence.services": "dhcp,dhcpv6,mld,router",
        "netfence.non-ip": "allow",
        "netfence.workload-mac": "02-AA-bb-00-00-01",
        "netfence.workload-ips": "10.0.0.2,fd00::2",
        "netfence.dns.qps": "50",
        "netfence.dns.answer-records": "4",
        "netfence.dns.refuse-types": "txt,NULL,ANY,TYPE65",
        "netfence.events": "allowed-flows",
      },
      "interface",
    );
    expect(o.direction).toBe("egress");
    expect(o.guards).toEqual({
      openLoopback: true, openLinkLocal: true, dhcp: true, dhcpv6: true, mld: true, router: true, allowNonIp: true,
      workloadMac: "02:aa:bb:00:00:01", workloadAddresses: ["10.0.0.2", "fd00::2"], allowedFlows: true,
    });
    expect(o.quotas).toEqual({ qps: 50, answerRecords: 4 });
    expect(o.refuseTypes).toEqual([16, 10, 255, 65]);
  });

  it("reports every problem at once; unknown netfence.* keys are refused", () => {
    let message = "";
    try {
      parseAttachOptions({ "netfence.opne": "loopback", "netfence.dns.qps": "0", "netfence.workload-mac": "01:00:5e:00:00:01", "netfence.open": "host", "netfence.events": "all" }, "interface");
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('unknown option "netfence.opne"');
    expect(message).toContain("netfence.dns.qps must be an integer");
    expect(message).toContain("not a unicast MAC");
    expect(message).toContain('"host" is not one of loopback, link-local');
    expect(message).toContain('netfence.events: "all" is not one of allowed-flows');
  });

  it("interface-only options are refused for cgroups", () => {
    expect(() => parseAttachOptions({ "netfence.non-ip": "allow" }, "cgroup")).toThrow(/interface attachments only/);
    expect(parseAttachOptions({ "netfence.open": "loopback" }, "cgroup").guards.openLoopback).toBe(true);
    expect(parseAttachOptions({ "netfence.events": "allowed-flows" }, "cgroup").guards.allowedFlows).toBe(true);
  });

  it("stored metadata that no longer parses falls back to the closed defaults", () => {
    const r = storedAttachOptions({ "netfence.direction": "egress", "netfence.bogus": "1" }, "interface");
    expect(r.problem).toMatch(/bogus/);
    expect(r.options.guards).toEqual(CLOSED_GUARDS);
    expect(r.options.direction).toBe("egress");
  });
});
