import { access, readdir, stat } from "node:fs/promises";
import path from "node:path";
import { NetfenceError, invalidArgument, isNetfenceError } from "@netfence/proto/errors";
import type { Logger } from "pino";
import { PINNED_LAYOUT, type AttachMethod, type TargetSpec } from "./filter.js";
import { METHOD } from "./wire-format.js";
import { requireInterfaceIndex } from "./interface-index.js";

/**
 * KernelFilter's helpers that need no loader: where a target is (LINK, RELINK), the pin root's
 * migration directories, and the closed reason of a refusal of another layout.
 */

/** ifindex (interfaces) or cgroup directory (cgroups) of a target, for LINK and RELINK. */
export async function locateTarget(target: TargetSpec): Promise<{ ifindex: number; cgroupPath: string }> {
  if (target.kind === "interface") return { ifindex: requireInterfaceIndex(target.name), cgroupPath: "" };
  return { ifindex: 0, cgroupPath: await validateCgroupDir(target.path) };
}

export async function validateCgroupDir(p: string): Promise<string> {
  if (!path.isAbsolute(p)) throw invalidArgument(`cgroup path "${p}" must be absolute`);
  try {
    await access(path.join(p, "cgroup.procs"));
  } catch {
    throw invalidArgument(`"${p}" is not a cgroup v2 directory`);
  }
  return p;
}

/** Attachment ids pinned under the pin root (one directory each). */
export async function pinnedIds(pinRoot: string, validId: RegExp): Promise<string[]> {
  const names = await readdir(pinRoot).catch(() => null);
  if (names === null) return [];
  const ids: string[] = [];
  for (const name of names) {
    if (!validId.test(name)) continue;
    const st = await stat(path.join(pinRoot, name)).catch(() => null);
    if (st?.isDirectory()) ids.push(name);
  }
  return ids.sort();
}

/**
 * Where MIGRATE_BEGIN moves pins of another layout: <pin_root>/_migrating-<id> (bpf/loader/migrate.c).
 * Not ".migrating-": bpffs refuses names with a dot; ids never start with "_".
 */
const MIGRATING_PREFIX = "_migrating-";

/** Ids whose pins a migration set aside (names in the pin root). */
export async function migratingIds(pinRoot: string, validId: RegExp): Promise<string[]> {
  const names = await readdir(pinRoot).catch(() => [] as string[]);
  return names.filter((n) => n.startsWith(MIGRATING_PREFIX) && validId.test(n.slice(MIGRATING_PREFIX.length))).map((n) => n.slice(MIGRATING_PREFIX.length)).sort();
}

const EPROTO = 71;

/** ADOPT and DUMP: the loader refuses pins of another layout with EPROTO, marked here with the closed reason PINNED_LAYOUT. */
export function withLayoutReason<T>(reply: Promise<T>): Promise<T> {
  return reply.catch((err: unknown) => {
    if (!isNetfenceError(err) || err.details.errno !== EPROTO) throw err;
    throw new NetfenceError("FAILED_PRECONDITION", err.message, { details: { ...err.details, reason: PINNED_LAYOUT }, cause: err });
  });
}

export interface KernelFilterOptions {
  /** The loader binary; default <project>/bpf/loader/netfence-loader. */
  readonly loaderPath?: string;
  /** Directory of netfence_tc.bpf.o / netfence_cgroup.bpf.o; default <project>/bpf/prebuilt. */
  readonly bpfDir?: string;
  /** bpffs directory for pins; default /sys/fs/bpf/netfence. */
  readonly pinRoot?: string;
  readonly logger?: Logger;
}

/** Attachment ids (pin directory names) and the attach methods on the wire. */
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
export const METHOD_NAMES: Record<number, AttachMethod> = {
  [METHOD.TCX]: "tcx",
  [METHOD.CLSACT]: "clsact",
  [METHOD.CGROUP_LINK]: "cgroup-link",
};
export const METHOD_PREF = { auto: 0, tcx: METHOD.TCX, clsact: METHOD.CLSACT } as const;
