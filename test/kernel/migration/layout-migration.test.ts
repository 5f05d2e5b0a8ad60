import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fixture, probe, requireKernel, Sandbox, sh, type SandboxNetwork } from "../../helpers/sandbox.js";
import { dig, Dnsmasq, E2eDaemon, splitHostPort } from "../../helpers/e2e.js";
import { DaemonProcess, waitFor } from "../../helpers/daemon-harness.js";
import { Sniffer } from "../../helpers/security.js";
import { LAYOUT, LAYOUT_VERSION } from "../../../daemon/src/datapath/wire-format.js";

// Upgrade that changes NF_LAYOUT_VERSION (issue 14, lane M): pins written by an older loader are
// simulated by rewriting the pinned `state` map's layout field (and, for the other attachment, its
// magic) with bpftool while the daemon is stopped. The restarted daemon migrates both: listed as
// managed, policy enforced by the new program (real packets), the DNS server answers again, the
// old pins are gone with their program detached — and a background stream of blocked packets sent
// during the whole stop/restart never reaches the far side (sniffer on the server namespace).

const PORT = 7531;
const BLAST_PORT = 7532;

/** Rewrites one u32 of the pinned nf_state (bpftool map lookup + update, the whole value). */
async function rewriteState(pinRoot: string, id: string, offset: number, value: number): Promise<void> {
  const pin = path.join(pinRoot, id, "state");
  const r = await sh("bpftool", ["-j", "map", "lookup", "pinned", pin, "key", "0", "0", "0", "0"]);
  const parsed = JSON.parse(r.stdout) as { value?: string[] } | { value?: string[] }[];
  const hex = (Array.isArray(parsed) ? parsed[0]?.value : parsed.value) ?? [];
  expect(hex).toHaveLength(LAYOUT.nf_state.size);
  const bytes = Buffer.from(hex.map((h) => parseInt(h, 16)));
  bytes.writeUInt32LE(value, offset);
  await sh("bpftool", ["map", "update", "pinned", pin, "key", "0", "0", "0", "0", "value", ...[...bytes].map(String)]);
}

describe("migration of pinned state of an older layout on start (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let upstream: Dnsmasq;
  let daemon: E2eDaemon;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfmg");
    net = await sb.network({ hostAddress: true });
    pinRoot = await sb.pinRoot();
    cg = await sb.cgroup();
    await sb.echoServer(net.serverNs, PORT);
    upstream = await Dnsmasq.start(sb, net.serverNs, net.serverIp4[9]!, [{ name: "ok.mig.test", ipv4: net.serverIp4[0] }]);
    daemon = new E2eDaemon({
      pinRoot,
      dns: { listenAddr: net.hostIp4!, upstream: `${net.serverIp4[9]}:53` },
      yaml: [
        "default_policy:",
        "  mode: allowlist",
        `  allow_cidrs: ["${net.serverIp4[0]}/32"]`,
        "  dns: { mode: allowlist, allow_domains: [\"ok.mig.test\"] }",
      ].join("\n"),
    });
    await daemon.start();
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await upstream?.stop();
    await sb?.cleanup();
  }, 60_000);

  const progIdOf = async (id: string): Promise<number> =>
    (JSON.parse((await sh("bpftool", ["-j", "prog", "show", "pinned", path.join(pinRoot, id, "prog")])).stdout) as { id: number }).id;
  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });

  it("re-creates both attachments in the new layout with no blocked packet passing, DNS served again", async () => {
    const tc = await daemon.attachInterface(net.hostIf, { vm: "mig" });
    const cgAttach = await daemon.cli("attach", "-g", cg, "--json");
    expect(cgAttach.code).toBe(0);
    const cgId = (JSON.parse(cgAttach.stdout) as { id: string }).id;
    const { host: dnsHost, port: dnsPort } = splitHostPort(tc.dnsAddress);
    expect((await dig(sb, net.workloadNs, dnsHost, dnsPort, "ok.mig.test", "A")).status).toBe("NOERROR");
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);
    expect(await reach(net.serverIp4[2]!, cg)).toBe(false);

    const oldProgs = await Promise.all([tc.id, cgId].map(progIdOf));
    expect(await daemon.stop()).toBe(0);
    // "Older" pins: the interface attachment's state says layout 3, the cgroup one's has another magic.
    await rewriteState(pinRoot, tc.id, LAYOUT.nf_state.layout, 3);
    await rewriteState(pinRoot, cgId, LAYOUT.nf_state.magic, 0x4e464e30);

    // A background stream through the whole restart: the workload to a blocked address (TC
    // filter) and, from the cgroup, to another blocked one (both filters), plus to the allowed
    // address as the positive control that the stream and the sniffer work.
    const sniffer = await Sniffer.start(sb, net.serverNs, "sv0");
    const blasts: Promise<{ stdout: string }>[] = [
      sb.exec(net.workloadNs, [process.execPath, fixture("udp-blast.mjs"), "25", "5", `${net.serverIp4[1]}:${BLAST_PORT}`, `${net.serverIp4[0]}:${BLAST_PORT}`], { timeoutMs: 40_000 }),
      sb.exec(net.workloadNs, [process.execPath, fixture("udp-blast.mjs"), "25", "5", `${net.serverIp4[3]}:${BLAST_PORT}`], { cgroup: cg, timeoutMs: 40_000 }),
    ];
    await new Promise((r) => setTimeout(r, 1000));
    await daemon.start();

    const list = await daemon.listJson();
    expect(list.map((a) => [a.id, a.dnsAddress]).sort()).toEqual([[tc.id, tc.dnsAddress], [cgId, expect.any(String)]].sort());
    expect(daemon.log()).toMatch(new RegExp(`"migrated":\\[[^\\]]*"${tc.id}"`));
    expect(daemon.log()).toMatch(/"attachmentId":"[^"]+".*attachment migrated: new program attached, old program detached/);
    const status = await daemon.cli("status");
    expect(status.stdout).toMatch(new RegExp(`Warning: +attachment ${tc.id} .*layout 3 .*migrated to layout ${LAYOUT_VERSION}`));
    expect(status.stdout).toMatch(new RegExp(`Warning: +attachment ${cgId} .*magic 0x4e464e30.*migrated`));

    // The old pins are gone, the new ones are of this layout, and only one program is attached each.
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("_migrating-"))).toEqual([]);
    expect(existsSync(path.join(pinRoot, tc.id, "state"))).toBe(true);
    // The old programs are freed: detached and unpinned (nothing holds them any more).
    for (const old of oldProgs) {
      await waitFor(async () => (await sh("bpftool", ["prog", "show", "id", String(old)], { allowFail: true })).code !== 0, `old program ${old} freed`, 5000);
    }
    expect(await Promise.all([tc.id, cgId].map(progIdOf))).not.toContain(oldProgs[0]);
    // Layout 6: the new attachment's egress program and its cgroup/sock_create owner stamp; one egress program.
    const cgProgs = JSON.parse((await sh("bpftool", ["-j", "cgroup", "show", cg])).stdout) as Array<{ attach_type?: string }>;
    expect(cgProgs.map((p) => p.attach_type ?? "").sort()).toEqual(["cgroup_inet_egress", "cgroup_inet_sock_create"].sort());

    // Enforced by the new programs; DNS answered by the restarted daemon.
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);
    expect(await reach(net.serverIp4[2]!, cg)).toBe(false);
    const answer = await dig(sb, net.workloadNs, dnsHost, dnsPort, "ok.mig.test", "A");
    expect(answer.status).toBe("NOERROR");
    expect(answer.answers.map((a) => a.data)).toEqual([net.serverIp4[0]]);

    const sent = await Promise.all(blasts);
    await sniffer.stop();
    for (const s of sent) expect((JSON.parse(s.stdout.trim().split("\n").pop()!) as { sent: number }).sent).toBeGreaterThan(1000);
    const atBlast = (dst: string) => sniffer.packets((p) => p.dst === dst && p.dport === BLAST_PORT).length;
    expect(atBlast(net.serverIp4[0]!)).toBeGreaterThan(500); // the allowed half arrived: the stream ran
    expect({ blockedTc: atBlast(net.serverIp4[1]!), blockedCgroup: atBlast(net.serverIp4[3]!) }).toEqual({ blockedTc: 0, blockedCgroup: 0 });
  }, 180_000);

  it("an orphan with an old layout stays an orphan and says which layout it has", async () => {
    // The state store forgets nothing here: make an orphan by attaching, stopping, and dropping the store.
    const other = await sb.cgroup();
    const r = await daemon.cli("attach", "-g", other, "--json");
    const id = (JSON.parse(r.stdout) as { id: string }).id;
    expect(await daemon.stop()).toBe(0);
    await rewriteState(pinRoot, id, LAYOUT.nf_state.layout, 2);
    const { rmSync } = await import("node:fs");
    rmSync(path.join(daemon.dir, "data"), { recursive: true, force: true });
    await daemon.start();
    const status = await daemon.cli("status");
    expect(status.stdout).toMatch(new RegExp(`${id} .*pinned state has layout 2`));
    expect(readdirSync(pinRoot)).toContain(id);
    // Still enforcing its old policy, unmanaged.
    expect(await probe(sb, net.workloadNs, "tcp", net.serverIp4[2]!, { port: PORT, timeoutMs: 800, cgroup: other })).toBe(false);
  }, 120_000);

  it("a clsact filter is migrated too: the new filter at its own priority beside the old, then the old one deleted", async () => {
    // The other daemon of this file is stopped; this one attaches with classic clsact.
    expect(await daemon.stop()).toBe(0);
    // Drop what the first daemon left pinned (its links go with their pins): the interface is unfiltered.
    for (const name of readdirSync(pinRoot)) if (name.startsWith("nf-")) await sh("rm", ["-rf", path.join(pinRoot, name)]);
    expect(await reach(net.serverIp4[4]!)).toBe(true);
    const pins = await sb.pinRoot();
    const clsact = new DaemonProcess({ pinRoot: pins, attachMethod: "clsact", yaml: `default_policy: { mode: allowlist, allow_cidrs: ["${net.serverIp4[0]}/32"] }` });
    try {
      await clsact.start();
      const r = await clsact.cli("attach", "-i", net.hostIf, "--json");
      expect(r.code, r.stderr).toBe(0);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      const old = (JSON.parse((await sh("bpftool", ["-j", "prog", "show", "pinned", path.join(pins, id, "prog")])).stdout) as { id: number }).id;
      expect(await clsact.stop()).toBe(0);
      await rewriteState(pins, id, LAYOUT.nf_state.layout, 3);
      const sniffer = await Sniffer.start(sb, net.serverNs, "sv0");
      const blast = sb.exec(net.workloadNs, [process.execPath, fixture("udp-blast.mjs"), "12", "5", `${net.serverIp4[4]}:${BLAST_PORT}`, `${net.serverIp4[0]}:${BLAST_PORT}`], { timeoutMs: 30_000 });
      await new Promise((res) => setTimeout(res, 500));
      await clsact.start();
      expect(clsact.log()).toMatch(new RegExp(`"migrated":\\["${id}"\\]`));
      await waitFor(async () => (await sh("bpftool", ["prog", "show", "id", String(old)], { allowFail: true })).code !== 0, "old clsact program freed", 5000);
      // One clsact filter left on the interface's ingress, ours.
      const filters = (await sh("tc", ["filter", "show", "dev", net.hostIf, "ingress"])).stdout;
      expect(filters.match(/ handle 0x[0-9a-f]+ netfence_tc/g) ?? [], filters).toHaveLength(1);
      expect(await reach(net.serverIp4[0]!)).toBe(true);
      expect(await reach(net.serverIp4[4]!)).toBe(false);
      await blast;
      await sniffer.stop();
      const at = (dst: string) => sniffer.packets((p) => p.dst === dst && p.dport === BLAST_PORT).length;
      expect(at(net.serverIp4[0]!)).toBeGreaterThan(300);
      expect(at(net.serverIp4[4]!)).toBe(0);
      expect((await clsact.cli("detach", "--id", id)).code).toBe(0);
    } finally {
      await clsact.cleanup();
    }
  }, 120_000);
});
