import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { fixture, requireKernel, Sandbox, sh, type SandboxNetwork } from "../../helpers/sandbox.js";
import { E2eDaemon } from "../../helpers/e2e.js";
import { waitFor } from "../../helpers/daemon-harness.js";
import { LAYOUT } from "../../../daemon/src/datapath/wire-format.js";

// Session 21, the real daemon's tamper watch (no control plane; policy from `apply -f`): a cgroup
// attachment with a scoped deny (127.0.0.1 tcp/P2) under an allow of 127.0.0.0/8, and a second scope
// set (127.0.0.2 tcp/P1 for user daemon). No false report while nobody tampers (the daemon's expected
// checksum of a scoped policy equals the loader's); then an intruder points 127.0.0.1's entry at the
// other set with `bpftool map update`: the deny stops applying, the watch reports map-content within
// a few periods and rewrites the policy, and the deny holds again. On main VERIFY never saw it.
const P1 = 7491;
const P2 = 7492;

const run = (cmd: string, args: string[]) => sh(cmd, args, { timeoutMs: 10_000 });
const json = async <T>(args: string[]): Promise<T> => JSON.parse((await run("bpftool", ["-j", ...args])).stdout) as T;

describe("the tamper watch sees a scope id rewritten behind the daemon's back (real kernel, real daemon)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let cg: string;
  let pins: string;
  let daemon: E2eDaemon;
  const name = "scoped-tamper";

  const reach = async (port: number, timeoutMs = 2000): Promise<boolean> => {
    const r = await sb.exec(net.workloadNs, [process.execPath, fixture("probe.mjs"), "tcp", "127.0.0.1", String(port), String(timeoutMs)], { cgroup: cg, allowFail: true, timeoutMs: timeoutMs + 5000 });
    return r.stdout.trim() === "ok";
  };
  const reported = async (): Promise<number> => (await daemon.metrics()).get('netfence_tamper_detected_total{kind="map-content"}') ?? 0;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfst");
    net = await sb.network();
    cg = await sb.cgroup();
    pins = await sb.pinRoot();
    for (const p of [P1, P2]) await sb.echoServer(net.workloadNs, p);
    daemon = new E2eDaemon({ pinRoot: pins, dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" }, metrics: true });
    await daemon.start();
    const file = path.join(daemon.dir, "policy.yaml");
    writeFileSync(file, `version: 1
attachments:
  - name: ${name}
    cgroup: ${cg}
    mode: allowlist
    allow:
      - cidr: 127.0.0.0/8
      - cidr: 127.0.0.2/32
        protocols: [tcp]
        ports: [${P1}]
        users: [daemon]
    deny:
      - cidr: 127.0.0.1/32
        protocols: [tcp]
        ports: [${P2}]
`);
    const r = await daemon.cli("apply", "-f", file);
    expect(r.code, r.stderr).toBe(0);
  }, 120_000);

  afterAll(async () => {
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  it("no report while nobody tampers: the daemon's checksum of a scoped policy is the loader's", async () => {
    expect(await reach(P1)).toBe(true);
    expect(await reach(P2, 600)).toBe(false);
    // The watch checksums the content every second period (4 s): several rounds pass meanwhile.
    await new Promise((r) => setTimeout(r, 9000));
    expect(await reported()).toBe(0);
    expect(daemon.log()).not.toMatch(/"kind":"map-content"/);
  });

  it("127.0.0.1's entry pointed at the other scope set: reported, rewritten, the deny holds again", async () => {
    const st = await json<{ value: string[] }>(["map", "lookup", "pinned", path.join(pins, name, "state"), "key", "0", "0", "0", "0"]);
    const gen = Buffer.from(st.value.map((h) => parseInt(h, 16))).readUInt32LE(LAYOUT.nf_state.active_gen) & 1;
    const key = [gen, 0, 0, 0, 127, 0, 0, 1].map(String);
    const exact = path.join(pins, name, "v4_exact");
    const v = await json<{ value: string[] }>(["map", "lookup", "pinned", exact, "key", ...key]);
    const value = Buffer.from(v.value.map((h) => parseInt(h, 16)));
    const own = value.readUInt16LE(14); // nf_entry.scope
    expect(own).not.toBe(0);
    value.writeUInt16LE(own === 1 ? 2 : 1, 14);
    await run("bpftool", ["map", "update", "pinned", exact, "key", ...key, "value", ...[...value].map(String)]);
    await waitFor(async () => (await reported()) > 0, "a map-content report", 15_000);
    expect(daemon.log()).toMatch(new RegExp(`"attachmentId":"${name}","kind":"map-content"`));
    await waitFor(async () => !(await reach(P2, 600)), "the scoped deny back after the rewrite", 15_000);
    expect(await reach(P1)).toBe(true);
  });
});
