import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { NETFENCED } from "../lib/binaries.js";

/**
 * The real `netfenced start` (cli/dist/index.js) for the flood benchmark: DNS on the sandbox
 * bridge address, dnsmasq as its upstream, a local default policy, metrics on 127.0.0.1, its own
 * pin root, socket and data_dir; the real CLI for attach. Stopped by PID.
 */
export class FloodDaemon {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), "nf-flood-d-"));
  readonly socket = path.join(this.dir, "netfence.sock");
  readonly logFile = path.join(this.dir, "daemon.log");
  private readonly cli = NETFENCED;
  private child: ChildProcess | null = null;

  constructor(
    private readonly opts: { pinRoot: string; listenAddr: string; upstream: string; portMin: number; metricsPort: number; defaultPolicyYaml: string },
  ) {
    writeFileSync(
      path.join(this.dir, "netfence.yaml"),
      [
        `socket: ${this.socket}`,
        `data_dir: ${path.join(this.dir, "data")}`,
        "log_level: warn",
        `bpf: { pin_root: ${opts.pinRoot} }`,
        `dns: { listen_addr: "${opts.listenAddr}", port_min: ${opts.portMin}, port_max: ${opts.portMin + 7}, upstream: "${opts.upstream}", min_ttl: 600s }`,
        `metrics: { listen: "127.0.0.1:${opts.metricsPort}" }`,
        opts.defaultPolicyYaml,
        "",
      ].join("\n"),
    );
  }

  get pid(): number {
    if (this.child?.pid === undefined) throw new Error("the flood daemon is not running");
    return this.child.pid;
  }

  async start(): Promise<void> {
    const fd = openSync(this.logFile, "a");
    // FLOOD_CPU_PROF=DIR: the daemon writes a V8 CPU profile there when it stops (diagnosis).
    const prof = process.env["FLOOD_CPU_PROF"];
    const node = prof ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : [];
    this.child = spawn(process.execPath, [...node, this.cli, "start", "--config", path.join(this.dir, "netfence.yaml")], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    const deadline = Date.now() + 60_000;
    for (;;) {
      // log_level warn: readiness is the socket answering `status`.
      if (existsSync(this.socket) && (await this.run("status")).code === 0) return;
      if (this.child.exitCode !== null) throw new Error(`netfenced exited: ${this.log().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`netfenced not ready: ${this.log().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, "utf8") : "";
  }

  run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const c = spawn(process.execPath, [this.cli, "--socket", this.socket, ...args], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      c.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      c.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      const timer = setTimeout(() => c.kill("SIGKILL"), 60_000);
      c.on("exit", (code) => {
        clearTimeout(timer);
        resolve({ code: code ?? 1, stdout, stderr });
      });
    });
  }

  async attach(ifname: string, metadata: Record<string, string>): Promise<{ id: string; dnsPort: number }> {
    const r = await this.run("attach", "-i", ifname, "--metadata", Object.entries(metadata).map(([k, v]) => `${k}=${v}`).join(","));
    const id = /^ID: (\S+)$/m.exec(r.stdout)?.[1];
    const port = /^DNS Address: \S+:(\d+)$/m.exec(r.stdout)?.[1];
    if (r.code !== 0 || id === undefined || port === undefined) throw new Error(`attach ${ifname} failed: ${r.stderr}`);
    return { id, dnsPort: Number(port) };
  }

  async metrics(): Promise<Map<string, number>> {
    const res = await fetch(`http://127.0.0.1:${this.opts.metricsPort}/metrics`);
    const out = new Map<string, number>();
    for (const line of (await res.text()).split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child !== null && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    this.child = null;
  }

  async cleanup(ids: readonly string[]): Promise<void> {
    for (const id of ids) await this.run("detach", "--id", id).catch(() => undefined);
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
