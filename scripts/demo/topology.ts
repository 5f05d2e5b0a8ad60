import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";

/**
 * The demo's own little world, all uniquely named and removed by teardown():
 *
 *   netns <tag>-vm   (the workload)     vm0 <net>.2/24, default via <net>.1
 *        | veth
 *   root ns: <tag>h  (host side of the VM: the attach target) ─ bridge <tag>b <net>.1/24
 *   root ns: <tag>i  ───────────────────────────────────────────┘
 *        | veth
 *   netns <tag>-net  (a stand-in "internet")  inet0 <net>.10 (www), .20 (db), .30 (cache),
 *                                              .53 (DNS upstream), .66 (evil)
 *
 * Only our own private /24 is routed in the root namespace; nothing leaves the machine.
 */
export interface DemoTopology {
  readonly tag: string;
  readonly vmNs: string;
  readonly netNs: string;
  readonly hostIf: string;
  readonly net: string;
  readonly gateway: string;
  readonly ip: (last: number) => string;
  teardown(): void;
}

function ip(args: string[], allowFail = false): string {
  try {
    return execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch (err) {
    if (allowFail) return "";
    const e = err as { stderr?: Buffer };
    throw new Error(`ip ${args.join(" ")}: ${e.stderr?.toString().trim() ?? String(err)}`);
  }
}

/** First 10.99.<n>.0/24 (n < 100) that nothing on this host routes yet. */
function freeSubnet(): string {
  const routes = ip(["-4", "route", "show", "table", "all"]);
  for (let n = 0; n < 100; n++) {
    const net = `10.99.${n}`;
    if (!routes.includes(`${net}.`)) return net;
  }
  throw new Error("no free 10.99.x.0/24 subnet for the demo");
}

export function createTopology(): DemoTopology {
  const tag = `nfd${randomBytes(2).toString("hex")}`;
  const vmNs = `${tag}-vm`;
  const netNs = `${tag}-net`;
  const hostIf = `${tag}h`;
  const inetIf = `${tag}i`;
  const br = `${tag}b`;
  const net = freeSubnet();
  const t: DemoTopology = {
    tag,
    vmNs,
    netNs,
    hostIf,
    net,
    gateway: `${net}.1`,
    ip: (last) => `${net}.${last}`,
    teardown() {
      for (const ns of [vmNs, netNs]) ip(["netns", "del", ns], true);
      for (const dev of [hostIf, inetIf, br]) ip(["link", "del", dev], true);
    },
  };
  try {
    ip(["netns", "add", vmNs]);
    ip(["netns", "add", netNs]);
    ip(["link", "add", hostIf, "type", "veth", "peer", "name", "vm0", "netns", vmNs]);
    ip(["link", "add", inetIf, "type", "veth", "peer", "name", "inet0", "netns", netNs]);
    ip(["link", "add", br, "type", "bridge"]);
    ip(["link", "set", hostIf, "master", br]);
    ip(["link", "set", inetIf, "master", br]);
    for (const dev of [hostIf, inetIf, br]) ip(["link", "set", dev, "up"]);
    ip(["addr", "add", `${net}.1/24`, "dev", br]);
    const inNs = (ns: string, ...args: string[]) => ip(["-n", ns, ...args]);
    inNs(vmNs, "link", "set", "lo", "up");
    inNs(vmNs, "link", "set", "vm0", "up");
    inNs(vmNs, "addr", "add", `${net}.2/24`, "dev", "vm0");
    inNs(vmNs, "route", "add", "default", "via", `${net}.1`);
    inNs(netNs, "link", "set", "lo", "up");
    inNs(netNs, "link", "set", "inet0", "up");
    for (const last of [10, 20, 30, 53, 66]) inNs(netNs, "addr", "add", `${net}.${last}/24`, "dev", "inet0");
    inNs(netNs, "route", "add", "default", "via", `${net}.1`);
  } catch (err) {
    t.teardown();
    throw err;
  }
  return t;
}
