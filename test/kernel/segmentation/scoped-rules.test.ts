import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry, KernelPacketEvent } from "../../../daemon/src/datapath/filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, interfaceSpec, noDns, policy, sleep } from "../../helpers/kernel-filter-fixture.js";
import { KIND, SCOPE_FLAG, TCP, UDP, scopeWire, scopedEntry } from "../../helpers/scope-wire-fixture.js";
import { fixture, probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// Issue 15, layout 6: scoped entries (protocol, destination port, owner) decided by the kernel on real
// packets. The scope table is written from hand-built wire entries (test/helpers/scope-wire-fixture.ts),
// so this tests the kernel and loader against the contract in bpf/include/netfence.h on their own.
const PORT = 7401; // echo servers: 7401, 7402, 7405, 7408 in the server namespace; LPORT on the workload's loopback
const LPORT = 7411;

/** A probe run as uid/gid (setpriv, no supplementary groups) inside the cgroup. */
async function probeAs(sb: Sandbox, ns: string, cg: string, uid: number, gid: number, ip: string, port: number, timeoutMs = 1000): Promise<boolean> {
  const r = await sb.exec(
    ns,
    ["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", process.execPath, fixture("probe.mjs"), "tcp", ip, String(port), String(timeoutMs)],
    { cgroup: cg, allowFail: true, timeoutMs: timeoutMs + 5000 },
  );
  return r.stdout.trim() === "ok";
}

describe("scoped rules in the kernel: protocol, destination port and port range (interface attachment)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-scope-if-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("scpi", PORT);
    ({ sb, net, filter } = ctx);
    for (const p of [7402, 7405, 7408]) await sb.echoServer(net.serverNs, p);
    await filter.attach(interfaceSpec(id, 41, net.hostIf), policy("allowlist", []));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("allowlist: tcp/7401 passes and tcp/7402 is dropped to the same address; a port range; a udp-only rule", async () => {
    const [a, b] = net.serverIp4;
    await filter.replaceCompiled(id, policy("allowlist", []), [scopedEntry(`${a}/32`, 1, SCOPE_FLAG.ANY), scopedEntry(`${b}/32`, 2, SCOPE_FLAG.ANY)], scopeWire([
      { scope: 1, kind: KIND.ANY, proto: TCP, port: 7401, allow: true, ruleId: 20 },
      { scope: 1, kind: KIND.ANY, proto: TCP, port: 7404, portBits: 14, allow: true, ruleId: 21 }, // 7404-7407
      { scope: 2, kind: KIND.ANY, proto: UDP, port: 7401, allow: true, ruleId: 22 },
    ]));
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: 7401 }), "tcp/7401").toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: 7402, timeoutMs: 600 }), "tcp/7402").toBe(false);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: 7405 }), "tcp/7405 in 7404-7407").toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", a!, { port: 7408, timeoutMs: 600 }), "tcp/7408 outside the range").toBe(false);
    expect(await probe(sb, net.workloadNs, "icmp", a!, { timeoutMs: 600 }), "icmp (no rule)").toBe(false);
    expect(await probe(sb, net.workloadNs, "udp", b!, { port: 7401 }), "udp/7401").toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", b!, { port: 7401, timeoutMs: 600 }), "tcp/7401 to the udp-only address").toBe(false);
    const tables = await filter.exactTables(id);
    expect(tables.scopeCount).toBe(3);
    // LOOKUP (explain) evaluates the scope set for the packet asked about, as the program does.
    const addr = parseCidr(`${a}/32`).addr;
    const hit = await filter.lookup(id, 4, addr, { protocol: TCP, port: 7405, uid: null, gid: null });
    expect([hit.match?.allow, hit.match?.ruleId, hit.scoped?.scope, hit.scoped?.allow]).toEqual([true, 21, 1, true]);
    const miss = await filter.lookup(id, 4, addr, { protocol: TCP, port: 7402, uid: null, gid: null });
    expect([miss.match, miss.scopedSkipped, miss.depthExhausted]).toEqual([null, 1, false]);
  });

  it("denylist: a scoped deny drops only its port, an unscoped allow on the same prefix loses to it (deny wins)", async () => {
    const c = net.serverIp4[2]!;
    await filter.replaceCompiled(id, policy("denylist", []), [scopedEntry(`${c}/32`, 1, SCOPE_FLAG.ANY, { allow: true })], scopeWire([
      { scope: 1, kind: KIND.ANY, proto: TCP, port: 7402, deny: true, ruleId: 30 },
    ]));
    expect(await probe(sb, net.workloadNs, "tcp", c, { port: 7401 })).toBe(true);
    expect(await probe(sb, net.workloadNs, "tcp", c, { port: 7402, timeoutMs: 600 })).toBe(false);
    // The retired generation's scope entries were cleared: only this generation's one is left.
    await sleep(300);
    expect((await filter.exactTables(id)).scopeCount).toBe(1);
    const hits = await filter.ruleHits(id);
    expect(hits.find((h) => h.ruleId === 30)?.packets ?? 0).toBeGreaterThan(0);
  });

  it("a scoped prefix that does not match is stepped over; more than 4 such nested prefixes fail closed (policy-depth)", async () => {
    const d = net.serverIp4[3]!; // <subnet>.13
    const nested = (n: number) => [29, 28, 27, 26, 25].slice(0, n).map((len, i) => scopedEntry(`${d}/${len}`, i + 1, SCOPE_FLAG.ANY));
    const wire = (n: number) => scopeWire(Array.from({ length: n }, (_, i) => ({ scope: i + 1, kind: KIND.ANY, proto: TCP, port: 1, deny: true, ruleId: 40 + i })));
    await filter.replaceCompiled(id, policy("denylist", []), nested(3), wire(3));
    expect(await probe(sb, net.workloadNs, "tcp", d, { port: PORT }), "3 non-matching prefixes: the walk reaches the default").toBe(true);

    const events: KernelPacketEvent[] = [];
    const it = filter.events()[Symbol.asyncIterator]();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const n = await it.next();
        if (n.done) return;
        if (n.value.attachmentId === id) events.push(n.value);
      }
    })();
    try {
      await filter.replaceCompiled(id, policy("denylist", []), nested(5), wire(5));
      expect(await probe(sb, net.workloadNs, "tcp", d, { port: PORT, timeoutMs: 600 }), "5 nested non-matching prefixes: dropped").toBe(false);
      for (let i = 0; i < 30 && !events.some((e) => e.reason === "policy-depth"); i++) await sleep(100);
      expect(events.find((e) => e.reason === "policy-depth")?.dst).toBe(d);
      expect(events.find((e) => e.reason === "policy-depth")?.uid ?? null, "a TC attachment does not know the owner").toBeNull();
    } finally {
      reading = false;
      await it.return?.();
      await reader.catch(() => undefined);
    }
  });
});

describe("user and group rules (cgroup attachment, 127.0.0.1)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-scope-cg-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("scpc", PORT);
    ({ sb, net, filter } = ctx);
    await sb.echoServer(net.workloadNs, LPORT); // outside the cgroup, on the workload namespace's loopback too
    cg = await sb.cgroup();
    await filter.attach({ id, slot: 42, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", []));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("user A (uid 1, daemon) reaches the local TCP server, user B (uid 65534, nobody) and root do not; B's drop is reported with its uid", async () => {
    await filter.replaceCompiled(id, policy("allowlist", []), [scopedEntry("127.0.0.1/32", 1, SCOPE_FLAG.UID)], scopeWire([
      { scope: 1, kind: KIND.UID, principal: 1, proto: TCP, port: LPORT, allow: true, ruleId: 50 },
    ]));
    const events: KernelPacketEvent[] = [];
    const it = filter.events()[Symbol.asyncIterator]();
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const n = await it.next();
        if (n.done) return;
        if (n.value.attachmentId === id) events.push(n.value);
      }
    })();
    try {
      expect(await probeAs(sb, net.workloadNs, cg, 1, 1, "127.0.0.1", LPORT), "uid 1").toBe(true);
      expect(await probeAs(sb, net.workloadNs, cg, 65534, 65534, "127.0.0.1", LPORT, 600), "uid 65534").toBe(false);
      expect(await probeAs(sb, net.workloadNs, cg, 0, 0, "127.0.0.1", LPORT, 600), "uid 0").toBe(false);
      expect(await probeAs(sb, net.workloadNs, cg, 1, 1, "127.0.0.1", PORT + 100, 600), "uid 1, another port").toBe(false);
      for (let i = 0; i < 30 && !events.some((e) => e.uid === 65534); i++) await sleep(100);
      const ev = events.find((e) => e.uid === 65534);
      expect(ev, "an event for uid 65534").toBeDefined();
      expect([ev!.dst, ev!.dstPort, ev!.gid, ev!.verdict]).toEqual(["127.0.0.1", LPORT, 65534, "blocked"]);
    } finally {
      reading = false;
      await it.return?.();
      await reader.catch(() => undefined);
    }
  });

  it("a gid rule matches the socket's group (stamped at socket creation), not its user", async () => {
    await filter.replaceCompiled(id, policy("allowlist", []), [scopedEntry("127.0.0.1/32", 1, SCOPE_FLAG.GID)], scopeWire([
      { scope: 1, kind: KIND.GID, principal: 1, proto: TCP, port: LPORT, allow: true, ruleId: 51 },
    ]));
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 1, "127.0.0.1", LPORT), "uid 65534 gid 1").toBe(true);
    expect(await probeAs(sb, net.workloadNs, cg, 1, 65534, "127.0.0.1", LPORT, 600), "uid 1 gid 65534").toBe(false);
  });
});

describe("FilterEntry.scoped through the scope compiler (replacePolicy, upsertEntries, deleteEntries)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  const id = `t-scope-cc-${process.pid}`;
  const web = (ports: Array<[number, number]>, users: number[]): FilterEntry["scoped"] => [
    { scope: { protocols: [TCP], ports: ports.map(([from, to]) => ({ from, to })), users: users.map((u) => ({ id: u, name: null })), groups: [] }, allow: true, deny: false, ruleId: 70, expiresAtMs: null },
  ];

  beforeAll(async () => {
    ctx = await filterSandbox("scpx", PORT);
    ({ sb, net, filter } = ctx);
    await sb.echoServer(net.serverNs, 7402);
    await sb.echoServer(net.workloadNs, LPORT);
    cg = await sb.cgroup();
    const loopback: FilterEntry = { cidr: parseCidr("127.0.0.1/32"), allow: false, deny: false, expiresAtMs: null, scoped: web([[LPORT, LPORT]], [1]) };
    await filter.attach({ id, slot: 43, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", [loopback]));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("a scoped rule for user daemon on 127.0.0.1: uid 1 passes, uid 65534 does not", async () => {
    expect(await probeAs(sb, net.workloadNs, cg, 1, 1, "127.0.0.1", LPORT)).toBe(true);
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 65534, "127.0.0.1", LPORT, 600)).toBe(false);
  });

  it("a learned address (UPSERT) with a port-scoped rule, then deleted: its scope entries come and go", async () => {
    const a = net.serverIp4[0]!;
    const before = (await filter.exactTables(id)).scopeCount ?? 0;
    const learned: FilterEntry = { cidr: parseCidr(`${a}/32`), allow: false, deny: false, expiresAtMs: null, scoped: web([[7400, 7401]], []) };
    await filter.upsertEntries(id, [learned]);
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 65534, a, PORT), "tcp/7401 (in 7400-7401), any user").toBe(true);
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 65534, a, 7402, 600), "tcp/7402").toBe(false);
    expect((await filter.exactTables(id)).scopeCount).toBeGreaterThan(before);
    await filter.deleteEntries(id, [parseCidr(`${a}/32`)]);
    expect(await probeAs(sb, net.workloadNs, cg, 65534, 65534, a, PORT, 600), "deleted").toBe(false);
    expect((await filter.exactTables(id)).scopeCount).toBe(before);
  });
});
