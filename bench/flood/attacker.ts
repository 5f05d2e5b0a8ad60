/**
 * The flooding tenant of bench/flood (run inside its namespace): UDP DNS queries at a fixed rate.
 *
 *   node attacker.js <server> <port> <rate/s> <durationMs> sink      → "x<n>.sink.flood" (never answered upstream)
 *   node attacker.js <server> <port> <rate/s> <durationMs> big <K>   → "m<n mod K>.big.flood" (200 A records each, EDNS 4096)
 *
 * Prints one JSON line: {"sent", "replies", "rcodes": {rcode: n}, "bytes"}.
 */
import dgram from "node:dgram";
import { encodeQuery, rcodeOf } from "./wire.js";

const [server, portText, rateText, durationText, mode, modText] = process.argv.slice(2) as [string, string, string, string, string, string | undefined];
const port = Number(portText);
const rate = Number(rateText);
const duration = Number(durationText);
const modulo = Number(modText ?? "1");
const sock = dgram.createSocket(server.includes(":") ? "udp6" : "udp4");
sock.on("error", () => undefined);
const rcodes: Record<number, number> = {};
let replies = 0;
let bytes = 0;
sock.on("message", (m) => {
  replies++;
  bytes += m.length;
  const rc = rcodeOf(m);
  rcodes[rc] = (rcodes[rc] ?? 0) + 1;
});
await new Promise<void>((r) => sock.bind(0, () => r()));
let sent = 0;
const start = Date.now();
await new Promise<void>((resolve) => {
  const tick = (): void => {
    const elapsed = Date.now() - start;
    if (elapsed >= duration) return resolve();
    const due = Math.floor((elapsed / 1000) * rate);
    for (; sent < due; sent++) {
      const q = mode === "big" ? encodeQuery(sent & 0xffff, `m${sent % modulo}.big.flood`, 1, 4096) : encodeQuery(sent & 0xffff, `x${sent}.sink.flood`, 1);
      sock.send(q, port, server);
    }
    setTimeout(tick, 2);
  };
  tick();
});
await new Promise((r) => setTimeout(r, 2500)); // replies to the last queries (an upstream timeout is 2 s)
process.stdout.write(`${JSON.stringify({ sent, replies, rcodes, bytes })}\n`);
sock.close();
