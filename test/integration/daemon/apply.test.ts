import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import type { DaemonProcess } from "../../helpers/daemon-harness.js";
import { daemonRig, type DaemonRig } from "../../helpers/daemon-rig.js";

// `netfenced apply -f` (issue 15) against the real binary and kernel: processes in a test cgroup
// really connect to an echo server in another namespace. A file applies and enforces; the same
// file again is "no changes"; a broken file, a dry run and a file that would cut management access
// change nothing (the same packets get the same verdicts); management access survives block-all;
// a reboot (daemon killed, the test's own pin root emptied) re-creates the applied attachments
// before the daemon answers.

const PORT = 7461;
const OTHER = 7462;

describe("netfenced apply -f (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let daemon: DaemonProcess;
  let dir: string;

  let rig: DaemonRig | undefined;

  beforeAll(async () => {
    // Management: the third server address, on PORT (standing in for sshd's 22).
    rig = await daemonRig("nfap", { servers: { ports: [PORT, OTHER] }, yaml: (n) => `management: { networks: ["${n.serverIp4[2]}/32"], ports: [${PORT}] }` });
    ({ sb, net, pinRoot, cg, daemon } = rig);
    dir = daemon.dir;
  }, 120_000);

  afterAll(() => rig?.cleanup(), 60_000);

  const reach = (ip: string, port = PORT) => probe(sb, net.workloadNs, "tcp", ip, { port, timeoutMs: 800, cgroup: cg });
  const writePolicy = (name: string, text: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return file;
  };
  const policy = (body: string) => `version: 1
attachments:
  - name: web
    cgroup: ${cg}
${body}`;
  const allow0 = () => policy(`    mode: allowlist
    allow:
      - cidr: ${net.serverIp4[0]}/32
`);
  const verdicts = async () => [await reach(net.serverIp4[0]!), await reach(net.serverIp4[1]!), await reach(net.serverIp4[2]!), await reach(net.serverIp4[2]!, OTHER)];

  it("applies a file (the diff printed), enforces it, and a second apply of the same file changes nothing", async () => {
    const file = writePolicy("policy.yaml", allow0());
    const first = await daemon.cli("apply", "-f", file);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`+ attachment web (cgroup ${cg}): mode allowlist, 1 allow / 0 deny rules`);
    expect(first.stdout).toContain("Applied.");
    // server 0 allowed; server 1 not; server 2 on PORT is management (protected), on OTHER not.
    expect(await verdicts()).toEqual([true, false, true, false]);
    const list = JSON.parse((await daemon.cli("list", "--json")).stdout) as { attachments: { id: string; target: string }[] };
    expect(list.attachments.map((a) => a.id)).toEqual(["web"]);

    // status --rules: every attachment's rules with the kernel's hit counts.
    const st = JSON.parse((await daemon.cli("status", "--rules", "--json")).stdout) as { rules: { id: string; rules: { rule: string; packets?: string }[] }[] };
    expect(st.rules.map((r) => r.id)).toEqual(["web"]);
    const hits = Object.fromEntries(st.rules[0]!.rules.map((r) => [r.rule, Number(r.packets ?? 0)]));
    expect(hits[`allow-cidr ${net.serverIp4[0]}/32`]).toBeGreaterThan(0);
    expect(hits["default-deny"]).toBeGreaterThan(0);
    const text = (await daemon.cli("status", "--rules")).stdout;
    expect(text).toMatch(new RegExp(`Attachment web: mode allowlist in the kernel[\\s\\S]*allow-cidr ${net.serverIp4[0]!.replace(/\./g, "\\.")}/32`));

    const again = await daemon.cli("apply", "-f", file);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe("No changes: the policy file is what is in force.");
    const history = JSON.parse((await daemon.cli("history", "--json")).stdout) as { entries: { source: string; action: string; result: string; attachmentId?: string }[] };
    const applies = history.entries.filter((e) => e.source === "apply");
    expect(applies.map((e) => [e.action, e.result, e.attachmentId ?? ""])).toEqual(
      expect.arrayContaining([["attach", "applied", "web"], ["apply", "applied", ""], ["apply", "unchanged", ""]]),
    );
  }, 120_000);

  it("a broken file, a dry run and a file that would cut management access change nothing", async () => {
    const before = await verdicts();
    expect(before).toEqual([true, false, true, false]);
    const broken = writePolicy("broken.yaml", `version: 1
attachments:
  - name: web
    cgroup: ${cg}
    mode: denylist
    allow:
      - cidr: 10.0.0.300/8
      - cidr: ${net.serverIp4[1]}/32
        ports: [99999]
        users: [no-such-user-nf]
  - name: gone
    cgroup: ${cg}-does-not-exist
`);
    const b = await daemon.cli("apply", "-f", broken);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/broken\.yaml:7:15: cidr: /);
    expect(b.stderr).toMatch(/broken\.yaml:9:17: .*"99999" is not a port/);
    expect(b.stderr).toMatch(/broken\.yaml:10:17: .*unknown user: no-such-user-nf/);
    expect(b.stdout).toBe("");

    const missing = writePolicy("missing.yaml", `version: 1\nattachments:\n  - name: gone\n    cgroup: ${cg}-does-not-exist\n`);
    const m = await daemon.cli("apply", "-f", missing);
    expect(m.code).not.toBe(0);
    expect(m.stderr).toMatch(/missing\.yaml:4:13: attachment "gone": /);

    const change = writePolicy("change.yaml", policy(`    mode: allowlist
    allow:
      - cidr: ${net.serverIp4[1]}/32
`));
    const dry = await daemon.cli("apply", "-f", change, "--dry-run");
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`    + allow cidr ${net.serverIp4[1]}/32`);
    expect(dry.stdout).toContain(`    - allow cidr ${net.serverIp4[0]}/32`);
    expect(dry.stdout).toContain("Dry run: nothing changed.");

    // A deny covering the management address on its port: refused, naming the rule.
    const lockout = writePolicy("lockout.yaml", policy(`    mode: denylist
    deny:
      - cidr: ${net.subnet4}.0/24
        protocols: [tcp]
`));
    const l = await daemon.cli("apply", "-f", lockout);
    expect(l.code).toBe(2);
    expect(l.stderr).toMatch(new RegExp(`lockout\\.yaml:7:9: attachment "web": deny ${net.subnet4.replace(/\./g, "\\.")}\\.0/24 \\[tcp\\] would cut management access`));

    expect(await verdicts()).toEqual(before);
    const list = JSON.parse((await daemon.cli("list", "--json")).stdout) as { attachments: { id: string; mode: string }[] };
    expect(list.attachments.map((a) => [a.id, a.mode])).toEqual([["web", "POLICY_MODE_ALLOWLIST"]]);
  }, 120_000);

  it("block-all is accepted and management access survives it (protected entries), everything else is blocked", async () => {
    const file = writePolicy("blockall.yaml", policy("    mode: block-all\n"));
    const r = await daemon.cli("apply", "-f", file);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("    mode allowlist -> block-all");
    expect(await verdicts()).toEqual([false, false, true, false]);
  }, 120_000);

  it("a simulated reboot (daemon killed, our pin root emptied) re-creates the applied attachment before the daemon answers", async () => {
    const file = writePolicy("policy.yaml", allow0());
    expect((await daemon.cli("apply", "-f", file)).code).toBe(0);
    expect(await verdicts()).toEqual([true, false, true, false]);
    await daemon.kill9();
    rmSync(pinRoot, { recursive: true, force: true });
    expect(await reach(net.serverIp4[1]!)).toBe(true); // nothing enforces now
    const logStart = daemon.log().length;
    await daemon.start();
    expect((await daemon.cli("status")).code).toBe(0);
    // The first packet after ready already meets the policy.
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    expect(await verdicts()).toEqual([true, false, true, false]);
    const log = daemon.log().slice(logStart);
    expect(log.indexOf("attachment re-created from the state store")).toBeGreaterThan(-1);
    expect(log.indexOf("attachment re-created from the state store")).toBeLessThan(log.indexOf('"msg":"netfenced ready"'));
    expect(existsSync(path.join(pinRoot, "web"))).toBe(true);
    // What was applied is still what is in force.
    const again = await daemon.cli("apply", "-f", file);
    expect(again.stdout.trim()).toBe("No changes: the policy file is what is in force.");
  }, 180_000);

  it("an apply without the attachment detaches it (its pins go, traffic flows again)", async () => {
    const empty = writePolicy("empty.yaml", "version: 1\nattachments: []\n");
    const r = await daemon.cli("apply", "-f", empty);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`- attachment web (cgroup ${cg})`);
    expect(await reach(net.serverIp4[1]!)).toBe(true);
    expect(existsSync(path.join(pinRoot, "web"))).toBe(false);
  }, 120_000);
});
