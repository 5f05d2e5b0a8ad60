/**
 * Netfence as bench/segmentation's third engine: the kernel driver itself (KernelFilter, the
 * loader child; the daemon's own apply path is this call plus its RPC) on a cgroup attachment of
 * the bench's own cgroup, the policy replaced in one REPLACE (a new generation, switched
 * atomically). Two policies:
 *   unscoped (default): what main's layout-5 kernel can express — the same NUMBER of rules as /32
 *            entries, not the same policy (no owner, no port): labelled so in the results;
 *   scoped (--scoped):  the same policy as the baselines, owner/port-scoped rules on 127.0.0.1/32
 *            (FilterEntry.scoped), for the layout-6 kernel of issue 15 (lanes K and S). Refused with
 *            a clear error on an older kernel side, which would silently drop the scopes.
 */
import pino from "pino";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import type { FilterPolicy } from "../../daemon/src/policy/compiled.js";
import type { Engine } from "./engines.js";
import { netfenceScoped, netfenceUnscoped, segRules, type Variant } from "./rulesets.js";

/** The layout whose kernel entries carry owner/port scopes (s20-lanes.md, NF_LAYOUT_VERSION 6). */
export const SCOPED_LAYOUT = 6;

export interface NetfenceEngine extends Engine {
  readonly policyKind: "unscoped" | "scoped";
  readonly layout: number;
  close(): Promise<void>;
}

export async function startNetfence(opts: { pinRoot: string; cgroup: string; scoped: boolean; benchUid: number; benchPort: number; initialRules: number }): Promise<NetfenceEngine> {
  const filter = await KernelFilter.start({ pinRoot: opts.pinRoot, logger: pino({ level: "warn" }) });
  const layout = filter.hello?.layout ?? 0;
  if (opts.scoped && layout < SCOPED_LAYOUT) {
    await filter.close();
    throw new Error(`--scoped needs the layout-${SCOPED_LAYOUT} kernel side (scoped rules, issue 15 lanes K and S); this loader speaks layout ${layout}`);
  }
  const policies = new Map<string, FilterPolicy>();
  const policyFor = (n: number, v: Variant): FilterPolicy => {
    const k = `${n}/${v}`;
    let p = policies.get(k);
    if (p === undefined) {
      const rules = segRules(n, opts.benchUid, opts.benchPort, v);
      p = opts.scoped ? netfenceScoped(rules) : netfenceUnscoped(rules, v);
      policies.set(k, p);
    }
    return p;
  };
  const id = `nfseg-${process.pid}`;
  await filter.attach({ id, slot: 1, target: { kind: "cgroup", path: opts.cgroup }, dns: { ipv4: null, ipv6: null, port: 0 } }, policyFor(opts.initialRules, "a"));
  return {
    name: opts.scoped ? "netfence-scoped" : "netfence-unscoped",
    policyKind: opts.scoped ? "scoped" : "unscoped",
    layout,
    async apply(n, v) {
      const p = policyFor(n, v);
      const t0 = performance.now();
      await filter.replacePolicy(id, p);
      return performance.now() - t0;
    },
    // The baselines' clients use another cgroup: nothing to clear between configurations.
    clear: async () => undefined,
    async close() {
      await filter.detach(id).catch(() => undefined);
      await filter.close().catch(() => undefined);
    },
  };
}
