import { PIN_NAMES } from "../../../daemon/src/datapath/tamper-wire.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { fixture, probe, requireKernel, Sandbox, sh, type SandboxNetwork } from "../../helpers/sandbox.js";
import { E2eDaemon } from "../../helpers/e2e.js";
import { waitFor } from "../../helpers/daemon-harness.js";
import { addBridgeHost } from "../../helpers/security.js";
import { ControlPlaneServer } from "../../../sdk/src/index.js";
import type { TamperReport } from "@netfence/proto/control";
import { LAYOUT } from "../../../daemon/src/datapath/wire-format.js";

// Issue 14, tamper detection of every kind, by hand as an intruder with root would do it, against
// a real daemon with an SDK control plane: each kind is reported (TamperReport to the control
// plane, netfence_tamper_detected_total{kind}, an error log line with the attachmentId) and undone
// within 5 s, and real packets show enforcement back (blocked address blocked, allowed one open).

const PORT = 7561;

const run = (cmd: string, args: string[]) => sh(cmd, args, { timeoutMs: 10_000 });
const json = async <T>(args: string[]): Promise<T> => JSON.parse((await run("bpftool", ["-j", ...args])).stdout) as T;

/** Reads a pinned map's value at key 0 (the state map) as bytes. */
async function stateBytes(pin: string): Promise<Buffer> {
  const v = await json<{ value?: string[] } | { value?: string[] }[]>(["map", "lookup", "pinned", pin, "key", "0", "0", "0", "0"]);
  return Buffer.from(((Array.isArray(v) ? v[0]?.value : v.value) ?? []).map((h) => parseInt(h, 16)));
}

describe("tamper detection and repair (real kernel, real daemon, SDK control plane)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pins: string;
  let cg: string;
  let cp: ControlPlaneServer;
  let daemon: E2eDaemon;
  let linkUpdate: string;
  const reports: TamperReport[] = [];
  const ids = { tc: "", cg: "", donorTc: "", donorCg: "" };

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nftp");
    net = await sb.network();
    pins = await sb.pinRoot();
    cg = await sb.cgroup();
    await sb.echoServer(net.serverNs, PORT);
    const dir = mkdtempSync(path.join(os.tmpdir(), "nf-tamper-"));
    sb.onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
    linkUpdate = path.join(dir, "link-update");
    execFileSync("cc", ["-O2", "-o", linkUpdate, fixture("link-update.c"), "-lbpf"]);
    cp = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        // Donors (attachments whose programs an intruder swaps in) let everything through.
        // The others: entries of every table (exact and LPM, v4 and v6, with and without a deadline),
        // so "no false report" also shows the loader's checksum and the daemon's agree on each.
        onSubscribed: (_d, a) => (a.metadata.role === "donor" ? { mode: "disabled" } : {
          mode: "allowlist",
          allow: [`${net.serverIp4[0]}/32`, "198.51.100.0/24", "2001:db8:1::/48", "2001:db8::7/128", { cidr: "203.0.113.0/25", ttlSeconds: 3600 }],
          deny: ["198.51.100.128/25"],
        }),
        onTamperReport: (_d, r) => void reports.push(r),
      },
    });
    const cpPort = await cp.listen("127.0.0.1:0");
    daemon = new E2eDaemon({
      pinRoot: pins,
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      controlPlane: { url: `127.0.0.1:${cpPort}`, ackTimeout: "5s", heartbeat: "30s" },
      metrics: true,
    });
    await daemon.start();
    await waitFor(async () => (await daemon.statusJson()).controlPlaneState === "CONNECTION_STATE_CONNECTED", "daemon connected", 15_000);
    ids.tc = (await daemon.attachInterface(net.hostIf)).id;
    const attachCg = async (dirPath: string, role?: string): Promise<string> => {
      const r = await daemon.cli("attach", "-g", dirPath, ...(role ? ["--metadata", `role=${role}`] : []), "--json");
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { id: string }).id;
    };
    ids.cg = await attachCg(cg);
    ids.donorCg = await attachCg(await sb.cgroup(), "donor");
    const donorHost = await addBridgeHost(sb, net, 40);
    ids.donorTc = (await daemon.attachInterface(donorHost.hostIf, { role: "donor" })).id;
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await cp?.close();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });

  async function expectEnforcing(cgroup?: string): Promise<void> {
    expect(await reach(net.serverIp4[0]!, cgroup)).toBe(true);
    expect(await reach(net.serverIp4[1]!, cgroup)).toBe(false);
  }

  /** Waits (≤ 5 s) for the report of `kind` about `id` after index `from`, restored; checks metric and log. */
  async function expectReported(id: string, kind: string, from: number, metricBefore: number): Promise<TamperReport> {
    await waitFor(() => reports.slice(from).some((r) => r.attachmentId === id && r.kind === kind && r.restored), `a restored ${kind} report for ${id}`, 5000);
    const r = reports.slice(from).find((x) => x.attachmentId === id && x.kind === kind)!;
    expect(r.time).toBeDefined();
    expect(r.detail).not.toBe("");
    expect((await daemon.metrics()).get(`netfence_tamper_detected_total{kind="${kind}"}`)).toBeGreaterThan(metricBefore);
    expect(daemon.log()).toMatch(new RegExp(`"attachmentId":"${id}","kind":"${kind}"`));
    return r;
  }

  const metric = async (kind: string): Promise<number> => (await daemon.metrics()).get(`netfence_tamper_detected_total{kind="${kind}"}`) ?? 0;

  it("starts clean: nothing reported, every kind counted at 0, enforcing", async () => {
    expect(reports).toEqual([]);
    for (const kind of ["filter-detached", "program-replaced", "map-replaced", "map-content", "pins-removed"]) expect(await metric(kind)).toBe(0);
    await expectEnforcing();
    await expectEnforcing(cg);
  });

  it("a TCX link detached with bpftool is re-attached", async () => {
    const from = reports.length;
    const before = await metric("filter-detached");
    await run("bpftool", ["link", "detach", "pinned", path.join(pins, ids.tc, "link")]);
    await expectReported(ids.tc, "filter-detached", from, before);
    await expectEnforcing();
  });

  it("a cgroup link detached with bpftool is re-attached", async () => {
    const from = reports.length;
    const before = await metric("filter-detached");
    await run("bpftool", ["link", "detach", "pinned", path.join(pins, ids.cg, "link")]);
    await expectReported(ids.cg, "filter-detached", from, before);
    await expectEnforcing(cg);
  });

  it("a link made to run another program (a donor's, policy disabled) is replaced by ours again", async () => {
    for (const [victim, donor, cgroup] of [[ids.tc, ids.donorTc, undefined], [ids.cg, ids.donorCg, cg]] as const) {
      const from = reports.length;
      const before = await metric("program-replaced");
      const donorProg = (await json<{ id: number }>(["prog", "show", "pinned", path.join(pins, donor, "prog")])).id;
      await run(linkUpdate, [path.join(pins, victim, "link"), path.join(pins, donor, "prog")]);
      // (The cgroup's workload sits behind the interface filter too, so packets cannot show this one: the kernel does.)
      expect((await json<{ prog_id: number }>(["link", "show", "pinned", path.join(pins, victim, "link")])).prog_id).toBe(donorProg);
      await expectReported(victim, "program-replaced", from, before);
      await expectEnforcing(cgroup);
    }
  });

  it("a pinned map replaced by another map is pinned back", async () => {
    const from = reports.length;
    const before = await metric("map-replaced");
    const pin = path.join(pins, ids.tc, "v4_lpm");
    const ours = (await json<{ id: number }>(["map", "show", "pinned", pin])).id;
    rmSync(pin);
    await run("bpftool", ["map", "pin", "pinned", path.join(pins, ids.donorTc, "v4_lpm"), pin]);
    expect((await json<{ id: number }>(["map", "show", "pinned", pin])).id).not.toBe(ours);
    await expectReported(ids.tc, "map-replaced", from, before);
    expect((await json<{ id: number }>(["map", "show", "pinned", pin])).id).toBe(ours);
    await expectEnforcing();
  });

  it("an allow entry written into the active generation behind the daemon's back is removed", async () => {
    const from = reports.length;
    const before = await metric("map-content");
    const gen = (await stateBytes(path.join(pins, ids.tc, "state"))).readUInt32LE(LAYOUT.nf_state.active_gen);
    const key = [gen, 0, 0, 0, ...net.serverIp4[1]!.split(".").map(Number)];
    const value = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 /* ALLOW */, 32, 0, 0];
    await run("bpftool", ["map", "update", "pinned", path.join(pins, ids.tc, "v4_exact"), "key", ...key.map(String), "value", ...value.map(String)]);
    await expectReported(ids.tc, "map-content", from, before);
    await expectEnforcing();
  });

  it("the state map's mode rewritten to disabled is rewritten back", async () => {
    const from = reports.length;
    const before = await metric("map-content");
    const pin = path.join(pins, ids.cg, "state");
    const st = await stateBytes(pin);
    const gen = st.readUInt32LE(LAYOUT.nf_state.active_gen);
    st.writeUInt32LE(0 /* DISABLED */, LAYOUT.nf_state.gen + gen * 8);
    await run("bpftool", ["map", "update", "pinned", pin, "key", "0", "0", "0", "0", "value", ...[...st].map(String)]);
    await expectReported(ids.cg, "map-content", from, before);
    await expectEnforcing(cg);
  });

  it("pins removed — one pin, or the whole directory — are pinned again with no gap", async () => {
    let from = reports.length;
    let before = await metric("pins-removed");
    rmSync(path.join(pins, ids.tc, "counters"));
    await expectReported(ids.tc, "pins-removed", from, before);
    expect(readdirSync(path.join(pins, ids.tc))).toContain("counters");
    from = reports.length;
    before = await metric("pins-removed");
    await run("rm", ["-rf", path.join(pins, ids.cg)]);
    await expectEnforcing(cg); // the loader still holds the link: enforcing all along
    await expectReported(ids.cg, "pins-removed", from, before);
    expect(readdirSync(path.join(pins, ids.cg)).sort()).toEqual([...PIN_NAMES].sort());
    await expectEnforcing(cg);
  });

  it("reports nothing more while nobody tampers", async () => {
    const n = reports.length;
    await new Promise((r) => setTimeout(r, 4500));
    expect(reports.slice(n)).toEqual([]);
  });
});

describe("clsact: a deleted filter is re-attached, also when deleted while the daemon is down (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: E2eDaemon;
  let id: string;
  let pins: string;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nftc");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    pins = await sb.pinRoot();
    daemon = new E2eDaemon({
      pinRoot: pins,
      dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" },
      attachMethod: "clsact",
      metrics: true,
      yaml: `default_policy: { mode: allowlist, allow_cidrs: ["${net.serverIp4[0]}/32"] }`,
    });
    await daemon.start();
    id = (await daemon.attachInterface(net.hostIf)).id;
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });
  const filters = async () => (await run("tc", ["filter", "show", "dev", net.hostIf, "ingress"])).stdout;
  const tamperLines = (kind: string) => daemon.log().split("\n").filter((l) => l.includes(`"attachmentId":"${id}","kind":"${kind}"`));

  it("tc filter del → reported and attached again within 5 s", async () => {
    expect(await filters()).toMatch(/netfence_tc/);
    await run("tc", ["filter", "del", "dev", net.hostIf, "ingress"]);
    expect(await filters()).not.toMatch(/netfence_tc/);
    await waitFor(() => tamperLines("filter-detached").some((l) => l.includes('"restored":true')), "filter-detached report", 5000);
    expect(await filters()).toMatch(/netfence_tc/);
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect((await daemon.metrics()).get('netfence_tamper_detected_total{kind="filter-detached"}')).toBe(1);
  });

  it("our clsact filter replaced at its handle by another program (tc filter replace) → ours attached again", async () => {
    // The intruder's program: another attachment's, pinned (any eBPF classifier would do).
    const donor = await addBridgeHost(sb, net, 41);
    const donorId = (await daemon.attachInterface(donor.hostIf)).id;
    const m = /pref (\d+) bpf chain 0 handle (0x[0-9a-f]+) netfence_tc/.exec(await filters());
    expect(m).not.toBeNull();
    const ours = (await json<{ id: number }>(["prog", "show", "pinned", path.join(pins, id, "prog")])).id;
    const theirs = (await json<{ id: number }>(["prog", "show", "pinned", path.join(pins, donorId, "prog")])).id;
    await run("tc", ["filter", "replace", "dev", net.hostIf, "ingress", "pref", m![1]!, "handle", m![2]!, "bpf", "object-pinned", path.join(pins, donorId, "prog"), "da"]);
    expect(await filters()).toMatch(new RegExp(`id ${theirs} `));
    await waitFor(() => tamperLines("program-replaced").some((l) => l.includes('"restored":true')), "program-replaced report", 5000);
    expect(tamperLines("program-replaced")[0]).toContain(`program ${theirs} runs where ours (${ours})`);
    expect(await filters()).toMatch(new RegExp(`id ${ours} `));
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!)).toBe(true);
  });

  it("tc filter del while the daemon is down: never re-adopted as enforcing; attached again at start and reported", async () => {
    expect(await daemon.stop()).toBe(0);
    await run("tc", ["filter", "del", "dev", net.hostIf, "ingress"]);
    expect(await filters()).not.toMatch(/netfence_tc/);
    expect(await reach(net.serverIp4[1]!)).toBe(true);
    await daemon.start();
    // Ready means enforcing again: no wait.
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(tamperLines("filter-detached").some((l) => /found at start/.test(l) && l.includes('"restored":true'))).toBe(true);
    expect((await daemon.metrics()).get('netfence_tamper_detected_total{kind="filter-detached"}')).toBe(1);
  });
});
