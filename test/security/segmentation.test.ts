import { mkdir, rmdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { allow, policy } from "../helpers/kernel-filter-fixture.js";
import { fixture, sh } from "../helpers/sandbox.js";
import { marker, sniff } from "./tools/nfpkt.js";
import { closeWorld, eventLog, securityWorld, type World } from "./world.js";

/**
 * Issue 15 (host micro-segmentation), the abuse cases that do not depend on owner-scoped rules:
 * processes of two users (`daemon` uid 1 and `nobody` uid 65534, via setpriv) inside a cgroup
 * attachment try to reach a local service of their own namespace through every loopback path an
 * operator may forget — loopback with no rule for it, other 127/8 addresses, the namespace's own
 * address, ::1, the IPv4-mapped path of an IPv6 socket, raw sockets (root in the cgroup) — and try
 * to leave the cgroup. The proof is a sniffer on the namespace's `lo` (the far side: every loopback
 * packet crosses it) that counts marked datagrams, plus TCP round trips; legitimate traffic is
 * checked each time.
 */

const PORT = 7263; // the "local service": echo server on every address of the workload namespace, outside the cgroup
const SEG_SEND = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "seg-send.py");
/** Debian's interpreter by absolute path: a PATH python3 may be a shim the test users cannot run. */
const PYTHON = "/usr/bin/python3";
const USER_A = 1; // daemon
const USER_B = 65534; // nobody

describe("segmentation: a cgroup's loopback paths are closed unless a rule opens that very address", () => {
  let w: World | undefined;
  let cg: string;
  const id = `sec-seg-${process.pid}`;
  let slot = 120;

  beforeAll(async () => {
    w = await securityWorld("secseg");
    await w.sb.echoServer(w.net.workloadNs, PORT);
    await w.sb.echoServer(w.net.serverNs, PORT);
    cg = await w.sb.cgroup();
  });
  afterAll(async () => {
    await closeWorld(w);
  });

  const asUser = (uid: number | null) => (uid === null ? [] : ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"]);
  /** A TCP or UDP echo round trip from the cgroup as `uid`: true if the server answered. */
  const reach = async (uid: number, kind: "tcp" | "udp", ip: string, timeoutMs = 800): Promise<boolean> => {
    const r = await w!.sb.exec(w!.net.workloadNs, [...asUser(uid), process.execPath, fixture("probe.mjs"), kind, ip, String(PORT), String(timeoutMs)], {
      cgroup: cg, allowFail: true, timeoutMs: timeoutMs + 5000,
    });
    return r.stdout.trim() === "ok";
  };
  interface Shot { readonly uid: number | null; readonly kind: "udp" | "raw4" | "rawhdr4" | "raw6"; readonly ip: string; readonly mark: string }
  /** Sends each shot (3 marked datagrams) from the cgroup; returns how many marked frames crossed the namespace's lo. */
  const arrivals = async (shots: readonly Shot[]): Promise<Map<string, number>> => {
    const sniffer = await sniff(w!.sb, w!.net.workloadNs, "lo", 1500, shots.map((s) => s.mark));
    for (const s of shots) {
      const r = await w!.sb.exec(w!.net.workloadNs, [...asUser(s.uid), PYTHON, SEG_SEND, s.kind, s.ip, String(PORT), s.mark, "3"], { cgroup: cg, allowFail: true });
      // A cgroup egress drop fails the send with EPERM; the sniffer is the proof either way.
      expect(r.stdout.trim(), `${s.kind} to ${s.ip} as ${s.uid ?? "root"}`).toMatch(/^(sent 3|error send EPERM)/);
    }
    return sniffer.counts;
  };
  const attach = (entries: ReturnType<typeof allow>[]) =>
    w!.filter.attach({ id, slot: slot++, target: { kind: "cgroup", path: cg }, dns: { ipv4: null, ipv6: null, port: 0 } }, policy("allowlist", entries));

  it("a rule for another address opens no loopback path, for any user; allowing 127.0.0.1 opens it (the path is real)", async () => {
    const { filter, net } = w!;
    await attach([allow(`${net.serverIp4[0]}/32`)]);
    try {
      const events = eventLog(filter);
      for (const uid of [USER_A, USER_B]) {
        expect(await reach(uid, "tcp", "127.0.0.1"), `tcp 127.0.0.1 as ${uid}`).toBe(false);
        expect(await reach(uid, "tcp", net.serverIp4[0]!, 3000), `legitimate: the allowed address as ${uid}`).toBe(true);
      }
      const a = marker("segb1");
      const b = marker("segb2");
      const got = await arrivals([{ uid: USER_A, kind: "udp", ip: "127.0.0.1", mark: a }, { uid: USER_B, kind: "udp", ip: "127.0.0.1", mark: b }]);
      expect(got.get(a)).toBe(0);
      expect(got.get(b)).toBe(0);
      expect(await events.find((e) => e.dst === "127.0.0.1" && e.verdict === "blocked")).toMatchObject({ family: 4, dstPort: PORT });
      events.stop();
      await filter.replacePolicy(id, policy("allowlist", [allow(`${net.serverIp4[0]}/32`), allow("127.0.0.1/32")]));
      expect(await reach(USER_B, "tcp", "127.0.0.1", 3000)).toBe(true);
      const c = marker("segb3");
      expect((await arrivals([{ uid: USER_B, kind: "udp", ip: "127.0.0.1", mark: c }])).get(c)).toBeGreaterThan(0);
    } finally {
      await filter.detach(id);
    }
  });

  it("allowing 127.0.0.1 opens neither the rest of 127/8 nor the namespace's own address (both reach the same 0.0.0.0 service over lo)", async () => {
    const { filter, net } = w!;
    await attach([allow("127.0.0.1/32")]);
    try {
      expect(await reach(USER_B, "tcp", "127.0.0.1", 3000), "legitimate: 127.0.0.1").toBe(true);
      expect(await reach(USER_B, "tcp", "127.0.0.2"), "127.0.0.2").toBe(false);
      expect(await reach(USER_B, "tcp", "127.255.255.254"), "127.255.255.254").toBe(false);
      expect(await reach(USER_B, "tcp", net.workloadIp4), "own address").toBe(false);
      const m = [marker("sega1"), marker("sega2"), marker("sega3")];
      const got = await arrivals([
        { uid: USER_B, kind: "udp", ip: "127.0.0.2", mark: m[0]! },
        { uid: USER_B, kind: "udp", ip: net.workloadIp4, mark: m[1]! },
        { uid: USER_B, kind: "udp", ip: "127.0.0.1", mark: m[2]! },
      ]);
      expect(got.get(m[0]!), "127.0.0.2").toBe(0);
      expect(got.get(m[1]!), "own address").toBe(0);
      expect(got.get(m[2]!), "legitimate: 127.0.0.1").toBeGreaterThan(0);
    } finally {
      await filter.detach(id);
    }
  });

  it("IPv6: ::1 stays closed under an IPv4 loopback rule; the IPv4-mapped path of an IPv6 socket is decided as the IPv4 address it is", async () => {
    const { filter, net } = w!;
    // Only another address allowed: ::1 and ::ffff:127.0.0.1 are closed.
    await attach([allow(`${net.serverIp4[0]}/32`)]);
    try {
      expect(await reach(USER_B, "tcp", "::1")).toBe(false);
      expect(await reach(USER_B, "tcp", "::ffff:127.0.0.1")).toBe(false);
      const m = [marker("sev1"), marker("sev2")];
      const got = await arrivals([{ uid: USER_B, kind: "udp", ip: "::1", mark: m[0]! }, { uid: USER_B, kind: "udp", ip: "::ffff:127.0.0.1", mark: m[1]! }]);
      expect(got.get(m[0]!), "::1").toBe(0);
      expect(got.get(m[1]!), "::ffff:127.0.0.1").toBe(0);
    } finally {
      await filter.detach(id);
    }
    // 127.0.0.1 allowed: the mapped path is IPv4 127.0.0.1 on the wire (open, like 127.0.0.1); ::1 is not covered.
    await attach([allow("127.0.0.1/32")]);
    try {
      expect(await reach(USER_B, "tcp", "::ffff:127.0.0.1", 3000), "mapped 127.0.0.1").toBe(true);
      expect(await reach(USER_B, "tcp", "::1"), "::1").toBe(false);
      const m = [marker("sev3"), marker("sev4")];
      const got = await arrivals([{ uid: USER_B, kind: "udp", ip: "::1", mark: m[0]! }, { uid: USER_B, kind: "udp", ip: "::ffff:127.0.0.2", mark: m[1]! }]);
      expect(got.get(m[0]!), "::1").toBe(0);
      expect(got.get(m[1]!), "mapped 127.0.0.2").toBe(0);
    } finally {
      await filter.detach(id);
    }
    // ::1 allowed: IPv4 loopback, mapped or not, stays closed.
    await attach([allow("::1/128")]);
    try {
      expect(await reach(USER_B, "tcp", "::1", 3000), "legitimate: ::1").toBe(true);
      expect(await reach(USER_B, "tcp", "127.0.0.1")).toBe(false);
      expect(await reach(USER_B, "tcp", "::ffff:127.0.0.1")).toBe(false);
    } finally {
      await filter.detach(id);
    }
  });

  it("raw sockets in the cgroup (root, CAP_NET_RAW) do not bypass the filter to 127.0.0.1 or ::1; the test users cannot open one", async () => {
    const { filter, net } = w!;
    await attach([allow(`${net.serverIp4[0]}/32`)]);
    try {
      const m = [marker("ser1"), marker("ser2"), marker("ser3")];
      const got = await arrivals([
        { uid: null, kind: "raw4", ip: "127.0.0.1", mark: m[0]! },
        { uid: null, kind: "rawhdr4", ip: "127.0.0.1", mark: m[1]! },
        { uid: null, kind: "raw6", ip: "::1", mark: m[2]! },
      ]);
      expect(got.get(m[0]!), "raw IPPROTO_UDP").toBe(0);
      expect(got.get(m[1]!), "raw IP_HDRINCL").toBe(0);
      expect(got.get(m[2]!), "raw IPv6").toBe(0);
      for (const uid of [USER_A, USER_B]) {
        const r = await w!.sb.exec(net.workloadNs, [...asUser(uid), PYTHON, SEG_SEND, "raw4", "127.0.0.1", String(PORT), marker("seru"), "1"], { cgroup: cg, allowFail: true });
        expect(r.stdout.trim(), `raw socket as ${uid}`).toMatch(/^error socket EPERM/);
      }
    } finally {
      await filter.detach(id);
    }
    // The same raw sends with loopback allowed do arrive: the sender and the sniffer work.
    await attach([allow("127.0.0.1/32"), allow("::1/128")]);
    try {
      const m = [marker("ser4"), marker("ser5"), marker("ser6")];
      const got = await arrivals([
        { uid: null, kind: "raw4", ip: "127.0.0.1", mark: m[0]! },
        { uid: null, kind: "rawhdr4", ip: "127.0.0.1", mark: m[1]! },
        { uid: null, kind: "raw6", ip: "::1", mark: m[2]! },
      ]);
      for (const k of m) expect(got.get(k), k).toBeGreaterThan(0);
    } finally {
      await filter.detach(id);
    }
  });

  it("a test user cannot move itself out of the segmented cgroup: the write to cgroup.procs fails and its traffic is still filtered", async () => {
    const { filter, sb } = w!;
    // The attachment is on a child of our cgroup; the escape targets our cgroup (never the root cgroup).
    const inner = path.join(cg, "seg-inner");
    await mkdir(inner);
    sb.onCleanup(async () => void (await rmdir(inner).catch(() => undefined)));
    await filter.attach({ id, slot: slot++, target: { kind: "cgroup", path: inner }, dns: { ipv4: null, ipv6: null, port: 0 } }, policy("allowlist", [allow("192.0.2.1/32")]));
    try {
      // Root joins `inner`, becomes nobody, tries to leave, then sends to 127.0.0.1 of the root
      // namespace's loopback (a port nothing listens on: the answer is the send's own result —
      // a cgroup egress drop fails it with EPERM).
      const r = await sh("sh", ["-c",
        'echo $$ > "$1/cgroup.procs" && exec setpriv --reuid=65534 --regid=65534 --clear-groups sh -c ' +
        '\'if echo $$ 2>/dev/null > "$1/cgroup.procs"; then echo escaped; else echo stayed; fi; cat /proc/self/cgroup; exec "$2" "$3" udp 127.0.0.1 7264 "$4" 3\' sh "$2" "$3" "$4" "$5"',
        "sh", inner, cg, PYTHON, SEG_SEND, marker("seg-escape")], { allowFail: true });
      const lines = r.stdout.trim().split("\n");
      expect(lines[0], r.stderr).toBe("stayed");
      expect(lines.some((l) => l.endsWith(`/${path.basename(cg)}/seg-inner`)), r.stdout).toBe(true);
      expect(lines.at(-1)).toMatch(/^error send EPERM/);
    } finally {
      await filter.detach(id);
    }
    // Legitimate: without the attachment the same user's same datagrams leave.
    const ok = await sh("sh", ["-c", 'echo $$ > "$1/cgroup.procs" && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$2" "$3" udp 127.0.0.1 7264 "$4" 3', "sh", inner, PYTHON, SEG_SEND, marker("seg-escape2")], { allowFail: true });
    expect(ok.stdout.trim()).toBe("sent 3");
  });
});
