import type { CIDREntry, ControlCommand, DnsConfig, DomainEntry } from "@netfence/proto/control";
import { principalNamesOf, type PrincipalLookup } from "@netfence/proto/parse";
import { NetfenceError } from "@netfence/proto/errors";
import { lookupPrincipalNames } from "../policy/principals.js";

/**
 * User and group names in a command's rule scopes (issue 15) are resolved through NSS before the
 * command is parsed: parsing stays synchronous and pure (parse-command.ts), the lookup is one getent
 * call per kind for the whole command. The connection does this inside the attachment's command
 * queue (command-runner.ts runResolving), so commands still apply in the order they arrived.
 */

export interface PrincipalNames {
  readonly users: readonly string[];
  readonly groups: readonly string[];
}

/** The user and group names (not numbers) the scopes of `cmd` mention; empty for almost every command. */
export function principalNamesOfCommand(cmd: ControlCommand): PrincipalNames {
  const users = new Set<string>();
  const groups = new Set<string>();
  const entry = (e: CIDREntry | DomainEntry): void => {
    if (e.scope === undefined || (e.scope.users.length === 0 && e.scope.groups.length === 0)) return;
    const n = principalNamesOf({ users: e.scope.users, groups: e.scope.groups });
    for (const u of n.users) users.add(u);
    for (const g of n.groups) groups.add(g);
  };
  const dns = (d: DnsConfig | undefined): void => {
    if (d === undefined) return;
    d.allowDomains.forEach(entry);
    d.denyDomains.forEach(entry);
  };
  const c = cmd.command;
  switch (c.case) {
    case "allowCidr":
    case "denyCidr":
    case "allowDomain":
    case "denyDomain":
      entry(c.value);
      break;
    case "bulkUpdate":
    case "subscribedAck":
      c.value.allowCidrs.forEach(entry);
      c.value.denyCidrs.forEach(entry);
      dns(c.value.dns);
      break;
    default:
      break;
  }
  return { users: [...users], groups: [...groups] };
}

export function hasPrincipalNames(names: PrincipalNames): boolean {
  return names.users.length > 0 || names.groups.length > 0;
}

/** Resolves the names (unknown ones stay unknown: the parser names the rule that has them). */
export async function resolvePrincipalNames(names: PrincipalNames): Promise<PrincipalLookup> {
  const [users, groups] = await Promise.all([lookupPrincipalNames("user", names.users), lookupPrincipalNames("group", names.groups)]);
  return (kind, name) => (kind === "user" ? users : groups).get(name) ?? null;
}

/**
 * For a command handled outside the queue (a SubscribedAck): when it names users or groups, resolves
 * them and calls `then` with the lookup (one that throws when NSS failed: the parser then rejects the
 * command naming the field), returning true; false when there is nothing to resolve.
 */
export function deferForPrincipals(cmd: ControlCommand, then: (lookup: PrincipalLookup) => void): boolean {
  const names = principalNamesOfCommand(cmd);
  if (!hasPrincipalNames(names)) return false;
  resolvePrincipalNames(names).then(then, (err: unknown) =>
    then(() => {
      throw NetfenceError.from(err, "INVALID_ARGUMENT");
    }),
  );
  return true;
}
