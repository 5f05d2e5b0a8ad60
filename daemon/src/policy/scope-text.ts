import type { RuleScope } from "@netfence/proto/parse";

const PROTOCOL_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp" };

/**
 * A rule scope for people (explain, `netfenced rules`): "tcp/443,8000-8100 udp/443 users web(33)
 * groups 5"; "" for an unscoped rule. "Ports without protocols" shows as tcp and udp (what it means).
 */
export function scopeText(s: RuleScope | undefined): string {
  if (s === undefined) return "";
  const protos = s.protocols.length > 0 ? s.protocols : s.ports.length > 0 ? [6, 17] : [];
  const ports = s.ports.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(",");
  const parts: string[] = [];
  if (protos.length > 0) parts.push(protos.map((p) => `${PROTOCOL_NAMES[p] ?? p}${ports ? `/${ports}` : ""}`).join(" "));
  const who = (list: RuleScope["users"]): string => list.map((p) => (p.name ? `${p.name}(${p.id})` : `${p.id}`)).join(",");
  if (s.users.length > 0) parts.push(`users ${who(s.users)}`);
  if (s.groups.length > 0) parts.push(`groups ${who(s.groups)}`);
  return parts.join(" ");
}
