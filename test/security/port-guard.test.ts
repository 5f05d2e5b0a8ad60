import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../daemon/src/datapath/kernel-filter.js";
import { readFileSync, writeFileSync } from "node:fs";
import { DaemonProcess, runCli } from "../helpers/daemon-harness.js";
import { startFilter } from "../helpers/kernel-filter-fixture.js";
import { requireKernel, Sandbox, sh } from "../helpers/sandbox.js";
import { ensureNfpkt } from "./tools/nfpkt.js";

const NOBODY = 65534;

/**
 * Issue 10 item 9: an unprivileged local user could bind the next free DNS port (every later
 * attach failed with EADDRINUSE) or a tenant's port while the daemon restarted (hijacking that
 * tenant's DNS). The DNS port guard — cgroup/bind4 + bind6 on dns.port_guard_cgroup, pinned —
 * refuses bind() in the DNS range to every uid but the daemon's. Here the guard covers a cgroup of
 * the test's own (never the root cgroup); `nobody` binds from inside it, in a network namespace of
 * its own (unshare -n), so no port of the host is ever taken.
 */
async function bindAs(uid: number, proto: "tcp" | "udp", addr: string, port: number, cgroup: string): Promise<string> {
  const r = await sh("unshare", ["-n", "sh", "-c", 'ip link set lo up && echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, ensureNfpkt(), "bind", String(uid), proto, addr, String(port)], {
    allowFail: true,
  });
  return r.stdout.trim() || r.stderr.trim();
}

const ADDRS = ["0.0.0.0", "127.0.0.1", "::", "::1"] as const;

/** Every protocol and address family: "ok" or the error name, per combination. */
async function bindMatrix(uid: number, port: number, cgroup: string): Promise<string[]> {
  const out: string[] = [];
  for (const proto of ["udp", "tcp"] as const) {
    for (const addr of ADDRS) out.push(`${proto} [${addr}]:${port} ${(await bindAs(uid, proto, addr, port, cgroup)).split(" ").slice(0, 2).join(" ")}`);
  }
  return out;
}
const all = (port: number, result: string) => (["udp", "tcp"] as const).flatMap((p) => ADDRS.map((a) => `${p} [${a}]:${port} ${result}`));

describe("DNS port guard (item 9): only the daemon's uid binds the DNS port range", () => {
  let sb: Sandbox;

  beforeAll(async () => {
    await requireKernel();
    ensureNfpkt();
    sb = await Sandbox.create("secpg");
  });
  afterAll(async () => {
    await sb?.cleanup();
  });

  describe("through the data-path driver (KernelFilter → loader → pinned links)", () => {
    let filter: KernelFilter;
    let guarded: string;
    let outside: string;
    const base = 45000 + (process.pid % 500) * 20;

    beforeAll(async () => {
      filter = await startFilter(sb);
      guarded = await sb.cgroup();
      outside = await sb.cgroup();
    });
    afterAll(async () => {
      await filter?.removePortGuard().catch(() => undefined);
      await filter?.close();
    });

    it("nobody inside the guarded cgroup gets EPERM in the range (UDP/TCP, v4/v6, wildcard and loopback), binds outside it", async () => {
      await filter.setPortGuard({ cgroupPath: guarded, portMin: base, portMax: base + 9, uid: 0 });
      expect(await bindMatrix(NOBODY, base + 3, guarded)).toEqual(all(base + 3, "error EPERM"));
      expect(await bindMatrix(NOBODY, base, guarded)).toEqual(all(base, "error EPERM"));
      expect(await bindMatrix(NOBODY, base + 9, guarded)).toEqual(all(base + 9, "error EPERM"));
      expect(await bindMatrix(NOBODY, base + 10, guarded)).toEqual(all(base + 10, "ok"));
      // The daemon's uid (root here) binds in the range; a process outside the cgroup is not covered.
      expect(await bindAs(0, "udp", "127.0.0.1", base + 3, guarded)).toBe("ok");
      expect(await bindAs(NOBODY, "udp", "127.0.0.1", base + 3, outside)).toBe("ok");
    });

    it("is updated in place, survives the loader, and is removed by an explicit op", async () => {
      await filter.setPortGuard({ cgroupPath: guarded, portMin: base + 10, portMax: base + 19, uid: 0 });
      expect(await bindAs(NOBODY, "tcp", "::", base + 3, guarded)).toBe("ok");
      expect(await bindAs(NOBODY, "tcp", "::", base + 12, guarded)).toMatch(/^error EPERM/);
      filter.killLoader();
      await new Promise((r) => setTimeout(r, 200));
      expect(await bindAs(NOBODY, "udp", "0.0.0.0", base + 12, guarded)).toMatch(/^error EPERM/);
      await filter.whenReady();
      await filter.removePortGuard();
      expect(await bindAs(NOBODY, "udp", "0.0.0.0", base + 12, guarded)).toBe("ok");
    });
  });

  describe("through the daemon (dns.port_guard_cgroup = the test's cgroup; the daemon runs inside it)", () => {
    let daemon: DaemonProcess;

    beforeAll(async () => {
      daemon = new DaemonProcess({ pinRoot: await sb.pinRoot(), ports: 20 });
      await daemon.start(30_000, daemon.guardCgroup);
    }, 60_000);
    afterAll(async () => {
      await daemon?.cleanup();
    });

    const dnsPortOf = (out: string) => Number(/DNS Address: \S+:(\d+)/.exec(out)?.[1]);

    it("the daemon binds its DNS ports; nobody in the same cgroup cannot, also after a kill -9, and again after a restart", async () => {
      expect(daemon.log()).toContain("DNS port guard active");
      const cg = await sb.cgroup();
      const a = await daemon.cli("attach", "-g", cg);
      expect(a.code, a.stderr).toBe(0);
      const port = dnsPortOf(a.stdout);
      expect(port).toBe(daemon.portMin);
      const listening = async () => (await sh("ss", ["-Hlun", `sport = :${port}`])).stdout.includes(`127.0.0.1:${port}`);
      expect(await listening()).toBe(true);
      // The next free port of the range (what a squatter would take to break the next attach):
      expect(await bindMatrix(NOBODY, port + 1, daemon.guardCgroup)).toEqual(all(port + 1, "error EPERM"));
      expect(await bindAs(NOBODY, "udp", "127.0.0.1", daemon.portMin + 100, daemon.guardCgroup)).toBe("ok");

      await daemon.kill9();
      expect(await listening()).toBe(false);
      // The daemon is down: its tenant's port is free, and still nobody else may take it.
      expect(await bindMatrix(NOBODY, port, daemon.guardCgroup)).toEqual(all(port, "error EPERM"));

      await daemon.start(30_000, daemon.guardCgroup);
      expect(daemon.log()).toMatch(/"updated":true[^\n]*DNS port guard installed|DNS port guard installed[^\n]*"updated":true/);
      for (let i = 0; i < 40 && !(await listening()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(await listening()).toBe(true);
      expect(await bindAs(NOBODY, "tcp", "::", port + 2, daemon.guardCgroup)).toMatch(/^error EPERM/);
    });

    it("a guard that cannot be installed stops the start with a clear error, before anything binds", async () => {
      const other = new DaemonProcess({ pinRoot: await sb.pinRoot(), ports: 5 });
      try {
        const missing = `${other.guardCgroup}-missing`;
        writeFileSync(other.configFile, readFileSync(other.configFile, "utf8").replace(`port_guard_cgroup: "${other.guardCgroup}"`, `port_guard_cgroup: "${missing}"`));
        const r = await runCli(["start", "--config", other.configFile], 30_000);
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`netfenced: cannot start: installing the DNS port guard (dns.port_guard) on ${missing} failed:`);
        expect(r.stderr).toContain("set dns.port_guard: false to run without it");
      } finally {
        await other.cleanup();
      }
    });
  });
});
