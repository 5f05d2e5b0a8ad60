import { formatAddr } from "@netfence/proto/parse";
import type { KernelLookup, KernelMatch, ProtectedMatch } from "../datapath/lookup-wire.js";
import { GUARD } from "../datapath/wire-format.js";

/**
 * The verdict the data path gives a packet now, from what the kernel holds (the LOOKUP reply:
 * the attachment's live settings and the maps' answers). The facts come from the kernel; only the
 * ORDER of decisions is applied here, and it mirrors bpf/include/policy.h nf_decide() step by step
 * (the step letters are those of its comment and of docs/operator-guide.md):
 *
 *   c  malformed: an IPv4-mapped IPv6 destination          guards.h nf_special()  (v4-mapped test)
 *   d  another tenant's DNS server (DNS address, port in range)  guards.h nf_to_dns()
 *   e  always allowed: own DNS address+port; ND; DHCP/DHCPv6/MLD where enabled;
 *      RA/redirect dropped (RA guard)                      guards.h nf_special(), nf_to_dns(), nf_icmp6()
 *   f  protected(-allow) set → pass                        policy.h nf_protected_match(.., 0)
 *   g  protected-deny set → drop                           policy.h nf_protected_match(.., 1)
 *   h  mode disabled → pass; block-all → block             policy.h nf_decide()
 *   i  policy lookup (exact, then LPM): deny → block       policy.h nf_lookup_v4/v6 (done by the loader: lookup.c,
 *      for the question's protocol, port and owner — issue 15: a prefix none of whose rules match the
 *      packet is stepped over; more than NF_LPM_EXPIRED_HOPS steps fail closed: "policy-depth";
 *      explain/scope-walk.ts walks the daemon's compiled policy the same way, for the listing)
 *   j  loopback/link-local closed unless an allow entry inside the range matched   packet.h nf_local_closed()
 *   k  denylist → pass; allowlist → block                  policy.h nf_decide()
 *   audit: a block in h-k passes and is reported ("audited"); c-g are enforced in audit mode too.
 *   keep (NF_SETTING_KEEP, issue 15): before i, a TCP packet of a connection set up while allowed
 *      passes ("kept-established"); explain cannot see sockets, so it only says the mode is on.
 *
 * A packet's L4 details matter only for the DNS address, ICMPv6, DHCP and scoped protected
 * entries; when the question leaves them open (no port/protocol) the answer is for an ordinary
 * packet and `notes` say what a specific port or protocol would change.
 */

export interface ExplainProbe {
  readonly family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  readonly addr: Uint8Array;
  /** IP protocol number; null = not given. */
  readonly protocol: number | null;
  /** Destination port (ICMP: the type); null = not given. */
  readonly port: number | null;
  /** The socket owner (issue 15); null or absent = not given. */
  readonly uid?: number | null;
  readonly gid?: number | null;
}

/** The policy step's answer when the daemon walked scoped entries itself (scope-walk.ts). */
export interface PolicyAnswer {
  readonly match: KernelMatch | null;
  /** The walk ran out of hops: the data path drops (policy-depth). */
  readonly depth: boolean;
}

export type Verdict = "allowed" | "blocked" | "audited";

export interface VerdictResult {
  readonly verdict: Verdict;
  /** The reason as packet events name it (wire-format.ts REASONS), e.g. "deny-cidr". */
  readonly reason: string;
  /** The nf_decide() step that decided ("c".."k"). */
  readonly step: string;
  /** The policy entry the decision used (steps i/j), as opposed to one merely found. */
  readonly usedMatch: boolean;
  readonly notes: string[];
}

export const IPPROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58 } as const;

function eq(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function addrBytes(family: 4 | 6, text: string | null): Uint8Array | null {
  if (text === null) return null;
  if (family === 4) return Uint8Array.from(text.split(".").map(Number));
  return null;
}

/** nf_local_closed(): the prefix length of the closed local range the address is in, 0 if none. */
export function localClosed(p: ExplainProbe, guards: number): number {
  const a = p.addr;
  if (p.family === 4) {
    if (!(guards & GUARD.OPEN_LOOPBACK) && a[0] === 127) return 8;
    if (!(guards & GUARD.OPEN_LINK_LOCAL) && a[0] === 169 && a[1] === 254) return 16;
    return 0;
  }
  if (!(guards & GUARD.OPEN_LOOPBACK) && a.slice(0, 15).every((x) => x === 0) && a[15] === 1) return 128;
  if (!(guards & GUARD.OPEN_LINK_LOCAL) && a[0] === 0xfe && (a[1]! & 0xc0) === 0x80) return 10;
  return 0;
}

/** nf_protected_match(): the entry's scope against the packet's protocol and port. */
function protectedApplies(m: ProtectedMatch | null, count: number, p: ExplainProbe, notes: string[], what: string): boolean {
  if (count === 0 || m === null) return false;
  if (m.port === 0 && m.protocol === 0) return true;
  if (p.protocol === null || (m.port !== 0 && p.port === null)) {
    notes.push(`the ${what} set covers this address only for ${scopeText(m)}; give :PORT/PROTO to ask about it`);
    return false;
  }
  return (m.protocol === 0 || m.protocol === p.protocol) && (m.port === 0 || m.port === p.port);
}

function scopeText(m: ProtectedMatch): string {
  const proto = m.protocol === 0 ? "any protocol" : (Object.entries(IPPROTO).find(([, n]) => n === m.protocol)?.[0] ?? `protocol ${m.protocol}`);
  return m.port === 0 ? proto : `${proto} port ${m.port}`;
}

/** nf_to_dns(): the attachment's DNS address — its port passes, the rest of the DNS range drops. */
function toDns(k: KernelLookup, p: ExplainProbe, notes: string[]): VerdictResult | null {
  if (p.protocol === null || p.port === null) {
    notes.push(
      `this is the attachment's DNS address: udp/tcp port ${k.dnsPort} always passes` +
        (k.dnsPortMin ? `; ports ${k.dnsPortMin}-${k.dnsPortMax} (other tenants' DNS servers) are always dropped` : "") +
        "; other ports follow the policy",
    );
    return null;
  }
  if (p.protocol !== IPPROTO.udp && p.protocol !== IPPROTO.tcp) return null;
  if (k.dnsPort && p.port === k.dnsPort) return { verdict: "allowed", reason: "always-allowed", step: "e", usedMatch: false, notes: [...notes, "the attachment's own DNS server (address and port): always allowed, in every mode"] };
  if (k.dnsPortMin && p.port >= k.dnsPortMin && p.port <= k.dnsPortMax) {
    return { verdict: "blocked", reason: "other-tenant-dns", step: "d", usedMatch: false, notes: [...notes, "a port of the daemon's DNS range other than this attachment's: another tenant's DNS server, dropped in every mode"] };
  }
  return null;
}

/** nf_special(): steps c, d, e. */
function special(k: KernelLookup, p: ExplainProbe, notes: string[]): VerdictResult | null {
  const a = p.addr;
  if (p.family === 4) {
    const dns = addrBytes(4, k.dnsIp4);
    if (dns !== null && eq(a, dns)) return toDns(k, p, notes);
    if (k.guards & GUARD.DHCP && a.every((x) => x === 255) && p.protocol === IPPROTO.udp && p.port === 67) {
      return { verdict: "allowed", reason: "always-allowed", step: "e", usedMatch: false, notes: [...notes, "DHCP client broadcast (from udp port 68): enabled for this attachment"] };
    }
    return null;
  }
  if (a.slice(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff) {
    return { verdict: "blocked", reason: "malformed", step: "c", usedMatch: false, notes: [...notes, "an IPv4-mapped IPv6 destination is dropped in every mode"] };
  }
  if (k.dnsIp6 !== null && formatAddr(6, a) === k.dnsIp6) return toDns(k, p, notes);
  if (p.protocol === IPPROTO.icmpv6 && p.port !== null) {
    const type = p.port;
    const router = type === 134 || type === 137;
    if (router && !(k.guards & GUARD.ROUTER)) return { verdict: "blocked", reason: "router-message", step: "e", usedMatch: false, notes: [...notes, "router advertisements and redirects are dropped in every mode (RA guard)"] };
    const linkScope = (a[0] === 0xfe && (a[1]! & 0xc0) === 0x80) || (a[0] === 0xff && a[1] === 0x02);
    if ((type === 133 || type === 135 || type === 136 || router) && linkScope) {
      return { verdict: "allowed", reason: "always-allowed", step: "e", usedMatch: false, notes: [...notes, "IPv6 neighbour discovery with hop limit 255 to a link-scope destination: always allowed (another hop limit follows the policy)"] };
    }
  }
  return null;
}

/**
 * The verdict for `p` from the kernel's answers `k` (see the step table above); `policy`, when
 * given, replaces the kernel's policy match (step i) with the daemon's scoped walk.
 */
export function decide(k: KernelLookup, p: ExplainProbe, policy?: PolicyAnswer): VerdictResult {
  const notes: string[] = [];
  const sp = special(k, p, notes);
  if (sp !== null) return sp;
  if (protectedApplies(k.protectedAllow, k.protectedCount, p, notes, "protected")) {
    return { verdict: "allowed", reason: "protected", step: "f", usedMatch: false, notes: [...notes, "operator-protected destination (config `protected`): passes in every mode"] };
  }
  if (protectedApplies(k.protectedDeny, k.protectedDenyCount, p, notes, "protected-deny")) {
    return { verdict: "blocked", reason: "protected-deny", step: "g", usedMatch: false, notes: [...notes, "operator protected-deny set (config `protected_deny`): dropped in every mode"] };
  }
  const block = (reason: string, step: string, usedMatch: boolean): VerdictResult =>
    k.audit
      ? { verdict: "audited", reason, step, usedMatch, notes: [...notes, "audit mode: this packet would be blocked; it passes and is reported"] }
      : { verdict: "blocked", reason, step, usedMatch, notes };
  if (k.mode === "disabled") return { verdict: "allowed", reason: "mode:disabled", step: "h", usedMatch: false, notes };
  if (k.mode === "block-all") return block("mode:block-all", "h", false);
  if (k.keep === true && (p.protocol === null || p.protocol === IPPROTO.tcp)) {
    notes.push("keep mode: a TCP connection set up while it was allowed keeps passing (kept-established) whatever this says; explain cannot see sockets, the verdict is for a new connection");
  }
  if (policy !== undefined ? policy.depth : k.depthExhausted === true) {
    notes.push("the policy walk stepped over more prefixes than the data path follows (expired, or scoped rules that do not match): it fails closed");
    return block("policy-depth", "i", false);
  }
  const m = policy !== undefined ? policy.match : k.match;
  if (m !== null && m.deny) return block("deny-cidr", "i", true);
  const local = localClosed(p, k.guards);
  if (m !== null && m.allow && m.prefixLen >= local) return { verdict: "allowed", reason: "allow-cidr", step: "i", usedMatch: true, notes };
  if (local) {
    if (m !== null && m.allow) notes.push(`the allow entry ${m.cidr} is wider than the closed local range (/${local}): only an allow inside it opens it`);
    return block("local-closed", "j", false);
  }
  if (k.mode === "denylist") return { verdict: "allowed", reason: "denylist-default", step: "k", usedMatch: false, notes };
  return block("not-in-allowlist", "k", false);
}
