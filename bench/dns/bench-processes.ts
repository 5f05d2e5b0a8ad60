import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";

/** Child processes of the DNS benchmark (dnsmasq instances), started and stopped by PID. */

export class Dnsmasq {
  private constructor(private readonly child: ChildProcess, readonly port: number) {}

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("dnsmasq has no pid");
    return this.child.pid;
  }

  /** dnsmasq on 127.0.0.1:port in the foreground, no config file, no resolv.conf, no /etc/hosts. */
  static async start(port: number, extra: string[], logFile: string): Promise<Dnsmasq> {
    const args = [
      "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
      "--listen-address=127.0.0.1", `--port=${port}`, "--pid-file=", "--user=root", `--log-facility=${logFile}`, ...extra,
    ];
    const child = spawn("dnsmasq", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    const server = new Dnsmasq(child, port);
    const exited = new Promise<never>((_, reject) => child.on("exit", (code) => reject(new Error(`dnsmasq exited (${code}): ${stderr.trim()}`))));
    exited.catch(() => undefined);
    try {
      // a hosts file of a few hundred thousand names takes dnsmasq a while on a busy machine
      await Promise.race([waitForDns(port, "probe.bench.test", 90_000), exited]);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.pid === undefined) return;
    const closed = new Promise<void>((resolve) => this.child.on("exit", () => resolve()));
    process.kill(this.child.pid, "SIGTERM");
    const timer = setTimeout(() => this.child.pid !== undefined && this.child.exitCode === null && process.kill(this.child.pid, "SIGKILL"), 5000);
    await closed;
    clearTimeout(timer);
  }
}

/** Resolves once something answers DNS on 127.0.0.1:port (any rcode); gives up after `timeoutMs`. */
export async function waitForDns(port: number, name: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const socket = dgram.createSocket("udp4");
  let answered = false;
  socket.on("message", () => (answered = true));
  try {
    while (!answered) {
      if (Date.now() > deadline) throw new Error(`nothing answers DNS on 127.0.0.1:${port}`);
      socket.send(dnsPacket.encode({ type: "query", id: 1, questions: [{ type: "A", name }] }), port, "127.0.0.1");
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    socket.close();
  }
}
