/**
 * The DNS benchmark's in-process part: what one name decision costs against 10k domain rules
 * (`nameAllowed` as the server calls it, and the uncached suffix walk behind it).
 */
import { compileDomainRules, nameAllowed, walkSuffixes } from "@netfence/proto/domain-match";
import type { DnsPolicy, DomainRule } from "../../daemon/src/policy/policy.js";

/** 10k domain rules: *.bench.test plus 9,999 others, some deny, as an operator might have. */
export function tenKRulesPolicy(): DnsPolicy {
  const allow: DomainRule[] = [{ domain: "bench.test", includeSubdomains: true }];
  const deny: DomainRule[] = [];
  for (let i = 1; i < 10_000; i++) {
    if (i % 4 === 0) deny.push({ domain: `blocked${i}.svc${i % 500}.other.test`, includeSubdomains: i % 8 === 0 });
    else allow.push({ domain: `svc${i}.other.test`, includeSubdomains: i % 2 === 0 });
  }
  return { mode: "allowlist", allowDomains: allow, denyDomains: deny, upstreams: [] };
}

export interface DecisionResult {
  rules: number;
  compileMs: number;
  cached: DecisionTiming;
  uncached: DecisionTiming;
}

/** Per decision: wall-clock time and process CPU time (the latter is not inflated by other tenants' load). */
export interface DecisionTiming {
  wallNs: number;
  cpuNs: number;
  wallRunsNs: number[];
  cpuRunsNs: number[];
}

function timeDecisions(fn: (name: string) => boolean, names: readonly string[]): DecisionTiming {
  let sink = 0;
  for (let i = 0; i < 300_000; i++) if (fn(names[i & 1023]!)) sink++;
  const wallRunsNs: number[] = [];
  const cpuRunsNs: number[] = [];
  const iterations = 2_000_000;
  for (let r = 0; r < 5; r++) {
    const cpu0 = process.cpuUsage();
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (fn(names[i & 1023]!)) sink++;
    wallRunsNs.push(Number(process.hrtime.bigint() - start) / iterations);
    const cpu = process.cpuUsage(cpu0);
    cpuRunsNs.push(((cpu.user + cpu.system) * 1000) / iterations);
  }
  if (sink === 0) throw new Error("decision benchmark allowed nothing");
  return { wallNs: median(wallRunsNs), cpuNs: median(cpuRunsNs), wallRunsNs, cpuRunsNs };
}

export const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length % 2 ? sorted[(sorted.length - 1) / 2]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
};

/**
 * Cost of a name decision against 10k rules: `nameAllowed` as the server calls it (compiled
 * rules cached per policy, verdict cache warm) and the uncached suffix walk behind it.
 */
export function measureDecision(): DecisionResult {
  const policy = tenKRulesPolicy();
  const t0 = process.hrtime.bigint();
  const compiled = compileDomainRules(policy);
  const compileMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const names: string[] = [];
  for (let i = 0; i < 1024; i++) {
    switch (i % 4) {
      case 0: names.push(`w${i}.bench.test`); break; // allowed via subtree, 3 labels
      case 1: names.push(`api.v2.svc${i * 7 % 10_000}.other.test`); break; // deeper name
      case 2: names.push(`blocked${i * 4}.svc${(i * 4) % 500}.other.test`); break;
      default: names.push(`unlisted${i}.example.com`);
    }
  }
  return {
    rules: policy.allowDomains.length + policy.denyDomains.length, compileMs,
    cached: timeDecisions((n) => nameAllowed(policy, n), names),
    uncached: timeDecisions((n) => walkSuffixes(compiled.byName, n) === "allow", names),
  };
}
