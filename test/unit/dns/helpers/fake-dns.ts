import dgram from "node:dgram";
import net from "node:net";
import { once } from "node:events";
import dnsPacket from "dns-packet";
import type { Answer, Packet, Question } from "dns-packet";
import pino from "pino";
import { formatAddr } from "@netfence/proto/parse";
import { NOTHING_REFUSED, type LearnedAddressSink, type LearnedItem, type LearnOutcome } from "../../../../daemon/src/dns/learned-sink.js";
import type { DnsPolicy, DnsModeName, DomainRule } from "../../../../daemon/src/policy/policy.js";

/** What the fake upstream does with a question: answer records, an rcode, silence, or TC. */
export type FakeBehaviour =
  | { kind: "answer"; answers: Answer[] }
  | { kind: "rcode"; rcode: number }
  | { kind: "silent" }
  | { kind: "truncate-udp"; answers: Answer[] };

export interface ReceivedQuery {
  readonly name: string;
  readonly type: string;
  readonly id: number;
  readonly port: number;
  readonly transport: "udp" | "tcp";
}

/** A tiny authoritative DNS server on 127.0.0.1 (UDP and TCP on one ephemeral port). */
export class FakeUpstream {
  readonly received: ReceivedQuery[] = [];
  behaviour: (q: Question) => FakeBehaviour = (q) => ({
    kind: "answer",
    answers: q.type === "AAAA"
      ? [{ type: "AAAA", name: q.name, ttl: 60, data: "2001:db8::1" }]
      : [{ type: "A", name: q.name, ttl: 60, data: "192.0.2.1" }],
  });
  private readonly sockets = new Set<net.Socket>();

  private constructor(readonly udp: dgram.Socket, readonly tcp: net.Server, readonly port: number) {}

  static async start(): Promise<FakeUpstream> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = dgram.createSocket("udp4");
      udp.bind(0, "127.0.0.1");
      await once(udp, "listening");
      const port = udp.address().port;
      const tcp = net.createServer();
      try {
        tcp.listen(port, "127.0.0.1");
        await Promise.race([once(tcp, "listening"), once(tcp, "error").then(([e]) => Promise.reject(e))]);
      } catch {
        udp.close();
        tcp.close();
        continue;
      }
      const fake = new FakeUpstream(udp, tcp, port);
      fake.wire();
      return fake;
    }
    throw new Error("no free port for the fake upstream");
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  names(): string[] {
    return this.received.map((r) => r.name.toLowerCase());
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all([
      new Promise<void>((r) => this.udp.close(() => r())),
      new Promise<void>((r) => this.tcp.close(() => r())),
    ]);
  }

  private reply(query: Packet, transport: "udp" | "tcp"): Buffer | null {
    const q = query.questions![0]!;
    const behaviour = this.behaviour(q);
    if (behaviour.kind === "silent") return null;
    const base = { type: "response" as const, id: query.id, questions: query.questions };
    if (behaviour.kind === "rcode") {
      return dnsPacket.encode({ ...base, flags: dnsPacket.RECURSION_AVAILABLE | behaviour.rcode });
    }
    if (behaviour.kind === "truncate-udp" && transport === "udp") {
      return dnsPacket.encode({ ...base, flags: dnsPacket.TRUNCATED_RESPONSE, answers: [] });
    }
    return dnsPacket.encode({ ...base, flags: dnsPacket.RECURSION_AVAILABLE, answers: behaviour.answers });
  }

  private wire(): void {
    this.udp.on("message", (msg, rinfo) => {
      let query: Packet;
      try {
        query = dnsPacket.decode(msg);
      } catch {
        return;
      }
      const q = query.questions?.[0];
      if (!q) return;
      this.received.push({ name: q.name, type: q.type, id: query.id ?? 0, port: rinfo.port, transport: "udp" });
      const out = this.reply(query, "udp");
      if (out) this.udp.send(out, rinfo.port, rinfo.address);
    });
    this.tcp.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      let buf = Buffer.alloc(0);
      socket.on("data", (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          const query = dnsPacket.decode(msg);
          const q = query.questions![0]!;
          this.received.push({ name: q.name, type: q.type, id: query.id ?? 0, port: socket.remotePort ?? 0, transport: "tcp" });
          const out = this.reply(query, "tcp");
          if (out) socket.write(Buffer.concat([Buffer.from([out.length >> 8, out.length & 0xff]), out]));
        }
      });
    });
  }
}

/** Sends raw bytes over UDP and resolves with the reply, or null when none came within waitMs. */
export async function udpExchange(address: string, msg: Buffer, waitMs = 3000): Promise<Buffer | null> {
  const [host, portText] = splitAddress(address);
  const socket = dgram.createSocket("udp4");
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), waitMs);
      socket.on("message", (reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
      socket.send(msg, Number(portText), host);
    });
  } finally {
    socket.close();
  }
}

export function splitAddress(address: string): [string, string] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i), address.slice(i + 1)];
}

let nextId = 1;
export function queryBytes(name: string, type: Question["type"] = "A", id = nextId++ & 0xffff): Buffer {
  return dnsPacket.encode({ type: "query", id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name, class: "IN" }] });
}

export async function udpQuery(address: string, name: string, type: Question["type"] = "A"): Promise<Packet> {
  const reply = await udpExchange(address, queryBytes(name, type));
  if (reply === null) throw new Error(`no reply for ${name}`);
  return dnsPacket.decode(reply);
}

/** One query over a TCP connection; resolves with the reply, or "closed" when the server hung up. */
export async function tcpExchange(address: string, frame: Buffer): Promise<Buffer | "closed"> {
  const [host, port] = splitAddress(address);
  const socket = net.connect(Number(port), host);
  return await new Promise<Buffer | "closed">((resolve, reject) => {
    let buf = Buffer.alloc(0);
    socket.on("connect", () => socket.write(frame));
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        socket.destroy();
      }
    });
    socket.on("close", () => resolve("closed"));
    socket.on("error", (err: NodeJS.ErrnoException) => (err.code === "ECONNRESET" ? resolve("closed") : reject(err)));
  });
}

export function framed(msg: Buffer): Buffer {
  return Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
}

export function rcodeOf(reply: Buffer): number {
  return reply.readUInt16BE(2) & 0xf;
}

/** An address as the tests write it: family and canonical text. */
export interface AddressText {
  readonly family: 4 | 6;
  readonly address: string;
}

export interface AllowCall {
  readonly attachmentId: string;
  readonly name: string;
  readonly addresses: readonly AddressText[];
  readonly ttlSeconds: number;
}

/**
 * A LearnedAddressSink that records calls (one per item, addresses as text) and an event log; each
 * write completes after `delayMs` (so a reply sent before the insert finished would show up before
 * "inserted" in the log).
 */
export class RecordingAllower implements LearnedAddressSink {
  readonly calls: AllowCall[] = [];
  readonly log: string[] = [];
  delayMs = 30;
  failWith: Error | null = null;

  epoch(): number {
    return 0;
  }

  async write(attachmentId: string, items: readonly LearnedItem[]): Promise<LearnOutcome> {
    for (const { name, addresses, ttlSeconds } of items) {
      this.calls.push({ attachmentId, name, addresses: addresses.map((a) => ({ family: a.family, address: formatAddr(a.family, a.addr) })), ttlSeconds });
      this.log.push(`insert-start ${name}`);
    }
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith) throw this.failWith;
    for (const { name, addresses } of items) this.log.push(`inserted ${name} ${addresses.map((a) => formatAddr(a.family, a.addr)).join(",")}`);
    return NOTHING_REFUSED;
  }
}

export function rule(spec: string): DomainRule {
  return spec.startsWith("*.") ? { domain: spec.slice(2), includeSubdomains: true } : { domain: spec, includeSubdomains: false };
}

export function dnsPolicy(mode: DnsModeName, allow: string[] = [], deny: string[] = [], upstreams: string[] = []): DnsPolicy {
  return { mode, allowDomains: allow.map(rule), denyDomains: deny.map(rule), upstreams };
}

export const silentLogger = pino({ level: "silent" });
