/**
 * The one policy bench/segmentation applies with every engine, in each engine's own syntax:
 * "uid U may reach 127.0.0.1 tcp port P" rules, a few denies, default drop, established accepted
 * (the seed's shape, seeds/004). N rules in total:
 *   - DENIES deny rules first (uid 65534 → 127.0.0.1 tcp 6379..): what a careful operator puts first;
 *   - N - DENIES - 2 generic allow rules (uid 10000 + i % 1000 → 127.0.0.1 tcp 10000 + i);
 *   - the bench's own two allow rules LAST (uid of the test user → 127.0.0.1 udp/tcp BENCH port):
 *     the worst case for a linear rule walk, the traffic the bench measures.
 * `variant` ("a"/"b") shifts the generic rules' ports so that consecutive applies really change
 * the rule set; the bench's own rules are in both.
 */
import { parseCidr } from "@netfence/proto/parse";
import type { FilterEntry, FilterPolicy, ScopedRuleEntry } from "../../daemon/src/policy/compiled.js";

export const DENIES = 5;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface SegRule {
  readonly action: "accept" | "drop";
  readonly uid: number;
  readonly proto: "tcp" | "udp";
  readonly port: number;
}

export type Variant = "a" | "b";

/** The N rules, in order. */
export function segRules(n: number, benchUid: number, benchPort: number, variant: Variant = "a"): SegRule[] {
  if (!Number.isInteger(n) || n < DENIES + 2 || n > 60_000) throw new RangeError(`rule count ${n} outside ${DENIES + 2}..60000`);
  const out: SegRule[] = [];
  for (let i = 0; i < DENIES; i++) out.push({ action: "drop", uid: 65534, proto: "tcp", port: 6379 + i });
  const shift = variant === "a" ? 0 : 1;
  for (let i = 0; i < n - DENIES - 2; i++) out.push({ action: "accept", uid: 10000 + (i % 1000), proto: "tcp", port: 10000 + ((i + shift) % 50000) });
  out.push({ action: "accept", uid: benchUid, proto: "udp", port: benchPort });
  out.push({ action: "accept", uid: benchUid, proto: "tcp", port: benchPort });
  return out;
}

const iptLine = (r: SegRule) =>
  `-A OUTPUT -d 127.0.0.1/32 -p ${r.proto} -m owner --uid-owner ${r.uid} -m ${r.proto} --dport ${r.port} -j ${r.action === "accept" ? "ACCEPT" : "DROP"}`;
const ESTABLISHED = "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT";

/** iptables-restore input: the whole filter table replaced in one commit (atomic). */
export function iptablesRestoreText(rules: readonly SegRule[]): string {
  return ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT DROP [0:0]", ESTABLISHED, ...rules.map(iptLine), "COMMIT", ""].join("\n");
}

/** The seed's apply.sh, one `iptables` process per line: flush, established, rules, policy drop. */
export function iptablesAppendCommands(rules: readonly SegRule[]): string[][] {
  const split = (line: string) => line.split(" ");
  return [["-F", "OUTPUT"], split(ESTABLISHED), ...rules.map((r) => split(iptLine(r))), ["-P", "OUTPUT", "DROP"]];
}

/** An empty, open filter table (between configurations). */
export const IPTABLES_OPEN = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT", ""].join("\n");

export const NFT_TABLE = "nfseg";

/** Declare-delete-define: `nft -f` applies the whole file as one transaction (atomic replace). */
function nftReplace(body: string[]): string {
  return [`table inet ${NFT_TABLE} {}`, `delete table inet ${NFT_TABLE}`, `table inet ${NFT_TABLE} {`, ...body, "}", ""].join("\n");
}
const NFT_HEAD = ["  chain output {", "    type filter hook output priority filter; policy drop;", "    ct state established,related accept"];

/** nftables, one rule per line (the same linear walk as iptables). */
export function nftRulesText(rules: readonly SegRule[]): string {
  const line = (r: SegRule) => `    ip daddr 127.0.0.1 meta skuid ${r.uid} ${r.proto} dport ${r.port} ${r.action}`;
  return nftReplace([...NFT_HEAD, ...rules.map(line), "  }"]);
}

/** nftables with concatenated sets (daddr . skuid . dport): one hash lookup per set, what an nft expert writes. */
export function nftSetText(rules: readonly SegRule[]): string {
  const set = (name: string, proto: "tcp" | "udp", action: SegRule["action"]) => {
    const el = rules.filter((r) => r.proto === proto && r.action === action).map((r) => `127.0.0.1 . ${r.uid} . ${r.port}`);
    if (el.length === 0) return [];
    return [`  set ${name} {`, `    typeof ip daddr . meta skuid . ${proto} dport`, `    elements = { ${el.join(", ")} }`, "  }"];
  };
  const sets = [set("deny_tcp", "tcp", "drop"), set("allow_tcp", "tcp", "accept"), set("allow_udp", "udp", "accept")];
  const uses = [
    sets[0]!.length ? "    ip daddr . meta skuid . tcp dport @deny_tcp drop" : "",
    sets[1]!.length ? "    ip daddr . meta skuid . tcp dport @allow_tcp accept" : "",
    sets[2]!.length ? "    ip daddr . meta skuid . udp dport @allow_udp accept" : "",
  ].filter(Boolean);
  return nftReplace([...sets.flat(), ...NFT_HEAD, ...uses, "  }"]);
}

/** Removes the bench's nft table (between configurations); no other table is touched. */
export const NFT_DELETE = `table inet ${NFT_TABLE} {}\ndelete table inet ${NFT_TABLE}\n`;

/**
 * Netfence today (main, layout 5): no owner or port in a kernel entry, so the same COUNT of rules as
 * unscoped /32 entries in an allowlist — 127.0.0.1/32 allowed (the bench's flow), N - 1 - DENIES
 * other loopback /32 allows, DENIES /32 denies. Same size, NOT the same policy: labelled as such.
 */
export function netfenceUnscoped(rules: readonly SegRule[], variant: Variant = "a"): FilterPolicy {
  const entries: FilterEntry[] = [];
  const at = (i: number) => `127.${1 + (variant === "b" ? 1 : 0) + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;
  let ruleId = 1;
  entries.push({ cidr: parseCidr("127.0.0.1/32"), allow: true, deny: false, expiresAtMs: null, ruleId: ruleId++ });
  rules.forEach((r, i) => {
    if (i === rules.length - 1) return; // 127.0.0.1 above stands for the bench's rules
    if (r.action === "drop") entries.push({ cidr: parseCidr(`127.250.0.${i + 1}/32`), allow: false, deny: true, expiresAtMs: null, ruleId: ruleId++ });
    else entries.push({ cidr: parseCidr(at(i)), allow: true, deny: false, expiresAtMs: null, ruleId: ruleId++ });
  });
  return { mode: "allowlist", audit: false, entries };
}

/**
 * Netfence with owner-scoped rules (issue 15; needs the layout-6 kernel of lanes K/S): the SAME
 * policy as the iptables/nft rule sets — every rule a ScopedRuleEntry on the one prefix
 * 127.0.0.1/32, which has no unscoped rule of its own.
 */
export function netfenceScoped(rules: readonly SegRule[]): FilterPolicy {
  const scoped: ScopedRuleEntry[] = rules.map((r, i) => ({
    scope: { protocols: [r.proto === "tcp" ? IPPROTO_TCP : IPPROTO_UDP], ports: [{ from: r.port, to: r.port }], users: [{ id: r.uid, name: null }], groups: [] },
    allow: r.action === "accept",
    deny: r.action === "drop",
    ruleId: i + 1,
    expiresAtMs: null,
  }));
  return { mode: "allowlist", audit: false, entries: [{ cidr: parseCidr("127.0.0.1/32"), allow: false, deny: false, expiresAtMs: null, scoped }] };
}
