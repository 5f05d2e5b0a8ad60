import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCidr, type RuleScope } from "@netfence/proto/parse";
import { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry } from "../../../daemon/src/policy/compiled.js";
import type { AttachmentPolicy, CidrRule } from "../../../daemon/src/policy/policy.js";
import { EMPTY_DNS_POLICY } from "../../../daemon/src/policy/policy.js";
import { PolicyState } from "../../../daemon/src/policy/policy-state.js";
import { adoptedPolicy } from "../../../daemon/src/attachments/orphan.js";
import { noDns } from "../../helpers/kernel-filter-fixture.js";
import { fixture, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { bruteForce } from "../../unit/datapath/scope-sim.js";

// Session 21: an orphan (pins the state store lost) adopted from its pins keeps its scoped rules.
// A cgroup attachment holds, under an unscoped allow of 127.0.0.0/8, a scoped deny (127.0.0.1
// tcp/P2 for everyone, tcp/P3 for user nobody) and, under an unscoped deny of 127.0.1.0/24, a
// scoped allow (127.0.1.2 tcp/P1 for user daemon). The daemon's memory is lost (a new loader on the
// same pins); the policy is read back as `netfenced adopt` does (DUMP → adoptedPolicy) and written
// again as the adopted attachment's next REPLACE would (PolicyState → compile → REPLACE). Processes
// of two users in the cgroup connect to every (address, port) before and after: the same answers,
// and the answers the rules say (scope-sim.ts's brute-force matcher). Before session 21 DUMP dropped
// the scope table: after the REPLACE 127.0.0.1:P2 and P3 were open (a leak) and 127.0.1.2:P1 closed.
const P1 = 7461;
const P2 = 7462;
const P3 = 7463;
const A = { uid: 1, gid: 1 }; // daemon
const B = { uid: 65534, gid: 65534 }; // nobody
const TCP = 6;
const ADDRS = ["127.0.0.1", "127.0.1.2"];

const scope = (s: Partial<RuleScope>): RuleScope => ({ protocols: [], ports: [], users: [], groups: [], ...s });
const cidr = (text: string, s?: RuleScope): CidrRule => (s === undefined ? { cidr: parseCidr(text), expiresAtMs: null } : { cidr: parseCidr(text), expiresAtMs: null, scope: s });
const POLICY: AttachmentPolicy = {
  mode: "allowlist", audit: false, dns: EMPTY_DNS_POLICY,
  allowCidrs: [cidr("127.0.0.0/8"), cidr("127.0.1.2/32", scope({ protocols: [TCP], ports: [{ from: P1, to: P1 }], users: [{ id: A.uid, name: "daemon" }] }))],
  denyCidrs: [
    cidr("127.0.1.0/24"),
    cidr("127.0.0.1/32", scope({ protocols: [TCP], ports: [{ from: P2, to: P2 }] })),
    cidr("127.0.0.1/32", scope({ protocols: [TCP], ports: [{ from: P3, to: P3 }], users: [{ id: B.uid, name: "nobody" }] })),
  ],
};

describe("an orphan adopted from its pins keeps its scoped rules (real kernel, cgroup, two users)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let cg: string;
  let pinRoot: string;
  let filter: KernelFilter | null = null;
  const id = `t-oadopt-${process.pid}`;
  let expected: Map<string, boolean>;

  async function connectAs(who: { uid: number; gid: number }, ip: string, port: number, timeoutMs: number): Promise<boolean> {
    const r = await sb.exec(
      net.workloadNs,
      ["setpriv", `--reuid=${who.uid}`, `--regid=${who.gid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", ip, String(port), String(timeoutMs)],
      { cgroup: cg, allowFail: true, timeoutMs: timeoutMs + 5000 },
    );
    return r.stdout.trim() === "ok";
  }

  /** The (user, address, port) whose real connect does not get the rules' answer: "key: got open/closed". */
  async function wrong(): Promise<string[]> {
    const got = await answers();
    return [...expected].filter(([k, want]) => got.get(k) !== want).map(([k]) => `${k}: got ${got.get(k) === true ? "open" : "closed"}`);
  }

  /** Every (user, address, port): what real connects get. */
  async function answers(): Promise<Map<string, boolean>> {
    const out = new Map<string, boolean>();
    for (const who of [A, B]) {
      for (const ip of ADDRS) {
        for (const port of [P1, P2, P3]) {
          const key = `uid ${who.uid} -> ${ip}:${port}`;
          const want = expected.get(key);
          out.set(key, await connectAs(who, ip, port, want === false ? 600 : 2000));
        }
      }
    }
    return out;
  }

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("noad");
    net = await sb.network();
    for (const p of [P1, P2, P3]) await sb.echoServer(net.workloadNs, p);
    cg = await sb.cgroup();
    pinRoot = await sb.pinRoot();
    filter = await KernelFilter.start({ pinRoot });
    const compiled = new PolicyState(POLICY).compile(Date.now());
    await filter.attach({ id, slot: 49, target: { kind: "cgroup", path: cg }, dns: noDns }, compiled);
    expected = new Map();
    const entries: FilterEntry[] = [...compiled.entries];
    for (const who of [A, B]) {
      for (const ip of ADDRS) {
        for (const port of [P1, P2, P3]) {
          const dst = Uint8Array.from(ip.split(".").map(Number));
          expected.set(`uid ${who.uid} -> ${ip}:${port}`, bruteForce(entries, { dst, proto: TCP, port, uid: who.uid, gid: who.gid }, Date.now()).action === "allow");
        }
      }
    }
  }, 120_000);

  afterAll(async () => {
    if (filter !== null) {
      await filter.detach(id).catch(() => undefined);
      await filter.close().catch(() => undefined);
    }
    await sb?.cleanup();
  }, 60_000);

  it("before: the rules' answers (the scoped deny and the scoped allow hold)", async () => {
    // Spelled out once: the cases the issue names.
    expect(expected.get(`uid ${A.uid} -> 127.0.0.1:${P2}`)).toBe(false);
    expect(expected.get(`uid ${B.uid} -> 127.0.0.1:${P3}`)).toBe(false);
    expect(expected.get(`uid ${A.uid} -> 127.0.0.1:${P3}`)).toBe(true);
    expect(expected.get(`uid ${A.uid} -> 127.0.1.2:${P1}`)).toBe(true);
    expect(expected.get(`uid ${B.uid} -> 127.0.1.2:${P1}`)).toBe(false);
    const w = await wrong();
    expect(w, w.join("; ")).toEqual([]);
  });

  it("state lost, adopted from the pins, its policy written again: the same answers", async () => {
    await filter!.close(); // the daemon that knew the policy is gone; the pins keep enforcing
    filter = await KernelFilter.start({ pinRoot });
    const pinned = await filter.inspect(id); // DUMP, as `netfenced adopt` reads an orphan
    expect(pinned.scopeProblem ?? null).toBeNull();
    const adopted = adoptedPolicy(id, pinned);
    expect(adopted.denyCidrs.filter((r) => r.scope !== undefined)).toHaveLength(2);
    expect(adopted.allowCidrs.filter((r) => r.scope !== undefined)).toHaveLength(1);
    // The adopted attachment's next REPLACE (a restart re-writes a scoped policy; any change replaces it).
    await filter.replacePolicy(id, new PolicyState(adopted).compile(Date.now()));
    const w = await wrong();
    expect(w, w.join("; ")).toEqual([]);
  });
});
