import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { findCgroup2Mount } from "../../daemon/src/attachments/target.js";
import path from "node:path";
import { promisify } from "node:util";
import { createInterface } from "node:readline";

const run = promisify(execFile);

/**
 * Throwaway kernel sandboxes for real-kernel tests: network namespaces, veth pairs, a bridge,
 * cgroups and bpffs pin roots, all with unique names, all removed by cleanup() (register it in
 * afterAll/afterEach). Never touches existing interfaces, the root firewall or the root cgroup.
 *
 * Topology of network():
 *
 *   netns <w>  (workload)  wl0 10.<a>.<b>.2/24, fd00:<a>:<b>::2/64
 *        |  veth
 *   root ns:  <tag>h  (host-side veth — the filter's target, no address)  ─┐
 *                                                                         bridge <tag>b (no address)
 *   root ns:  <tag>s  (veth)  ───────────────────────────────────────────────┘
 *        |  veth
 *   netns <s>  (servers)   sv0 10.<a>.<b>.10-.19/24, fd00:<a>:<b>::10-::19/64
 *
 * The root namespace gets no address and no route, so nothing there can reach these subnets —
 * unless network({ hostAddress: true }) puts 10.<a>.<b>.1/24 on the bridge: then the root
 * namespace (where a daemon under test runs and serves DNS) is the workload's gateway on this
 * private subnet of ours, exactly like a VM host's bridge. Only this subnet is routed.
 */

let counter = 0;

export async function sh(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await run(cmd, args, { timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 * 1024 * 1024 });
    return { stdout: r.stdout, stderr: r.stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string };
    if (opts.allowFail) return { stdout: e.stdout ?? "", stderr: e.stderr ?? "", code: typeof e.code === "number" ? e.code : 1 };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.stderr ?? String(err)}`);
  }
}

/** The cgroup2 mount (from /proc/mounts, via the daemon's own lookup); throws if there is none. */
export function cgroup2Mount(): string {
  const mount = findCgroup2Mount();
  if (mount === null) throw new Error("no cgroup2 mount in /proc/mounts");
  return mount;
}

export interface SandboxNetwork {
  readonly workloadNs: string;
  readonly serverNs: string;
  /** The host-side veth of the workload (in the root namespace): the attachment target. */
  readonly hostIf: string;
  readonly workloadIp4: string;
  readonly workloadIp6: string;
  /** Ten server addresses each: index 0 = .10 / ::10, … */
  readonly serverIp4: readonly string[];
  readonly serverIp6: readonly string[];
  readonly subnet4: string;
  readonly subnet6: string;
  /** 10.<a>.<b>.1 on the bridge in the root namespace, when requested. */
  readonly hostIp4: string | null;
  /** The bridge (root namespace) joining the veths. */
  readonly bridge: string;
}

/** A second workload on the same bridge (see Sandbox.neighbour): another tenant. */
export interface SandboxNeighbour {
  readonly ns: string;
  /** Its host-side veth in the root namespace (an attachment target of its own). */
  readonly hostIf: string;
  /** The interface inside its namespace. */
  readonly ifname: string;
  readonly ip4: string;
  readonly ip6: string;
}

export class Sandbox {
  readonly tag: string;
  private readonly cleanups: Array<() => Promise<void>> = [];
  private readonly children = new Set<ChildProcess>();

  private constructor(prefix: string) {
    this.tag = `${prefix.slice(0, 4)}${process.pid % 1000}${(counter++).toString(36)}${randomBytes(2).toString("hex")}`.slice(0, 11);
  }

  static async create(prefix = "nft"): Promise<Sandbox> {
    return new Sandbox(prefix);
  }

  /** Registers a clean-up step for something the test created itself (run in reverse order). */
  onCleanup(fn: () => Promise<void>): void {
    this.cleanups.push(fn);
  }

  /** A unique pin root under /sys/fs/bpf for one test's filter instance. */
  async pinRoot(): Promise<string> {
    const dir = `/sys/fs/bpf/nftest-${this.tag}`;
    this.cleanups.push(async () => {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    });
    return dir;
  }

  async network(opts: { hostAddress?: boolean } = {}): Promise<SandboxNetwork> {
    const a = 200 + (process.pid % 50);
    const b = (counter * 7 + randomBytes(1)[0]!) % 250;
    const w = `${this.tag}w`;
    const s = `${this.tag}s`;
    const hostIf = `${this.tag}h`;
    const brIf = `${this.tag}b`;
    const svIf = `${this.tag}v`;
    this.cleanups.push(async () => {
      for (const ns of [w, s]) await sh("ip", ["netns", "del", ns], { allowFail: true });
      for (const dev of [hostIf, svIf, brIf]) await sh("ip", ["link", "del", dev], { allowFail: true });
    });
    await sh("ip", ["netns", "add", w]);
    await sh("ip", ["netns", "add", s]);
    await sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "wl0", "netns", w]);
    await sh("ip", ["link", "add", svIf, "type", "veth", "peer", "name", "sv0", "netns", s]);
    await sh("ip", ["link", "add", brIf, "type", "bridge"]);
    // No IPv6 autoconf or addresses on our root-namespace devices: they only forward frames.
    for (const dev of [hostIf, svIf, brIf]) {
      await writeFile(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, "1").catch(() => undefined);
    }
    await sh("ip", ["link", "set", hostIf, "master", brIf]);
    await sh("ip", ["link", "set", svIf, "master", brIf]);
    for (const dev of [hostIf, svIf, brIf]) await sh("ip", ["link", "set", dev, "up"]);
    const subnet4 = `10.${a}.${b}`;
    const subnet6 = `fd00:${a}:${b}`;
    const serverIp4 = Array.from({ length: 10 }, (_, i) => `${subnet4}.${10 + i}`);
    const serverIp6 = Array.from({ length: 10 }, (_, i) => `${subnet6}::${10 + i}`);
    const nsSh = (ns: string, cmd: string) => sh("ip", ["netns", "exec", ns, "sh", "-c", cmd]);
    await nsSh(w, `ip link set lo up && ip link set wl0 up && ip addr add ${subnet4}.2/24 dev wl0 && ip -6 addr add ${subnet6}::2/64 dev wl0 nodad`);
    const adds = serverIp4.map((ip) => `ip addr add ${ip}/24 dev sv0`).concat(serverIp6.map((ip) => `ip -6 addr add ${ip}/64 dev sv0 nodad`));
    await nsSh(s, `ip link set lo up && ip link set sv0 up && ${adds.join(" && ")}`);
    let hostIp4: string | null = null;
    if (opts.hostAddress) {
      hostIp4 = `${subnet4}.1`;
      await sh("ip", ["addr", "add", `${hostIp4}/24`, "dev", brIf]);
      // The workload and the servers route everything else through the host, like a VM would.
      await nsSh(w, `ip route add default via ${hostIp4}`);
      await nsSh(s, `ip route add default via ${hostIp4}`);
    }
    return { workloadNs: w, serverNs: s, hostIf, workloadIp4: `${subnet4}.2`, workloadIp6: `${subnet6}::2`, serverIp4, serverIp6, subnet4, subnet6, hostIp4, bridge: brIf };
  }

  /** Another workload namespace on the network's bridge: nb0 <subnet>.3 / ::3, host-side veth <tag>m. */
  async neighbour(net: SandboxNetwork): Promise<SandboxNeighbour> {
    const ns = `${this.tag}n`;
    const hostIf = `${this.tag}m`;
    this.cleanups.push(async () => {
      await sh("ip", ["netns", "del", ns], { allowFail: true });
      await sh("ip", ["link", "del", hostIf], { allowFail: true });
    });
    await sh("ip", ["netns", "add", ns]);
    await sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "nb0", "netns", ns]);
    await writeFile(`/proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`, "1").catch(() => undefined);
    await sh("ip", ["link", "set", hostIf, "master", net.bridge]);
    await sh("ip", ["link", "set", hostIf, "up"]);
    const ip4 = `${net.subnet4}.3`;
    const ip6 = `${net.subnet6}::3`;
    await sh("ip", ["netns", "exec", ns, "sh", "-c", `ip link set lo up && ip link set nb0 up && ip addr add ${ip4}/24 dev nb0 && ip -6 addr add ${ip6}/64 dev nb0 nodad`]);
    if (net.hostIp4 !== null) await sh("ip", ["netns", "exec", ns, "ip", "route", "add", "default", "via", net.hostIp4]);
    return { ns, hostIf, ifname: "nb0", ip4, ip6 };
  }

  /**
   * A reboot of the workload's link, as an orchestrator re-creating a VM's or container's veth
   * would do it: the host-side veth (and its peer) is deleted — taking any clsact filter with it —
   * and created again with the same names, bridge and addresses (a new ifindex).
   */
  async recreateWorkloadLink(n: SandboxNetwork): Promise<void> {
    const brIf = `${this.tag}b`;
    await sh("ip", ["link", "del", n.hostIf]);
    await sh("ip", ["link", "add", n.hostIf, "type", "veth", "peer", "name", "wl0", "netns", n.workloadNs]);
    await writeFile(`/proc/sys/net/ipv6/conf/${n.hostIf}/disable_ipv6`, "1").catch(() => undefined);
    await sh("ip", ["link", "set", n.hostIf, "master", brIf]);
    await sh("ip", ["link", "set", n.hostIf, "up"]);
    const cmds = [`ip link set wl0 up`, `ip addr add ${n.workloadIp4}/24 dev wl0`, `ip -6 addr add ${n.workloadIp6}/64 dev wl0 nodad`];
    if (n.hostIp4 !== null) cmds.push(`ip route add default via ${n.hostIp4}`);
    await sh("ip", ["netns", "exec", n.workloadNs, "sh", "-c", cmds.join(" && ")]);
  }

  /** A fresh cgroup v2 directory of our own under the cgroup2 mount. */
  async cgroup(): Promise<string> {
    const dir = path.join(cgroup2Mount(), `nftest-${this.tag}-${(counter++).toString(36)}`);
    await mkdir(dir);
    this.cleanups.push(async () => {
      // Move any leftover processes out (to the parent) before removing the directory.
      const procs = await readFile(path.join(dir, "cgroup.procs"), "utf8").catch(() => "");
      for (const pid of procs.split("\n").filter(Boolean)) {
        await writeFile(path.join(path.dirname(dir), "cgroup.procs"), pid).catch(() => undefined);
      }
      for (let i = 0; i < 20 && existsSync(dir); i++) {
        await rmdir(dir).catch(() => undefined);
        if (existsSync(dir)) await new Promise((r) => setTimeout(r, 50));
      }
    });
    return dir;
  }

  /** Runs a command in a namespace (optionally inside a cgroup), bounded in time. */
  exec(ns: string, argv: string[], opts: { cgroup?: string; allowFail?: boolean; timeoutMs?: number } = {}) {
    const [cmd, args] = inNamespace(ns, argv, opts.cgroup);
    return sh(cmd, args, { allowFail: opts.allowFail, timeoutMs: opts.timeoutMs });
  }

  /** Starts a long-lived process in a namespace; killed (by PID) at cleanup. Lines of stdout go to onLine. */
  spawn(ns: string, argv: string[], opts: { cgroup?: string; onLine?: (line: string) => void } = {}): ChildProcess {
    const [cmd, args] = inNamespace(ns, argv, opts.cgroup);
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    if (opts.onLine) createInterface({ input: child.stdout! }).on("line", opts.onLine);
    return child;
  }

  /** Starts the echo server fixture (TCP+UDP on `port`, all addresses) in a namespace and waits until it listens. */
  async echoServer(ns: string, port: number): Promise<ChildProcess> {
    let ready!: () => void;
    const listening = new Promise<void>((r) => (ready = r));
    const child = this.spawn(ns, [process.execPath, fixture("echo-server.mjs"), String(port)], {
      onLine: (l) => {
        if (l.includes("listening")) ready();
      },
    });
    await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("echo server did not start")), 10_000))]);
    return child;
  }

  async cleanup(): Promise<void> {
    for (const c of this.children) {
      if (c.pid && c.exitCode === null) c.kill("SIGKILL");
    }
    for (const fn of this.cleanups.reverse()) await fn().catch(() => undefined);
    this.cleanups.length = 0;
  }
}

/**
 * argv that runs `argv` inside netns `ns`, optionally as a member of `cgroup`. The cgroup is
 * joined first: `ip netns exec` remounts /sys, which hides a cgroup2 mount below it.
 */
/** The root (host) network namespace as `ns`: a process of the test's own (a server bound to the test bridge's address only). */
export const ROOT_NS = "";

function inNamespace(ns: string, argv: string[], cgroup?: string): [string, string[]] {
  if (ns === ROOT_NS) return cgroup ? ["sh", ["-c", `echo $$ > "${cgroup}/cgroup.procs" && exec "$@"`, "sh", ...argv]] : [argv[0]!, argv.slice(1)];
  if (!cgroup) return ["ip", ["netns", "exec", ns, ...argv]];
  return ["sh", ["-c", `echo $$ > "${cgroup}/cgroup.procs" && exec ip netns exec "$0" "$@"`, ns, ...argv]];
}

export function fixture(name: string): string {
  return path.join(path.dirname(new URL(import.meta.url).pathname), "..", "fixtures", name);
}

/** Probes from inside a namespace: true if the destination answered. Bounded by timeoutMs. `uid` (and `gid`, default the uid): the probe runs as that owner (setpriv, no supplementary groups); `localPort`: TCP from that source port. */
export async function probe(
  sb: Sandbox, ns: string, kind: "tcp" | "udp" | "icmp", ip: string,
  opts: { port?: number; cgroup?: string; timeoutMs?: number; uid?: number; gid?: number; localPort?: number } = {},
): Promise<boolean> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  const as = opts.uid === undefined ? [] : ["setpriv", `--reuid=${opts.uid}`, `--regid=${opts.gid ?? opts.uid}`, "--clear-groups"];
  if (kind === "icmp") {
    const r = await sb.exec(ns, [...as, "ping", "-n", "-c", "1", "-W", String(Math.max(1, Math.ceil(timeoutMs / 1000))), ip], { cgroup: opts.cgroup, allowFail: true, timeoutMs: timeoutMs + 3000 });
    return r.code === 0;
  }
  const r = await sb.exec(ns, [...as, process.execPath, fixture("probe.mjs"), kind, ip, String(opts.port ?? 7000), String(timeoutMs), ...(opts.localPort ? [String(opts.localPort)] : [])], { cgroup: opts.cgroup, allowFail: true, timeoutMs: timeoutMs + 5000 });
  return r.stdout.trim() === "ok";
}

/** Under CI=true a kernel test that cannot run fails; elsewhere too (no silent skips) — with a reason. */
export async function requireKernel(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("kernel tests must run as root (CAP_BPF, CAP_NET_ADMIN)");
  if (!existsSync("/sys/kernel/btf/vmlinux")) throw new Error("kernel has no BTF (/sys/kernel/btf/vmlinux)");
  const mounts = await readFile("/proc/mounts", "utf8");
  if (!mounts.split("\n").some((l) => l.split(" ")[1] === "/sys/fs/bpf" && l.split(" ")[2] === "bpf")) {
    throw new Error("bpffs is not mounted at /sys/fs/bpf (run scripts/bootstrap.sh)");
  }
  cgroup2Mount();
}
