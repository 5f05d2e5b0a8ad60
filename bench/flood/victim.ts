/**
 * The measured tenant of bench/flood (run inside its namespace) for `durationMs`, two loops at once:
 *   - DNS: one UDP query every `dnsIntervalMs` (one in flight), latency per answer; no reply within
 *     1 s = failed;
 *   - kernel verdicts: one TCP connect every `connectIntervalMs` to an ALLOWED address (opened by
 *     its DNS answer beforehand; connect latency = SYN → SYN-ACK through the filter) and, every
 *     10th time, to a BLOCKED address (must time out: a success is a leaked verdict).
 *
 *   node victim.js <dnsServer> <dnsPort> <name> <durationMs> <dnsIntervalMs> <allowedIp> <blockedIp> <tcpPort> <connectIntervalMs>
 *
 * Prints one JSON line: {"dns": {ok, failed, rcodes, p50Ms, p99Ms}, "connect": {ok, failed, p50Ms, p99Ms}, "blocked": {tries, leaked}}.
 */
import dgram from "node:dgram";
import net from "node:net";
import { encodeQuery, pct } from "./wire.js";

const [server, portText, name, durationText, dnsIntervalText, allowedIp, blockedIp, tcpPortText, connectIntervalText] = process.argv.slice(2) as string[] as [
  string, string, string, string, string, string, string, string, string,
];
const end = Date.now() + Number(durationText);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function dnsLoop(): Promise<{ ok: number; failed: number; rcodes: Record<number, number>; p50Ms: number | null; p99Ms: number | null }> {
  const sock = dgram.createSocket(server.includes(":") ? "udp6" : "udp4");
  await new Promise<void>((r) => sock.bind(0, () => r()));
  const lat: number[] = [];
  const rcodes: Record<number, number> = {};
  let failed = 0;
  for (let i = 0; Date.now() < end; i++) {
    const id = i & 0xffff;
    const t0 = process.hrtime.bigint();
    const reply = await new Promise<Buffer | null>((resolve) => {
      const onMessage = (m: Buffer): void => {
        if (m.length < 4 || m.readUInt16BE(0) !== id) return;
        clearTimeout(timer);
        sock.off("message", onMessage);
        resolve(m);
      };
      const timer = setTimeout(() => {
        sock.off("message", onMessage);
        resolve(null);
      }, 1000);
      sock.on("message", onMessage);
      sock.send(encodeQuery(id, name, 1), Number(portText), server);
    });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (reply === null) failed++;
    else {
      lat.push(ms);
      const rc = reply.readUInt16BE(2) & 0xf;
      rcodes[rc] = (rcodes[rc] ?? 0) + 1;
    }
    if (ms < Number(dnsIntervalText)) await sleep(Number(dnsIntervalText) - ms);
  }
  sock.close();
  lat.sort((a, b) => a - b);
  return { ok: lat.length, failed, rcodes, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99) };
}

function connect(ip: string, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect({ host: ip, port: Number(tcpPortText) });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(null);
    }, timeoutMs);
    s.on("connect", () => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      s.destroy();
      resolve(ms);
    });
    s.on("error", () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
}

async function connectLoop(): Promise<{ connect: { ok: number; failed: number; p50Ms: number | null; p99Ms: number | null }; blocked: { tries: number; leaked: number } }> {
  const lat: number[] = [];
  let failed = 0;
  let tries = 0;
  let leaked = 0;
  for (let i = 0; Date.now() < end; i++) {
    const t0 = Date.now();
    if (i % 10 === 9) {
      tries++;
      if ((await connect(blockedIp, 150)) !== null) leaked++;
    } else {
      const ms = await connect(allowedIp, 1000);
      if (ms === null) failed++;
      else lat.push(ms);
    }
    const spent = Date.now() - t0;
    if (spent < Number(connectIntervalText)) await sleep(Number(connectIntervalText) - spent);
  }
  lat.sort((a, b) => a - b);
  return { connect: { ok: lat.length, failed, p50Ms: pct(lat, 50), p99Ms: pct(lat, 99) }, blocked: { tries, leaked } };
}

const [dns, c] = await Promise.all([dnsLoop(), connectLoop()]);
process.stdout.write(`${JSON.stringify({ dns, ...c })}\n`);
