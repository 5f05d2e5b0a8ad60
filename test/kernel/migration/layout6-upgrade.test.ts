import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fixture, probe, requireKernel, Sandbox, sh, type SandboxNetwork } from "../../helpers/sandbox.js";
import { E2eDaemon } from "../../helpers/e2e.js";
import { waitFor } from "../../helpers/daemon-harness.js";
import { Sniffer } from "../../helpers/security.js";
import { oldLoader } from "../../helpers/old-loader.js";
import { LAYOUT, LAYOUT_VERSION, THROTTLE_PIN } from "../../../daemon/src/datapath/wire-format.js";

// The upgrade of layout 7 from REAL layout-6 pins: the daemon first runs with the loader (and BPF
// objects) of b209e45 — main before layout 7 — and attaches a cgroup; then it restarts with this
// tree's loader. The pinned attachment is migrated (re-created beside the old program, then the old
// one detached), the layout-6 host throttle pin `_host/throttle` (40-byte key, no owner) does not
// stop the new programs from loading: it is unpinned, the new map is `_host/throttle_owner` (44
// bytes, with the uid), and the old map lives on only inside the old program until that is retired.
// A background stream of blocked packets from the cgroup never passes during the whole stop/restart,
// and afterwards the throttle is per owner: uid 65534 and uid 1 to the same blocked address and port
// count one blocked attempt each (the layout-6 programs would fold uid 1's into uid 65534's).

const LAYOUT6_COMMIT = "b209e459a2209985c3a7c68e24a2a436f01faa21";
const PORT = 7541;
const BLAST_PORT = 7542;

interface MapInfo {
  id: number;
  bytes_key: number;
}

const mapInfo = async (pin: string): Promise<MapInfo> => JSON.parse((await sh("bpftool", ["-j", "map", "show", "pinned", pin])).stdout) as MapInfo;

describe("upgrade from real layout-6 pins (the loader of b209e45) to layout 7", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let daemon: E2eDaemon;
  let layout6Loader: string;

  beforeAll(async () => {
    await requireKernel();
    layout6Loader = await oldLoader(LAYOUT6_COMMIT);
    sb = await Sandbox.create("nfm7");
    net = await sb.network();
    pinRoot = await sb.pinRoot();
    cg = await sb.cgroup();
    await sb.echoServer(net.serverNs, PORT);
    daemon = new E2eDaemon({
      pinRoot,
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      yaml: `default_policy: { mode: allowlist, allow_cidrs: ["${net.serverIp4[0]}/32"] }`,
    });
  }, 300_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  /** bpf.loader_path in the daemon's config: the layout-6 loader, or (null) this tree's. */
  const useLoader = (loader: string | null): void => {
    const text = readFileSync(daemon.configFile, "utf8").replace(/^bpf: \{ pin_root: ([^,}]+)(?:, loader_path: [^ }]+)? \}$/m, (_m, root: string) =>
      loader === null ? `bpf: { pin_root: ${root} }` : `bpf: { pin_root: ${root}, loader_path: ${loader} }`,
    );
    expect(text).toContain(loader === null ? `bpf: { pin_root: ${pinRoot} }` : `loader_path: ${loader}`);
    writeFileSync(daemon.configFile, text);
  };
  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup: cg });
  const connectAs = async (uid: number, ip: string): Promise<boolean> => {
    const r = await sb.exec(
      net.workloadNs,
      ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", ip, String(PORT), "600"],
      { cgroup: cg, allowFail: true, timeoutMs: 6000 },
    );
    return r.stdout.trim() === "ok";
  };
  const ownerCounts = async (): Promise<Map<number, number>> => {
    const st = JSON.parse((await daemon.cli("status", "--rules", "--json")).stdout) as { rules: { blockedByOwner?: { kind: string; uid?: number; blocked?: string }[] }[] };
    return new Map(st.rules.flatMap((r) => r.blockedByOwner ?? []).filter((o) => o.kind === "uid").map((o) => [o.uid!, Number(o.blocked ?? 0)]));
  };

  it("migrates the cgroup attachment, re-creates the host throttle with the owner key, enforces throughout, and counts per owner", async () => {
    // Layout 6, written by the old loader.
    useLoader(layout6Loader);
    await daemon.start();
    const a = await daemon.cli("attach", "-g", cg, "--json");
    expect(a.code, a.stderr).toBe(0);
    const id = (JSON.parse(a.stdout) as { id: string }).id;
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[2]!)).toBe(false);
    const hostDir = path.join(pinRoot, "_host");
    const oldThrottle = await mapInfo(path.join(hostDir, "throttle"));
    expect(oldThrottle.bytes_key).toBe(LAYOUT.nf_throttle_key.size - 4); // no uid
    expect(existsSync(path.join(hostDir, THROTTLE_PIN))).toBe(false);
    const oldProg = (JSON.parse((await sh("bpftool", ["-j", "prog", "show", "pinned", path.join(pinRoot, id, "prog")])).stdout) as { id: number }).id;
    expect(await daemon.stop()).toBe(0);

    // Blocked (and, as the control, allowed) datagrams from the cgroup through the whole restart.
    const sniffer = await Sniffer.start(sb, net.serverNs, "sv0");
    const blast = sb.exec(net.workloadNs, [process.execPath, fixture("udp-blast.mjs"), "20", "5", `${net.serverIp4[3]}:${BLAST_PORT}`, `${net.serverIp4[0]}:${BLAST_PORT}`], { cgroup: cg, timeoutMs: 40_000 });
    await new Promise((r) => setTimeout(r, 1000));
    useLoader(null);
    await daemon.start();

    expect(daemon.log()).toMatch(new RegExp(`"migrated":\\[[^\\]]*"${id}"`));
    expect((await daemon.cli("status")).stdout).toMatch(new RegExp(`Warning: +attachment ${id} .*layout 6 .*migrated to layout ${LAYOUT_VERSION}`));
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("_migrating-"))).toEqual([]);
    // The layout-6 throttle pin is gone; the new one has the owner in its key.
    expect(existsSync(path.join(hostDir, "throttle"))).toBe(false);
    expect(daemon.log()).toMatch(/"loader":"netfence-loader: removed [^"]*\/_host\/throttle \(the event throttle of layouts before 7; now throttle_owner\)"/);
    expect((await mapInfo(path.join(hostDir, THROTTLE_PIN))).bytes_key).toBe(LAYOUT.nf_throttle_key.size);
    // The old program is retired, and with it the old throttle map (nothing else held it).
    await waitFor(async () => (await sh("bpftool", ["prog", "show", "id", String(oldProg)], { allowFail: true })).code !== 0, `old program ${oldProg} freed`, 5000);
    await waitFor(async () => (await sh("bpftool", ["map", "show", "id", String(oldThrottle.id)], { allowFail: true })).code !== 0, `old throttle map ${oldThrottle.id} freed`, 5000);
    const cgProgs = JSON.parse((await sh("bpftool", ["-j", "cgroup", "show", cg])).stdout) as Array<{ attach_type?: string }>;
    expect(cgProgs.map((p) => p.attach_type ?? "").sort()).toEqual(["cgroup_inet_egress", "cgroup_inet_sock_create"]);

    // Enforced by the new program.
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[2]!)).toBe(false);
    const sent = JSON.parse((await blast).stdout.trim().split("\n").pop()!) as { sent: number };
    await sniffer.stop();
    expect(sent.sent).toBeGreaterThan(1000);
    const at = (dst: string) => sniffer.packets((p) => p.dst === dst && p.dport === BLAST_PORT).length;
    expect(at(net.serverIp4[0]!)).toBeGreaterThan(500); // the allowed half arrived: the stream ran
    expect(at(net.serverIp4[3]!)).toBe(0);

    // Per-owner throttle: two users to the same blocked address and port, back to back.
    expect(await connectAs(65534, net.serverIp4[4]!)).toBe(false);
    expect(await connectAs(1, net.serverIp4[4]!)).toBe(false);
    let counts = new Map<number, number>();
    await waitFor(async () => {
      counts = await ownerCounts();
      return counts.has(65534) && counts.has(1);
    }, "blocked attempts of uid 65534 and uid 1 counted", 5000).catch(() => undefined);
    expect([counts.get(65534), counts.get(1)]).toEqual([1, 1]);
    expect((await daemon.cli("detach", "--id", id)).code).toBe(0);
  }, 180_000);
});
