import { spawn } from "node:child_process";
import { requireKernel, Sandbox, type SandboxNetwork } from "./sandbox.js";
import { CLI } from "./daemon-harness.js";
import { E2eDaemon } from "./e2e.js";

/**
 * The world of the owner-event tests (issue 15): the real daemon (allowlist, nothing allowed) with
 * a cgroup attachment, echo servers on the workload namespace's loopback, and `netfenced events
 * --follow` readers. Processes of several uids in the cgroup connect and are dropped by the kernel.
 */
export interface OwnerEventsWorld {
  readonly sb: Sandbox;
  readonly net: SandboxNetwork;
  readonly daemon: E2eDaemon;
  readonly cgroup: string;
  readonly id: string;
  cleanup(): Promise<void>;
}

export async function ownerEventsWorld(prefix: string, ports: readonly number[]): Promise<OwnerEventsWorld> {
  await requireKernel();
  const sb = await Sandbox.create(prefix);
  let daemon: E2eDaemon | undefined;
  let id = "";
  const cleanup = async (): Promise<void> => {
    if (daemon?.alive() && id) await daemon.cli("detach", "--id", id);
    await daemon?.cleanup();
    await sb.cleanup();
  };
  try {
    const net = await sb.network();
    await sb.exec(net.workloadNs, ["ip", "link", "set", "lo", "up"]);
    for (const p of ports) await sb.echoServer(net.workloadNs, p);
    daemon = new E2eDaemon({ pinRoot: await sb.pinRoot(), dns: { listenAddr: "127.0.0.1", upstream: "127.0.0.1:9" }, yaml: "default_policy: { mode: allowlist }" });
    await daemon.start();
    const cgroup = await sb.cgroup();
    const c = await daemon.cli("attach", "-g", cgroup, "--json");
    if (c.code !== 0) throw new Error(`cgroup attach failed: ${c.stderr}`);
    id = (JSON.parse(c.stdout) as { id: string }).id;
    return { sb, net, daemon, cgroup, id, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** `netfenced events --id ID --follow [--json]`: its output lines, collected until stopped (killed after `maxMs`). */
export function followEvents(daemon: E2eDaemon, id: string, json: boolean, maxMs = 120_000): { lines: string[]; stop: () => Promise<void> } {
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
  const killer = setTimeout(() => child.kill("SIGKILL"), maxMs);
  return {
    lines,
    stop: async () => {
      clearTimeout(killer);
      child.kill("SIGTERM");
      await exited;
    },
  };
}
