import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import type { DaemonProcess } from "../../helpers/daemon-harness.js";
import { daemonRig, type DaemonRig } from "../../helpers/daemon-rig.js";

// Session 21, the real `netfenced`: a cgroup attachment made by `apply -f` with scoped rules — under
// an unscoped allow of 127.0.0.0/8 a scoped deny (127.0.0.1 tcp/P2 for everyone, tcp/P3 for user
// nobody), under an unscoped deny of 127.0.1.0/24 a scoped allow (127.0.1.2 tcp/P1 for user daemon).
// state.json is deleted (orphan, still enforcing), `netfenced adopt --all` re-registers it: the
// adopted policy — persisted, listed by `netfenced rules` — holds the scoped rules, and after a
// restart (which writes the adopted scoped policy again: a REPLACE) processes of both users in the
// cgroup get the same answers as before. Before session 21 the adopted policy had no scoped rule:
// 127.0.0.1/32 was simply gone from it (its next REPLACE opened tcp/P2 and P3), and so was 127.0.1.2/32.
const P1 = 7471;
const P2 = 7472;
const P3 = 7473;
const DAEMON_UID = 1;
const NOBODY_UID = 65534;

// What the rules say, per (uid, address, port).
const EXPECTED: Record<string, boolean> = {};
for (const uid of [DAEMON_UID, NOBODY_UID]) {
  EXPECTED[`${uid} 127.0.0.1:${P1}`] = true;
  EXPECTED[`${uid} 127.0.0.1:${P2}`] = false;
  EXPECTED[`${uid} 127.0.0.1:${P3}`] = uid === DAEMON_UID;
  EXPECTED[`${uid} 127.0.1.2:${P1}`] = uid === DAEMON_UID;
  EXPECTED[`${uid} 127.0.1.2:${P2}`] = false;
  EXPECTED[`${uid} 127.0.1.2:${P3}`] = false;
}

describe("netfenced adopt: an orphan's scoped rules are read back and kept (real kernel, real daemon)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let cg: string;
  let daemon: DaemonProcess;
  const name = "scoped-orphan";

  const probeAs = (uid: number, ip: string, port: number, timeoutMs: number): Promise<boolean> =>
    probe(sb, net.workloadNs, "tcp", ip, { port, uid, cgroup: cg, timeoutMs });

  /** The (uid, address, port) whose connect does not get the rules' answer. */
  async function wrong(): Promise<string[]> {
    const out: string[] = [];
    for (const [key, want] of Object.entries(EXPECTED)) {
      const [uid, dst] = key.split(" ") as [string, string];
      const [ip, port] = dst.split(":") as [string, string];
      const got = await probeAs(Number(uid), ip, Number(port), want ? 2000 : 600);
      if (got !== want) out.push(`uid ${key}: got ${got ? "open" : "closed"}`);
    }
    return out;
  }

  const stateFile = (): string => path.join(daemon.dir, "data", "state.json");

  let rig: DaemonRig | undefined;

  beforeAll(async () => {
    rig = await daemonRig("nfos", { servers: { ns: "workload", ports: [P1, P2, P3] } });
    ({ sb, net, cg, daemon } = rig);
    const file = path.join(daemon.dir, "policy.yaml");
    writeFileSync(file, `version: 1
attachments:
  - name: ${name}
    cgroup: ${cg}
    mode: allowlist
    allow:
      - cidr: 127.0.0.0/8
      - cidr: 127.0.1.2/32
        protocols: [tcp]
        ports: [${P1}]
        users: [daemon]
    deny:
      - cidr: 127.0.1.0/24
      - cidr: 127.0.0.1/32
        protocols: [tcp]
        ports: [${P2}]
      - cidr: 127.0.0.1/32
        protocols: [tcp]
        ports: [${P3}]
        users: [nobody]
`);
    const r = await daemon.cli("apply", "-f", file);
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);

  afterAll(() => rig?.cleanup(), 60_000);

  it("enforces the scoped rules as applied", async () => {
    const w = await wrong();
    expect(w, w.join("; ")).toEqual([]);
  });

  it("state.json deleted → an orphan, still enforcing; adopted with its scoped rules; after a restart (REPLACE) the same answers", async () => {
    expect(await daemon.stop()).toBe(0);
    rmSync(stateFile());
    await daemon.start();
    expect((await daemon.cli("status")).stdout).toMatch(/^Orphans: +1 pinned filter/m);
    const adopt = await daemon.cli("adopt", "--all");
    expect(adopt.code, adopt.stderr).toBe(0);
    expect(adopt.stdout).toContain(`Adopted ${name}`);
    // The adopted policy holds the scoped rules, by (cidr, scope), users by id.
    const rules = await daemon.cli("rules", "--id", name);
    expect(rules.code, rules.stderr).toBe(0);
    expect(rules.stdout).toMatch(new RegExp(`deny-cidr 127\\.0\\.0\\.1/32 tcp/${P3} users ${NOBODY_UID}\\b`));
    expect(rules.stdout).toMatch(new RegExp(`deny-cidr 127\\.0\\.0\\.1/32 tcp/${P2}\\b`));
    expect(rules.stdout).toMatch(new RegExp(`allow-cidr 127\\.0\\.1\\.2/32 tcp/${P1} users ${DAEMON_UID}\\b`));
    let w = await wrong();
    expect(w, `adopted: ${w.join("; ")}`).toEqual([]);
    // A restart writes the adopted scoped policy again (its scope ids are the old run's): a REPLACE.
    expect(await daemon.stop()).toBe(0);
    await daemon.start();
    w = await wrong();
    expect(w, `after the REPLACE: ${w.join("; ")}`).toEqual([]);
  }, 180_000);
});
