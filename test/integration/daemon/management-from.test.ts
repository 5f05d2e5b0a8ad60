import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fixture, probe, ROOT_NS, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import type { DaemonProcess } from "../../helpers/daemon-harness.js";
import { daemonRig, type DaemonRig } from "../../helpers/daemon-rig.js";

// Management access from the config (issue 15, lockout safety), the "from" direction: a server of
// the host's network namespace in a cgroup under block-all (standing in for the host's sshd inside a host-wide cgroup attachment)
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

  let rig: DaemonRig | undefined;

  beforeAll(async () => {
    rig = await daemonRig("nfmf", {
      hostAddress: true,
      yaml: (n) => `management: { networks: ["${n.subnet4}.0/24"], ports: [${PORT}] }`,
      // Two servers in the host's network namespace (as sshd is), bound to the test bridge's address
      // only, as members of the test cgroup.
      before: async (s, n, c) => {
        for (const port of [PORT, OTHER]) {
          let ready!: () => void;
          const listening = new Promise<void>((r) => (ready = r));
          s.spawn(ROOT_NS, [process.execPath, fixture("echo-server.mjs"), String(port), n.hostIp4!], { cgroup: c, onLine: (l) => l.includes("listening") && ready() });
          await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("server did not start")), 10_000))]);
        }
      },
    });
    ({ sb, net, pinRoot, cg, daemon } = rig);
  }, 120_000);

  afterAll(() => rig?.cleanup(), 60_000);

  const connect = (port: number) => probe(sb, net.serverNs, "tcp", net.hostIp4!, { port, timeoutMs: 800 });

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
