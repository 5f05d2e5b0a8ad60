import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess } from "../../helpers/daemon-harness.js";

// A standalone daemon (no control plane), the real CLI and the real kernel: `netfenced audit --id
// ID on` lets what the default policy blocks through and `netfenced events` reports it as
// "would-block" with the attachment's metadata; `off` enforces again; the setting survives a
// daemon restart (it is part of the stored policy).

const PORT = 7313;

describe("netfenced audit (standalone host)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: DaemonProcess;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfau");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    daemon = new DaemonProcess({
      pinRoot: await sb.pinRoot(),
      yaml: ["default_policy:", "  mode: allowlist", `  allow_cidrs: ["${net.serverIp4[0]}/32"]`].join("\n"),
    });
    await daemon.start();
  });

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  });

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });

  it("audit on: blocked destinations pass and are reported as would-block; off: blocked again", async () => {
    const attached = await daemon.cli("attach", "-i", net.hostIf, "--metadata", "team=blue");
    expect(attached.code).toBe(0);
    const id = /^ID: (nf-[0-9a-f]{12})$/m.exec(attached.stdout)![1]!;
    expect(await reach(net.serverIp4[1]!)).toBe(false);

    const on = await daemon.cli("audit", "--id", id, "on");
    expect(on.stderr).toBe("");
    expect(on.code).toBe(0);
    const listed = await daemon.cli("list");
    expect(listed.stdout.split("\n").find((l) => l.startsWith(id))).toMatch(/\ballowlist \(audit\)/);

    // The event stream first, then the traffic it must report.
    const events = daemon.cli("events", "--id", id, "--count", "1", "--json");
    await new Promise((r) => setTimeout(r, 500));
    expect(await reach(net.serverIp4[2]!)).toBe(true); // not allowed, passes: the far side answered
    const ev = await events;
    expect(ev.code).toBe(0);
    const e = JSON.parse(ev.stdout.trim()) as { verdict: string; dst: string; reason: string; metadata: Record<string, string> };
    expect(e).toMatchObject({ verdict: "VERDICT_AUDIT", dst: net.serverIp4[2], reason: "not-in-allowlist", metadata: { team: "blue" } });
    const text = daemon.cli("events", "--id", id, "--count", "1");
    await new Promise((r) => setTimeout(r, 500));
    expect(await reach(net.serverIp4[3]!)).toBe(true);
    expect((await text).stdout).toMatch(new RegExp(`${id} would-block tcp \\S+ -> ${net.serverIp4[3]!.replace(/\./g, "\\.")}:${PORT} not-in-allowlist`));

    // Survives a restart (stored with the policy), then off enforces again.
    await daemon.stop();
    await daemon.start();
    expect(await reach(net.serverIp4[4]!)).toBe(true);
    const off = await daemon.cli("audit", "--id", id, "off");
    expect(off.code).toBe(0);
    expect(await reach(net.serverIp4[4]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!)).toBe(true);
  }, 90_000);

  it("bad input changes nothing: unknown id, a word other than on/off", async () => {
    const unknown = await daemon.cli("audit", "--id", "nf-000000000000", "on");
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/nf-000000000000/);
    const bad = await daemon.cli("audit", "--id", "nf-000000000000", "maybe");
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/"on" or "off"/);
  });
});
