import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fixture, probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess } from "../../helpers/daemon-harness.js";

// Management access from the config (issue 15, lockout safety), the "from" direction: a server in
// a cgroup under block-all (standing in for the host's sshd inside a host-wide cgroup attachment)
// still answers a client on the management network on the management port — its replies match the
// daemon-installed "from" entries — while the same server on another port does not get its replies
// out. Needs lane K's kernel (NF_PROT_FROM); with an older loader the daemon logs that it refused
// the "from" entries and this test fails.

const PORT = 7491;
const OTHER = 7492;

describe("management access: replies of a server in a blocked cgroup (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let daemon: DaemonProcess;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfmf");
    net = await sb.network();
    pinRoot = await sb.pinRoot();
    cg = await sb.cgroup();
    // Two servers in the workload namespace, as members of the test cgroup.
    for (const port of [PORT, OTHER]) {
      let ready!: () => void;
      const listening = new Promise<void>((r) => (ready = r));
      sb.spawn(net.workloadNs, [process.execPath, fixture("echo-server.mjs"), String(port)], { cgroup: cg, onLine: (l) => l.includes("listening") && ready() });
      await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("server did not start")), 10_000))]);
    }
    daemon = new DaemonProcess({ pinRoot, yaml: `management: { networks: ["${net.subnet4}.0/24"], ports: [${PORT}] }` });
    await daemon.start();
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  const connect = (port: number) => probe(sb, net.serverNs, "tcp", net.workloadIp4, { port, timeoutMs: 800 });

  it("block-all on the server's cgroup: the management port still answers the management network, another port does not", async () => {
    expect(await connect(PORT)).toBe(true);
    expect(await connect(OTHER)).toBe(true);
    const file = path.join(daemon.dir, "policy.yaml");
    writeFileSync(file, `version: 1\nattachments:\n  - {name: sshd, cgroup: ${cg}, mode: block-all}\n`);
    const r = await daemon.cli("apply", "-f", file);
    expect(r.code, r.stderr).toBe(0);
    expect(await connect(OTHER)).toBe(false);
    expect(await connect(PORT)).toBe(true);
    expect(daemon.log()).not.toContain("refused management");
  }, 120_000);
});
