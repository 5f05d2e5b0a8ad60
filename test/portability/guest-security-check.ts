// The kernel-level attack checks of the security suite (test/security/), inside a qemu guest booted from
// Debian's 6.1 (clsact, no TCX) or 6.12 kernel: Node 20 -> KernelFilter -> the real netfence-loader -> the
// prebuilt objects, with attacks crafted and sniffed by the same static nfpkt tool the host suite uses.
// Bundled by run.sh with esbuild (the guest has node, busybox and iproute2, no python, no node_modules).
// Only ever runs inside the throwaway guest: its root namespace plays the host.
//
// usage: node security-check.mjs LOADER BPF_DIR PIN_ROOT NFPKT [auto|tcx|clsact]
// Prints "ok   sec: ..." / "FAIL sec: ..." lines and "SECURITY: PASS" or "SECURITY: FAIL <first failure>".
import { spawn, spawnSync } from "node:child_process";
import dgram from "node:dgram";
import { mkdirSync } from "node:fs";
import { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { CLOSED_GUARDS, type AttachGuards, type AttachMethodPreference, type AttachSpec, type FilterMode } from "../../daemon/src/datapath/filter.js";
import { parseCidr } from "@netfence/proto/parse";

const [loaderPath, bpfDir, pinRoot, nfpkt, pref] = process.argv.slice(2) as [string, string, string, string, string | undefined];
const method: AttachMethodPreference = pref === "tcx" || pref === "clsact" ? pref : "auto";
const fails: string[] = [];
const IP = "/sbin/ip";
const CG = "/sys/fs/cgroup/nfsec";
const PG = "/sys/fs/cgroup/nfsec-pg";

function check(cond: boolean, msg: string): void {
  console.log(`${cond ? "ok  " : "FAIL"} sec: ${msg}`);
  if (!cond) fails.push(msg);
}

function run(argv: string[], opts: { ns?: string; cgroup?: string } = {}): string {
  let cmd = argv;
  if (opts.cgroup) cmd = ["sh", "-c", `echo $$ > ${opts.cgroup}/cgroup.procs && exec "$@"`, "sh", ...cmd];
  if (opts.ns) cmd = ["nsenter", `--net=/run/netns/${opts.ns}`, ...cmd];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { encoding: "utf8", timeout: 60_000 });
  return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
}

function sh(script: string): void {
  const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${script}: ${r.stderr}`);
}

/** Captures on `iface` in `ns` while `send` runs; returns the count per marker. */
async function sniffWhile(ns: string, iface: string, marks: string[], send: () => void, ms = 4000): Promise<Map<string, number>> {
  const child = spawn("nsenter", [`--net=/run/netns/${ns}`, nfpkt, "sniff", iface, String(ms), ...marks], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const ready = new Promise<void>((resolve) =>
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("ready")) resolve();
    }),
  );
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  await Promise.race([ready, exited]);
  send();
  await exited;
  const counts = new Map<string, number>();
  for (const line of out.split("\n")) {
    const [m, n] = line.split(" ");
    if (m && n && marks.includes(m)) counts.set(m, Number(n));
  }
  return counts;
}

const frame = (spec: string[], mark: string, ns = "nfsw", iface = "wl0") => () => {
  const out = run([nfpkt, "send", iface, "2", ...spec, `mark=${mark}`], { ns });
  if (!out.startsWith("sent")) check(false, `nfpkt send ${spec.join(" ")}: ${out}`);
};
/** The interface's MAC, from iproute2 (the guest's /sys shows the root namespace only). */
const mac = (ns: string, dev: string) => /link\/ether ([0-9a-f:]{17})/.exec(run([IP, "-o", "link", "show", "dev", dev], { ns }))?.[1] ?? `no MAC for ${dev}`;
const allow = (cidr: string) => ({ cidr: parseCidr(cidr), allow: true, deny: false, expiresAtMs: null });
const pol = (mode: FilterMode, entries = [] as ReturnType<typeof allow>[]) => ({ mode, audit: false, entries });
const guards = (g: Partial<AttachGuards>): AttachGuards => ({ ...CLOSED_GUARDS, ...g });

function topology(): void {
  sh(`${IP} link add nfsb type bridge && ${IP} link set nfsb up`);
  for (const [ns, host, dev, addrs] of [
    ["nfsw", "nfswh", "wl0", ["10.2.0.2/24", "fd02::2/64"]],
    ["nfss", "nfssh", "sv0", ["10.2.0.10/24", "10.2.0.11/24", "fd02::10/64", "fd02::11/64"]],
    ["nfsn", "nfsnh", "nb0", ["10.2.0.3/24"]],
  ] as const) {
    sh(`${IP} netns add ${ns} && ${IP} link add ${host} type veth peer name ${dev} netns ${ns} && ${IP} link set ${host} master nfsb && ${IP} link set ${host} up`);
    sh(`${IP} -n ${ns} link set lo up && ${IP} -n ${ns} link set ${dev} up`);
    for (const a of addrs) sh(`${IP} -n ${ns} addr add ${a} dev ${dev}${a.includes(":") ? " nodad" : ""}`);
  }
  mkdirSync(CG, { recursive: true });
  mkdirSync(PG, { recursive: true });
}

async function linkLocal(ns: string, dev: string): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const out = run([IP, "-6", "-o", "addr", "show", "dev", dev, "scope", "link"], { ns });
    const m = /inet6 (fe80::[0-9a-f:]+)\/64/.exec(out);
    if (m && !out.includes("tentative")) return m[1]!;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${dev} has no link-local address`);
}

async function main(): Promise<void> {
  topology();
  const filter = await KernelFilter.start({ loaderPath, bpfDir, pinRoot });
  const [wlMac, svMac, nbMac] = [mac("nfsw", "wl0"), mac("nfss", "sv0"), mac("nfsn", "nb0")];
  const [wlLL, svLL] = [await linkLocal("nfsw", "wl0"), await linkLocal("nfss", "sv0")];
  const iface = (id: string, slot: number, hostIf: string, extra: Partial<AttachSpec> = {}): AttachSpec => ({
    id, slot, target: { kind: "interface", name: hostIf, direction: "ingress" }, dns: { ipv4: null, ipv6: null, port: 0 }, method, ...extra,
  });
  try {
    // 1, 5, 7: one attachment with the workload's MAC and addresses named and a DNS range.
    const named = guards({ workloadMac: wlMac, workloadAddresses: ["10.2.0.2", "fd02::2"] });
    const dns = { ipv4: "10.2.0.10", ipv6: null, port: 5300, portMin: 5300, portMax: 5309 };
    const r = await filter.attach(iface("sec-a", 31, "nfswh", { guards: named, dns }), pol("block-all"));
    check(true, `attach with guards (method ${r.method})`);
    const nd = [133, 134, 135, 136, 137].map((t) => ({ spec: [`eth=self,${svMac}`, "ip6=fd02::2,fd02::11,255", `icmp6=${t},0,fd02::11`], mark: `ND${t}` }));
    const ra = { spec: ["eth=self,33:33:00:00:00:01", `ip6=${wlLL},ff02::1,255`, "icmp6=134"], mark: "RA" };
    const ns = { spec: ["eth=self,33:33:ff:00:00:11", `ip6=${wlLL},ff02::1:ff00:11,255`, "icmp6=135,0,fd02::11"], mark: "NSOK" };
    let c = await sniffWhile("nfss", "sv0", [...nd, ra, ns].map((s) => s.mark), () => [...nd, ra, ns].forEach((s) => frame(s.spec, s.mark)()));
    check(nd.every((s) => c.get(s.mark) === 0) && c.get("RA") === 0, `block-all: ICMPv6 133-137 to a global address and RA never arrive (${[...c].join(" ")})`);
    check((c.get("NSOK") ?? 0) > 0, "block-all: neighbour solicitation to the solicited-node group arrives");
    await filter.setMode("sec-a", "disabled", false);
    const l2 = [
      { spec: ["eth=self,ff:ff:ff:ff:ff:ff", "type=0x88b5"], mark: "NONIP" },
      { spec: [`eth=self,${nbMac}`, `arp=2,${wlMac},10.2.0.10,${nbMac},10.2.0.3`], mark: "ARPGW" },
      { spec: [`eth=02:00:00:00:be:ef,${nbMac}`, "ip4=10.2.0.2,10.2.0.3", "udp=4000,9"], mark: "SRCMAC" },
      { spec: ["eth=self,ff:ff:ff:ff:ff:ff", `arp=2,${wlMac},10.2.0.2,ff:ff:ff:ff:ff:ff,10.2.0.2`], mark: "GARPOK" },
    ];
    c = await sniffWhile("nfsn", "nb0", l2.map((s) => s.mark), () => l2.forEach((s) => frame(s.spec, s.mark)()));
    check(c.get("ARPGW") === 0 && c.get("SRCMAC") === 0, `forged ARP and spoofed source MAC never reach the neighbour (${[...c].join(" ")})`);
    check((c.get("NONIP") ?? 0) > 0 && (c.get("GARPOK") ?? 0) > 0, "disabled mode: non-IP and the workload's own ARP reach the neighbour");
    await filter.setMode("sec-a", "denylist", false);
    const dnsShots = [
      { spec: [`eth=self,${svMac}`, "ip4=10.2.0.2,10.2.0.10", "udp=4000,5301"], mark: "OTHERDNS" },
      { spec: [`eth=self,${svMac}`, "ip4=10.2.0.2,10.2.0.10", "udp=4000,5300"], mark: "OWNDNS" },
      { spec: ["eth=self,ff:ff:ff:ff:ff:ff", "type=0x88b5"], mark: "NONIP2" },
      { spec: [`eth=self,${svMac}`, `ip6=${wlLL},${svLL},64`, "tcp=4000,22"], mark: "LLTCP" },
    ];
    await filter.setProtected([{ cidr: parseCidr("10.2.0.11/32"), protocol: 0, port: 0, action: "deny" }]);
    dnsShots.push({ spec: [`eth=self,${svMac}`, "ip4=10.2.0.2,10.2.0.11", "udp=4000,80"], mark: "PDENY" });
    c = await sniffWhile("nfss", "sv0", dnsShots.map((s) => s.mark), () => dnsShots.forEach((s) => frame(s.spec, s.mark)()));
    check(c.get("OTHERDNS") === 0 && (c.get("OWNDNS") ?? 0) > 0, `another tenant's DNS port never arrives, the own one does (${[...c].join(" ")})`);
    check(c.get("NONIP2") === 0 && c.get("LLTCP") === 0 && c.get("PDENY") === 0, "denylist: non-IP, TCP to the neighbour's fe80:: and protected-deny never arrive");
    await filter.setProtected([]);
    await filter.detach("sec-a");

    // 2, 3: a cgroup (the processes run in the workload namespace).
    await filter.attach({ id: "sec-c", slot: 32, target: { kind: "cgroup", path: CG }, dns: { ipv4: null, ipv6: null, port: 0 } }, pol("block-all"));
    const raw = [133, 135, 137].map((t) => `RAW${t}`);
    const outs: string[] = [];
    c = await sniffWhile("nfss", "sv0", raw, () => raw.forEach((m, i) => outs.push(run([nfpkt, "icmp6", "fd02::11", String([133, 135, 137][i]), "255", "1", m], { ns: "nfsw", cgroup: CG }))));
    check(outs.every((o) => o.startsWith("error EPERM")) && raw.every((m) => c.get(m) === 0), `cgroup, block-all: raw ICMPv6 133/135/137 to a global address: EPERM, nothing arrives (${outs.join("; ")})`);
    await filter.replacePolicy("sec-c", pol("denylist"));
    c = await sniffWhile("nfsw", "lo", ["LOOP"], () => outs.push(run([nfpkt, "udp", "127.0.0.1", "5999", "2", "LOOP"], { ns: "nfsw", cgroup: CG })));
    check(c.get("LOOP") === 0 && outs.at(-1)!.startsWith("error EPERM"), `cgroup, denylist: 127.0.0.1 is closed (${outs.at(-1)})`);
    await filter.replacePolicy("sec-c", pol("denylist", [allow("127.0.0.0/8")]));
    c = await sniffWhile("nfsw", "lo", ["LOOPOK"], () => run([nfpkt, "udp", "127.0.0.1", "5999", "2", "LOOPOK"], { ns: "nfsw", cgroup: CG }));
    check((c.get("LOOPOK") ?? 0) > 0, "cgroup: an allow entry inside 127/8 opens loopback");
    await filter.detach("sec-c");

    // 6: L3 devices.
    check(run([nfpkt, "mktun", "nfst"]) === "ok", "tun device created");
    sh(`${IP} link set nfst up && ${IP} addr add 10.3.0.1/29 dev nfst && ${IP} addr add 10.3.0.3/29 dev nfst`);
    const got: string[] = [];
    const socks = await Promise.all(
      ["10.3.0.1", "10.3.0.3"].map(
        (a) => new Promise<dgram.Socket>((resolve) => {
          const s = dgram.createSocket("udp4");
          s.on("message", (m) => got.push(m.toString()));
          s.bind(5400, a, () => resolve(s));
        }),
      ),
    );
    await filter.attach(iface("sec-t", 33, "nfst"), pol("allowlist", [allow("10.3.0.1/32")]));
    for (const [dst, m] of [["10.3.0.1", "TUNOK"], ["10.3.0.3", "TUNNO"]] as const) run([nfpkt, "tun", "nfst", "2", `ip4=10.3.0.2,${dst}`, "udp=4000,5400", `mark=${m}`]);
    await new Promise((r) => setTimeout(r, 1500));
    check(got.some((g) => g.includes("TUNOK")) && !got.some((g) => g.includes("TUNNO")), `tun (L3 parse path): allowed packet delivered, other dropped (${got.length} received)`);
    for (const s of socks) s.close();
    await filter.detach("sec-t");
    check(run([nfpkt, "mktun", "nfsi", "768"]) === "ok", "tun re-typed as ipip created");
    for (const dev of ["lo", "nfsi"]) {
      const err = await filter.attach(iface("sec-x", 34, dev), pol("allowlist")).then(() => null, (e: Error & { code?: string }) => e);
      check(err?.code === "INVALID_ARGUMENT" && /link type/.test(err.message), `attach to ${dev} refused: ${err?.message ?? "attached!"}`);
    }

    // 9: the DNS port guard.
    await filter.setPortGuard({ cgroupPath: PG, portMin: 5300, portMax: 5309, uid: 0 });
    const inside = ["udp 0.0.0.0", "tcp ::"].map((pa) => run([nfpkt, "bind", "65534", ...pa.split(" "), "5305"], { ns: "nfsw", cgroup: PG }));
    const outside = run([nfpkt, "bind", "65534", "udp", "0.0.0.0", "5305"], { ns: "nfsw" });
    check(inside.every((o) => o.startsWith("error EPERM")) && outside === "ok", `port guard: nobody in the cgroup gets EPERM in the range, elsewhere ok (${inside.join("; ")}; ${outside})`);
    await filter.removePortGuard();
  } finally {
    await filter.close();
  }
}

main().then(
  () => {
    console.log(fails.length ? `SECURITY: FAIL ${fails[0]}` : "SECURITY: PASS");
    process.exit(fails.length ? 1 : 0);
  },
  (err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    console.log(`FAIL sec: ${msg}`);
    console.log(`SECURITY: FAIL ${msg}`);
    process.exit(1);
  },
);
