import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { formatCidr, parseCidr } from "@netfence/proto/parse";
import { sh, type Sandbox, type SandboxNetwork } from "../../test/helpers/sandbox.js";
import { mean, median, percentile, round } from "../lib/stats.js";
import { Deadline } from "../lib/time-limit.js";
import { makeEntrySet } from "./entry-sets.js";

/**
 * Benchmark 2: TCP throughput (iperf3) and RTT (ping) workload → server through the sandbox
 * topology, identical for every variant:
 *
 *   workload netns ──veth──▶ host-side veth (root ns) ──bridge──▶ veth ──▶ server netns
 *
 *   none      no filter anywhere
 *   noop-tc   control: bench/datapath/noop.bpf.c on the same veth ingress (tc clsact, direct-action),
 *             i.e. the cost of having any TC program on the path
 *   netfence  netfence_tc on the host-side veth's ingress (KernelFilter.attach), allowlist of 10k CIDRs
 *   nftables  the same 10k CIDRs as an nftables interval set, in the WORKLOAD netns's output hook
 *             (table inet nfbench_<tag>, policy drop, `ip daddr @allow4 accept`)
 *   iptables  1000 linear `-d CIDR -j ACCEPT` rules in the workload netns's OUTPUT chain (policy
 *             DROP), the server's /32 being the last rule, so every packet walks all 1000
 *
 * The server's /32 is in every rule set; a second server address not in it is probed once per
 * variant to prove the filter was really active. Variants are interleaved round by round (order
 * rotated each round) so drift affects all alike.
 */

export interface ThroughputOptions {
  readonly sandbox: Sandbox;
  readonly net: SandboxNetwork;
  readonly filter: KernelFilter;
  readonly attachmentId: string;
  readonly slot: number;
  readonly tag: string;
  readonly tmpDir: string;
  readonly buildDir: string;
  readonly quick: boolean;
  readonly log: (msg: string) => void;
}

type Variant = "none" | "noop-tc" | "netfence" | "nftables" | "iptables";
const VARIANTS: readonly Variant[] = ["none", "noop-tc", "netfence", "nftables", "iptables"];
/** Variants that filter (and must block an unlisted destination); noop-tc is a control for the hook itself. */
const FILTERING: ReadonlySet<Variant> = new Set(["netfence", "nftables", "iptables"]);

export interface VariantFigures {
  readonly variant: Variant;
  readonly rules: string;
  readonly throughput_gbit_s: number;
  readonly throughput_samples_gbit_s: readonly number[];
  readonly throughput_vs_none_pct: number;
  readonly paired_vs_none_pct: number;
  /** Spread of the per-round ratios: how much of a difference this run can resolve. */
  readonly paired_p25_pct: number;
  readonly paired_p75_pct: number;
  readonly retransmits: readonly number[];
  readonly rtt_p50_us: number | null;
  readonly rtt_p99_us: number | null;
  readonly rtt_mean_us: number | null;
  readonly ping_lost: number;
  readonly blocks_unlisted_destination: boolean | null;
}

export interface ProfileFigures {
  readonly profile: "default" | "mtu-segments";
  readonly description: string;
  readonly iperf3: string;
  readonly rounds: number;
  readonly variants: VariantFigures[];
}

export interface ThroughputResult {
  readonly topology: string;
  readonly ping: string;
  readonly statistic: string;
  readonly entries: number;
  readonly iptables_rules: number;
  readonly profiles: ProfileFigures[];
}

interface Profile {
  readonly name: "default" | "mtu-segments";
  readonly rounds: number;
  readonly seconds: number;
  readonly ping: boolean;
}

interface Sample {
  gbit: number;
  retransmits: number;
  rtts: number[];
  lost: number;
}

const PORT = 5201;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function throughputBench(o: ThroughputOptions): Promise<ThroughputResult> {
  const { net, sandbox: sb } = o;
  const server = net.serverIp4[0]!;
  const unlisted = net.serverIp4[1]!;
  const set = makeEntrySet(4, 10_000, 0x7e57, { include: [parseCidr(`${server}/32`)] });
  const cidrs = set.entries.map((e) => formatCidr(e.cidr));
  if (cidrs.includes(`${unlisted}/32`)) throw new Error("the unlisted probe address is in the set");
  const iptCidrs = [...cidrs.slice(1, 1000), cidrs[0]!]; // 1000 rules, the server's /32 last
  const table = `nfbench_${o.tag.replace(/[^A-Za-z0-9_]/g, "_")}`;
  const tmp = o.tmpDir;
  const nftFile = path.join(tmp, `${table}.nft`);
  const iptFile = path.join(tmp, `${table}.ipt`);
  await writeFile(
    nftFile,
    `table inet ${table} {\n  set allow4 {\n    type ipv4_addr\n    flags interval\n    elements = { ${cidrs.join(", ")} }\n  }\n` +
      `  chain out {\n    type filter hook output priority 0; policy drop;\n    ip daddr @allow4 accept\n  }\n}\n`,
  );
  await writeFile(iptFile, `*filter\n:OUTPUT DROP [0:0]\n${iptCidrs.map((c) => `-A OUTPUT -d ${c} -j ACCEPT`).join("\n")}\nCOMMIT\n`);
  const inW = (argv: string[], timeoutMs = 20_000, allowFail = false) => sb.exec(net.workloadNs, argv, { timeoutMs, allowFail });

  const setup: Record<Variant, () => Promise<void>> = {
    none: async () => undefined,
    "noop-tc": async () => {
      await sh("tc", ["qdisc", "add", "dev", net.hostIf, "clsact"]);
      await sh("tc", ["filter", "add", "dev", net.hostIf, "ingress", "bpf", "direct-action", "object-file", path.join(o.buildDir, "noop.bpf.o"), "section", "tc"]);
    },
    netfence: async () => {
      await o.filter.attach(
        { id: o.attachmentId, slot: o.slot, target: { kind: "interface", name: net.hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 } },
        { mode: "allowlist", audit: false, entries: set.entries },
      );
    },
    nftables: async () => void (await inW(["nft", "-f", nftFile], 60_000)),
    iptables: async () => void (await inW(["iptables-restore", iptFile], 60_000)),
  };
  const teardown: Record<Variant, () => Promise<void>> = {
    none: async () => undefined,
    "noop-tc": async () => void (await sh("tc", ["qdisc", "del", "dev", net.hostIf, "clsact"])),
    netfence: async () => o.filter.detach(o.attachmentId),
    nftables: async () => void (await inW(["nft", "delete", "table", "inet", table])),
    iptables: async () => {
      await inW(["iptables", "-P", "OUTPUT", "ACCEPT"]);
      await inW(["iptables", "-F", "OUTPUT"]);
    },
  };

  // iperf3 server in the server netns, bound to the allowed address.
  sb.spawn(net.serverNs, ["iperf3", "-s", "-B", server, "-p", String(PORT)]);
  const ready = new Deadline(10_000);
  for (;;) {
    const r = await sb.exec(net.serverNs, ["ss", "-Hltn", `sport = :${PORT}`], { allowFail: true });
    if (r.stdout.includes(String(PORT))) break;
    if (ready.expired()) throw new Error("iperf3 server did not start listening");
    await sleep(100);
  }
  // Warm-up: ARP/neighbour entries and the first connection.
  await inW(["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", server], 10_000);

  const profiles: Profile[] = [
    { name: "default", rounds: o.quick ? 1 : 6, seconds: o.quick ? 1 : 2, ping: true },
    { name: "mtu-segments", rounds: o.quick ? 1 : 4, seconds: o.quick ? 1 : 2, ping: false },
  ];
  const blocks = new Map<Variant, boolean | null>([
    ["none", null],
    ["noop-tc", null],
  ]);
  const rulesText: Record<Variant, string> = {
    none: "no filter",
    "noop-tc": "control: a no-op TC program (bench/datapath/noop.bpf.c) on the host-side veth ingress via tc clsact",
    netfence: `netfence_tc, allowlist of ${cidrs.length} IPv4 entries (${set.hosts} /32 in the exact hash, ${set.prefixes} prefixes in the LPM trie)`,
    nftables: `nftables interval set of the same ${cidrs.length} CIDRs, workload netns output hook`,
    iptables: `${iptCidrs.length} linear iptables rules (${(await sh("iptables", ["--version"])).stdout.trim()}), workload netns OUTPUT, match on the last`,
  };
  const results: ProfileFigures[] = [];
  for (const profile of profiles) {
    if (profile.name === "mtu-segments") {
      // One MTU-sized segment per skb from the workload: every packet crosses the filter on its own.
      await inW(["ip", "link", "set", "dev", "wl0", "gso_max_segs", "1"]);
    }
    const samples = new Map<Variant, Sample[]>(VARIANTS.map((v) => [v, []]));
    for (let r = 0; r < profile.rounds; r++) {
      const order = VARIANTS.map((_, i) => VARIANTS[(i + r) % VARIANTS.length]!);
      for (const v of order) {
        await setup[v]();
        try {
          if (FILTERING.has(v) && !blocks.has(v)) {
            const p = await inW(["ping", "-n", "-c", "1", "-W", "1", unlisted], 5_000, true);
            blocks.set(v, p.code !== 0);
          }
          const ip = await inW(["iperf3", "-c", server, "-p", String(PORT), "-t", String(profile.seconds), "-O", "1", "-J"], (profile.seconds + 20) * 1000);
          const j = JSON.parse(ip.stdout) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
          let rtts: number[] = [];
          if (profile.ping) {
            const ping = await inW(["ping", "-n", "-c", "200", "-i", "0.005", "-W", "1", server], 20_000, true);
            rtts = [...ping.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
          }
          const gbit = j.end.sum_received.bits_per_second / 1e9;
          samples.get(v)!.push({ gbit, retransmits: j.end.sum_sent.retransmits ?? 0, rtts, lost: profile.ping ? 200 - rtts.length : 0 });
          o.log(`throughput ${profile.name} round ${r + 1}/${profile.rounds} ${v}: ${gbit.toFixed(2)} Gbit/s${rtts.length ? `, RTT p50 ${percentile(rtts, 50).toFixed(0)} µs` : ""}`);
        } finally {
          await teardown[v]();
        }
      }
    }
    const none = samples.get("none")!;
    const noneTput = median(none.map((s) => s.gbit));
    const variants = VARIANTS.map((v): VariantFigures => {
      const s = samples.get(v)!;
      const rtts = s.flatMap((x) => x.rtts);
      const tput = median(s.map((x) => x.gbit));
      const paired = s.map((x, i) => (x.gbit / none[i]!.gbit) * 100);
      return {
        variant: v,
        rules: rulesText[v],
        throughput_gbit_s: round(tput, 3),
        throughput_samples_gbit_s: s.map((x) => round(x.gbit, 3)),
        throughput_vs_none_pct: round((tput / noneTput) * 100, 1),
        paired_vs_none_pct: round(median(paired), 1),
        paired_p25_pct: round(percentile(paired, 25), 1),
        paired_p75_pct: round(percentile(paired, 75), 1),
        retransmits: s.map((x) => x.retransmits),
        rtt_p50_us: rtts.length ? round(percentile(rtts, 50), 1) : null,
        rtt_p99_us: rtts.length ? round(percentile(rtts, 99), 1) : null,
        rtt_mean_us: rtts.length ? round(mean(rtts), 1) : null,
        ping_lost: s.reduce((a, x) => a + x.lost, 0),
        blocks_unlisted_destination: blocks.get(v) ?? null,
      };
    });
    for (const v of variants) {
      if (FILTERING.has(v.variant) && v.blocks_unlisted_destination !== true) throw new Error(`${v.variant} did not block an unlisted destination: the variant was not filtering`);
    }
    results.push({
      profile: profile.name,
      description:
        profile.name === "default"
          ? "kernel defaults: TSO/GSO on the veths, so TCP hands 64 KB super-packets to the path and a per-packet filter cost is spread over ~45 segments"
          : "gso_max_segs 1 on the workload veth: TCP hands one MTU-sized segment per skb to the path, so every segment crosses the filter on its own",
      iperf3: `one TCP stream, iperf3 -c <server> -t ${profile.seconds} -O 1 -J (first second omitted), receiver-side bits/s`,
      rounds: profile.rounds,
      variants,
    });
  }

  return {
    topology:
      "workload netns → veth → host-side veth (root ns, no address; netfence attaches to its ingress) → bridge → veth → server netns; " +
      "nftables and iptables variants filter in the workload netns output hook of the same path",
    ping: "ping -c 200 -i 0.005 (ICMP echo, µs from ping's time= field), pooled over the default profile's rounds",
    statistic: "throughput_gbit_s = median over rounds; throughput_vs_none_pct = ratio of medians; paired_vs_none_pct = median over rounds of (variant / none of the same round)",
    entries: cidrs.length,
    iptables_rules: iptCidrs.length,
    profiles: results,
  };
}
