import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unlinkSync } from "node:fs";
import path from "node:path";
import { probe, requireKernel, sh, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess } from "../../helpers/daemon-harness.js";

// Re-adoption checks what is really attached (issue 11): a filter whose pins survived but which
// no longer runs — its clsact filter deleted with `tc filter del`, its TCX link detached with
// `bpftool link detach` or unpinned — while the daemon was down is attached again on start
// (same pins, same policy) and logged; real traffic is enforced again.

const PORT = 7361;

describe("re-attach on adoption (real kernel)", () => {
  const sandboxes: Sandbox[] = [];

  beforeAll(async () => {
    await requireKernel();
  }, 60_000);

  afterAll(async () => {
    for (const sb of sandboxes) await sb.cleanup();
  }, 60_000);

  async function scenario(method: "clsact" | "tcx", breakIt: (net: SandboxNetwork, pinDir: string) => Promise<void>): Promise<void> {
    const sb = await Sandbox.create("nfra");
    sandboxes.push(sb);
    const net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    const pinRoot = await sb.pinRoot();
    const daemon = new DaemonProcess({
      pinRoot,
      attachMethod: method,
      yaml: `default_policy: { mode: allowlist, allow_cidrs: ["${net.serverIp4[0]}/32"] }`,
    });
    const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });
    try {
      await daemon.start();
      const r = await daemon.cli("attach", "-i", net.hostIf, "--json");
      expect(r.code, r.stderr).toBe(0);
      const id = (JSON.parse(r.stdout) as { id: string }).id;
      const listed = JSON.parse((await daemon.cli("list", "--json")).stdout) as { attachments: { attachMethod: string }[] };
      expect(listed.attachments[0]!.attachMethod).toBe(method);
      expect(await reach(net.serverIp4[1]!)).toBe(false);

      expect(await daemon.stop()).toBe(0);
      await breakIt(net, path.join(pinRoot, id));
      expect(await reach(net.serverIp4[1]!)).toBe(true); // really not enforcing any more

      const logStart = daemon.log().length;
      await daemon.start();
      expect(await reach(net.serverIp4[1]!)).toBe(false);
      expect(await reach(net.serverIp4[0]!)).toBe(true);
      const log = daemon.log().slice(logStart);
      expect(log).toMatch(new RegExp(`"attachmentId":"${id}".*pinned filter is not attached any more`));
      expect(log).toMatch(new RegExp(`"relinked":\\["${id}"\\]`));
      // Still driveable: a detach removes it and traffic flows.
      expect((await daemon.cli("detach", "--id", id)).code).toBe(0);
      expect(await reach(net.serverIp4[1]!)).toBe(true);
    } finally {
      await daemon.cleanup();
    }
  }

  it("a clsact filter deleted with `tc filter del` while the daemon is down is attached again", async () => {
    await scenario("clsact", async (net) => {
      await sh("tc", ["filter", "del", "dev", net.hostIf, "ingress"]);
      expect((await sh("tc", ["filter", "show", "dev", net.hostIf, "ingress"])).stdout.trim()).toBe("");
    });
  }, 120_000);

  it("a TCX link detached with `bpftool link detach` (pin left in place) is attached again", async () => {
    await scenario("tcx", async (_net, pinDir) => {
      await sh("bpftool", ["link", "detach", "pinned", path.join(pinDir, "link")]);
    });
  }, 120_000);

  it("a TCX link whose pin was removed (the link went with it) is attached again", async () => {
    await scenario("tcx", async (_net, pinDir) => {
      unlinkSync(path.join(pinDir, "link"));
    });
  }, 120_000);
});
