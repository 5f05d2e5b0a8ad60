import { NetfenceError } from "@netfence/proto/errors";
import { canonicalQueryName, formatAddr, formatCidr, type DomainRule } from "@netfence/proto/parse";
import { nameAllowed } from "@netfence/proto/domain-match";
import type { Filter } from "../datapath/filter.js";
import type { KernelMatch } from "../datapath/lookup-wire.js";
import type { AttachmentRecord } from "../attachments/attachment-record.js";
import type { RuleOrigin } from "../policy/rule-origins.js";
import { parseExplainQuery, type ExplainQuery } from "./explain-query.js";
import { decide, type Verdict } from "./verdict.js";
import { explainScoped, lookupPacket, resolveOwner } from "./scoped-explain.js";
import type { ScopedRuleView } from "./scope-walk.js";

/**
 * `netfenced explain`: the verdict the kernel gives a destination now and why. The verdict is
 * decided from the kernel's own answers (NF_OP_LOOKUP, verdict.ts); the daemon adds what only it
 * knows: where the matching rule came from (policy/rule-origins.ts, kept in the attachment's PolicyState) and which DNS names produced the
 * address (the learned store).
 */

/** One reason the matching entry exists. */
export type EntrySource =
  | { readonly kind: "cidr-rule"; readonly action: "allow" | "deny"; readonly cidr: string; readonly expiresAtMs: number | null; readonly origin: RuleOrigin | null }
  | { readonly kind: "dns"; readonly name: string; readonly expiresAtMs: number; readonly learnedAtMs: number | null; readonly ttlSeconds: number | null };

export interface AddressExplanation {
  readonly address: string;
  readonly protocol: number | null;
  readonly port: number | null;
  readonly verdict: Verdict;
  readonly reason: string;
  readonly step: string;
  readonly mode: string;
  readonly audit: boolean;
  readonly modeOrigin: RuleOrigin | null;
  /** The entry the kernel's lookup found (used or not), with its TTL left. */
  readonly entry: (KernelMatch & { readonly ttlLeftMs: number | null }) | null;
  readonly entryUsed: boolean;
  readonly expiredSkipped: number;
  readonly sources: readonly EntrySource[];
  /** The protected set's matching prefix when step f or g decided. */
  readonly protectedCidr: string | null;
  /** Every DNS name that produced this very address (a shared CDN address has several). */
  readonly names: readonly string[];
  readonly notes: readonly string[];
  /** Issue 15: the owner asked about ("" = not given), the deciding entry's scoped rules, entries stepped over, keep mode, who walked step i. */
  readonly owner: string;
  readonly scoped: readonly ScopedRuleView[];
  readonly skipped: readonly { readonly cidr: string; readonly why: string }[];
  readonly keep: boolean;
  readonly scopeSource: "kernel" | "daemon";
}

export interface DomainExplanation {
  readonly domain: string;
  readonly dnsMode: string;
  readonly dnsModeOrigin: RuleOrigin | null;
  /** Whether the attachment's DNS server resolves the name. */
  readonly resolves: boolean;
  /** The most specific rule that matches (the one that decides), or null. */
  readonly rule: { readonly action: "allow" | "deny"; readonly domain: string; readonly includeSubdomains: boolean; readonly origin: RuleOrigin | null } | null;
  readonly learned: readonly { readonly address: string; readonly expiresAtMs: number; readonly ttlLeftMs: number; readonly learnedAtMs: number | null; readonly ttlSeconds: number | null; readonly sharedWith: readonly string[] }[];
  readonly notes: readonly string[];
}

export interface Explanation {
  readonly attachmentId: string;
  readonly address: AddressExplanation | null;
  readonly domain: DomainExplanation | null;
}

export interface ExplainerDeps {
  readonly filter: Filter;
  readonly record: (id: string) => AttachmentRecord | undefined;
  readonly now: () => number;
}

export class Explainer {
  constructor(private readonly deps: ExplainerDeps) {}

  async explain(q: ExplainQuery): Promise<Explanation> {
    const parsed = parseExplainQuery(q);
    const rec = this.deps.record(parsed.attachmentId);
    if (rec === undefined) throw new NetfenceError("NOT_FOUND", `no attachment with id "${parsed.attachmentId}"`, { details: { id: parsed.attachmentId } });
    if (parsed.domain !== null) return { attachmentId: rec.id, address: null, domain: this.domain(rec, parsed.domain) };
    const owner = await resolveOwner(parsed.user, parsed.group);
    const probe = { ...parsed.probe!, uid: owner.uid, gid: owner.gid };
    const lookup = this.deps.filter.lookup;
    if (lookup === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this data path cannot be read back (explain needs the kernel filter)");
    const k = await lookup.call(this.deps.filter, rec.id, probe.family, probe.addr, lookupPacket(probe));
    const nowMs = this.deps.now();
    const st = rec.state;
    const sc = explainScoped(st, k, probe, nowMs);
    const v = decide(k, probe, sc.policy);
    const notes = [...v.notes, ...sc.notes];
    const match = sc.policy !== undefined ? sc.policy.match : k.match;
    const sources: EntrySource[] = [];
    if (match !== null) {
      const rules = st.rules.get(match.cidr);
      for (const action of ["deny", "allow"] as const) {
        const r = rules?.[action] ?? null;
        if (r !== null) sources.push({ kind: "cidr-rule", action, cidr: match.cidr, expiresAtMs: r.expiresAtMs, origin: st.origins.cidr(action, match.cidr) });
      }
      for (const l of st.learned.forPrefix(match.cidr)) {
        sources.push({ kind: "dns", name: l.name, expiresAtMs: l.expiresAtMs, learnedAtMs: l.learnedAtMs ?? null, ttlSeconds: l.ttlSeconds ?? null });
      }
      if (sources.length === 0 && sc.scoped.length === 0) notes.push(`the kernel holds ${match.cidr} but the daemon's policy has no rule or learned address for it (changed behind the daemon's back?)`);
    }
    if (k.expiredSkipped > 0) notes.push(`${k.expiredSkipped} expired entr${k.expiredSkipped === 1 ? "y" : "ies"} (TTL passed, not yet collected) did not count`);
    const hostKey = `${formatAddr(probe.family, probe.addr)}/${probe.family === 4 ? 32 : 128}`;
    const allNames = st.learned.namesOf(hostKey).sort();
    const names = capNames(allNames, notes, "names");
    if (allNames.length > 1) notes.push(`${allNames.length} DNS names resolved to this address (a shared address, e.g. a CDN): allowing any of them opens it for all`);
    if (names.length > 0 && (match === null || match.cidr !== hostKey)) {
      notes.push(`learned from ${names.join(", ")}, but a wider entry decides`);
    }
    const prot = v.step === "f" ? k.protectedAllow : v.step === "g" ? k.protectedDeny : null;
    return {
      attachmentId: rec.id,
      domain: null,
      address: {
        address: formatAddr(probe.family, probe.addr),
        protocol: probe.protocol,
        port: probe.port,
        verdict: v.verdict,
        reason: v.reason,
        step: v.step,
        mode: k.mode,
        audit: k.audit,
        modeOrigin: st.origins.mode(),
        entry: match === null ? null : { ...match, ttlLeftMs: match.expiresAtMs === null ? null : Math.max(0, match.expiresAtMs - nowMs) },
        entryUsed: v.usedMatch,
        expiredSkipped: k.expiredSkipped,
        sources,
        protectedCidr: prot === null ? null : formatCidr(maskTo(probe.family, probe.addr, prot.prefixLen)),
        names,
        notes,
        owner: owner.text,
        scoped: sc.scoped,
        skipped: sc.walk.scoped ? sc.walk.skipped : [],
        keep: k.keep === true,
        scopeSource: sc.source,
      },
    };
  }

  private domain(rec: AttachmentRecord, name: string): DomainExplanation {
    const st = rec.state;
    const nowMs = this.deps.now();
    const rule = decidingRule(st.dns.allowDomains, st.dns.denyDomains, name);
    const notes: string[] = [];
    const dnsMode = st.dns.mode;
    if (dnsMode === "disabled") notes.push("DNS filtering is disabled: every name resolves; the CIDR policy alone decides the addresses");
    if (dnsMode === "proxy") notes.push("proxy mode: the control plane decides each query; the rules below are not consulted");
    if (dnsMode === "allowlist" && rule === null) notes.push("no rule matches: refused in allowlist mode");
    notes.push(
      "an answer opens only addresses that no deny CIDR, protected-deny entry, loopback, link-local, metadata or host address covers (DNS rebinding guard) unless a CIDR allow covers them; `explain ADDRESS` shows what the kernel does with one",
    );
    const learned = st.learned.prefixesOf(name).map((key) => {
      const r = st.learned.forPrefix(key).find((x) => x.name === name)!;
      return {
        address: key.slice(0, key.lastIndexOf("/")),
        expiresAtMs: r.expiresAtMs,
        ttlLeftMs: Math.max(0, r.expiresAtMs - nowMs),
        learnedAtMs: r.learnedAtMs ?? null,
        ttlSeconds: r.ttlSeconds ?? null,
        sharedWith: capNames(st.learned.namesOf(key).filter((n) => n !== name).sort(), notes, `names sharing ${key.slice(0, key.lastIndexOf("/"))}`),
      };
    });
    return {
      domain: name,
      dnsMode,
      dnsModeOrigin: st.origins.dnsMode(),
      resolves: nameAllowed(st.dns, name),
      rule: rule === null ? null : { ...rule, origin: st.origins.domain(rule.action, rule.domain) },
      learned,
      notes,
    };
  }
}

/**
 * At most MAX_NAMES names in an answer (a wildcard zone can map any number of names to one
 * address; the learned store keeps them all, the answer stays readable), with a note of the rest.
 */
export const MAX_NAMES = 100;
function capNames(names: string[], notes: string[], what: string): string[] {
  if (names.length <= MAX_NAMES) return names;
  notes.push(`${what}: the first ${MAX_NAMES} of ${names.length} shown`);
  return names.slice(0, MAX_NAMES);
}

/** The address masked to `prefixLen` bits (the protected entry's prefix). */
function maskTo(family: 4 | 6, addr: Uint8Array, prefixLen: number): { family: 4 | 6; addr: Uint8Array; prefixLen: number } {
  const out = Uint8Array.from(addr);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = out[i]! & ((0xff << (8 - bits)) & 0xff);
  }
  return { family, addr: out, prefixLen };
}

/**
 * The rule that decides a name, by the contract's semantics (proto/src/domain-match.ts
 * walkSuffixes): the full name (exact and subtree rules, equally specific), then each proper
 * suffix (subtree rules only); deny beats allow at equal specificity.
 */
export function decidingRule(
  allow: readonly DomainRule[], deny: readonly DomainRule[], name: string,
): { action: "allow" | "deny"; domain: string; includeSubdomains: boolean } | null {
  const query = canonicalQueryName(name);
  const find = (rules: readonly DomainRule[], domain: string, subtreeOnly: boolean): DomainRule | undefined =>
    rules.find((r) => canonicalQueryName(r.domain) === domain && (!subtreeOnly || r.includeSubdomains));
  let domain = query;
  let subtreeOnly = false;
  for (;;) {
    const d = find(deny, domain, subtreeOnly);
    if (d !== undefined) return { action: "deny", domain: d.domain, includeSubdomains: d.includeSubdomains };
    const a = find(allow, domain, subtreeOnly);
    if (a !== undefined) return { action: "allow", domain: a.domain, includeSubdomains: a.includeSubdomains };
    const dot = domain.indexOf(".");
    if (dot === -1) return null;
    domain = domain.slice(dot + 1);
    subtreeOnly = true;
  }
}
