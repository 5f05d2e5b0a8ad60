import dgram from "node:dgram";
import net from "node:net";
import type { EventEmitter } from "node:events";
import ipaddr from "ipaddr.js";
import type pino from "pino";
import { NetfenceError } from "../errors.js";
import type { DnsPolicy } from "../policy/policy.js";
import { answerAddresses } from "./answer-addresses.js";
import { compileDomainRules, matchDomain, nameAllowed } from "./domain-match.js";
import {
  HEADER_LENGTH, RCODE_FORMERR, addressReply, RCODE_NOTIMP, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA,
  errorReply, isResponse, opcodeOf, questionCount, readAnswerRecords, readQuestion, typeName,
} from "./dns-wire.js";
import type { WireQuestion } from "./dns-wire.js";
import type { DnsProxy } from "./dns-proxy.js";
import type { ResolvedAddress, ResolvedAllower } from "./resolved-allower.js";
import { ResolvedInserter } from "./resolved-inserter.js";
import { DEFAULT_UPSTREAM_OPTIONS, UpstreamPool, forwardQuery } from "./upstream.js";
import type { UdpUpstream } from "./upstream.js";
import { parseUpstreamAddress } from "./upstream-address.js";
import type { UpstreamAddress } from "./upstream-address.js";

/**
 * One attachment's DNS server: UDP and TCP on the same port. Per query:
 *
 *   decide (policy mode + domain rules, or the control plane in proxy mode)
 *     → denied: REFUSED, nothing sent upstream
 *     → allowed: forward (shared upstream socket) → take the answer's A/AAAA addresses under the
 *       CNAME rule (answer-addresses.ts) → await the ResolvedAllower (coalesced, deduplicated)
 *       → only then send the reply, so the addresses are in the kernel map before the workload
 *       can connect.
 *
 * Bad input never throws out of here: unparseable-but-headed packets get FORMERR, anything
 * shorter than a header (and stray responses) is dropped, upstream failure is SERVFAIL, a failed
 * insert is SERVFAIL (the client retries; we never hand out an address the kernel would block).
 *
 * TTL handed to the allower: max(answer's minimum TTL, minTtlSeconds) — the configurable minimum
 * (default 300 s) is also the floor for TTL 0.
 */

export interface TcpLimits {
  /** Largest query accepted over TCP; a longer length prefix closes the connection. */
  readonly maxMessageBytes: number;
  /** A connection with no traffic for this long is closed. */
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  /** Queries answered concurrently per connection before reading pauses. */
  readonly maxPipelined: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = { maxMessageBytes: 4096, idleTimeoutMs: 10_000, maxConnections: 128, maxPipelined: 16 };
export const DEFAULT_MIN_TTL_SECONDS = 300;
export const DEFAULT_PROXY_TIMEOUT_MS = 3000;
/** Queries being worked on at once per server; UDP queries beyond it are dropped (clients retry). */
export const MAX_PENDING_QUERIES = 4096;

export interface AttachmentDnsServerOptions {
  readonly attachmentId: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly getPolicy: () => DnsPolicy;
  readonly defaultUpstreams: readonly string[];
  readonly allower: ResolvedAllower;
  readonly proxy?: DnsProxy;
  readonly minTtlSeconds?: number;
  readonly logger: pino.Logger;
  /** Shared by the servers of one factory; a private pool is made (and closed on stop) when absent. */
  readonly upstreamPool?: UpstreamPool;
  readonly upstreamTimeoutMs?: number;
  /** How long a proxy-mode query waits for the control plane before SERVFAIL (default 3 s). */
  readonly proxyTimeoutMs?: number;
  readonly tcp?: Partial<TcpLimits>;
}

export interface DnsServerStats {
  readonly allowed: bigint;
  readonly blocked: bigint;
}

export interface DnsServerDetailedStats extends DnsServerStats {
  readonly servfail: bigint;
  readonly formerr: bigint;
  readonly dropped: bigint;
  /** Answers whose CNAME chain left the allowed names (addresses not added). */
  readonly cnameRejected: bigint;
}

/** `promise`, or the error of `onTimeout()` when it takes longer than `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves on "listening", rejects on "error"; removes both listeners either way (no late rejection). */
function listening(emitter: EventEmitter): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onListening = (): void => {
      emitter.off("error", onError);
      resolve();
    };
    const onError = (err: Error): void => {
      emitter.off("listening", onListening);
      reject(err);
    };
    emitter.once("listening", onListening);
    emitter.once("error", onError);
  });
}

function formatAddress(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

export class AttachmentDnsServer {
  private readonly log: pino.Logger;
  private readonly inserter: ResolvedInserter;
  private readonly minTtl: number;
  private readonly timeoutMs: number;
  private readonly proxyTimeoutMs: number;
  private readonly tcpLimits: TcpLimits;
  private readonly pool: UpstreamPool;
  /** Upstream lists resolved per distinct upstream text list, each address acquired once. */
  private readonly acquired = new Map<string, { address: UpstreamAddress; upstream: UdpUpstream }>();
  private upstreamsFor: { key: readonly string[]; list: UdpUpstream[] } | null = null;
  private readonly connections = new Set<net.Socket>();
  private lastPolicy: DnsPolicy | null = null;
  private pendingQueries = 0;
  private stopped = false;
  private proxyMissingLogged = false;
  private readonly cnameLogged = new Set<string>();

  private allowedCount = 0n;
  private blockedCount = 0n;
  private servfailCount = 0n;
  private formerrCount = 0n;
  private droppedCount = 0n;
  private cnameRejectedCount = 0n;

  private constructor(
    private readonly opts: AttachmentDnsServerOptions,
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    readonly address: string,
  ) {
    this.log = opts.logger.child({ attachmentId: opts.attachmentId, component: "dns" });
    this.inserter = new ResolvedInserter(opts.attachmentId, opts.allower);
    this.minTtl = opts.minTtlSeconds ?? DEFAULT_MIN_TTL_SECONDS;
    this.timeoutMs = opts.upstreamTimeoutMs ?? opts.upstreamPool?.options.timeoutMs ?? DEFAULT_UPSTREAM_OPTIONS.timeoutMs;
    this.proxyTimeoutMs = opts.proxyTimeoutMs ?? DEFAULT_PROXY_TIMEOUT_MS;
    this.tcpLimits = { ...DEFAULT_TCP_LIMITS, ...opts.tcp };
    this.pool = opts.upstreamPool ?? new UpstreamPool({ ...DEFAULT_UPSTREAM_OPTIONS, timeoutMs: this.timeoutMs });
  }

  static async start(opts: AttachmentDnsServerOptions): Promise<AttachmentDnsServer> {
    const host = opts.listen.host;
    if (net.isIP(host) === 0) throw new NetfenceError("INVALID_ARGUMENT", "DNS listen address must be an IP address", { details: { host } });
    for (const upstream of opts.defaultUpstreams) parseUpstreamAddress(upstream); // fail early on config errors
    // Port 0 = any free port; UDP picks it and TCP must get the same one, so retry on a clash.
    const attempts = opts.listen.port === 0 ? 20 : 1;
    let lastError: unknown = null;
    for (let i = 0; i < attempts; i++) {
      const udp = dgram.createSocket({ type: net.isIPv6(host) ? "udp6" : "udp4" });
      try {
        udp.bind({ address: host, port: opts.listen.port, exclusive: true });
        await listening(udp);
      } catch (err) {
        udp.close();
        lastError = err;
        continue;
      }
      const port = udp.address().port;
      const tcp = net.createServer({ pauseOnConnect: false });
      try {
        tcp.listen({ host, port, exclusive: true });
        await listening(tcp);
      } catch (err) {
        udp.close();
        tcp.close();
        lastError = err;
        continue;
      }
      const server = new AttachmentDnsServer(opts, udp, tcp, formatAddress(host, port));
      server.wire();
      server.log.info({ address: server.address }, "DNS server listening (udp+tcp)");
      return server;
    }
    const code = (lastError as { code?: string } | null)?.code === "EADDRINUSE" ? "ALREADY_EXISTS" : "UNAVAILABLE";
    throw new NetfenceError(code, `cannot bind DNS server on ${formatAddress(host, opts.listen.port)}: ${(lastError as Error | null)?.message ?? "unknown"}`, {
      details: { attachmentId: opts.attachmentId },
      cause: lastError,
    });
  }

  stats(): DnsServerStats {
    return { allowed: this.allowedCount, blocked: this.blockedCount };
  }

  detailedStats(): DnsServerDetailedStats {
    return {
      allowed: this.allowedCount, blocked: this.blockedCount, servfail: this.servfailCount, formerr: this.formerrCount,
      dropped: this.droppedCount, cnameRejected: this.cnameRejectedCount,
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const socket of this.connections) socket.destroy();
    this.connections.clear();
    const tcpClosed = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    const udpClosed = new Promise<void>((resolve) => this.udp.close(() => resolve()));
    await Promise.all([tcpClosed, udpClosed]);
    for (const { address } of this.acquired.values()) this.pool.release(address);
    this.acquired.clear();
    this.log.info({ address: this.address }, "DNS server stopped");
  }

  /** Answers one query (exposed for the TCP and UDP front ends and for tests). Never throws. */
  async answer(query: Buffer, viaTcp: boolean): Promise<Buffer | null> {
    try {
      return await this.decide(query, viaTcp);
    } catch (err) {
      const e = NetfenceError.from(err);
      this.servfailCount++;
      this.log.warn({ err: { code: e.code, message: e.message, details: e.details } }, "DNS query failed; answering SERVFAIL");
      return errorReply(query, RCODE_SERVFAIL);
    }
  }

  private wire(): void {
    try {
      this.udp.setRecvBufferSize(1 << 20);
      this.udp.setSendBufferSize(1 << 20);
    } catch {
      // capped by net.core.rmem_max/wmem_max; the defaults still work
    }
    this.udp.on("message", (msg, rinfo) => this.onUdp(msg, rinfo));
    this.udp.on("error", (err) => this.log.error({ err: err.message }, "DNS UDP socket error"));
    this.tcp.maxConnections = this.tcpLimits.maxConnections;
    this.tcp.on("connection", (socket) => this.onTcp(socket));
    this.tcp.on("error", (err) => this.log.error({ err: err.message }, "DNS TCP server error"));
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.pendingQueries >= MAX_PENDING_QUERIES) {
      this.droppedCount++;
      return;
    }
    this.pendingQueries++;
    void this.answer(msg, false).then((reply) => {
      this.pendingQueries--;
      if (reply === null) {
        this.droppedCount++;
        return;
      }
      if (this.stopped) return;
      try {
        // No callback: a failed send surfaces as the socket's 'error' event (logged in wire()).
        this.udp.send(reply, rinfo.port, rinfo.address);
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, "DNS UDP reply not sent");
      }
    });
  }

  private onTcp(socket: net.Socket): void {
    if (this.stopped) {
      socket.destroy();
      return;
    }
    this.connections.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(this.tcpLimits.idleTimeoutMs, () => socket.destroy());
    socket.on("close", () => this.connections.delete(socket));
    socket.on("error", () => socket.destroy());
    let buffered: Buffer = Buffer.alloc(0);
    let inProgress = 0;
    // Parses whole frames while fewer than maxPipelined queries are being answered; reading is
    // paused meanwhile, so one connection can never have more than that in progress.
    const pump = (): void => {
      while (buffered.length >= 2 && inProgress < this.tcpLimits.maxPipelined) {
        const length = buffered.readUInt16BE(0);
        if (length > this.tcpLimits.maxMessageBytes) {
          this.log.debug({ length, max: this.tcpLimits.maxMessageBytes }, "oversized DNS message over TCP; closing");
          this.droppedCount++;
          socket.destroy();
          return;
        }
        if (buffered.length < 2 + length) break;
        const query = Buffer.from(buffered.subarray(2, 2 + length));
        buffered = buffered.subarray(2 + length);
        inProgress++;
        void this.answer(query, true).then((reply) => {
          inProgress--;
          if (socket.destroyed) return;
          if (reply === null) this.droppedCount++;
          else {
            const frame = Buffer.allocUnsafe(2 + reply.length);
            frame.writeUInt16BE(reply.length, 0);
            reply.copy(frame, 2);
            socket.write(frame);
          }
          pump();
        });
      }
      if (inProgress >= this.tcpLimits.maxPipelined) socket.pause();
      else socket.resume();
    };
    socket.on("data", (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      pump();
    });
  }

  private async decide(query: Buffer, viaTcp: boolean): Promise<Buffer | null> {
    if (query.length < HEADER_LENGTH || isResponse(query)) return null;
    if (opcodeOf(query) !== 0) return errorReply(query, RCODE_NOTIMP);
    const question = questionCount(query) === 1 ? readQuestion(query) : null;
    if (question === null) {
      this.formerrCount++;
      return errorReply(query, RCODE_FORMERR);
    }
    const policy = this.opts.getPolicy();
    if (policy !== this.lastPolicy) {
      this.lastPolicy = policy;
      this.inserter.forgetRecent();
    }
    switch (policy.mode) {
      case "disabled":
        this.allowedCount++;
        return this.forward(query, viaTcp, policy);
      case "allowlist":
      case "denylist":
        // Names outside letters/digits/-/_ cannot be described by rules: refused when filtering.
        if (!question.plainLabels || !nameAllowed(policy, question.name)) return this.refuse(query, question);
        this.allowedCount++;
        return this.forwardAndAllow(query, question, viaTcp, policy, (name) => nameAllowed(policy, name));
      case "proxy":
        return this.proxied(query, question, viaTcp, policy);
    }
  }

  private refuse(query: Buffer, question: WireQuestion): Buffer | null {
    this.blockedCount++;
    this.log.debug({ name: question.name, type: typeName(question.type) }, "DNS query refused by policy");
    return errorReply(query, RCODE_REFUSED);
  }

  private async proxied(query: Buffer, question: WireQuestion, viaTcp: boolean, policy: DnsPolicy): Promise<Buffer | null> {
    const proxy = this.opts.proxy;
    if (!proxy) {
      if (!this.proxyMissingLogged) {
        this.proxyMissingLogged = true;
        this.log.warn("DNS proxy mode without a control-plane proxy; answering SERVFAIL");
      }
      this.servfailCount++;
      return errorReply(query, RCODE_SERVFAIL);
    }
    if (!question.plainLabels) return this.refuse(query, question);
    const decision = await withTimeout(
      proxy.queryDns(this.opts.attachmentId, question.name, typeName(question.type)),
      this.proxyTimeoutMs,
      () => new NetfenceError("DEADLINE_EXCEEDED", "control plane did not answer QueryDns in time", { details: { name: question.name, timeoutMs: this.proxyTimeoutMs } }),
    );
    if (!decision.allow) return this.refuse(query, question);
    this.allowedCount++;
    if (decision.ips.length === 0) {
      if (!decision.addToFilter) return this.forward(query, viaTcp, policy);
      // The control plane allowed the queried name; CNAME targets only need to escape local deny rules.
      const rules = compileDomainRules(policy);
      return this.forwardAndAllow(query, question, viaTcp, policy, (name) => matchDomain(rules, name) !== "deny");
    }
    return this.ownAnswer(query, question, decision.ips, decision.ttlSeconds, decision.addToFilter);
  }

  /** Answers with the control plane's own IPs (those of the asked family; other types get NODATA). */
  private async ownAnswer(query: Buffer, question: WireQuestion, ips: readonly string[], ttlSeconds: number, addToFilter: boolean): Promise<Buffer | null> {
    const wanted = question.type === TYPE_A ? 4 : question.type === TYPE_AAAA ? 6 : 0;
    const addresses: ResolvedAddress[] = [];
    const records: { family: 4 | 6; bytes: Uint8Array }[] = [];
    for (const ip of ips) {
      const family = net.isIP(ip);
      if ((family !== 4 && family !== 6) || family !== wanted) continue;
      const parsed = ipaddr.parse(ip);
      addresses.push({ family, address: parsed.toString() });
      records.push({ family, bytes: Uint8Array.from(parsed.toByteArray()) });
    }
    const ttl = Math.max(0, Math.floor(ttlSeconds));
    if (addToFilter && addresses.length > 0) {
      if (this.stopped) return null;
      await this.insert(question.name, addresses, ttl);
    }
    return addressReply(query, records, ttl);
  }

  private async forward(query: Buffer, viaTcp: boolean, policy: DnsPolicy): Promise<Buffer | null> {
    try {
      return await forwardQuery(this.upstreams(policy), query, viaTcp, this.timeoutMs);
    } catch (err) {
      const e = NetfenceError.from(err, "UNAVAILABLE");
      this.servfailCount++;
      this.log.debug({ err: { code: e.code, message: e.message, details: e.details } }, "DNS upstream failed; answering SERVFAIL");
      return errorReply(query, RCODE_SERVFAIL);
    }
  }

  private async forwardAndAllow(
    query: Buffer, question: WireQuestion, viaTcp: boolean, policy: DnsPolicy, nameOk: (name: string) => boolean,
  ): Promise<Buffer | null> {
    let reply: Buffer;
    try {
      reply = await forwardQuery(this.upstreams(policy), query, viaTcp, this.timeoutMs);
    } catch (err) {
      const e = NetfenceError.from(err, "UNAVAILABLE");
      this.servfailCount++;
      this.log.debug({ err: { code: e.code, message: e.message, details: e.details } }, "DNS upstream failed; answering SERVFAIL");
      return errorReply(query, RCODE_SERVFAIL);
    }
    // Only NOERROR answers with records can carry addresses; skip the decode otherwise.
    if ((reply.readUInt16BE(2) & 0xf) !== 0 || reply.readUInt16BE(6) === 0) return reply;
    const answers = readAnswerRecords(reply);
    if (answers === null) {
      this.servfailCount++;
      this.log.warn({ name: question.name }, "DNS upstream sent an answer that cannot be parsed; answering SERVFAIL");
      return errorReply(query, RCODE_SERVFAIL);
    }
    const found = answerAddresses(answers, question.name, nameOk);
    if (found.rejectedName !== null) {
      this.cnameRejectedCount++;
      this.logCnameRejected(question.name, found.chain);
      return reply;
    }
    if (found.addresses.length > 0) {
      if (this.stopped) return null; // detached meanwhile: nothing to open, nobody to answer
      await this.insert(question.name, found.addresses, found.ttlSeconds);
    }
    return reply;
  }

  /** Info once per name (bounded memory), debug after: a CDN name may be asked thousands of times. */
  private logCnameRejected(name: string, chain: readonly string[]): void {
    if (this.cnameLogged.has(name)) {
      this.log.debug({ name, chain }, "CNAME chain leaves the allowed names; its addresses are not added");
      return;
    }
    if (this.cnameLogged.size >= 1024) this.cnameLogged.clear();
    this.cnameLogged.add(name);
    this.log.info({ name, chain }, "CNAME chain leaves the allowed names; its addresses are not added");
  }

  private insert(name: string, addresses: readonly ResolvedAddress[], answerTtl: number): Promise<void> | undefined {
    const ttl = Math.max(answerTtl, this.minTtl);
    return this.inserter.ensure(name, addresses, ttl, answerTtl) ?? undefined;
  }

  private upstreams(policy: DnsPolicy): UdpUpstream[] {
    // A query that was waiting (e.g. on the control plane) when the server stopped must not
    // acquire upstream sockets that nobody would release.
    if (this.stopped) throw new NetfenceError("UNAVAILABLE", "DNS server stopped");
    const texts = policy.upstreams.length > 0 ? policy.upstreams : this.opts.defaultUpstreams;
    const cached = this.upstreamsFor;
    if (cached !== null && cached.key === texts) return cached.list;
    const list: UdpUpstream[] = [];
    for (const text of texts) {
      const address = parseUpstreamAddress(text);
      let entry = this.acquired.get(address.key);
      if (!entry) {
        entry = { address, upstream: this.pool.acquire(address) };
        this.acquired.set(address.key, entry);
      }
      list.push(entry.upstream);
    }
    this.upstreamsFor = { key: texts, list };
    return list;
  }
}
