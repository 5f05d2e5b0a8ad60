import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BulkUpdateSchema, CIDREntrySchema, ControlCommandSchema, DnsConfigSchema, DomainEntrySchema, RuleScopeSchema, SubscribedAckSchema, type ControlCommand } from "@netfence/proto/control";
import { DnsMode, EstablishedMode, PolicyMode } from "@netfence/proto/types";
import { isNetfenceError } from "@netfence/proto/errors";
import type { PrincipalLookup } from "@netfence/proto/parse";
import { parseCommand, parseSubscribedAck } from "../../../daemon/src/control-plane/parse-command.js";
import { principalNamesOfCommand, resolvePrincipalNames } from "../../../daemon/src/control-plane/command-principals.js";
import { checkCommandOwnerScopes, checkPolicyOwnerScopes } from "../../../daemon/src/policy/owner-scope-check.js";

// Issue 15 at the control-plane edge: CIDREntry.scope / DomainEntry.scope (100), BulkUpdate.established
// (103), SubscribedAck.established (102). A control plane written for the Go original sets none of them.

const NOW = 1_700_000_000_000;
const lookup: PrincipalLookup = (kind, name) => (kind === "user" && name === "web" ? 33 : kind === "group" && name === "staff" ? 50 : null);
const scope = (s: { protocols?: string[]; ports?: { from: number; to?: number }[]; users?: string[]; groups?: string[] }) =>
  create(RuleScopeSchema, { protocols: s.protocols ?? [], ports: (s.ports ?? []).map((p) => ({ from: p.from, to: p.to ?? 0 })), users: s.users ?? [], groups: s.groups ?? [] });
const cmd = (command: ControlCommand["command"]): ControlCommand => create(ControlCommandSchema, { id: "att-1", command });
const allowCidr = (cidr: string, s?: ReturnType<typeof scope>): ControlCommand =>
  cmd({ case: "allowCidr", value: create(CIDREntrySchema, s === undefined ? { cidr } : { cidr, scope: s }) });

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(isNetfenceError(err) && err.code).toBe("INVALID_ARGUMENT");
    return (err as Error).message;
  }
  throw new Error("expected INVALID_ARGUMENT");
}

describe("scoped rules on the control-plane stream", () => {
  it("an entry without scope parses exactly as before (no scope key at all)", () => {
    const p = parseCommand(allowCidr("10.0.0.0/24"), NOW);
    expect(p.command).toEqual({ kind: "allow-cidr", rule: { cidr: expect.anything(), expiresAtMs: null } });
    expect("scope" in (p.command.kind === "allow-cidr" ? p.command.rule : {})).toBe(false);
    // An empty RuleScope is no scope either.
    const e = parseCommand(allowCidr("10.0.0.0/24", scope({})), NOW);
    expect(e.command.kind === "allow-cidr" && e.command.rule.scope).toBeUndefined();
  });

  it("survives the wire: protocols by name, ports and ranges, users by name through the lookup", () => {
    const c = fromBinary(ControlCommandSchema, toBinary(ControlCommandSchema, allowCidr("127.0.0.1/32", scope({ protocols: ["tcp"], ports: [{ from: 6379 }, { from: 8000, to: 8100 }], users: ["web", "0"] }))));
    const p = parseCommand(c, NOW, { principals: lookup });
    expect(p.command.kind === "allow-cidr" && p.command.rule.scope).toEqual({
      protocols: [6], ports: [{ from: 6379, to: 6379 }, { from: 8000, to: 8100 }], users: [{ id: 0, name: null }, { id: 33, name: "web" }], groups: [],
    });
  });

  it("bad scopes reject the whole command naming the field, also under the Go original's skip-bad-entries semantics", () => {
    expect(reason(() => parseCommand(allowCidr("10.0.0.0/8", scope({ protocols: ["icmp"], ports: [{ from: 22 }] })), NOW))).toMatch(
      /^allow_cidr\.scope: ports need tcp, udp or sctp; icmp has no ports/,
    );
    expect(reason(() => parseCommand(allowCidr("10.0.0.0/8", scope({ ports: [{ from: 70000 }] })), NOW))).toMatch(/allow_cidr\.scope\.ports\[0\]\.from: "70000" is not a port/);
    const bulk = cmd({
      case: "bulkUpdate",
      value: create(BulkUpdateSchema, { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "not a cidr" }, { cidr: "10.1.0.0/16", scope: scope({ users: ["nosuch"] }) }] }),
    });
    expect(reason(() => parseCommand(bulk, NOW, { principals: lookup }))).toBe('bulk_update.allow_cidrs[2].scope.users: unknown user "nosuch"');
    // Without the bad scope, the bad CIDR is skipped as the Go original does.
    const ok = cmd({ case: "bulkUpdate", value: create(BulkUpdateSchema, { mode: PolicyMode.ALLOWLIST, allowCidrs: [{ cidr: "10.0.0.0/8" }, { cidr: "not a cidr" }] }) });
    expect(parseCommand(ok, NOW).skipped).toHaveLength(1);
  });

  it("domain scopes: allow rules take one; a deny-domain rule cannot be scoped", () => {
    const d = parseCommand(cmd({ case: "allowDomain", value: create(DomainEntrySchema, { domain: "pypi.org", scope: scope({ protocols: ["tcp"], ports: [{ from: 443 }] }) }) }), NOW);
    expect(d.command.kind === "allow-domain" && d.command.rule.scope?.ports).toEqual([{ from: 443, to: 443 }]);
    expect(reason(() => parseCommand(cmd({ case: "denyDomain", value: create(DomainEntrySchema, { domain: "x.org", scope: scope({ protocols: ["tcp"] }) }) }), NOW))).toMatch(
      /deny_domain\.scope: a deny-domain rule refuses the name's resolution, it cannot be scoped/,
    );
  });

  it("established: BulkUpdate restates it (absent = sever), SubscribedAck carries it", () => {
    const b = (established?: EstablishedMode) => cmd({ case: "bulkUpdate", value: create(BulkUpdateSchema, { mode: PolicyMode.ALLOWLIST, ...(established === undefined ? {} : { established }) }) });
    expect(parseCommand(b(), NOW).command).toMatchObject({ kind: "bulk-update", established: "sever" });
    expect(parseCommand(b(EstablishedMode.KEEP), NOW).command).toMatchObject({ established: "keep" });
    expect(parseCommand(b(EstablishedMode.SEVER), NOW).command).toMatchObject({ established: "sever" });
    expect(reason(() => parseCommand(b(7 as EstablishedMode), NOW))).toMatch(/bulk_update\.established has unknown established mode 7/);
    const ack = create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST, established: EstablishedMode.KEEP, dns: create(DnsConfigSchema, { mode: DnsMode.ALLOWLIST }) });
    expect(parseSubscribedAck(ack, NOW).policy.established).toBe("keep");
    expect(parseSubscribedAck(create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST }), NOW).policy.established).toBeUndefined();
  });

  it("names to resolve are found in every place a command carries rules; numbers need no lookup", () => {
    const bulk = cmd({
      case: "bulkUpdate",
      value: create(BulkUpdateSchema, {
        allowCidrs: [{ cidr: "10.0.0.0/8", scope: scope({ users: ["web", "33"] }) }],
        denyCidrs: [{ cidr: "10.0.0.0/8", scope: scope({ groups: ["staff"] }) }],
        dns: { allowDomains: [{ domain: "a.test", scope: scope({ users: ["root"] }) }] },
      }),
    });
    expect(principalNamesOfCommand(bulk)).toEqual({ users: ["web", "root"], groups: ["staff"] });
    expect(principalNamesOfCommand(allowCidr("10.0.0.0/8", scope({ users: ["0"] })))).toEqual({ users: [], groups: [] });
  });

  it("NSS resolution (getent): root is uid 0, an unknown name stays unknown (the parser then names the rule)", async () => {
    const l = await resolvePrincipalNames({ users: ["root", "netfence-no-such-user"], groups: ["root"] });
    expect(l("user", "root")).toBe(0);
    expect(l("group", "root")).toBe(0);
    expect(l("user", "netfence-no-such-user")).toBeNull();
  });

  it("user and group rules need a cgroup attachment: refused on an interface naming the rule", () => {
    const p = parseCommand(allowCidr("10.0.0.0/8", scope({ protocols: ["tcp"], users: ["web"] })), NOW, { principals: lookup });
    expect(reason(() => checkCommandOwnerScopes(p.command, "interface"))).toBe("allow-cidr 10.0.0.0/8 (tcp users=web(33)): user and group rules need a cgroup attachment");
    expect(() => checkCommandOwnerScopes(p.command, "cgroup")).not.toThrow();
    const ports = parseCommand(allowCidr("10.0.0.0/8", scope({ protocols: ["tcp"], ports: [{ from: 443 }] })), NOW);
    expect(() => checkCommandOwnerScopes(ports.command, "interface")).not.toThrow(); // L4 scopes work on TC too
    const ack = parseSubscribedAck(create(SubscribedAckSchema, { mode: PolicyMode.ALLOWLIST, dns: { allowDomains: [{ domain: "a.test", scope: scope({ groups: ["50"] }) }] } }), NOW);
    expect(reason(() => checkPolicyOwnerScopes(ack.policy, "interface"))).toBe("allow-domain a.test (groups=50): user and group rules need a cgroup attachment");
  });
});
