import net from "node:net";
import type pino from "pino";
import { NetfenceError } from "@netfence/proto/errors";
import type { DnsPolicy } from "../policy/policy.js";
import { answerAddresses } from "./answer-addresses.js";
import { compileDomainRules, matchDomain, nameAllowed } from "@netfence/proto/domain-match";
import {
  HEADER_LENGTH, RCODE_FORMERR, RCODE_NOTIMP, RCODE_REFUSED, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA,
  addressReply, errorReply, isResponse, opcodeOf, questionCount, typeName,
} from "./dns-wire.js";
import { readAnswerRecords, readQuestion } from "./dns-codec.js";
import type { WireQuestion } from "./dns-wire.js";
import type { DnsProxy } from "./dns-proxy.js";
import { withTimeout } from "./with-timeout.js";
import type { DnsQuotas } from "./dns-quotas.js";
import type { DnsEventReason, DnsEventSink } from "./dns-events.js";
import { DnsOutcomes, type DnsOutcomeHook } from "./dns-outcomes.js";
import { formatAddr, parseCidr, type Cidr } from "@netfence/proto/parse";
import { QUOTA_REFUSAL, type LearnedAddressSink, type LearnOutcome } from "./learned-sink.js";
import { LearnedInserter } from "./learned-inserter.js";
import { AnswerCache, type CacheGeneration } from "./answer-cache.js";
import { keepAddressRecords } from "./reply-rewrite.js";
import { TokenBucket } from "./token-bucket.js";
import { forwardQuery, parseUpstreamAddress, type UdpUpstream, type UpstreamAddress, type UpstreamPool } from "./upstream.js";

/**
 * One attachment's query pipeline (the sockets are dns-server.ts's). Per query:
 *
 *   queries-per-second quota (token bucket)          → over: REFUSED + event
 *   header / opcode / one well-formed question       → else: dropped, NOTIMP or FORMERR
 *   refused query types (netfence.dns.refuse-types)  → REFUSED, never sent upstream
 *   the answer cache (answer-cache.ts; not in proxy mode) → the cached reply: no upstream, no kernel write
 *   decide (policy mode + domain rules, or the control plane in proxy mode)
 *     → denied: REFUSED, nothing sent upstream
 *     → allowed: upstream queries in flight quota     → over: SERVFAIL + event
 *       forward (shared upstream socket) → the answer's A/AAAA addresses under the CNAME rule
 *       (answer-addresses.ts: a denied name anywhere in the chain → REFUSED), at most
 *       `answerRecords` of them → await the LearnedInserter (the kernel map) → addresses it
 *       refused (rebinding guard) and records over the per-answer quota are taken out of the
 *       reply; over the learned-address quota → SERVFAIL + event.
 *
 * Addresses are in the kernel map before the reply leaves (no race with the first connect).
 * Bad input never throws out of here. The learned addresses are held for max(answer's minimum
 * TTL, minTtlSeconds): the one floor, applied by the LearnedInserter.
 */

export interface QueryContext {
  readonly viaTcp: boolean;
  readonly src: string;
  readonly srcPort: number;
}

/** A `screen()` result that settles the query (a reply, or null: nothing to send). */
export function isSettled(x: Buffer | null | WireQuestion): x is Buffer | null {
  return x === null || Buffer.isBuffer(x);
}

export const DEFAULT_MIN_TTL_SECONDS = 300;
export const DEFAULT_PROXY_TIMEOUT_MS = 3000;

export interface QueryHandlerOptions {
  readonly attachmentId: string;
  readonly listen: { readonly host: string; readonly port: number };
  readonly getPolicy: () => DnsPolicy;
  readonly defaultUpstreams: readonly string[];
  readonly learned: LearnedAddressSink;
  readonly proxy?: DnsProxy;
  readonly minTtlSeconds: number;
  /** Answer cache entries (0 = none). */
  readonly answerCacheEntries: number;
  readonly logger: pino.Logger;
  readonly pool: UpstreamPool;
  readonly timeoutMs: number;
  readonly proxyTimeoutMs: number;
  readonly quotas: DnsQuotas;
  readonly refuseTypes: ReadonlySet<number>;
  readonly report: DnsEventSink;
  /** Host-wide outcome counts (metrics); absent: none. */
  readonly onOutcome?: DnsOutcomeHook;
}

export class DnsQueryHandler {
  readonly outcomes: DnsOutcomes;
  private readonly log: pino.Logger;
  private readonly inserter: LearnedInserter;
  private readonly cache: AnswerCache;
  private readonly bucket: TokenBucket;
  /** Upstream lists resolved per distinct upstream text list, each address acquired once. */
  private readonly acquired = new Map<string, { address: UpstreamAddress; upstream: UdpUpstream }>();
  private upstreamsFor: { key: readonly string[]; list: UdpUpstream[] } | null = null;
  private lastPolicy: DnsPolicy | null = null;
  private upstreamInFlight = 0;
  private stopped = false;
  private proxyMissingLogged = false;
  private readonly cnameLogged = new Set<string>();

  constructor(private readonly opts: QueryHandlerOptions) {
    this.outcomes = new DnsOutcomes(opts.onOutcome);
    this.log = opts.logger.child({ attachmentId: opts.attachmentId, component: "dns" });
    this.inserter = new LearnedInserter(opts.attachmentId, opts.learned, opts.minTtlSeconds);
    this.bucket = new TokenBucket(opts.quotas.qps);
    this.cache = new AnswerCache(opts.answerCacheEntries, opts.getPolicy, () => opts.learned.epoch(opts.attachmentId));
  }

  /** Answers one query; null = send nothing. Never throws. */
  answer(query: Buffer, ctx: QueryContext): Promise<Buffer | null> {
    const screened = this.screen(query, ctx);
    return isSettled(screened) ? Promise.resolve(screened) : this.resolve(query, screened, ctx);
  }

  /**
   * The synchronous first part of every query (no promise, no allocation beyond the reply):
   * header checks, the queries-per-second quota, the question, refused types. Returns the reply
   * (or null: send nothing) when that settles it, else the question for `resolve`. The UDP front
   * end calls it directly, so a flood over the quota costs as little as possible.
   */
  screen(query: Buffer, ctx: QueryContext): Buffer | null | WireQuestion {
    try {
      return this.screenUnsafe(query, ctx);
    } catch (err) {
      return this.failed(query, err);
    }
  }

  /** The rest of a screened query (decision, upstream, insert). Never throws. */
  async resolve(query: Buffer, question: WireQuestion, ctx: QueryContext): Promise<Buffer | null> {
    try {
      return await this.decide(query, question, ctx);
    } catch (err) {
      return this.failed(query, err);
    }
  }

  private failed(query: Buffer, err: unknown): Buffer | null {
    const e = NetfenceError.from(err);
    this.outcomes.count("servfail");
    this.log.warn({ err: { code: e.code, message: e.message, details: e.details } }, "DNS query failed; answering SERVFAIL");
    return errorReply(query, RCODE_SERVFAIL);
  }

  /** Releases the upstream sockets; queries still waiting get SERVFAIL or nothing. */
  stop(): void {
    this.stopped = true;
    for (const { address } of this.acquired.values()) this.opts.pool.release(address);
    this.acquired.clear();
    this.upstreamsFor = null;
  }

  private event(reason: DnsEventReason, ctx: QueryContext, rule: string): void {
    this.opts.report({
      attachmentId: this.opts.attachmentId, reason, src: ctx.src, srcPort: ctx.srcPort,
      dst: this.opts.listen.host, dstPort: this.opts.listen.port, protocol: ctx.viaTcp ? 6 : 17, rule,
    });
  }

  private screenUnsafe(query: Buffer, ctx: QueryContext): Buffer | null | WireQuestion {
    if (query.length < HEADER_LENGTH || isResponse(query)) {
      this.outcomes.count("dropped");
      return null;
    }
    if (!this.bucket.take()) {
      this.outcomes.count("quota-qps");
      // Folded per source (the rule names the quota, not the name: a flood of distinct names is one event per 10 s).
      this.event("dns-quota-qps", ctx, `qps=${this.opts.quotas.qps}`);
      return errorReply(query, RCODE_REFUSED);
    }
    if (opcodeOf(query) !== 0) {
      this.outcomes.count("notimp");
      return errorReply(query, RCODE_NOTIMP);
    }
    const question = questionCount(query) === 1 ? readQuestion(query) : null;
    if (question === null) {
      this.outcomes.count("formerr");
      return errorReply(query, RCODE_FORMERR);
    }
    if (this.opts.refuseTypes.has(question.type)) {
      this.outcomes.count("refused-type");
      this.event("dns-query-type", ctx, `${typeName(question.type)} ${question.name}`);
      return errorReply(query, RCODE_REFUSED);
    }
    // Validity (policy object, learned epoch, TTL, kernel deadline) is the cache's; proxy mode asks the control plane every time.
    const cached = this.opts.getPolicy().mode === "proxy" ? null : this.cache.lookup(query, question, ctx.viaTcp);
    if (cached !== null) {
      this.outcomes.count("allowed");
      this.outcomes.count("cached");
      return cached;
    }
    return question;
  }

  private async decide(query: Buffer, question: WireQuestion, ctx: QueryContext): Promise<Buffer | null> {
    const policy = this.opts.getPolicy();
    const at = this.cache.generation();
    if (policy !== this.lastPolicy) {
      this.lastPolicy = policy;
      this.inserter.forgetRecent();
    }
    switch (policy.mode) {
      case "disabled":
        this.outcomes.count("allowed");
        return this.cached(query, question, ctx, at, await this.forward(query, question, ctx, policy), Infinity);
      case "allowlist":
      case "denylist": {
        // Names outside letters/digits/-/_ cannot be described by rules: refused when filtering.
        if (!question.plainLabels || !nameAllowed(policy, question.name)) return this.refuse(query, question);
        this.outcomes.count("allowed");
        const rules = compileDomainRules(policy);
        return this.forwardAndAllow(query, question, ctx, policy, (name) => matchDomain(rules, name) === "deny", at);
      }
      case "proxy":
        return this.proxied(query, question, ctx, policy);
    }
  }

  private refuse(query: Buffer, question: WireQuestion): Buffer | null {
    this.outcomes.count("refused");
    this.log.debug({ name: question.name, type: typeName(question.type) }, "DNS query refused by policy");
    return errorReply(query, RCODE_REFUSED);
  }

  private async proxied(query: Buffer, question: WireQuestion, ctx: QueryContext, policy: DnsPolicy): Promise<Buffer | null> {
    const proxy = this.opts.proxy;
    if (!proxy) {
      if (!this.proxyMissingLogged) {
        this.proxyMissingLogged = true;
        this.log.warn("DNS proxy mode without a control-plane proxy; answering SERVFAIL");
      }
      this.outcomes.count("servfail");
      return errorReply(query, RCODE_SERVFAIL);
    }
    if (!question.plainLabels) return this.refuse(query, question);
    const decision = await withTimeout(
      proxy.queryDns(this.opts.attachmentId, question.name, typeName(question.type)),
      this.opts.proxyTimeoutMs,
      () => new NetfenceError("DEADLINE_EXCEEDED", "control plane did not answer QueryDns in time", { details: { name: question.name, timeoutMs: this.opts.proxyTimeoutMs } }),
    );
    if (!decision.allow) return this.refuse(query, question);
    this.outcomes.count("allowed");
    if (decision.ips.length === 0) {
      if (!decision.addToFilter) return this.forward(query, question, ctx, policy);
      // The control plane allowed the queried name; the chain only has to escape local deny rules.
      const rules = compileDomainRules(policy);
      return this.forwardAndAllow(query, question, ctx, policy, (name) => matchDomain(rules, name) === "deny");
    }
    return this.ownAnswer(query, question, ctx, decision.ips, decision.ttlSeconds, decision.addToFilter);
  }

  /** Answers with the control plane's own IPs (those of the asked family; other types get NODATA). */
  private async ownAnswer(query: Buffer, question: WireQuestion, ctx: QueryContext, ips: readonly string[], ttlSeconds: number, addToFilter: boolean): Promise<Buffer | null> {
    const wanted = question.type === TYPE_A ? 4 : question.type === TYPE_AAAA ? 6 : 0;
    const addresses: Cidr[] = [];
    const records: { family: 4 | 6; bytes: Uint8Array; address: string }[] = [];
    for (const ip of ips) {
      const family = net.isIP(ip);
      if ((family !== 4 && family !== 6) || family !== wanted) continue;
      if (records.length >= this.opts.quotas.answerRecords) {
        this.outcomes.count("records-trimmed");
        continue;
      }
      // Where the control plane's addresses enter: parsed (validated) once, bytes from here on.
      const address = parseCidr(ip);
      addresses.push(address);
      records.push({ family, bytes: address.addr, address: formatAddr(family, address.addr) });
    }
    const ttl = Math.max(0, Math.floor(ttlSeconds));
    let kept = records;
    if (addToFilter && addresses.length > 0) {
      if (this.stopped) return null;
      const outcome = await this.insert(question.name, addresses, ttl);
      if (this.overLearnedQuota(outcome, question.name)) return errorReply(query, RCODE_SERVFAIL);
      if (outcome !== null && outcome.refused.length > 0) {
        const refused = new Set(outcome.refused.map((r) => formatAddr(r.address.family, r.address.addr)));
        kept = records.filter((r) => !refused.has(r.address));
        this.outcomes.count("addresses-refused", records.length - kept.length);
      }
    }
    return addressReply(query, kept, ttl);
  }

  /** Upstream queries in flight for this attachment, bounded by its quota. */
  private async upstream(query: Buffer, question: WireQuestion, ctx: QueryContext, policy: DnsPolicy): Promise<Buffer | "servfail"> {
    if (this.upstreamInFlight >= this.opts.quotas.inflight) {
      this.outcomes.count("quota-inflight");
      this.event("dns-quota-inflight", ctx, `inflight=${this.opts.quotas.inflight}`);
      return "servfail";
    }
    this.upstreamInFlight++;
    try {
      return await forwardQuery(this.upstreams(policy), query, ctx.viaTcp, this.opts.timeoutMs);
    } catch (err) {
      const e = NetfenceError.from(err, "UNAVAILABLE");
      this.outcomes.count("servfail");
      this.log.debug({ err: { code: e.code, message: e.message, details: e.details } }, "DNS upstream failed; answering SERVFAIL");
      return "servfail";
    } finally {
      this.upstreamInFlight--;
    }
  }

  private async forward(query: Buffer, question: WireQuestion, ctx: QueryContext, policy: DnsPolicy): Promise<Buffer | null> {
    const reply = await this.upstream(query, question, ctx, policy);
    return reply === "servfail" ? errorReply(query, RCODE_SERVFAIL) : reply;
  }

  /** `reply`, stored in the answer cache when it may be (answer-cache.ts decides). */
  private cached(query: Buffer, question: WireQuestion, ctx: QueryContext, at: CacheGeneration, reply: Buffer | null, heldUntilMs: number): Buffer | null {
    if (reply !== null && !this.stopped) this.cache.store(query, question, ctx.viaTcp, reply, at, heldUntilMs);
    return reply;
  }

  /** `at`: the answer cache's generation when the query was decided (null: not cached, proxy mode). */
  private async forwardAndAllow(
    query: Buffer, question: WireQuestion, ctx: QueryContext, policy: DnsPolicy, isDenied: (name: string) => boolean, at: CacheGeneration | null = null,
  ): Promise<Buffer | null> {
    const keep = (reply: Buffer | null, heldUntilMs: number): Buffer | null => (at === null ? reply : this.cached(query, question, ctx, at, reply, heldUntilMs));
    const reply = await this.upstream(query, question, ctx, policy);
    if (reply === "servfail") return errorReply(query, RCODE_SERVFAIL);
    // Only NOERROR answers with records can carry addresses; skip the decode otherwise.
    if ((reply.readUInt16BE(2) & 0xf) !== 0 || reply.readUInt16BE(6) === 0) return reply;
    const answers = readAnswerRecords(reply);
    if (answers === null) {
      this.outcomes.count("servfail");
      this.log.warn({ name: question.name }, "DNS upstream sent an answer that cannot be parsed; answering SERVFAIL");
      return errorReply(query, RCODE_SERVFAIL);
    }
    const found = answerAddresses(answers, question.name, isDenied, this.opts.quotas.answerRecords);
    if (found.deniedName !== null) {
      this.outcomes.count("refused-cname");
      this.logCname(question.name, found.chain, "a name in the CNAME chain is denied; answer refused");
      return errorReply(query, RCODE_REFUSED);
    }
    if (found.broken) {
      this.outcomes.count("cname-broken");
      this.logCname(question.name, found.chain, "CNAME chain loops or is too long; its addresses are not added");
      return reply;
    }
    if (found.addresses.length === 0) return keep(reply, Infinity);
    if (this.stopped) return null; // detached meanwhile: nothing to open, nobody to answer
    const outcome = await this.insert(question.name, found.addresses, found.ttlSeconds);
    if (this.overLearnedQuota(outcome, question.name)) return errorReply(query, RCODE_SERVFAIL);
    const refused = outcome?.refused.length ?? 0;
    if (refused === 0 && found.overQuota === 0) return keep(reply, this.inserter.heldUntil(question.name, found.addresses));
    // Rare path: the workload gets only the addresses it may reach.
    const refusedSet = new Set(outcome?.refused.map((r) => formatAddr(r.address.family, r.address.addr)) ?? []);
    const kept = new Set(found.addresses.map((a) => formatAddr(a.family, a.addr)).filter((a) => !refusedSet.has(a)));
    if (refused > 0) this.outcomes.count("addresses-refused", refused);
    if (found.overQuota > 0) this.outcomes.count("records-trimmed", found.overQuota);
    const rewritten = keepAddressRecords(reply, kept);
    if (rewritten === null) {
      this.outcomes.count("servfail");
      return errorReply(query, RCODE_SERVFAIL);
    }
    return keep(rewritten, this.inserter.heldUntil(question.name, found.addresses, refusedSet));
  }

  /** True when the sink refused an address for the learned-address quota (the reply is SERVFAIL). */
  private overLearnedQuota(outcome: LearnOutcome | null, name: string): boolean {
    // The event (dns-quota-learned, with the address) is the learned-address writer's.
    if (outcome?.refused.some((r) => r.reason === QUOTA_REFUSAL) !== true) return false;
    this.outcomes.count("quota-learned");
    this.log.debug({ name }, "over the learned-address quota; answering SERVFAIL");
    return true;
  }

  /** Info once per name (bounded memory), debug after: a CDN name may be asked thousands of times. */
  private logCname(name: string, chain: readonly string[], message: string): void {
    if (this.cnameLogged.has(name)) {
      this.log.debug({ name, chain }, message);
      return;
    }
    if (this.cnameLogged.size >= 1024) this.cnameLogged.clear();
    this.cnameLogged.add(name);
    this.log.info({ name, chain }, message);
  }

  private async insert(name: string, addresses: readonly Cidr[], answerTtl: number): Promise<LearnOutcome | null> {
    return (await this.inserter.ensure(name, addresses, answerTtl)) ?? null;
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
        entry = { address, upstream: this.opts.pool.acquire(address) };
        this.acquired.set(address.key, entry);
      }
      list.push(entry.upstream);
    }
    this.upstreamsFor = { key: texts, list };
    return list;
  }
}
