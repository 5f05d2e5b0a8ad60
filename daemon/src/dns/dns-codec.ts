/**
 * The two DNS decoders the query pipeline uses (the question of a query, the A/AAAA/CNAME answers
 * of a reply). Production: the hand-written dns-wire.ts. A benchmark may set
 * NETFENCE_BENCH_DNS_CODEC=dns-packet in the daemon's environment to run the very same daemon
 * path on the dns-packet library instead (bench/dns/codec-bench.ts, docs/benchmarks.md); the
 * choice is made once, when the module loads.
 */
import * as wire from "./dns-wire.js";
import * as packet from "./dns-wire-packet.js";

export const DNS_CODEC_ENV = "NETFENCE_BENCH_DNS_CODEC";

const codec = process.env[DNS_CODEC_ENV] === "dns-packet" ? packet : wire;

export const readQuestion: (msg: Buffer) => wire.WireQuestion | null = codec.readQuestion;
export const readAnswerRecords: (msg: Buffer) => wire.WireRecord[] | null = codec.readAnswerRecords;
