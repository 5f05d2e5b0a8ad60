import { interfaceIndex, isInterfaceName } from "../datapath/interface-index.js";
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import path from "node:path";
import { NetfenceError, invalidArgument } from "@netfence/proto/errors";
import type { TargetSpec } from "../datapath/filter.js";
import { linkLayerOf, readLinkType } from "../datapath/link-type.js";

/**
 * Validation of attach targets at the edge: an interface that exists and whose link type the TC
 * program can parse (Ethernet-type, or an L3 device such as tun; see datapath/link-type.ts), or a
 * cgroup v2 directory that resolves (after symlinks and `..`) inside the cgroup2 mount. Checked
 * before the control plane is asked, so an unsupported target fails fast and changes nothing.
 */

export type TargetRequest =
  | { readonly kind: "interface"; readonly name: string; readonly direction: "ingress" | "egress" }
  | { readonly kind: "cgroup"; readonly path: string };

export interface ResolvedTarget {
  readonly spec: TargetSpec;
  /** Identity used to refuse a second attach on the same target. */
  readonly key: string;
  /** As the caller gave it. */
  readonly text: string;
}


/** The cgroup2 mount point from /proc/mounts (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified). */
export function findCgroup2Mount(mounts = "/proc/mounts"): string | null {
  let text: string;
  try {
    text = readFileSync(mounts, "utf8");
  } catch {
    return null;
  }
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f[2] === "cgroup2" && f[1] !== undefined) return f[1].replace(/\\040/g, " ");
  }
  return null;
}

export function isCgroupDir(dir: string): boolean {
  return existsSync(path.join(dir, "cgroup.procs"));
}

/** `netDir`: where link types are read (/sys/class/net; unit tests point it elsewhere). */
export function resolveTarget(req: TargetRequest, cgroupRoot: string | null, netDir = "/sys/class/net"): ResolvedTarget {
  if (req.kind === "interface") {
    const name = req.name;
    if (!isInterfaceName(name)) {
      throw invalidArgument(`invalid interface name "${name}"`, { interface: name });
    }
    const type = readLinkType(name, netDir);
    if (interfaceIndex(name) === null || type === null) {
      throw new NetfenceError("NOT_FOUND", `interface "${name}" does not exist`, { details: { interface: name } });
    }
    linkLayerOf(name, type); // INVALID_ARGUMENT for link types the TC program cannot parse
    const spec: TargetSpec = { kind: "interface", name, direction: req.direction };
    return { spec, key: targetKey(spec), text: name };
  }
  const given = req.path;
  if (given.trim() === "" || given.includes("\0")) throw invalidArgument("cgroup path is empty");
  if (cgroupRoot === null) throw new NetfenceError("FAILED_PRECONDITION", "no cgroup2 filesystem is mounted on this host");
  const root = realpathSync(cgroupRoot);
  const joined = path.isAbsolute(given) ? path.resolve(given) : path.resolve(root, given);
  if (!within(root, joined)) {
    throw invalidArgument(`cgroup path "${given}" is outside the cgroup2 mount ${root}`, { cgroup: given });
  }
  let real: string;
  try {
    real = realpathSync(joined);
  } catch {
    throw new NetfenceError("NOT_FOUND", `cgroup "${given}" does not exist`, { details: { cgroup: given } });
  }
  if (!within(root, real)) {
    throw invalidArgument(`cgroup path "${given}" resolves outside the cgroup2 mount ${root}`, { cgroup: given });
  }
  if (real === root) throw invalidArgument("refusing to attach to the root cgroup", { cgroup: given });
  if (!statSync(real).isDirectory() || !isCgroupDir(real)) {
    throw invalidArgument(`"${given}" is not a cgroup v2 directory`, { cgroup: given });
  }
  const spec: TargetSpec = { kind: "cgroup", path: real };
  return { spec, key: targetKey(spec), text: given };
}

function within(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith("/") ? root : `${root}/`);
}

/** Identity of a target, to refuse a second attach on it. */
export function targetKey(t: TargetSpec): string {
  return t.kind === "interface" ? `if:${t.name}:${t.direction}` : `cg:${t.path}`;
}

/** Interface still there with the same ifindex (a re-created one has lost our filter), or cgroup dir still there. */
export function targetAlive(t: TargetSpec, ifindex: number): boolean {
  if (t.kind === "interface") {
    const now = interfaceIndex(t.name);
    return now !== null && (ifindex === 0 || now === ifindex);
  }
  return isCgroupDir(t.path);
}
