import { CLOSED_GUARDS, type AttachGuards, type AttachSpec } from "../../daemon/src/datapath/filter.js";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import type { KernelPacketEvent } from "../../daemon/src/datapath/filter.js";
import { startFilter } from "../helpers/kernel-filter-fixture.js";
import { requireKernel, Sandbox, type SandboxNeighbour, type SandboxNetwork } from "../helpers/sandbox.js";
import { ensureNfpkt, sendFrame, sniff } from "./tools/nfpkt.js";

/**
 * The attack suite's world: the sandbox network (workload → host-side veth → bridge → "server"
 * namespace, which plays the gateway, the neighbour host and the far side), optionally a second
 * tenant on the same bridge, a KernelFilter on its own pin root, and the MAC and link-local
 * addresses the crafted frames need. Attacks are crafted frames sent from the workload's wl0 (or
 * raw sockets from a cgroup); the proof is a sniffer on the far side that counts marked frames.
 */
export interface World {
  readonly sb: Sandbox;
  readonly net: SandboxNetwork;
  readonly filter: KernelFilter;
  readonly nb: SandboxNeighbour | null;
  readonly wlMac: string;
  readonly serverMac: string;
  readonly nbMac: string | null;
  /** fe80:: address of the server's sv0 and of the workload's wl0. */
  readonly serverLL: string;
  readonly wlLL: string;
}

export async function securityWorld(prefix: string, opts: { neighbour?: boolean; hostAddress?: boolean } = {}): Promise<World> {
  await requireKernel();
  ensureNfpkt();
  const sb = await Sandbox.create(prefix);
  try {
    const net = await sb.network({ hostAddress: opts.hostAddress });
    const nb = opts.neighbour ? await sb.neighbour(net) : null;
    const mac = async (ns: string, dev: string) => (await sb.exec(ns, ["cat", `/sys/class/net/${dev}/address`])).stdout.trim();
    const filter = await startFilter(sb);
    return {
      sb,
      net,
      filter,
      nb,
      wlMac: await mac(net.workloadNs, "wl0"),
      serverMac: await mac(net.serverNs, "sv0"),
      nbMac: nb ? await mac(nb.ns, nb.ifname) : null,
      serverLL: await linkLocal(sb, net.serverNs, "sv0"),
      wlLL: await linkLocal(sb, net.workloadNs, "wl0"),
    };
  } catch (err) {
    await sb.cleanup();
    throw err;
  }
}

export async function closeWorld(w: World | undefined): Promise<void> {
  if (w === undefined) return;
  for (const id of await w.filter.listPinned().catch(() => [])) await w.filter.detach(id).catch(() => undefined);
  await w.filter.close().catch(() => undefined);
  await w.sb.cleanup();
}

/** The interface's fe80:: address once DAD has finished (bounded wait). */
async function linkLocal(sb: Sandbox, ns: string, dev: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const out = (await sb.exec(ns, ["ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link"])).stdout;
    const m = /inet6 (fe80::[0-9a-f:]+)\/64/.exec(out);
    if (m && !out.includes("tentative")) return m[1]!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${dev} in ${ns} has no usable link-local address`);
}

export function guards(over: Partial<AttachGuards> = {}): AttachGuards {
  return { ...CLOSED_GUARDS, ...over };
}

export function ifaceSpec(id: string, slot: number, hostIf: string, extra: Partial<AttachSpec> = {}): AttachSpec {
  return { id, slot, target: { kind: "interface", name: hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 }, ...extra };
}

/** The multicast MAC of an IPv6 multicast group (33:33 + its last 32 bits). */
export function mcastMac(last32hex: string): string {
  const h = last32hex.padStart(8, "0");
  return `33:33:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}`;
}

export interface Shot {
  /** nfpkt SPEC words, without mark= (added). */
  readonly spec: string[];
  readonly mark: string;
  /** Sent from: default the workload's wl0. */
  readonly from?: { readonly ns: string; readonly iface: string };
}

/**
 * Starts a sniffer on each `sniffOn` interface, sends every shot (3 copies each), waits for the
 * capture to end, and returns per interface the number of frames that arrived with each marker.
 */
export async function fire(w: World, shots: readonly Shot[], sniffOn: ReadonlyArray<{ ns: string; iface: string }>, ms = 1500): Promise<Array<Map<string, number>>> {
  const marks = shots.map((s) => s.mark);
  const sniffers = await Promise.all(sniffOn.map((o) => sniff(w.sb, o.ns, o.iface, ms, marks)));
  for (const s of shots) {
    const from = s.from ?? { ns: w.net.workloadNs, iface: "wl0" };
    await sendFrame(w.sb, from.ns, from.iface, [...s.spec, `mark=${s.mark}`]);
  }
  return Promise.all(sniffers.map((s) => s.counts));
}

/** Collects the filter's events until `stop()`; `find` waits (bounded) for a matching one. */
export function eventLog(filter: KernelFilter): { find: (pred: (e: KernelPacketEvent) => boolean, ms?: number) => Promise<KernelPacketEvent>; stop: () => void } {
  const seen: KernelPacketEvent[] = [];
  const it = filter.events()[Symbol.asyncIterator]();
  let stopped = false;
  void (async () => {
    while (!stopped) {
      const r = await it.next();
      if (r.done) return;
      seen.push(r.value);
    }
  })();
  return {
    async find(pred, ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const e = seen.find(pred);
        if (e) return e;
        if (Date.now() > deadline) throw new Error(`no matching event within ${ms} ms; seen: ${JSON.stringify(seen.slice(-10))}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop() {
      stopped = true;
      void it.return?.();
    },
  };
}
