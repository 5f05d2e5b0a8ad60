import { describe, expect, it } from "vitest";
import { parseCidr, parseRuleScope } from "@netfence/proto/parse";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { recordToStored, type AttachmentRecord } from "../../../daemon/src/attachments/attachment-record.js";
import { loadPolicy, type StoredPolicy } from "../../../daemon/src/store/snapshot.js";
import type { AttachmentPolicy } from "../../../daemon/src/policy/policy.js";

// Issue 15, store format: an attachment restored after a restart keeps its scopes (CIDR and domain
// rules) and its keep mode. The stored JSON shape is part of the state file's format (version 1,
// additive: files from before have neither `scope` nor `established` and read as unscoped / sever).

const T0 = 1_700_000_000_000;
const tcp443 = parseRuleScope({ protocols: ["tcp"], ports: [443, "8000-8100"], users: [33] })!;
const webScope = { ...tcp443, users: [{ id: 33, name: "www-data" }] };
const policy: AttachmentPolicy = {
  mode: "allowlist",
  audit: false,
  established: "keep",
  allowCidrs: [{ cidr: parseCidr("10.0.0.0/24"), expiresAtMs: null }, { cidr: parseCidr("10.0.0.0/24"), expiresAtMs: T0 + 60_000, scope: webScope }],
  denyCidrs: [{ cidr: parseCidr("10.0.0.9/32"), expiresAtMs: null, scope: parseRuleScope({ protocols: ["udp"] })! }],
  dns: { mode: "allowlist", allowDomains: [{ domain: "pypi.org", includeSubdomains: false, scope: parseRuleScope({ protocols: ["tcp"], ports: [443] })! }], denyDomains: [], upstreams: [] },
};

function record(state: PolicyState): AttachmentRecord {
  return {
    id: "att-1", slot: 1, target: { kind: "cgroup", path: "/x" }, key: "cgroup:/x", targetText: "/x", dnsPort: 0, dnsAddress: "", metadata: {},
    options: {} as AttachmentRecord["options"], attachedAtMs: T0, method: "link", ifindex: 0, state, dns: null, stored: null,
  };
}

describe("stored attachments keep scopes and keep mode", () => {
  it("the JSON shape of a scoped rule and of keep mode", () => {
    const stored = recordToStored(record(new PolicyState(policy)));
    expect(stored.policy.established).toBe("keep");
    expect(stored.policy.allowCidrs).toContainEqual({
      cidr: "10.0.0.0/24", expiresAtMs: T0 + 60_000,
      scope: { protocols: [6], ports: [{ from: 443, to: 443 }, { from: 8000, to: 8100 }], users: [{ id: 33, name: "www-data" }], groups: [] },
    });
    expect(stored.policy.allowCidrs).toContainEqual({ cidr: "10.0.0.0/24", expiresAtMs: null });
    expect(stored.policy.dns.allowDomains[0]!.scope!.ports).toEqual([{ from: 443, to: 443 }]);
    expect("established" in recordToStored(record(new PolicyState({ ...policy, established: "sever" }))).policy).toBe(false);
  });

  it("restored after a restart (JSON round trip): the same rules, scopes, principal names, keep mode and compiled entries", () => {
    const before = new PolicyState(policy);
    const json = JSON.parse(JSON.stringify(recordToStored(record(before)))) as { policy: StoredPolicy };
    const after = new PolicyState(loadPolicy(json.policy));
    expect(after.established).toBe("keep");
    expect(after.compile(T0)).toEqual(new PolicyState(policy).compile(T0));
    expect(after.compile(T0).keepEstablished).toBe(true);
    const restored = after.toPolicy();
    expect(restored.allowCidrs.find((r) => r.scope !== undefined)!.scope!.users).toEqual([{ id: 33, name: "www-data" }]);
    expect(restored.dns.allowDomains[0]!.scope!.protocols).toEqual([6]);
  });

  it("a file from before issue 15 reads as unscoped and sever; an unreadable scope fails closed", () => {
    const old: StoredPolicy = { mode: "allowlist", audit: false, allowCidrs: [{ cidr: "10.0.0.0/8", expiresAtMs: null }], denyCidrs: [], dns: policy.dns };
    const p = loadPolicy({ ...old, dns: { ...old.dns, allowDomains: [] } });
    expect(p.established).toBeUndefined();
    expect(p.allowCidrs).toEqual([{ cidr: parseCidr("10.0.0.0/8"), expiresAtMs: null }]);
    const broken = { protocols: ["tcp"], ports: [{ from: 0, to: 1 }], users: [], groups: [] } as unknown as StoredPolicy["allowCidrs"][number]["scope"];
    const edited = loadPolicy({
      ...old,
      allowCidrs: [{ cidr: "10.1.0.0/16", expiresAtMs: null, scope: broken }, { cidr: "10.0.0.0/8", expiresAtMs: null }],
      denyCidrs: [{ cidr: "10.2.0.0/16", expiresAtMs: null, scope: broken }],
    });
    expect(edited.allowCidrs.map((r) => r.cidr.prefixLen)).toEqual([8]); // the scoped allow is left out
    expect(edited.denyCidrs).toEqual([{ cidr: parseCidr("10.2.0.0/16"), expiresAtMs: null }]); // the scoped deny denies everything
  });
});
