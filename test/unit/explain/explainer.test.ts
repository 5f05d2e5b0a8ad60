import { describe, expect, it } from "vitest";
import { formatAddr, parseCidr } from "@netfence/proto/parse";
import { Explainer, MAX_NAMES } from "../../../daemon/src/explain/explainer.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import type { AttachmentRecord } from "../../../daemon/src/attachments/attachment-record.js";
import type { Filter } from "../../../daemon/src/datapath/filter.js";
import type { KernelLookup, KernelMatch } from "../../../daemon/src/datapath/kernel-lookup.js";
import { policy } from "../daemon/fakes.js";

// The explainer's assembly around the kernel's answer (which here comes from a stub: the real one
// is proven in test/kernel/datapath/lookup.test.ts and test/e2e/explain.test.ts): the sources of
// the entry, drift between kernel and daemon, every name of an address (capped), errors.

const NOW = 1_700_000_000_000;
const answer = (match: KernelMatch | null): KernelLookup => ({
  mode: "allowlist", audit: false, guards: 0, dnsIp4: null, dnsIp6: null, dnsPort: 0, dnsPortMin: 0, dnsPortMax: 0,
  protectedCount: 0, protectedDenyCount: 0, match, expiredSkipped: 0, protectedAllow: null, protectedDeny: null,
});
const hostMatch = (addr: string, expiresAtMs: number | null = null): KernelMatch => ({ cidr: `${addr}/32`, prefixLen: 32, allow: true, deny: false, ruleId: 0, expiresAtMs, table: "small-exact" });

function world(match: KernelMatch | null, state = new PolicyState(policy({ mode: "allowlist" }))) {
  const asked: string[] = [];
  const filter = { lookup: async (id: string, family: 4 | 6, addr: Uint8Array) => (asked.push(`${id} ${formatAddr(family, addr)}`), answer(match)) } as unknown as Filter;
  const rec = { id: "nf-1", state } as unknown as AttachmentRecord;
  const explainer = new Explainer({ filter, record: (id) => (id === "nf-1" ? rec : undefined), now: () => NOW });
  const q = (address: string, domain = "") => explainer.explain({ attachmentId: "nf-1", address, domain, port: 0, protocol: "" });
  return { state, asked, q, explainer };
}

describe("Explainer", () => {
  it("a learned address: the kernel's entry with its TTL left, every name behind it with the answer's time and TTL", async () => {
    const w = world(hostMatch("192.0.2.7", NOW + 60_000));
    w.state.learned.add("a.example", parseCidr("192.0.2.7"), NOW + 60_000, undefined, { learnedAtMs: NOW - 1000, ttlSeconds: 61 });
    w.state.learned.add("b.example", parseCidr("192.0.2.7"), NOW + 30_000, undefined, { learnedAtMs: NOW - 500, ttlSeconds: 30 });
    const a = (await w.q("192.0.2.7")).address!;
    expect(w.asked).toEqual(["nf-1 192.0.2.7"]);
    expect(a).toMatchObject({ verdict: "allowed", reason: "allow-cidr", entry: { cidr: "192.0.2.7/32", ttlLeftMs: 60_000 }, entryUsed: true, names: ["a.example", "b.example"] });
    expect(a.sources).toEqual([
      { kind: "dns", name: "a.example", expiresAtMs: NOW + 60_000, learnedAtMs: NOW - 1000, ttlSeconds: 61 },
      { kind: "dns", name: "b.example", expiresAtMs: NOW + 30_000, learnedAtMs: NOW - 500, ttlSeconds: 30 },
    ]);
    expect(a.notes.join("\n")).toMatch(/2 DNS names resolved to this address/);
  });

  it("a kernel entry the daemon's policy does not know is called out (drift)", async () => {
    const a = (await world(hostMatch("198.51.100.1")).q("198.51.100.1")).address!;
    expect(a.sources).toEqual([]);
    expect(a.notes.join("\n")).toMatch(/no rule or learned address for it/);
  });

  it("a wildcard zone with many names for one address: the answer lists the first names and says how many", async () => {
    const w = world(hostMatch("203.0.113.9"));
    for (let i = 0; i < MAX_NAMES + 20; i++) w.state.learned.add(`n${String(i).padStart(3, "0")}.wild.example`, parseCidr("203.0.113.9"), NOW + 60_000);
    const a = (await w.q("203.0.113.9")).address!;
    expect(a.names).toHaveLength(MAX_NAMES);
    expect(a.notes.join("\n")).toMatch(new RegExp(`first ${MAX_NAMES} of ${MAX_NAMES + 20}`));
    const d = (await w.q("", "n000.wild.example")).domain!;
    expect(d.learned[0]!.sharedWith).toHaveLength(MAX_NAMES);
  });

  it("unknown attachment → NOT_FOUND; bad input → INVALID_ARGUMENT, nothing looked up", async () => {
    const w = world(null);
    await expect(w.explainer.explain({ attachmentId: "nf-2", address: "10.0.0.1", domain: "", port: 0, protocol: "" })).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(w.q("10.0.0.1/8")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(w.asked).toEqual([]);
  });
});
