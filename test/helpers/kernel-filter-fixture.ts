import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import type { AttachSpec, FilterEntry, FilterMode, FilterPolicy } from "../../daemon/src/datapath/filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { requireKernel, Sandbox, type SandboxNetwork } from "./sandbox.js";

export const allow = (cidr: string, expiresAtMs: number | null = null): FilterEntry => ({ cidr: parseCidr(cidr), allow: true, deny: false, expiresAtMs });
export const deny = (cidr: string): FilterEntry => ({ cidr: parseCidr(cidr), allow: false, deny: true, expiresAtMs: null });
export const policy = (mode: FilterMode, entries: FilterEntry[], audit = false): FilterPolicy => ({ mode, audit, entries });
export const noDns = { ipv4: null, ipv6: null, port: 0 } as const;

export function interfaceSpec(id: string, slot: number, hostIf: string, extra: Partial<AttachSpec> = {}): AttachSpec {
  return { id, slot, target: { kind: "interface", name: hostIf, direction: "ingress" }, dns: noDns, ...extra };
}

/** A KernelFilter on the sandbox's own pin root (removed at sandbox cleanup). */
export async function startFilter(sb: Sandbox): Promise<KernelFilter> {
  return KernelFilter.start({ pinRoot: await sb.pinRoot() });
}

/** Collects stream-client echo lines: {n, t}. */
export interface Echo {
  n: number;
  t: number;
}
export function echoCollector(): { echoes: Echo[]; connected: Promise<void>; onLine: (l: string) => void } {
  const echoes: Echo[] = [];
  let resolve!: () => void;
  const connected = new Promise<void>((r) => (resolve = r));
  return {
    echoes,
    connected,
    onLine: (line: string) => {
      try {
        const v = JSON.parse(line) as { n?: number; t: number; connected?: boolean };
        if (v.connected) resolve();
        else if (typeof v.n === "number") echoes.push({ n: v.n, t: v.t });
      } catch {
        /* not a JSON line */
      }
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface FilterSandbox {
  readonly sb: Sandbox;
  readonly net: SandboxNetwork;
  readonly filter: KernelFilter;
}

/** The common kernel-test world: a sandbox network, an echo server on `port`, a KernelFilter on its own pin root. */
export async function filterSandbox(prefix: string, port: number, netOpts: { hostAddress?: boolean } = {}): Promise<FilterSandbox> {
  await requireKernel();
  const sb = await Sandbox.create(prefix);
  const net = await sb.network(netOpts);
  await sb.echoServer(net.serverNs, port);
  return { sb, net, filter: await startFilter(sb) };
}

/** Detaches every attachment still pinned by this filter, stops it and removes the sandbox. */
export async function closeFilterSandbox(ctx: FilterSandbox | undefined): Promise<void> {
  if (ctx === undefined) return;
  for (const id of await ctx.filter.listPinned().catch(() => [])) await ctx.filter.detach(id).catch(() => undefined);
  await ctx.filter.close().catch(() => undefined);
  await ctx.sb.cleanup();
}
