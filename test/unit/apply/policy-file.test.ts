import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { formatCidr } from "@netfence/proto/parse";
import { parsePolicyFile } from "../../../daemon/src/apply/policy-file.js";
import { lockoutProblems, parseManagement } from "../../../daemon/src/apply/management.js";
import { planApply, policyLines } from "../../../daemon/src/apply/policy-diff.js";
import { ConfigError, loadConfig } from "../../../daemon/src/config.js";

// The standalone policy file (issue 15): the whole file is validated, every problem named as
// file:line:col, users resolved through NSS (the test uses the host's "daemon" and "nobody").

const GOOD = `version: 1
attachments:
  - name: web
    cgroup: /sys/fs/cgroup/web
    mode: allowlist
    established: keep
    allow:
      - cidr: 127.0.0.1/32
        protocols: [tcp]
        ports: [6379, "8000-8100", 8050]
        users: [daemon, 65534]
      - domain: "*.pypi.org"
        ports: [443]
    deny:
      - cidr: 10.0.0.0/8
  - name: vm1
    interface: tap0
    direction: egress
    mode: block-all
`;

async function problemsOf(text: string): Promise<string[]> {
  try {
    await parsePolicyFile("policy.yaml", text);
  } catch (err) {
    return (err as Error).message.split("\n").slice(1);
  }
  throw new Error("expected the file to be refused");
}

describe("policy file", () => {
  it("parses a valid file into typed attachments (scopes merged, users resolved, domains with their dns mode)", async () => {
    const f = await parsePolicyFile("policy.yaml", GOOD);
    expect(f.attachments.map((a) => a.name)).toEqual(["web", "vm1"]);
    const web = f.attachments[0]!;
    expect(web.target).toEqual({ kind: "cgroup", path: "/sys/fs/cgroup/web" });
    expect(web.policy.established).toBe("keep");
    const rule = web.policy.allowCidrs[0]!;
    expect(formatCidr(rule.cidr)).toBe("127.0.0.1/32");
    expect(rule.scope?.protocols).toEqual([6]);
    expect(rule.scope?.ports).toEqual([{ from: 6379, to: 6379 }, { from: 8000, to: 8100 }]);
    expect(rule.scope?.users).toEqual([{ id: 1, name: "daemon" }, { id: 65534, name: null }]);
    expect(web.policy.dns.mode).toBe("allowlist");
    expect(web.policy.dns.allowDomains[0]).toMatchObject({ domain: "pypi.org", includeSubdomains: true, scope: { protocols: [6, 17] } });
    expect(web.denyAt[0]!.where).toBe("policy.yaml:15:9");
    expect(f.attachments[1]!.target).toEqual({ kind: "interface", name: "tap0", direction: "egress" });
  });

  it("the example in examples/host-policy.yaml is valid", async () => {
    const text = readFileSync(new URL("../../../examples/host-policy.yaml", import.meta.url), "utf8");
    const f = await parsePolicyFile("host-policy.yaml", text);
    expect(f.attachments[0]!.policy.allowCidrs[0]!.scope?.users.map((u) => u.name)).toEqual(["www-data"]);
  });

  it("reports every problem of a broken file with its line and column", async () => {
    const bad = `version: 1
attachments:
  - name: web
    cgroup: /sys/fs/cgroup/web
    mode: allowlst
    colour: blue
    allow:
      - cidr: 10.0.0.300/8
      - cidr: 10.0.0.0/8
        ports: [70000]
      - cidr: 10.1.0.0/16
        users: [no-such-user-nf]
  - name: bad/name
    interface: tap0
    allow:
      - cidr: 10.0.0.0/8
        users: [daemon]
  - name: none
`;
    const p = await problemsOf(bad);
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:5:11: mode "allowlst" is not one of/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:6:5: unknown key "colour"/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:8:15: cidr: /));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:10:17: .*"70000" is not a port/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:12:17: .*unknown user.*no-such-user-nf/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:13:11: name "bad\/name"/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:17:16: .*users are only enforceable on cgroup attachments/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:18:5: attachment "none" needs exactly one target/));
  });

  it("reports YAML syntax errors, a missing version, duplicate names and targets", async () => {
    expect(await problemsOf("version: 1\nattachments: [\n")).toContainEqual(expect.stringMatching(/^policy\.yaml:\d+:\d+: /));
    expect(await problemsOf("attachments: []\n")).toContainEqual(expect.stringMatching(/^policy\.yaml:1:1: "version: 1" is required/));
    expect(await problemsOf("version: 2\n")).toContainEqual(expect.stringMatching(/^policy\.yaml:1:10: unsupported version/));
    const dup = "version: 1\nattachments:\n  - {name: a, cgroup: /x}\n  - {name: a, cgroup: /x/}\n";
    const p = await problemsOf(dup);
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:4:5: attachment name "a" is used twice \(first at policy\.yaml:3:5\)/));
    expect(p).toContainEqual(expect.stringMatching(/^policy\.yaml:4:\d+: cgroup \/x is the target of two attachments/));
  });

  it("refuses deny rules that would cut management access, scoped or not; other ports and protocols pass", async () => {
    const m = parseManagement(["192.0.2.0/24"], undefined, []);
    const f = await parsePolicyFile("p.yaml", `version: 1
attachments:
  - name: a
    cgroup: /x
    deny:
      - cidr: 192.0.2.7/32
      - cidr: 0.0.0.0/0
        protocols: [tcp]
        ports: ["1-1024"]
      - cidr: 192.0.2.0/24
        ports: [443]
      - cidr: 192.0.2.0/24
        protocols: [udp]
      - cidr: 198.51.100.0/24
`);
    const a = f.attachments[0]!;
    const p = lockoutProblems(m, a.name, a.denyAt);
    expect(p).toHaveLength(2);
    expect(p[0]).toMatch(/^p\.yaml:6:9: attachment "a": deny 192\.0\.2\.7\/32 would cut management access \(tcp\/22 to 192\.0\.2\.0\/24/);
    expect(p[1]).toMatch(/^p\.yaml:7:9: .*deny 0\.0\.0\.0\/0 \[tcp\/1-1024\]/);
    expect(lockoutProblems(parseManagement([], undefined, []), a.name, a.denyAt)).toEqual([]);
  });

  it("management config: bad values are problems, ports default to 22", () => {
    const problems: string[] = [];
    expect(parseManagement("10.0.0.0/8, 192.0.2.0/24", "22,2222", problems)).toMatchObject({ ports: [22, 2222] });
    expect(parseManagement(["10.0.0.0/8"], undefined, problems).ports).toEqual([22]);
    expect(problems).toEqual([]);
    parseManagement(["10.0.0.300/8"], [0], problems);
    expect(problems).toHaveLength(2);
  });

  it("config: management from the file or NETFENCE_MANAGEMENT_*; a bad value or a protected_deny overlap is a config error", () => {
    const c = loadConfig({ text: "management: {networks: [192.0.2.0/24]}\n", env: {} });
    expect(c.management.ports).toEqual([22]);
    expect(loadConfig({ env: { NETFENCE_MANAGEMENT_NETWORKS: "10.0.0.0/8,2001:db8::/32", NETFENCE_MANAGEMENT_PORTS: "2222" } }).management).toMatchObject({ ports: [2222] });
    expect(() => loadConfig({ env: { NETFENCE_MANAGEMENT_PORTS: "ssh" } })).toThrow(ConfigError);
    expect(() => loadConfig({ text: "management: {networks: [192.0.2.0/24]}\nprotected_deny: [192.0.2.5/32]\n", env: {} })).toThrow(/overlaps protected_deny 192\.0\.2\.5\/32/);
    // The kernel's protected set holds one port per prefix: two management ports on one network, or a
    // `protected` entry of another port on a management network, would leave one unprotected.
    expect(() => loadConfig({ text: "management: {networks: [192.0.2.0/24], ports: [22, 2222]}\n", env: {} })).toThrow(/192\.0\.2\.0\/24 is protected for port 22 and port 2222/);
    expect(() => loadConfig({ text: "management: {networks: [192.0.2.0/24]}\nprotected: [{cidr: 192.0.2.0/24, protocol: tcp, port: 443}]\n", env: {} })).toThrow(/one port per prefix/);
    expect(loadConfig({ text: "management: {networks: [192.0.2.0/24, 198.51.100.0/24], ports: [22]}\nprotected: [{cidr: 192.0.2.0/24, protocol: tcp, port: 22}]\n", env: {} }).management.networks).toHaveLength(2);
  });

  it("diff: the same file is no change; rules and modes are listed; a name keeps its target", async () => {
    const f = await parsePolicyFile("policy.yaml", GOOD);
    const web = f.attachments[0]!;
    expect(policyLines(web.policy, web.policy)).toEqual([]);
    const view = { id: "web", target: "/sys/fs/cgroup/web", type: "cgroup" as const, mode: web.policy.mode, audit: false, dnsMode: web.policy.dns.mode, dnsAddress: "", metadata: { "netfence.applied": "true" }, attachedAtMs: 0, method: "cgroup-link" };
    const same = planApply([web], new Map([["web", { view, policy: web.policy }]]), new Set());
    expect(same.lines).toEqual([]);
    const changed = planApply([{ ...web, policy: { ...web.policy, mode: "block-all", denyCidrs: [] } }], new Map([["web", { view, policy: web.policy }]]), new Set());
    expect(changed.lines).toEqual(["~ attachment web (cgroup /sys/fs/cgroup/web)", "    mode allowlist -> block-all", "    - deny cidr 10.0.0.0/8"]);
    const removed = planApply([], new Map([["web", { view, policy: web.policy }]]), new Set());
    expect(removed.lines).toEqual(["- attachment web (cgroup /sys/fs/cgroup/web)"]);
    expect(() => planApply([{ ...web, target: { kind: "cgroup", path: "/sys/fs/cgroup/other" } }], new Map([["web", { view, policy: web.policy }]]), new Set())).toThrow(/keeps its target/);
    expect(() => planApply([web], new Map(), new Set(["web"]))).toThrow(/taken by an attachment the policy file did not create/);
  });
});
