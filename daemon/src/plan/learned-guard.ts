import { formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import type { RuleIndex, RuleOverride } from "../policy/rule-index.js";

/**
 * The DNS rebinding guard (SPEC §6 "learned addresses never override denies"). The kernel looks
 * up the longest matching prefix, so a learned /32 or /128 would beat any shorter deny; whether a
 * learned address may be opened is therefore decided here, where learned entries are planned:
 *
 *   1. covered by the operator's protected-deny set           → refused, never overridable
 *   2. the longest matching CIDR rule of the policy is a deny  → refused ("deny-cidr")
 *   3. the longest matching CIDR rule is an allow              → opened (the policy allows it explicitly)
 *      (scoped rules, issue 15: a scoped deny counts as a deny — it decides some packets, which the
 *      learned /32 would otherwise let through; a prefix with only scoped allows is walked past —
 *      RuleIndex.guardVerdict)
 *   4. in a special range (below) or one of the host's own addresses → refused
 *   5. otherwise                                                → opened
 *
 * Special ranges: loopback, unspecified / "this network", link-local (with the cloud metadata
 * addresses called out), IPv4-mapped IPv6 (an IPv4 address in disguise), multicast, broadcast.
 */

export type LearnedRefusal =
  | "protected-deny"
  | "deny-cidr"
  | "loopback"
  | "unspecified"
  | "metadata"
  | "link-local"
  | "v4-mapped"
  | "multicast"
  | "broadcast"
  | "host-address"
  /** Over the attachment's learned-address quota (see dns-quotas.ts). */
  | "quota";

/** Most specific first: the first range that contains an address names the reason. */
const SPECIAL_RANGES: readonly (readonly [string, LearnedRefusal])[] = [
  ["169.254.169.254/32", "metadata"],
  ["fd00:ec2::254/128", "metadata"],
  ["255.255.255.255/32", "broadcast"],
  ["127.0.0.0/8", "loopback"],
  ["::1/128", "loopback"],
  ["0.0.0.0/8", "unspecified"],
  ["::/128", "unspecified"],
  ["169.254.0.0/16", "link-local"],
  ["fe80::/10", "link-local"],
  ["::ffff:0:0/96", "v4-mapped"],
  ["224.0.0.0/4", "multicast"],
  ["ff00::/8", "multicast"],
];

const SPECIAL: readonly (readonly [Cidr, LearnedRefusal])[] = SPECIAL_RANGES.map(([text, reason]) => [parseCidr(text), reason] as const);

/** `outer` contains `inner` (same family, no allocation: this runs for every learned address). */
function covers(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || inner.prefixLen < outer.prefixLen) return false;
  const whole = outer.prefixLen >> 3;
  for (let i = 0; i < whole; i++) if (outer.addr[i] !== inner.addr[i]) return false;
  const bits = outer.prefixLen & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (outer.addr[whole]! & mask) === (inner.addr[whole]! & mask);
}

/** The reason a special range gives for `addr` (a /32 or /128), or null. */
export function specialRange(addr: Cidr): LearnedRefusal | null {
  for (const [range, reason] of SPECIAL) if (covers(range, addr)) return reason;
  return null;
}

export interface LearnedGuardOptions {
  /** Operator's `protected_deny` prefixes: dropped in every mode, never opened by DNS. */
  readonly protectedDeny: readonly Cidr[];
  /** The host's own addresses as canonical prefix text (HostAddresses.addressKeys). */
  readonly hostAddresses: () => ReadonlySet<string>;
}

export class LearnedGuard {
  constructor(private readonly opts: LearnedGuardOptions) {}

  /**
   * Why the learned address `addr` (/32 or /128, canonical text `key`) must not be opened under
   * `rules` at `nowMs` — with `override` seen as already applied — or null when it may be.
   */
  check(addr: Cidr, key: string, rules: RuleIndex, nowMs: number, override?: RuleOverride): LearnedRefusal | null {
    for (const p of this.opts.protectedDeny) if (covers(p, addr)) return "protected-deny";
    const verdict = rules.guardVerdict(addr, nowMs, override);
    if (verdict === "deny") return "deny-cidr";
    if (verdict === "allow") return null;
    const special = specialRange(addr);
    if (special !== null) return special;
    if (this.opts.hostAddresses().has(key)) return "host-address";
    return null;
  }
}

/** A guard with nothing configured but the fixed ranges (tests, tools). */
export function basicGuard(hostAddresses: readonly string[] = []): LearnedGuard {
  const keys = new Set(hostAddresses.map((a) => formatCidr(parseCidr(a))));
  return new LearnedGuard({ protectedDeny: [], hostAddresses: () => keys });
}
