import { readFileSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { isNetfenceError, NetfenceError } from "@netfence/proto/errors";
import { isUnscoped } from "@netfence/proto/parse";
import type { AttachMethod, Filter, FilterMode, FilterPolicy, PinnedAttachment, TargetSpec } from "../datapath/filter.js";
import type { AttachmentPolicy, CidrRule } from "../policy/policy.js";
import { EMPTY_DNS_POLICY } from "../policy/policy.js";
import { targetKey } from "./target.js";

/**
 * Orphans: attachments pinned in bpffs that the state store does not account for (state.json
 * deleted, corrupt, or written by another daemon; an attach interrupted between LINK and the
 * save). They keep enforcing — enforcement is never removed because the daemon lost its memory —
 * and are reported until an operator re-registers them (`netfenced adopt`, policy read back from
 * the maps) or removes them on purpose (`netfenced detach --orphan`).
 */
export interface OrphanInfo {
  readonly id: string;
  /** From the pins; -1 when they could not be read. */
  readonly slot: number;
  readonly dnsPort: number;
  readonly kind: "interface" | "cgroup" | "unknown";
  /** The target found from the pins (interface by ifindex, cgroup by id); null when not found. */
  readonly target: TargetSpec | null;
  /** Interface name or cgroup path, else "ifindex N" / "cgroup id N" / "unknown". */
  readonly targetText: string;
  readonly method: AttachMethod | null;
  readonly mode: FilterMode | null;
  readonly attached: boolean;
  /** Entries of the active generation. */
  readonly entries: number;
  /** Why the pins could not be read (then only `id` is known); null when they could. */
  readonly problem: string | null;
  /** The pins as read, for adoption; null when unreadable. */
  readonly pinned: PinnedAttachment | null;
}

/** Reads an orphan's pins. Returns "never-attached" for pins of an attach that never linked (they enforce nothing). */
export async function inspectOrphan(filter: Filter, id: string, cgroupRoot: string | null): Promise<OrphanInfo | "never-attached"> {
  let p: PinnedAttachment;
  try {
    p = await filter.inspect(id);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (isNetfenceError(err) && err.code === "FAILED_PRECONDITION" && /never attached/.test(message)) return "never-attached";
    return {
      id, slot: -1, dnsPort: 0, kind: "unknown", target: null, targetText: "unknown", method: null, mode: null,
      attached: false, entries: 0, problem: message, pinned: null,
    };
  }
  let target: TargetSpec | null = null;
  let targetText: string;
  if (p.kind === "interface") {
    const name = interfaceNameOf(p.ifindex);
    target = name === null ? null : { kind: "interface", name, direction: p.direction };
    targetText = name ?? `ifindex ${p.ifindex}`;
  } else {
    const dir = cgroupRoot === null || p.cgroupId === 0n ? null : cgroupPathOf(cgroupRoot, p.cgroupId);
    target = dir === null ? null : { kind: "cgroup", path: dir };
    targetText = dir ?? (p.cgroupId === 0n ? "cgroup (detached)" : `cgroup id ${p.cgroupId}`);
  }
  return {
    id, slot: p.slot, dnsPort: p.dnsPort, kind: p.kind, target, targetText, method: p.method, mode: p.mode,
    attached: p.attached, entries: p.policy.entries.length, problem: null, pinned: p,
  };
}

export function orphanKey(o: OrphanInfo): string | null {
  return o.target === null ? null : targetKey(o.target);
}

/**
 * The policy an adopted orphan starts with: what its maps enforce. CIDR rules keep their
 * deadlines; scoped rules (issue 15) come back from the scope table (datapath/scope-decode.ts) as
 * CIDR rules with their scope, each living no longer than its kernel entry; addresses it once
 * learned from DNS answers become CIDR rules (the kernel does not know which name produced them);
 * DNS rules are not in the kernel, so DNS filtering starts disabled until the control plane (or an
 * operator) sends a policy. Compiled again, it decides every packet as the maps did.
 */
export function orphanPolicy(p: FilterPolicy): AttachmentPolicy {
  const allowCidrs: CidrRule[] = [];
  const denyCidrs: CidrRule[] = [];
  for (const e of p.entries) {
    if (e.allow) allowCidrs.push({ cidr: e.cidr, expiresAtMs: e.expiresAtMs });
    if (e.deny) denyCidrs.push({ cidr: e.cidr, expiresAtMs: e.expiresAtMs });
    for (const r of e.scoped ?? []) {
      const until = e.expiresAtMs === null ? r.expiresAtMs : r.expiresAtMs === null ? e.expiresAtMs : Math.min(r.expiresAtMs, e.expiresAtMs);
      // An any-protocol, any-owner block (the compiler folds short-lived unscoped rules into one) is an unscoped rule.
      const rule: CidrRule = isUnscoped(r.scope) ? { cidr: e.cidr, expiresAtMs: until } : { cidr: e.cidr, expiresAtMs: until, scope: r.scope };
      if (r.deny) denyCidrs.push(rule);
      else if (r.allow) allowCidrs.push(rule);
    }
  }
  const policy: AttachmentPolicy = { mode: p.mode, audit: p.audit, allowCidrs, denyCidrs, dns: EMPTY_DNS_POLICY };
  return p.keepEstablished === true ? { ...policy, established: "keep" } : policy;
}

/**
 * orphanPolicy of what DUMP read, refused when the scope table holds something that cannot be
 * rebuilt into rules exactly: adopting it would decide some packets otherwise than the kernel does
 * (possibly opening them), so nothing is adopted and the orphan keeps enforcing as it is.
 */
export function adoptedPolicy(id: string, p: PinnedAttachment): AttachmentPolicy {
  if (p.scopeProblem) {
    throw new NetfenceError(
      "FAILED_PRECONDITION",
      `the scoped rules of orphan ${id} cannot be read back exactly (${p.scopeProblem}); it keeps enforcing as it is — remove it with \`netfenced detach --orphan ${id}\` and attach the target again with its policy`,
      { details: { id } },
    );
  }
  return orphanPolicy(p.policy);
}

/** The interface with this ifindex in our network namespace, or null. */
export function interfaceNameOf(ifindex: number): string | null {
  if (ifindex <= 0) return null;
  let names: string[];
  try {
    names = readdirSync("/sys/class/net");
  } catch {
    return null;
  }
  for (const name of names) {
    try {
      if (Number(readFileSync(`/sys/class/net/${name}/ifindex`, "utf8").trim()) === ifindex) return name;
    } catch {
      // vanished meanwhile
    }
  }
  return null;
}

/** Most directories looked at to find a cgroup by id (a bounded walk of the cgroup tree). */
const CGROUP_WALK_LIMIT = 200_000;

/** The cgroup directory under `root` whose id (its inode number on cgroup2) is `id`, or null. */
export function cgroupPathOf(root: string, id: bigint): string | null {
  const queue = [root];
  for (let seen = 0; queue.length > 0 && seen < CGROUP_WALK_LIMIT; seen++) {
    const dir = queue.shift()!;
    try {
      if (statSync(dir, { bigint: true }).ino === id) return dir;
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) queue.push(path.join(dir, e.name));
    } catch {
      // removed meanwhile, or unreadable
    }
  }
  return null;
}
