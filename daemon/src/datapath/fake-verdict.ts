import net from "node:net";
import { cidrContains, formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import { RULE_ID } from "./hits-wire.js";
import type { FilterEntry } from "./filter.js";
import type { FakeBpffs } from "./fake-bpffs.js";

/**
 * The FakeFilter's verdict for one IP packet (unit tests only), with the kernel's semantics:
 * bpf/include/policy.h nf_decide — own DNS server, other tenants' DNS ports, protected allow and
 * deny, longest live prefix wins, deny wins at equal prefix, the modes, closed loopback and
 * link-local, deadlines. L2 and ICMPv6 rules are not modelled; the kernel tests prove the kernel.
 */

const LOOPBACK: readonly Cidr[] = ["127.0.0.0/8", "::1/128"].map(parseCidr);
const LINK_LOCAL: readonly Cidr[] = ["169.254.0.0/16", "fe80::/10"].map(parseCidr);

export function fakeDecide(
bpffs: FakeBpffs,
id: string,
dst: string,
opts: { protocol?: number; port?: number },
now: number,
): { verdict: "allow" | "block"; reason: string; rule: number } {
  const allow = (rule: number) => ({ verdict: "allow", reason: "", rule }) as const;
  const block = (reason: string, rule: number) => ({ verdict: "block", reason, rule }) as const;
  const p = bpffs.pinned.get(id);
  if (p === undefined) return allow(RULE_ID.NONE);
  const ip = parseCidr(dst);
  const { dns, guards } = p.spec;
  const dnsAddr = ip.family === 4 ? dns.ipv4 : dns.ipv6;
  const l4 = opts.protocol === 6 || opts.protocol === 17;
  if (dnsAddr !== null && net.isIP(dnsAddr) !== 0 && formatCidr(parseCidr(dnsAddr)) === formatCidr(ip) && l4) {
    if (opts.port === dns.port) return allow(RULE_ID.ALWAYS_ALLOWED);
    if (dns.portMin !== undefined && dns.portMax !== undefined && opts.port !== undefined && opts.port >= dns.portMin && opts.port <= dns.portMax) {
      return block("other-tenant-dns", RULE_ID.GUARD);
    }
  }
  const inSet = (deny: boolean) =>
    bpffs.protectedEntries.some(
      (e) =>
        (e.action === "deny") === deny &&
        cidrContains(e.cidr, ip) &&
        (e.protocol === 0 || e.protocol === opts.protocol) &&
        (e.port === 0 || e.port === opts.port),
    );
  if (inSet(false)) return allow(RULE_ID.PROTECTED);
  if (inSet(true)) return block("protected-deny", RULE_ID.PROTECTED_DENY);
  if (p.mode === "disabled") return allow(RULE_ID.DISABLED);
  if (p.mode === "block-all") return block("mode:block-all", RULE_ID.BLOCK_ALL);
  let best: FilterEntry | null = null;
  for (const e of p.entries.values()) {
    if (e.expiresAtMs !== null && e.expiresAtMs <= now) continue;
    if (!cidrContains(e.cidr, ip)) continue;
    if (best === null || e.cidr.prefixLen > best.cidr.prefixLen || (e.cidr.prefixLen === best.cidr.prefixLen && e.deny)) best = e;
  }
  if (best?.deny) return block("deny-cidr", best.ruleId ?? RULE_ID.NONE);
  const local = [...(guards?.openLoopback ? [] : LOOPBACK), ...(guards?.openLinkLocal ? [] : LINK_LOCAL)].find((c) => cidrContains(c, ip));
  if (best?.allow && (local === undefined || best.cidr.prefixLen >= local.prefixLen)) return allow(best.ruleId ?? RULE_ID.NONE);
  if (local !== undefined) return block("local-closed", RULE_ID.LOCAL_CLOSED);
  return p.mode === "denylist" ? allow(RULE_ID.DEFAULT_ALLOW) : block("not-in-allowlist", RULE_ID.DEFAULT_DENY);
}
