import fc from "fast-check";
import dnsPacket from "dns-packet";
import type { Answer } from "dns-packet";
import pino from "pino";
import {
  HEADER_LENGTH, addressReply, errorReply, firstQuestionEnd, isResponse, readAnswerRecords, readQuestion, sameQuestion,
} from "../../daemon/src/dns/dns-wire.js";
import { answerAddresses } from "../../daemon/src/dns/answer-addresses.js";
import { keepAddressRecords } from "../../daemon/src/dns/reply-rewrite.js";
import { DnsQueryHandler } from "../../daemon/src/dns/dns-query.js";
import { DEFAULT_DNS_QUOTAS } from "../../daemon/src/dns/dns-quotas.js";
import type { LearnedAddressSink, LearnedItem, LearnOutcome, RefusedAddress } from "../../daemon/src/dns/learned-sink.js";
import { formatAddr } from "@netfence/proto/parse";
import { UpstreamPool, type UdpUpstream } from "../../daemon/src/dns/upstream.js";
import type { UpstreamAddress } from "../../daemon/src/dns/upstream.js";
import type { DnsPolicy } from "../../daemon/src/policy/policy.js";

/**
 * Properties of everything the DNS server runs on untrusted bytes (a workload's queries, an
 * upstream's replies), for fast-check: the bench runs them on ≥ 1M inputs (bench/fuzz/run.ts),
 * the tests on a few thousand with a fixed seed (test/unit/fuzz/). A property fails on any thrown
 * error (a crash of the daemon's query path) or on a broken invariant.
 */

// ------------------------------------------------------------------ arbitraries

const label = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[a-z0-9_-]{1,12}$/) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 63 }) },
  { weight: 1, arbitrary: fc.constantFrom("xn--bcher-kva", "*", ".", "a.b", "\u0000", "é") },
);
export const domainName = fc.array(label, { minLength: 0, maxLength: 6 }).map((ls) => ls.join("."));
const qtype = fc.constantFrom("A", "AAAA", "TXT", "CNAME", "MX", "ANY", "NULL", "SRV", "PTR") as fc.Arbitrary<dnsPacket.RecordType>;
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join("."));
const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(":"));
const special = fc.constantFrom("169.254.169.254", "127.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "fe80::1", "::ffff:10.0.0.1", "fd00:ec2::254");

const POOL = ["www.test", "cdn.test", "a.b.test", "edge.evil", "x.other", "mirror.other"];

function answerArb(names: string[]): fc.Arbitrary<Answer> {
  const owner = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...names) }, { weight: 1, arbitrary: domainName });
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ type: fc.constant("A" as const), name: owner, ttl: fc.nat(), data: fc.oneof(ipv4, special.filter((s) => !s.includes(":"))) }) },
    { weight: 3, arbitrary: fc.record({ type: fc.constant("AAAA" as const), name: owner, ttl: fc.nat(), data: fc.oneof(ipv6, special.filter((s) => s.includes(":"))) }) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant("CNAME" as const), name: owner, ttl: fc.nat(), data: fc.oneof(fc.constantFrom(...names, ...POOL), domainName) }) },
    { weight: 1, arbitrary: fc.record({ type: fc.constant("TXT" as const), name: owner, ttl: fc.nat(), data: fc.string({ maxLength: 40 }) }) },
  ) as fc.Arbitrary<Answer>;
}

/** Well-formed bytes, then damaged: random byte flips, truncation, inserted compression pointers. */
function mutated(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(base, fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }), fc.option(fc.nat(), { nil: undefined }), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 2 }))
    .map(([buf, flips, cut, pointers]) => {
      let out = Buffer.from(buf);
      for (const [at, v] of flips) if (out.length > 0) out[at % out.length] = v;
      for (const [at, target] of pointers) {
        if (out.length < 2) continue;
        const i = at % (out.length - 1);
        out[i] = 0xc0 | (target >> 6);
        out[i + 1] = target & 0xff;
      }
      if (cut !== undefined && out.length > 0) out = out.subarray(0, cut % (out.length + 1));
      return out;
    });
}

function tryEncode(p: dnsPacket.Packet): Buffer {
  try {
    return dnsPacket.encode(p);
  } catch {
    return Buffer.alloc(0); // dns-packet refuses some generated values (e.g. non-ASCII labels)
  }
}

const validQuery = fc
  .record({ id: fc.nat(0xffff), name: domainName, type: qtype, rd: fc.boolean() })
  .map((q) => tryEncode({ type: "query", id: q.id, flags: q.rd ? dnsPacket.RECURSION_DESIRED : 0, questions: [{ type: q.type, name: q.name, class: "IN" }] }));

const validResponse = fc
  .record({ id: fc.nat(0xffff), name: domainName, names: fc.array(domainName, { minLength: 1, maxLength: 4 }) })
  .chain((r) =>
    fc.array(answerArb([r.name, ...r.names]), { maxLength: 40 }).map((answers) =>
      tryEncode({ type: "response", id: r.id, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ type: "A", name: r.name, class: "IN" }], answers }),
    ),
  );

/** Untrusted DNS bytes: random, well-formed queries and responses, and damaged ones. */
export const dnsBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
  validQuery,
  validResponse,
  mutated(validQuery),
  mutated(validResponse),
);

// ------------------------------------------------------------------ the wire parser

export interface PropertyFailure {
  readonly input: string;
  readonly error: string;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`invariant broken: ${what}`);
}

/** Every raw-wire function the server applies to untrusted bytes: no throw, invariants hold. Returns what parsed. */
export function wireProperty(msg: Buffer): "question" | "answers" | "neither" {
  const end = firstQuestionEnd(msg);
  check(end === -1 || (end > HEADER_LENGTH && end <= msg.length), `firstQuestionEnd ${end} of ${msg.length}`);
  const q = readQuestion(msg);
  if (q !== null) {
    check(q.end === end && q.name === q.name.toLowerCase(), "readQuestion end/name");
    check(q.type >= 0 && q.type <= 0xffff && q.qclass >= 0 && q.qclass <= 0xffff, "readQuestion type/class range");
  }
  for (const rcode of [1, 2, 5]) {
    const r = errorReply(msg, rcode);
    if (msg.length < HEADER_LENGTH) check(r === null, "errorReply of a short message");
    else {
      check(r !== null && r.length >= HEADER_LENGTH && r.readUInt16BE(0) === msg.readUInt16BE(0), "errorReply id");
      check((r!.readUInt16BE(2) & 0x800f) === (0x8000 | rcode), "errorReply QR/rcode");
      check(r!.length <= Math.max(HEADER_LENGTH, msg.length), "errorReply never larger than the query");
    }
  }
  const records = msg.length >= HEADER_LENGTH ? readAnswerRecords(msg) : null;
  if (records !== null) {
    for (const r of records) {
      check(r.name === r.name.toLowerCase(), "record name lower case");
      if (r.type === "A") check(r.address.family === 4 && r.address.addr.length === 4 && r.address.prefixLen === 32, "A address is a /32");
      if (r.type === "AAAA") check(r.address.family === 6 && r.address.addr.length === 16 && r.address.prefixLen === 128, "AAAA address is a /128");
    }
    const found = answerAddresses(records, q?.name ?? "x", (n) => n.endsWith(".evil"), 32);
    check(found.addresses.length <= 32, "answer records quota");
    check(found.deniedName === null || found.addresses.length === 0, "a denied chain opens nothing");
  }
  if (end > 0) {
    check(sameQuestion(msg, end, msg), "sameQuestion with itself");
    const reply = addressReply(msg, [{ family: 4, bytes: Uint8Array.of(192, 0, 2, 1) }], 60);
    check(reply !== null && readAnswerRecords(reply)?.length === 1, "addressReply parses back");
  }
  const kept = keepAddressRecords(msg, new Set(["192.0.2.1"]));
  if (kept !== null) {
    const back = readAnswerRecords(kept);
    if (back !== null) for (const r of back) check(r.type === "CNAME" || formatAddr(r.address.family, r.address.addr) === "192.0.2.1", "keepAddressRecords kept only the kept set");
  }
  return records !== null && records.length > 0 ? "answers" : q !== null ? "question" : "neither";
}

// ------------------------------------------------------------------ the server's answer(), end to end

/**
 * An upstream that answers with the fuzzed reply, no sockets. The fuzzed answer section is put
 * behind the query's own question (so most replies get past the question match), and the real
 * UdpUpstream's acceptance rules apply: shorter than a header, not a response, or another question
 * → dropped (the query times out), as on the wire.
 */
class ScriptedUpstream {
  reply: Buffer | "timeout" = "timeout";
  constructor(readonly address: UpstreamAddress) {}
  get pending(): number {
    return 0;
  }
  query(query: Buffer): Promise<Buffer> {
    const qEnd = firstQuestionEnd(query);
    if (this.reply === "timeout" || qEnd < 0) return Promise.reject(new Error("timeout"));
    let r = Buffer.from(this.reply);
    if (r.length >= HEADER_LENGTH) {
      const rEnd = firstQuestionEnd(r);
      const tail = r.subarray(rEnd > 0 ? rEnd : HEADER_LENGTH);
      r = Buffer.concat([r.subarray(0, HEADER_LENGTH), query.subarray(HEADER_LENGTH, qEnd), tail]);
      r.writeUInt16BE(1, 4);
      r.writeUInt16BE(query.readUInt16BE(0), 0); // the pool gives the client's id back
    }
    if (r.length < HEADER_LENGTH || !isResponse(r) || !sameQuestion(query, qEnd, r)) return Promise.reject(new Error("timeout"));
    return Promise.resolve(r);
  }
  close(): void {}
}

class ScriptedPool extends UpstreamPool {
  readonly upstream = new ScriptedUpstream({ host: "192.0.2.53", port: 53, family: 4, key: "192.0.2.53:53" });
  override acquire(): UdpUpstream {
    return this.upstream as unknown as UdpUpstream;
  }
  override release(): void {}
}

/** Refuses a fuzzed subset of addresses (as the rebinding guard would), else allows. */
class FuzzSink implements LearnedAddressSink {
  refuse: (address: string) => string | null = () => null;
  epoch(): number {
    return 0;
  }
  async write(_id: string, items: readonly LearnedItem[]): Promise<LearnOutcome> {
    const refused: RefusedAddress[] = [];
    for (const item of items) {
      for (const a of item.addresses) {
        const reason = this.refuse(formatAddr(a.family, a.addr));
        if (reason !== null) refused.push({ name: item.name, address: a, reason });
      }
    }
    return { refused };
  }
}

export interface HandlerHarness {
  run(query: Buffer, reply: Buffer | "timeout", mode: DnsPolicy["mode"], refuseSpecial: boolean): Promise<void>;
  /** The handler's counts by outcome (how much of the pipeline the inputs reached). */
  outcomes(): Readonly<Record<string, number>>;
  stop(): void;
}

/**
 * The whole per-query pipeline (quotas, decision, forward, CNAME chain, insert, reply rewrite)
 * against a scripted upstream and learned-address sink. Property: never throws; a reply carries the query's
 * id; no address the sink refused appears in the reply's answer section.
 */
export function handlerHarness(): HandlerHarness {
  let mode: DnsPolicy["mode"] = "denylist";
  const pool = new ScriptedPool();
  const sink = new FuzzSink();
  const handler = new DnsQueryHandler({
    attachmentId: "fuzz",
    listen: { host: "127.0.0.1", port: 53 },
    getPolicy: () => ({ mode, allowDomains: [{ domain: "test", includeSubdomains: true }], denyDomains: [{ domain: "evil", includeSubdomains: true }], upstreams: [] }),
    defaultUpstreams: ["192.0.2.53:53"],
    learned: sink,
    minTtlSeconds: 300,
    answerCacheEntries: 0, // getPolicy makes a new policy object per query, which would empty it anyway
    logger: pino({ level: "silent" }),
    pool,
    timeoutMs: 1000,
    proxyTimeoutMs: 1000,
    quotas: { ...DEFAULT_DNS_QUOTAS, qps: 1_000_000_000, answerRecords: 8 },
    refuseTypes: new Set([16]),
    report: () => undefined,
  });
  return {
    async run(query, reply, m, refuseSpecial) {
      mode = m === "proxy" ? "denylist" : m; // proxy needs a control plane; its code paths share the rest
      pool.upstream.reply = reply;
      const refusedSet = new Set<string>();
      sink.refuse = (address) => {
        if (refuseSpecial && (address.startsWith("169.254.") || address.startsWith("127.") || address.includes("::"))) {
          refusedSet.add(address);
          return "metadata";
        }
        return null;
      };
      const out = await handler.answer(query, { viaTcp: false, src: "127.0.0.1", srcPort: 5353 });
      if (out === null) return;
      check(out.length >= HEADER_LENGTH, "reply has a header");
      check(query.length >= 2 && out.readUInt16BE(0) === query.readUInt16BE(0), "reply id = query id");
      check((out.readUInt16BE(2) & 0x8000) !== 0, "reply has QR set");
      const records = readAnswerRecords(out);
      if (records !== null) for (const r of records) check(r.type === "CNAME" || !refusedSet.has(formatAddr(r.address.family, r.address.addr)), `refused address left in the reply`);
    },
    outcomes: () => handler.outcomes.snapshot(),
    stop: () => handler.stop(),
  };
}

const poolName = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...POOL) }, { weight: 1, arbitrary: domainName });

/** A query and an upstream reply about the same names (so chains, refusals and rewrites are reached), often damaged. */
export const handlerInput = fc
  .record({
    id: fc.nat(0xffff),
    name: poolName,
    type: fc.oneof({ weight: 5, arbitrary: fc.constantFrom("A", "AAAA") }, { weight: 1, arbitrary: qtype }) as fc.Arbitrary<dnsPacket.RecordType>,
    mode: fc.constantFrom("disabled", "allowlist", "denylist") as fc.Arbitrary<DnsPolicy["mode"]>,
    refuseSpecial: fc.boolean(),
  })
  .chain((q) => {
    const query = tryEncode({ type: "query", id: q.id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: q.type, name: q.name, class: "IN" }] });
    const reply = fc
      .tuple(fc.array(fc.oneof({ weight: 3, arbitrary: answerArb([q.name]) }, { weight: 1, arbitrary: answerArb(POOL) }), { maxLength: 40 }), fc.constantFrom(0, 0, 0, 2, 3, 5))
      .map(([answers, rcode]) => tryEncode({ type: "response", id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | rcode, questions: [{ type: q.type, name: q.name, class: "IN" }], answers }));
    return fc.record({
      query: fc.oneof({ weight: 4, arbitrary: fc.constant(query) }, { weight: 1, arbitrary: mutated(fc.constant(query)) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) }),
      reply: fc.oneof(
        { weight: 4, arbitrary: reply },
        { weight: 2, arbitrary: mutated(reply) },
        { weight: 1, arbitrary: fc.constant("timeout" as const) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
      ),
      mode: fc.constant(q.mode),
      refuseSpecial: fc.constant(q.refuseSpecial),
    });
  });
