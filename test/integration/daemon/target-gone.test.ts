import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { rmdir } from "node:fs/promises";
import path from "node:path";
import { requireKernel, Sandbox, sh, type SandboxNetwork } from "../../helpers/sandbox.js";
import { DaemonProcess, waitFor } from "../../helpers/daemon-harness.js";
import { DaemonClient } from "../../../cli/src/daemon-client.js";

// The target watcher: a deleted veth or a removed cgroup makes its attachment go away within 2 s.

describe("vanishing targets (real kernel)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let daemon: DaemonProcess;
  let client: DaemonClient;
  let pinRoot: string;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nftg");
    net = await sb.network();
    pinRoot = await sb.pinRoot();
    daemon = new DaemonProcess({ pinRoot, yaml: "default_policy: { mode: block-all }" });
    await daemon.start();
    client = new DaemonClient(daemon.socket);
  }, 120_000);

  afterAll(async () => {
    client?.close();
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 60_000);

  const ids = async (): Promise<string[]> => (await client.listAll()).attachments.map((a) => a.id);

  it("a deleted veth is detached and forgotten within 2 s", async () => {
    const { id } = await client.attach({ target: { case: "interfaceName", value: net.hostIf } });
    expect(await ids()).toContain(id);
    await sh("ip", ["link", "del", net.hostIf]);
    await waitFor(async () => !(await ids()).includes(id), "the attachment of the deleted veth to disappear", 2000);
    expect(existsSync(path.join(pinRoot, id))).toBe(false);
    expect(daemon.log()).toContain(`"attachmentId":"${id}","target":"${net.hostIf}","reason":"removed"`);
  });

  it("a removed cgroup is detached and forgotten within 2 s", async () => {
    const cg = await sb.cgroup();
    const { id } = await client.attach({ target: { case: "cgroupPath", value: cg } });
    await rmdir(cg);
    await waitFor(async () => !(await ids()).includes(id), "the attachment of the removed cgroup to disappear", 2000);
    expect(existsSync(path.join(pinRoot, id))).toBe(false);
    expect((await client.getStatus()).attachmentCount).toBe(0);
  });
});
