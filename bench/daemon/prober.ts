/**
 * Standalone probe process (dist/bench/daemon/prober.js), run inside the benchmark's workload
 * network namespace. One line per request on stdin:
 *
 *   <seq> <udp|tcp> <ip> <port> <timeoutMs>
 *
 * answered by one JSON line on stdout: {"seq", "ok", "reason", "sentAtMs", "doneAtMs"} where the
 * times are wall-clock epoch milliseconds with sub-ms precision (comparable with the parent's).
 * Every probe opens a NEW socket: cgroup eBPF programs see the cgroup a socket was created in, so
 * after the parent moved this process into another cgroup the next probe is subject to it.
 * UDP: "ping" to an echo server every 50 ms until the echo or the timeout; TCP: connect, write,
 * wait for the echo.
 */
import dgram from "node:dgram";
import net from "node:net";
import { createInterface } from "node:readline";

const nowMs = (): number => performance.timeOrigin + performance.now();

interface Outcome {
  readonly ok: boolean;
  readonly reason: string;
}

function probeUdp(ip: string, port: number, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(ip.includes(":") ? "udp6" : "udp4");
    let done = false;
    const finish = (o: Outcome): void => {
      if (done) return;
      done = true;
      clearInterval(retry);
      clearTimeout(timer);
      sock.close();
      resolve(o);
    };
    sock.on("message", () => finish({ ok: true, reason: "echo" }));
    sock.on("error", (e: NodeJS.ErrnoException) => finish({ ok: false, reason: e.code ?? e.message }));
    const send = (): void => sock.send("ping", port, ip, (e) => e && finish({ ok: false, reason: (e as NodeJS.ErrnoException).code ?? e.message }));
    const retry = setInterval(send, 50);
    const timer = setTimeout(() => finish({ ok: false, reason: "timeout" }), timeoutMs);
    send();
  });
}

function probeTcp(ip: string, port: number, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    let done = false;
    const s = net.connect({ host: ip, port });
    const finish = (o: Outcome): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => finish({ ok: false, reason: "timeout" }), timeoutMs);
    s.on("connect", () => s.write("ping"));
    s.on("data", () => finish({ ok: true, reason: "echo" }));
    s.on("error", (e: NodeJS.ErrnoException) => finish({ ok: false, reason: e.code ?? e.message }));
  });
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const [seq, kind, ip, portText, timeoutText] = line.trim().split(/\s+/);
  if (seq === undefined || ip === undefined) return;
  const port = Number(portText);
  const timeoutMs = Number(timeoutText ?? 500);
  const sentAtMs = nowMs();
  const run = kind === "tcp" ? probeTcp(ip, port, timeoutMs) : probeUdp(ip, port, timeoutMs);
  void run.then((o) => process.stdout.write(JSON.stringify({ seq: Number(seq), ok: o.ok, reason: o.reason, sentAtMs, doneAtMs: nowMs() }) + "\n"));
});
rl.on("close", () => process.exit(0));
process.stdout.write(JSON.stringify({ ready: true }) + "\n");
