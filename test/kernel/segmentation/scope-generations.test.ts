import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCidr } from "@netfence/proto/parse";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry, FilterPolicy, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, interfaceSpec, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// The scope table across generations (bpf/loader/generations.c, grace.c): REPLACE writes the
// inactive generation, the retired one is cleared once its grace period has passed — by the idle
// loop (the grace-period thread wakes it) or by the next REPLACE itself. The third REPLACE fills the
// generation the first one used: a scope entry of the first policy left there would come back and
// answer packets two policies later. Each policy carries a few thousand scope entries, so the
// retired generation is listed in several batches (LIST_CHUNK) and both generations together are
// larger than one batch.
const PORT = 7401; // echo servers on 7401, 7402, 7405, 7408 in the server namespace
const TCP = 6;
const FILLER = 3000;

const portRule = (port: number, ruleId: number): ScopedRuleEntry => ({
  scope: { protocols: [TCP], ports: [{ from: port, to: port }], users: [], groups: [] },
  allow: true,
  deny: false,
  ruleId,
  expiresAtMs: null,
});

/** `ip` may be reached on tcp `port` only; with `filler`, a second address gets that many one-port rules. */
function scopedPolicy(ip: string, port: number, other: string, filler: number, shift: number): FilterPolicy {
  const entries: FilterEntry[] = [{ cidr: parseCidr(`${ip}/32`), allow: false, deny: false, expiresAtMs: null, scoped: [portRule(port, 1)] }];
  if (filler > 0) {
    const rules = Array.from({ length: filler }, (_, i) => portRule(20000 + shift + i, 100 + i));
    entries.push({ cidr: parseCidr(`${other}/32`), allow: false, deny: false, expiresAtMs: null, scoped: rules });
  }
  return policy("allowlist", entries);
}

describe("scope entries of a policy two replaces ago never come back", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-scope-gen-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("scgen", PORT);
    ({ sb, net, filter } = ctx);
    for (const p of [7402, 7405, 7408]) await sb.echoServer(net.serverNs, p);
    await filter.attach(interfaceSpec(id, 43, net.hostIf), policy("allowlist", []));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  for (const pauseMs of [0, 1500]) {
    it(`${pauseMs ? "idle loop clears" : "back to back"}: only the last policy's scope entries answer (packets, LOOKUP, TABLES)`, async () => {
      const [a, other] = net.serverIp4;
      const addr = parseCidr(`${a}/32`).addr;
      await filter.replacePolicy(id, scopedPolicy(a!, 7402, other!, FILLER, 0));
      expect(await probe(sb, net.workloadNs, "tcp", a!, { port: 7402 }), "policy 1: tcp/7402").toBe(true);
      await filter.replacePolicy(id, scopedPolicy(a!, 7405, other!, FILLER, 1));
      if (pauseMs) await sleep(pauseMs);
      await filter.replacePolicy(id, scopedPolicy(a!, 7408, other!, 0, 0));
      expect(await probe(sb, net.workloadNs, "tcp", a!, { port: 7408 }), "policy 3: tcp/7408").toBe(true);
      for (const gone of [7402, 7405]) {
        expect(await probe(sb, net.workloadNs, "tcp", a!, { port: gone, timeoutMs: 600 }), `tcp/${gone} of an older policy`).toBe(false);
        const miss = await filter.lookup(id, 4, addr, { protocol: TCP, port: gone, uid: null, gid: null });
        expect(miss.match, `LOOKUP tcp/${gone}`).toBeNull();
      }
      const hit = await filter.lookup(id, 4, addr, { protocol: TCP, port: 7408, uid: null, gid: null });
      expect([hit.match?.allow, hit.scoped?.allow]).toEqual([true, true]);
      // The active generation holds exactly policy 3's one scope entry: none of policy 1's 3,001.
      expect((await filter.exactTables(id)).scopeCount).toBe(1);
    });
  }
});
