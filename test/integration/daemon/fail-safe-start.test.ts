import { afterAll, beforeAll, describe, expect, it } from "vitest";
import dgram from "node:dgram";
import net from "node:net";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { probe, requireKernel, sh, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess } from "../../helpers/daemon-harness.js";

// Fail-safe start (issue 11): a start that fails — here the state cannot be saved because its
// disk is full — releases everything it took (DaemonService socket, DNS sockets, loader child)
// and the process exits non-zero at once, with the cause in one line on stderr. The filters stay
// pinned and enforcing. While running, an attach on a full disk fails with the cause (ENOSPC).

const PORT = 7371;

async function portFree(port: number): Promise<boolean> {
  const tcp = await new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
  const udp = await new Promise<boolean>((resolve) => {
    const s = dgram.createSocket("udp4");
    s.once("error", () => resolve(false));
    s.bind(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
  return tcp && udp;
}

/** Fills a filesystem until it reports ENOSPC. */
function fill(dir: string): void {
  const chunk = Buffer.alloc(4096);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(path.join(dir, `fill-${i}`), chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOSPC") return;
      throw err;
    }
  }
}

describe("fail-safe start on a full disk (real kernel)", () => {
  let sb: Sandbox;
  let nw: SandboxNetwork;
  let daemon: DaemonProcess;
  let dataDir: string;
  /** The targets the first test left attached (its attaches that fitted before the disk was full). */
  let attached: string[] = [];

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nffs");
    nw = await sb.network();
    await sb.echoServer(nw.serverNs, PORT);
    daemon = new DaemonProcess({
      pinRoot: await sb.pinRoot(),
      yaml: `default_policy: { mode: allowlist, allow_cidrs: ["${nw.serverIp4[0]}/32"] }`,
    });
    // data_dir on a tiny tmpfs of our own (the harness's config points data_dir at <dir>/data).
    dataDir = path.join(daemon.dir, "data");
    mkdirSync(dataDir);
    await sh("mount", ["-t", "tmpfs", "-o", "size=256k,mode=0700", "nffs-state", dataDir]);
  }, 120_000);

  afterAll(async () => {
    await daemon?.kill9();
    if (dataDir) await sh("umount", [dataDir], { allowFail: true });
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string) => probe(sb, nw.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });

  it("an attach on a full disk fails with the cause and is rolled back", async () => {
    await daemon.start();
    expect((await daemon.cli("attach", "-i", nw.hostIf)).code).toBe(0);
    fill(dataDir);
    // The state store appends what changed to its journal: the first attaches may still fit in
    // the slack of the journal's last page (their state is saved, so they succeed). The first one
    // whose state cannot be written must fail with the cause and leave nothing behind.
    attached = [nw.hostIf];
    let r = { code: 0, stdout: "", stderr: "" };
    for (let i = 0; i < 12 && r.code === 0; i++) {
      const cg = await sb.cgroup();
      r = await daemon.cli("attach", "-g", cg);
      if (r.code === 0) attached.push(cg);
    }
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^Error: cannot write state file .*state\.(json|journal): ENOSPC: no space left on device/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const listed = JSON.parse((await daemon.cli("list", "--json", "--all")).stdout) as { attachments: { target: string }[] };
    expect(listed.attachments.map((a) => a.target)).toEqual(attached);
    // A stop on a full disk is still clean (the save failure is logged).
    expect(await daemon.stop()).toBe(0);
  }, 120_000);

  it("a start that cannot save its state exits non-zero at once, holding no socket, filters still enforcing", async () => {
    const dnsPort = daemon.portMin; // the attachment's DNS port, bound again by the restore before the save fails
    expect(await portFree(dnsPort)).toBe(true);
    const r = await daemon.runToExit(10_000);
    console.log(`netfenced start on a full disk: exit ${r.code} after ${r.ms.toFixed(0)} ms`);
    expect(r.code).toBe(1);
    expect(r.ms).toBeLessThan(5000); // generous; the figure is logged above
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^netfenced: cannot start: cannot write state file .*state\.json: ENOSPC: no space left on device/);
    expect(existsSync(daemon.socket)).toBe(false);
    expect(await portFree(dnsPort)).toBe(true);
    expect(daemon.log()).toContain('"msg":"re-adopted pinned attachment"'); // it got as far as starting the DNS server
    // The filter is still pinned and enforcing.
    expect(await reach(nw.serverIp4[1]!)).toBe(false);
    expect(await reach(nw.serverIp4[0]!)).toBe(true);

    // Room again: the next start adopts it.
    rmSync(path.join(dataDir, "fill-0"));
    rmSync(path.join(dataDir, "fill-1"));
    await daemon.start();
    const listed = JSON.parse((await daemon.cli("list", "--json", "--all")).stdout) as { attachments: { target: string }[] };
    expect(listed.attachments.map((a) => a.target)).toEqual(attached);
  }, 120_000);
});
