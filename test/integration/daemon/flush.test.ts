import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { probe, sh, type Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import type { DaemonProcess } from "../../helpers/daemon-harness.js";
import { daemonRig, type DaemonRig } from "../../helpers/daemon-rig.js";

// `netfenced flush` (issue 15, seed 004 FR-6) against the real binary and kernel: every program,
// link, map and pin of OUR daemon (found from its pin root and attach points before the flush) is
// gone afterwards, and the test's own unrelated objects — a bpffs pin outside our pin root and a
// tc filter on the very interface we attached to — are still there. Nothing is re-created at the
// next start. With the daemon stopped, flush refuses with a clear message.

const PORT = 7471;

interface BpfObject { id: number }

async function bpftoolJson<T>(args: string[]): Promise<T | null> {
  const r = await sh("bpftool", ["-j", ...args], { allowFail: true, timeoutMs: 10_000 });
  if (r.code !== 0 || r.stdout.trim() === "") return null;
  return JSON.parse(r.stdout) as T;
}

function pinFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? pinFiles(p) : [p];
  });
}

/** The kernel ids of every map, program and link pinned under `pinRoot`. */
async function pinnedIds(pinRoot: string): Promise<{ maps: number[]; progs: number[]; links: number[] }> {
  const out = { maps: [] as number[], progs: [] as number[], links: [] as number[] };
  for (const f of pinFiles(pinRoot)) {
    const m = await bpftoolJson<BpfObject>(["map", "show", "pinned", f]);
    if (m !== null) { out.maps.push(m.id); continue; }
    const p = await bpftoolJson<BpfObject>(["prog", "show", "pinned", f]);
    if (p !== null) { out.progs.push(p.id); continue; }
    const l = await bpftoolJson<BpfObject & { prog_id: number }>(["link", "show", "pinned", f]);
    if (l !== null) { out.links.push(l.id); out.progs.push(l.prog_id); }
  }
  return out;
}

async function liveIds(kind: "map" | "prog" | "link"): Promise<Set<number>> {
  return new Set(((await bpftoolJson<BpfObject[]>([kind, "show"])) ?? []).map((o) => o.id));
}

async function processGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe("netfenced flush (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let pinRoot: string;
  let cg: string;
  let daemon: DaemonProcess;
  let ownPin: string;

  let rig: DaemonRig | undefined;

  beforeAll(async () => {
    rig = await daemonRig("nffl", {
      servers: { ports: [PORT] },
      // The test's own unrelated objects: a bpffs pin outside our pin root, a tc u32 filter on the interface we attach to.
      before: async (s, n) => {
        ownPin = `/sys/fs/bpf/nftest-${s.tag}-own`;
        s.onCleanup(async () => void (await sh("rm", ["-f", ownPin], { allowFail: true })));
        await sh("bpftool", ["map", "create", ownPin, "type", "array", "key", "4", "value", "4", "entries", "1", "name", "nft_own"]);
        await sh("tc", ["qdisc", "add", "dev", n.hostIf, "clsact"]);
        await sh("tc", ["filter", "add", "dev", n.hostIf, "ingress", "pref", "7", "protocol", "all", "u32", "match", "u32", "0", "0", "classid", "1:1"]);
      },
    });
    ({ sb, net, pinRoot, cg, daemon } = rig);
  }, 120_000);

  afterAll(() => rig?.cleanup(), 60_000);

  const reach = (ip: string, cgroup?: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800, cgroup });

  it("removes every program, link, map and pin of ours and nothing of anyone else's; nothing comes back at the next start", async () => {
    const file = path.join(daemon.dir, "policy.yaml");
    writeFileSync(file, `version: 1\nattachments:\n  - {name: web, cgroup: ${cg}, mode: block-all}\n`);
    expect((await daemon.cli("apply", "-f", file)).code).toBe(0);
    expect((await daemon.cli("attach", "-i", net.hostIf)).code).toBe(0);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(false);

    const ours = await pinnedIds(pinRoot);
    expect(ours.progs.length).toBeGreaterThan(0);
    expect(ours.maps.length).toBeGreaterThan(0);
    const cgroupProgs = ((await bpftoolJson<{ id: number }[]>(["cgroup", "show", cg])) ?? []).map((p) => p.id);
    expect(cgroupProgs.length).toBeGreaterThan(0);
    const guardProgs = ((await bpftoolJson<{ id: number }[]>(["cgroup", "show", daemon.guardCgroup])) ?? []).map((p) => p.id);
    expect(guardProgs.length).toBeGreaterThan(0);

    const pid = daemon.pid!;
    const r = await daemon.cli("flush", "--yes");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Detached 2 attachment\(s\)/);
    expect(await processGone(pid, 20_000)).toBe(true);
    expect(daemon.log()).toContain("netfenced stopped after flush");

    // Kernel objects are freed asynchronously: bounded wait for ours to disappear.
    const deadline = Date.now() + 10_000;
    let left: number[] = [];
    for (;;) {
      const [maps, progs, links] = await Promise.all([liveIds("map"), liveIds("prog"), liveIds("link")]);
      left = [...ours.maps.filter((i) => maps.has(i)), ...[...ours.progs, ...cgroupProgs, ...guardProgs].filter((i) => progs.has(i)), ...ours.links.filter((i) => links.has(i))];
      if (left.length === 0 || Date.now() > deadline) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(left).toEqual([]);
    expect(existsSync(pinRoot)).toBe(false);
    expect((await bpftoolJson<unknown[]>(["cgroup", "show", cg])) ?? []).toEqual([]);
    expect((await bpftoolJson<unknown[]>(["cgroup", "show", daemon.guardCgroup])) ?? []).toEqual([]);
    const tcx = await sh("bpftool", ["net", "show", "dev", net.hostIf]);
    expect(tcx.stdout).not.toMatch(/tcx/);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);

    // Not ours: still there.
    expect(existsSync(ownPin)).toBe(true);
    const tc = await sh("tc", ["filter", "show", "dev", net.hostIf, "ingress"]);
    expect(tc.stdout).toMatch(/u32/);

    // The next start re-creates nothing: the attachments were forgotten.
    await daemon.start();
    const list = JSON.parse((await daemon.cli("list", "--json")).stdout) as { attachments: unknown[] };
    expect(list.attachments).toEqual([]);
    expect(await reach(net.serverIp4[0]!, cg)).toBe(true);
  }, 180_000);

  it("with the daemon stopped, flush refuses with a clear message (exit 3) and changes nothing", async () => {
    await daemon.stop();
    const r = await daemon.cli("flush", "--yes");
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/flush needs the running daemon/);
    expect(existsSync(ownPin)).toBe(true);
  }, 60_000);
});
