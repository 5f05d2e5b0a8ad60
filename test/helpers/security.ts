import type { ChildProcess } from "node:child_process";
import { fixture, sh, type Sandbox, type SandboxNetwork } from "./sandbox.js";

/**
 * Helpers for the attack tests of test/security/: more workloads on a sandbox bridge (tenants,
 * neighbours), a host on another subnet routed to the host's bridge address (an "outside" host),
 * and a packet sniffer on the far side (AF_PACKET, test/fixtures/sniff.py).
 */

export interface ExtraHost {
  readonly ns: string;
  /** Host-side veth in the root namespace (an attachment target), member of the bridge. */
  readonly hostIf: string;
  readonly ip4: string;
  readonly ip6: string;
  /** The interface inside `ns`. */
  readonly ifname: string;
}

let extraCounter = 0;

/**
 * Another namespace on the sandbox bridge at `<subnet4>.<octet>` / `<subnet6>::<octet hex>`,
 * routed through the host like the first workload when the network has a host address.
 */
export async function addBridgeHost(sb: Sandbox, net: SandboxNetwork, octet: number): Promise<ExtraHost> {
  const n = (extraCounter++).toString(36);
  const ns = `${sb.tag}x${n}`;
  const hostIf = `${sb.tag}y${n}`;
  sb.onCleanup(async () => {
    await sh("ip", ["netns", "del", ns], { allowFail: true });
    await sh("ip", ["link", "del", hostIf], { allowFail: true });
  });
  await sh("ip", ["netns", "add", ns]);
  await sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  await sh("sh", ["-c", `echo 1 > /proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`], { allowFail: true });
  await sh("ip", ["link", "set", hostIf, "master", net.bridge]);
  await sh("ip", ["link", "set", hostIf, "up"]);
  const ip4 = `${net.subnet4}.${octet}`;
  const ip6 = `${net.subnet6}::${octet.toString(16)}`;
  const route = net.hostIp4 !== null ? ` && ip route add default via ${net.hostIp4}` : "";
  await sh("ip", ["netns", "exec", ns, "sh", "-c", `ip link set lo up && ip link set eth0 up && ip addr add ${ip4}/24 dev eth0 && ip -6 addr add ${ip6}/64 dev eth0 nodad${route}`]);
  return { ns, hostIf, ip4, ip6, ifname: "eth0" };
}

/**
 * A host on ANOTHER subnet (`10.<a>.<c>.0/24`, c = b ^ 0x80) joined to the same bridge: the root
 * namespace gets `10.<a>.<c>.1/24` on the bridge (so replies go back over the bridge, never out of
 * the machine) and the outside host routes everything through it, like a host elsewhere in the
 * network reaching the DNS listen address through a router.
 */
export async function addOutsideHost(sb: Sandbox, net: SandboxNetwork): Promise<ExtraHost & { readonly gateway: string }> {
  const [a, b] = net.subnet4.split(".").slice(1).map(Number) as [number, number];
  const c = b ^ 0x80;
  const gateway = `10.${a}.${c}.1`;
  await sh("ip", ["addr", "add", `${gateway}/24`, "dev", net.bridge]);
  const n = (extraCounter++).toString(36);
  const ns = `${sb.tag}o${n}`;
  const hostIf = `${sb.tag}p${n}`;
  sb.onCleanup(async () => {
    await sh("ip", ["netns", "del", ns], { allowFail: true });
    await sh("ip", ["link", "del", hostIf], { allowFail: true });
    await sh("ip", ["addr", "del", `${gateway}/24`, "dev", net.bridge], { allowFail: true });
  });
  await sh("ip", ["netns", "add", ns]);
  await sh("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  await sh("sh", ["-c", `echo 1 > /proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`], { allowFail: true });
  await sh("ip", ["link", "set", hostIf, "master", net.bridge]);
  await sh("ip", ["link", "set", hostIf, "up"]);
  const ip4 = `10.${a}.${c}.5`;
  await sh("ip", ["netns", "exec", ns, "sh", "-c", `ip link set lo up && ip link set eth0 up && ip addr add ${ip4}/24 dev eth0 && ip route add default via ${gateway}`]);
  return { ns, hostIf, ip4, ip6: "", ifname: "eth0", gateway };
}

export interface SniffedPacket {
  readonly dir: "in" | "out";
  readonly src: string;
  readonly dst: string;
  readonly proto: number;
  readonly sport: number;
  readonly dport: number;
  readonly len: number;
}

/** A sniffer on one interface of a namespace, collecting every IP packet until stop(). */
export class Sniffer {
  private readonly seen: SniffedPacket[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(sb: Sandbox, ns: string, ifname: string): Promise<Sniffer> {
    let ready!: () => void;
    const up = new Promise<void>((r) => (ready = r));
    let sniffer: Sniffer | null = null;
    const child = sb.spawn(ns, ["python3", fixture("sniff.py"), ifname], {
      onLine: (line) => {
        if (line === "ready") return ready();
        try {
          sniffer?.seen.push(JSON.parse(line) as SniffedPacket);
        } catch {
          // a partial line at exit
        }
      },
    });
    sniffer = new Sniffer(child);
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    await Promise.race([
      up,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`sniffer on ${ns}/${ifname} did not start: ${stderr}`)), 10_000)),
    ]);
    return sniffer;
  }

  packets(filter: (p: SniffedPacket) => boolean = () => true): SniffedPacket[] {
    return this.seen.filter(filter);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.kill("SIGKILL");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  }
}

export interface WatchedEvent {
  readonly attachmentId?: string;
  readonly src?: string;
  readonly dst?: string;
  readonly srcPort?: number;
  readonly dstPort?: number;
  readonly protocol?: string;
  readonly reason?: string;
  readonly rule?: string;
  readonly suppressed?: string;
}

/** `netfenced events --json --follow` against a daemon, collecting every event until stop(). */
export class EventWatcher {
  private readonly seen: WatchedEvent[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(socket: string): Promise<EventWatcher> {
    const { spawn } = await import("node:child_process");
    const { createInterface } = await import("node:readline");
    const { CLI } = await import("./daemon-harness.js");
    const child = spawn(process.execPath, [CLI, "--socket", socket, "events", "--json", "--follow"], { stdio: ["ignore", "pipe", "pipe"] });
    const watcher = new EventWatcher(child);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        watcher.seen.push(JSON.parse(line) as WatchedEvent);
      } catch {
        // not JSON
      }
    });
    // The stream is live only: give the subscription a moment to be in place.
    await new Promise((r) => setTimeout(r, 700));
    if (child.exitCode !== null) throw new Error(`netfenced events exited with ${child.exitCode}`);
    return watcher;
  }

  events(filter: (e: WatchedEvent) => boolean = () => true): WatchedEvent[] {
    return this.seen.filter(filter);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.kill("SIGKILL");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
  }
}

/**
 * A TCP echo server in the ROOT namespace bound to one address of ours (e.g. the sandbox bridge
 * address = "the host's own address"), counting accepted connections. Killed by PID at close().
 */
export async function hostEchoServer(address: string, port: number): Promise<{ accepted(): number; close(): Promise<void> }> {
  const { spawn } = await import("node:child_process");
  const { createInterface } = await import("node:readline");
  const script = `const net=require("node:net");const s=net.createServer((c)=>{console.log("accepted");c.on("error",()=>{});c.pipe(c)});s.listen(${port},${JSON.stringify(address)},()=>console.log("listening"));`;
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  let accepted = 0;
  let ready!: () => void;
  const listening = new Promise<void>((r) => (ready = r));
  createInterface({ input: child.stdout! }).on("line", (l) => {
    if (l === "listening") ready();
    if (l === "accepted") accepted++;
  });
  await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("host echo server did not start")), 10_000))]);
  return {
    accepted: () => accepted,
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGKILL");
      await exited;
    },
  };
}
