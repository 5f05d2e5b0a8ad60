import { readFileSync } from "node:fs";
import { NetfenceError, invalidArgument } from "@netfence/proto/errors";

/** A Linux interface name (IFNAMSIZ - 1 characters, no slash or space; "." and ".." excluded by isInterfaceName). */
const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

export function isInterfaceName(name: string): boolean {
  return IFNAME.test(name) && name !== "." && name !== "..";
}

/** The ifindex of interface `name` in this namespace (/sys/class/net), or null when there is none. */
export function interfaceIndex(name: string): number | null {
  if (!isInterfaceName(name)) return null;
  try {
    const n = Number(readFileSync(`/sys/class/net/${name}/ifindex`, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** interfaceIndex, or INVALID_ARGUMENT (bad name) / NOT_FOUND (no such interface). */
export function requireInterfaceIndex(name: string): number {
  if (!isInterfaceName(name)) throw invalidArgument(`invalid interface name "${name}"`);
  const idx = interfaceIndex(name);
  if (idx === null) throw new NetfenceError("NOT_FOUND", `interface "${name}" does not exist`, { details: { interface: name } });
  return idx;
}
