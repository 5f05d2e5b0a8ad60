/**
 * Rule scope (issue 15, host micro-segmentation): what a CIDR or domain rule is limited to besides
 * its addresses — IP protocols, destination ports and, for cgroup attachments, the socket owner's
 * user or group. One shape for the control-plane stream (CIDREntry.scope / DomainEntry.scope, 100),
 * netfence-cp's YAML and the standalone policy file (`netfenced apply -f`).
 *
 * Matching (docs/operator-guide.md "Scoped rules"): a scoped rule matches a packet when
 *   - `protocols` is empty or holds the packet's IP protocol, and
 *   - `ports` is empty or one of its ranges holds the packet's destination port, and
 *   - `users` and `groups` are both empty, or the socket's owner uid is in `users`, or its gid in `groups`.
 * The deciding rule is the one with the longest address prefix among the rules that match the packet;
 * at equal prefix length deny wins (as for unscoped rules). An unscoped rule matches every packet.
 */

/** A destination port range, inclusive, 1..65535, from <= to. */
export interface PortRange {
  readonly from: number;
  readonly to: number;
}

/** A user or group as resolved at apply time: its number and, when given by name, the name. */
export interface Principal {
  readonly id: number;
  readonly name: string | null;
}

export interface RuleScope {
  /** IP protocol numbers (6 tcp, 17 udp, 1 icmp, 58 icmpv6, 132 sctp); sorted, unique; empty = any.
   * Non-empty `ports` with empty `protocols` means tcp and udp. Ports are only valid with tcp, udp, sctp. */
  readonly protocols: readonly number[];
  /** Destination port ranges, sorted by `from`, non-overlapping (merged); empty = any port. */
  readonly ports: readonly PortRange[];
  /** Socket owner uids (cgroup attachments only); empty with empty `groups` = any owner. */
  readonly users: readonly Principal[];
  /** Socket owner gids (the primary gid of the process that created the socket; cgroup attachments only). */
  readonly groups: readonly Principal[];
}

/** True when the scope limits nothing (the rule is unscoped). */
export function isUnscoped(scope: RuleScope | undefined): boolean {
  return scope === undefined || (scope.protocols.length === 0 && scope.ports.length === 0 && scope.users.length === 0 && scope.groups.length === 0);
}

/** True when the scope names users or groups (only cgroup attachments can enforce it). */
export function hasOwnerScope(scope: RuleScope | undefined): boolean {
  return scope !== undefined && (scope.users.length > 0 || scope.groups.length > 0);
}

/** A stable text key of a scope: equal scopes (same protocols, ports, ids) give equal keys. Names are ignored. */
export function scopeKey(scope: RuleScope | undefined): string {
  if (isUnscoped(scope) || scope === undefined) return "";
  // Plain concatenation (no intermediate arrays): the scope compiler keys every rule of a set.
  let k = "p=";
  for (let i = 0; i < scope.protocols.length; i++) k += (i > 0 ? "," : "") + scope.protocols[i]!;
  k += ";d=";
  for (let i = 0; i < scope.ports.length; i++) {
    const r = scope.ports[i]!;
    k += (i > 0 ? "," : "") + (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`);
  }
  k += ";u=";
  for (let i = 0; i < scope.users.length; i++) k += (i > 0 ? "," : "") + scope.users[i]!.id;
  k += ";g=";
  for (let i = 0; i < scope.groups.length; i++) k += (i > 0 ? "," : "") + scope.groups[i]!.id;
  return k;
}
