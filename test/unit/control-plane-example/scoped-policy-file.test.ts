import { describe, expect, it } from "vitest";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ControlCommandSchema } from "@netfence/proto/control";
import { EstablishedMode } from "@netfence/proto/types";
import { parsePolicyFile, PolicyFileError } from "../../../control-plane-example/src/policy-file/parse-policy-file.js";
import { commandToWire, policyToBulkUpdate, policyToSubscribedAck } from "../../../sdk/src/to-wire.js";
import { parseCommand } from "../../../daemon/src/control-plane/parse-command.js";

// Issue 15 in the SDK and netfence-cp's YAML: scoped CIDR and domain entries, `established`.

function problems(text: string): readonly string[] {
  try {
    parsePolicyFile(text, "p.yaml");
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyFileError);
    return (err as PolicyFileError).problems;
  }
  throw new Error("expected the file to be rejected");
}

const FILE = `
defaults:
  mode: allowlist
  established: keep
  allow:
    - 10.1.0.0/16
    - {cidr: 10.0.0.0/24, protocols: [tcp], ports: [443, "8000-8100"], users: [web]}
    - {cidr: 127.0.0.1/32, protocols: [tcp], ports: [6379], users: [web, 0], groups: [staff]}
  deny:
    - {cidr: 10.0.0.0/24, protocols: [udp]}
  dns:
    mode: allowlist
    allow:
      - {domain: pypi.org, protocols: [tcp], ports: [443]}
      - files.pythonhosted.org
`;

describe("netfence-cp YAML: scoped entries and established", () => {
  it("parses scopes and established into the SDK's PolicySpec", () => {
    const f = parsePolicyFile(FILE, "p.yaml");
    expect(f.defaults.established).toBe("keep");
    expect(f.defaults.allow).toEqual([
      { cidr: "10.1.0.0/16" },
      { cidr: "10.0.0.0/24", scope: { protocols: ["tcp"], ports: [443, "8000-8100"], users: ["web"] } },
      { cidr: "127.0.0.1/32", scope: { protocols: ["tcp"], ports: [6379], users: ["web", 0], groups: ["staff"] } },
    ]);
    expect(f.defaults.deny).toEqual([{ cidr: "10.0.0.0/24", scope: { protocols: ["udp"] } }]);
    expect(f.defaults.dns!.allow).toEqual([
      { domain: "pypi.org", includeSubdomains: false, scope: { protocols: ["tcp"], ports: [443] } },
      { domain: "files.pythonhosted.org", includeSubdomains: false },
    ]);
  });

  it("reports bad scopes and established with line:column, as the daemon's parser words them", () => {
    const p = problems(`
defaults:
  mode: allowlist
  established: maybe
  allow:
    - {cidr: 10.0.0.0/24, protocols: [icmp], ports: [22]}
    - {cidr: 10.0.0.0/24, ports: [70000]}
    - {cidr: 10.0.0.0/24, protocols: [tcpp]}
    - {cidr: 10.0.0.0/24, users: web}
    - {cidr: 10.0.0.0/24, user: [web]}
  dns:
    mode: allowlist
    deny:
      - {domain: evil.test, protocols: [tcp]}
`);
    expect(p).toEqual([
      "p.yaml:6:38: defaults: allow[0]: scope: ports need tcp, udp or sctp; icmp has no ports (write it in a rule of its own)",
      'p.yaml:7:34: defaults: allow[1]: scope.ports[0]: "70000" is not a port (1..65535)',
      'p.yaml:8:38: defaults: allow[2]: scope.protocols[0]: "tcpp" is not a protocol (tcp, udp, icmp, icmpv6, sctp or a number 1..255)',
      "p.yaml:9:34: defaults: allow[3]: users must be a list",
      'p.yaml:10:27: unknown key "user"; expected one of cidr, ttl, protocols, ports, users, groups',
      "p.yaml:14:7: defaults: dns: deny: a denied domain cannot be scoped (denying a name refuses its resolution); deny its addresses with a scoped deny CIDR",
      'p.yaml:4:16: defaults: established must be one of keep, sever (got "maybe")',
    ]);
  });
});

describe("SDK: scoped entries and established on the wire, as the daemon parses them", () => {
  const lookup = (kind: "user" | "group", name: string): number | null => (kind === "user" && name === "web" ? 33 : kind === "group" && name === "staff" ? 50 : null);

  it("a PolicySpec from the YAML becomes a BulkUpdate / SubscribedAck the daemon reads back identically", () => {
    const f = parsePolicyFile(FILE, "p.yaml");
    const bulk = policyToBulkUpdate(f.defaults);
    expect(bulk.established).toBe(EstablishedMode.KEEP);
    expect(policyToSubscribedAck(f.defaults).established).toBe(EstablishedMode.KEEP);
    expect(policyToBulkUpdate({ mode: "allowlist" }).established).toBe(EstablishedMode.UNSPECIFIED);
    const wire = fromBinary(ControlCommandSchema, toBinary(ControlCommandSchema, commandToWire("att-1", { kind: "bulk-update", policy: f.defaults }, "c1")));
    const parsed = parseCommand(wire, 0, { strict: true, principals: lookup });
    if (parsed.command.kind !== "bulk-update") throw new Error("not a bulk update");
    expect(parsed.command.established).toBe("keep");
    expect(parsed.command.allowCidrs[1]!.scope).toEqual({ protocols: [6], ports: [{ from: 443, to: 443 }, { from: 8000, to: 8100 }], users: [{ id: 33, name: "web" }], groups: [] });
    expect(parsed.command.allowCidrs[2]!.scope!.groups).toEqual([{ id: 50, name: "staff" }]);
    expect(parsed.command.denyCidrs[0]!.scope!.protocols).toEqual([17]);
    expect(parsed.command.dns!.allowDomains[0]!.scope!.ports).toEqual([{ from: 443, to: 443 }]);
    expect(parsed.command.dns!.allowDomains[1]!.scope).toBeUndefined();
  });

  it("single commands carry a scope; an invalid one throws when the command is built", () => {
    const c = commandToWire("att-1", { kind: "allow-cidr", cidr: "10.0.0.0/8", scope: { ports: ["53"] } }, "");
    expect(c.command.case === "allowCidr" && c.command.value.scope?.protocols).toEqual(["tcp", "udp"]);
    const d = commandToWire("att-1", { kind: "allow-domain", domain: "pypi.org", scope: { protocols: ["tcp"], ports: [443] } }, "");
    expect(d.command.case === "allowDomain" && d.command.value.scope?.ports.map((p) => [p.from, p.to])).toEqual([[443, 0]]);
    expect(() => commandToWire("att-1", { kind: "deny-cidr", cidr: "10.0.0.0/8", scope: { protocols: ["icmp"], ports: [1] } }, "")).toThrow(/10\.0\.0\.0\/8 scope: ports need tcp, udp or sctp/);
    const plain = commandToWire("att-1", { kind: "allow-cidr", cidr: "10.0.0.0/8" }, "");
    expect(plain.command.case === "allowCidr" && plain.command.value.scope).toBeUndefined();
  });
});
