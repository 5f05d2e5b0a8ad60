import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import type { DaemonProcess } from "../../helpers/daemon-harness.js";
import { daemonRig, type DaemonRig } from "../../helpers/daemon-rig.js";

// Host micro-segmentation through the standalone policy file (issue 15, seed 004's own example:
// "only processes of user web may reach redis on 127.0.0.1:6379"), end to end: `netfenced apply -f`
// with a user- and port-scoped rule on a cgroup attachment; processes of two users (daemon = uid 1,
// nobody = 65534) in the test cgroup really connect to a server on the namespace's loopback. The
// scoped rule survives a simulated reboot (daemon killed, our pin root emptied), and `status --rules`
// names the user whose attempts were blocked.
// Needs the kernel side (layout 6, lane K), the scope compiler (lane S) and the scoped policy model
// and its persistence (lane P): on main alone the kernel ignores scopes.

const PORT = 7481;
const OTHER = 7482;

/** A TCP connect to the namespace's 127.0.0.1 as `uid`, inside the test cgroup. */
const probeAs = (sb: Sandbox, ns: string, cg: string, uid: number, port: number): Promise<boolean> =>
  probe(sb, ns, "tcp", "127.0.0.1", { port, uid, cgroup: cg, timeoutMs: 800 });

describe("apply -f: user and port rules on loopback (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let daemon: DaemonProcess;

  let rig: DaemonRig | undefined;

  beforeAll(async () => {
    // Servers on the workload namespace's loopback, outside the cgroup.
    rig = await daemonRig("nfas", { servers: { ns: "workload", ports: [PORT, OTHER] } });
    ({ sb, net, pinRoot, cg, daemon } = rig);
  }, 120_000);

  afterAll(() => rig?.cleanup(), 60_000);

  const verdicts = async () => [
    await probeAs(sb, net.workloadNs, cg, 1, PORT),
    await probeAs(sb, net.workloadNs, cg, 65534, PORT),
    await probeAs(sb, net.workloadNs, cg, 1, OTHER),
  ];

  it("only user daemon reaches 127.0.0.1:PORT; the rule survives a reboot; status --rules names the blocked user", async () => {
    const file = path.join(daemon.dir, "policy.yaml");
    writeFileSync(file, `version: 1
attachments:
  - name: web
    cgroup: ${cg}
    mode: allowlist
    allow:
      - cidr: 127.0.0.1/32
        protocols: [tcp]
        ports: [${PORT}]
        users: [daemon]
`);
    const r = await daemon.cli("apply", "-f", file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("+ attachment web");
    // uid 1 on PORT: allowed; nobody on PORT: blocked; uid 1 on another port: blocked.
    expect(await verdicts()).toEqual([true, false, false]);
    expect((await daemon.cli("apply", "-f", file)).stdout).toContain("No changes");

    const st = JSON.parse((await daemon.cli("status", "--rules", "--json")).stdout) as { rules: { blockedByOwner?: { kind: string; uid?: number; user?: string; blocked: string }[] }[] };
    const owners = st.rules[0]!.blockedByOwner ?? [];
    expect(owners.find((o) => o.uid === 65534)?.user).toBe("nobody");
    expect(Number(owners.find((o) => o.uid === 65534)?.blocked ?? 0)).toBeGreaterThan(0);
    expect((await daemon.cli("status", "--rules")).stdout).toMatch(/Blocked attempts by user:[\s\S]*nobody\s+65534/);

    await daemon.kill9();
    rmSync(pinRoot, { recursive: true, force: true });
    expect(await probeAs(sb, net.workloadNs, cg, 65534, PORT)).toBe(true); // nothing enforces now
    await daemon.start();
    expect(await verdicts()).toEqual([true, false, false]);
    expect((await daemon.cli("apply", "-f", file)).stdout).toContain("No changes");
  }, 180_000);
});
