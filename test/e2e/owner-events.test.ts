import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixture, requireKernel, Sandbox, type SandboxNetwork } from "../helpers/sandbox.js";
import { spawn } from "node:child_process";
import { CLI } from "../helpers/daemon-harness.js";
import { E2eDaemon } from "../helpers/e2e.js";

// Issue 15, end to end: blocked attempts are reported with the socket owner. The real `netfenced`
// (dist/) with a cgroup attachment in allowlist mode; processes of uid 1 (daemon) and uid 65534
// (nobody) in the cgroup connect to a TCP server on the namespace's 127.0.0.1 and are dropped by the
// kernel; `netfenced events --json` (WatchEvents) must carry each one's uid and user name, and the
// text output `uid=N(name)`.

const PORT = 7461;

interface WireEvent {
  attachmentId?: string;
  dst?: string;
  dstPort?: number;
  verdict?: string;
  reason?: string;
  uid?: number;
  user?: string;
}

describe("events name the socket owner (real daemon, cgroup attachment, real packets)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: E2eDaemon;
  let cgroup: string;
  let id = "";

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfow");
    net = await sb.network();
    await sb.exec(net.workloadNs, ["ip", "link", "set", "lo", "up"]);
    for (const p of [PORT, PORT + 1]) await sb.echoServer(net.workloadNs, p);
    daemon = new E2eDaemon({ pinRoot: await sb.pinRoot(), dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" }, yaml: "default_policy: { mode: allowlist }" });
    await daemon.start();
    cgroup = await sb.cgroup();
    const c = await daemon.cli("attach", "-g", cgroup, "--json");
    if (c.code !== 0) throw new Error(`cgroup attach failed: ${c.stderr}`);
    id = (JSON.parse(c.stdout) as { id: string }).id;
  }, 120_000);

  afterAll(async () => {
    if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await sb?.cleanup();
  });

  const connectAs = async (uid: number, port: number): Promise<boolean> => {
    const r = await sb.exec(
      net.workloadNs,
      ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", "127.0.0.1", String(port), "600"],
      { cgroup, allowFail: true, timeoutMs: 6000 },
    );
    return r.stdout.trim() === "ok";
  };

  /** `netfenced events --follow` (JSON or text) read until `enough` says so or the deadline passes; then stopped. */
  function follow(json: boolean): { lines: string[]; stop: () => Promise<void> } {
    const child = spawn(process.execPath, [CLI, "--socket", daemon.socket, "events", "--id", id, "--follow", ...(json ? ["--json"] : [])], { stdio: ["ignore", "pipe", "ignore"] });
    const lines: string[] = [];
    let buf = "";
    child.stdout.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      const parts = buf.split("\n");
      buf = parts.pop() ?? "";
      lines.push(...parts.filter((l) => l.trim() !== ""));
    });
    const exited = new Promise<void>((r) => child.on("exit", () => r()));
    const killer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    return {
      lines,
      stop: async () => {
        clearTimeout(killer);
        child.kill("SIGTERM");
        await exited;
      },
    };
  }

  it("a blocked connect of uid 65534 and one of uid 1: each event carries its uid and user name", async () => {
    const json = follow(true);
    const text = follow(false);
    try {
      // The kernel folds repeats of one flow (same address, port and reason) for 10 s, so every
      // connect goes to a port not used before. First both followers must be subscribed: uid 3's
      // connects on fresh ports (no server: only the events matter) until each stream shows one
      // (under load the two CLIs take seconds to start); then the two owners' connects, to ports
      // with a server, so that "not ok" means dropped, not refused.
      const seen = () => json.lines.map((l) => JSON.parse(l) as WireEvent);
      let port = PORT + 10;
      const until = async (ok: () => boolean, ms: number): Promise<boolean> => {
        const deadline = Date.now() + ms;
        while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        return ok();
      };
      let subscribed = false;
      for (let i = 0; i < 30 && !subscribed; i++) {
        await connectAs(3, port++);
        subscribed = await until(() => seen().some((e) => e.uid === 3) && text.lines.some((l) => l.includes("uid=3")), 1000);
      }
      expect(subscribed, "both event followers subscribed").toBe(true);
      expect(await connectAs(65534, PORT), "uid 65534 is blocked").toBe(false);
      expect(await connectAs(1, PORT + 1), "uid 1 is blocked").toBe(false);
      await until(() => seen().some((e) => e.uid === 1) && seen().some((e) => e.uid === 65534) && text.lines.some((l) => l.includes("uid=65534")), 10_000);
      const byUid = new Map(seen().map((e) => [e.uid, e]));
      expect(byUid.get(65534)).toMatchObject({ attachmentId: id, dst: "127.0.0.1", verdict: "VERDICT_BLOCKED", user: "nobody" });
      expect(byUid.get(1)).toMatchObject({ attachmentId: id, dst: "127.0.0.1", verdict: "VERDICT_BLOCKED", user: "daemon" });
      expect(text.lines.join("\n")).toMatch(/uid=65534\(nobody\)/);
    } finally {
      await json.stop();
      await text.stop();
    }
  }, 120_000);
});
