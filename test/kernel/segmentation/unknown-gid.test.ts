import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseCidr } from "@netfence/proto/parse";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import type { FilterEntry } from "../../../daemon/src/datapath/filter.js";
import { type FilterSandbox, closeFilterSandbox, filterSandbox, noDns, policy } from "../../helpers/kernel-filter-fixture.js";
import { TCP } from "../../helpers/scope-wire-fixture.js";
import { fixture, probe, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";

// A socket created before the cgroup attachment has no gid stamp (the sock_create program was not
// there yet): the kernel does not know its group. Attack: a workload of the denied group keeps such
// a socket open across the attach and connects with it afterwards, to escape a group deny. The
// group rules are written by the scope compiler (replacePolicy), as the daemon does; the deny part
// of every group rule also applies to a socket whose gid is unknown, and no group allow opens it.

const PORT = 7431; // echo server in the server namespace (unused here) — the workload's loopback has LPORT
const LPORT = 7432;
const LOCAL = "127.0.0.1";

describe("group rules and sockets created before the attach (cgroup attachment, 127.0.0.1)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  let cg: string;
  let dir: string;
  const id = `t-scope-ug-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("scug", PORT);
    ({ sb, net, filter } = ctx);
    await sb.echoServer(net.workloadNs, LPORT);
    cg = await sb.cgroup();
    dir = mkdtempSync(path.join(os.tmpdir(), "nf-ugid-"));
    chmodSync(dir, 0o755);
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Sockets of uid/gid 65534 and of uid/gid 1 created in the cgroup now, connected once `go()` runs. */
  function earlySockets(): { go: () => void; results: Promise<string[]> } {
    const goFile = path.join(dir, "go");
    const runs = [65534, 1].map((who) => new Promise<string>((resolve) => {
      let created = false;
      const child = sb.spawn(net.workloadNs, ["setpriv", `--reuid=${who}`, `--regid=${who}`, "--clear-groups", "/usr/bin/python3", fixture("early-socket.py"), LOCAL, String(LPORT), goFile, "1"], {
        cgroup: cg,
        onLine: (l) => {
          if (l === "created") created = true;
          else resolve(`${who}:${created ? l.split(" ")[0] : "not created"}`);
        },
      });
      child.on("exit", () => resolve(`${who}:exited`));
    }));
    return { go: () => writeFileSync(goFile, ""), results: Promise.all(runs) };
  }

  it("a group deny closes a socket created before the attach; a group allow does not open it; fresh sockets follow their gid", async () => {
    const early = earlySockets();
    await new Promise((r) => setTimeout(r, 1500)); // both sockets exist before the attach
    // 127.0.0.1: allowed to everyone, except tcp/LPORT denied to group 65534 (nogroup); and 127.0.0.2
    // allowed only to group 1 (daemon) on tcp/LPORT.
    const groups = (gid: number, allow: boolean, ruleId: number): NonNullable<FilterEntry["scoped"]>[number] => ({
      scope: { protocols: [TCP], ports: [{ from: LPORT, to: LPORT }], users: [], groups: [{ id: gid, name: null }] }, allow, deny: !allow, ruleId, expiresAtMs: null,
    });
    const entries: FilterEntry[] = [
      { cidr: parseCidr(`${LOCAL}/32`), allow: true, deny: false, expiresAtMs: null, ruleId: 80, scoped: [groups(65534, false, 81)] },
      { cidr: parseCidr("127.0.0.2/32"), allow: false, deny: false, expiresAtMs: null, scoped: [groups(1, true, 82)] },
    ];
    await filter.attach({ id, slot: 44, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", entries));
    early.go();
    const results = await early.results;
    // The attack: uid/gid 65534's socket from before the attach must not reach what its group is denied.
    expect(results, "sockets created before the attach, connected after it").toEqual(["65534:blocked", "1:blocked"]);
    // Fresh sockets carry their gid: the deny hits nogroup only, the allow opens 127.0.0.2 to daemon only.
    const as = (uid: number, ip: string, timeoutMs = 1000) => probe(sb, net.workloadNs, "tcp", ip, { port: LPORT, uid, cgroup: cg, timeoutMs });
    expect(await as(65534, LOCAL, 600), "nogroup, fresh socket").toBe(false);
    expect(await as(1, LOCAL), "daemon group, fresh socket").toBe(true);
    expect(await as(1, "127.0.0.2"), "daemon group to 127.0.0.2").toBe(true);
    expect(await as(65534, "127.0.0.2", 600), "nogroup to 127.0.0.2").toBe(false);
    // LOOKUP (explain) without a group: the group deny applies.
    const q = await filter.lookup(id, 4, new Uint8Array([127, 0, 0, 1]), { protocol: TCP, port: LPORT, uid: 1, gid: null });
    expect(q.scoped?.deny ?? false).toBe(true);
    await filter.detach(id);
  });

  it("connections a server accepts carry its group (the listener's stamp is cloned): a group allow lets its replies out, another group's deny does not cut them", async () => {
    const sid = `${id}-srv`;
    const client = net.serverIp4[0]!;
    const srvPort = LPORT + 1;
    const group = (gid: number, allow: boolean, ruleId: number): NonNullable<FilterEntry["scoped"]>[number] => ({
      scope: { protocols: [TCP], ports: [], users: [], groups: [{ id: gid, name: null }] }, allow, deny: !allow, ruleId, expiresAtMs: null,
    });
    // The client's address open to group 65534 only (a group allow).
    const allowOnly: FilterEntry[] = [{ cidr: parseCidr(`${client}/32`), allow: false, deny: false, expiresAtMs: null, scoped: [group(65534, true, 90)] }];
    // The client's address open to all, but denied to group 1 (another group's deny).
    const denyOther: FilterEntry[] = [{ cidr: parseCidr(`${client}/32`), allow: true, deny: false, expiresAtMs: null, ruleId: 91, scoped: [group(1, false, 92)] }];
    await filter.attach({ id: sid, slot: 45, target: { kind: "cgroup", path: cg }, dns: noDns }, policy("allowlist", allowOnly));
    try {
      // The server starts after the attach (its listener is stamped), as nobody/nogroup, in the cgroup.
      let ready!: () => void;
      const listening = new Promise<void>((r) => (ready = r));
      sb.spawn(net.workloadNs, ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, fixture("echo-server.mjs"), String(srvPort)], {
        cgroup: cg, onLine: (l) => (l.includes("listening") ? ready() : undefined),
      });
      await Promise.race([listening, new Promise((_, rej) => setTimeout(() => rej(new Error("server did not start")), 10_000))]);
      expect(await probe(sb, net.serverNs, "tcp", net.workloadIp4, { port: srvPort }), "replies under a group allow for the server's group").toBe(true);
      await filter.replacePolicy(sid, policy("allowlist", denyOther));
      expect(await probe(sb, net.serverNs, "tcp", net.workloadIp4, { port: srvPort }), "replies under another group's deny").toBe(true);
      await filter.replacePolicy(sid, policy("allowlist", [{ ...denyOther[0]!, scoped: [group(65534, false, 93)] }]));
      expect(await probe(sb, net.serverNs, "tcp", net.workloadIp4, { port: srvPort, timeoutMs: 600 }), "control: the server's own group denied").toBe(false);
    } finally {
      await filter.detach(sid);
    }
  });
});
