import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import { requireKernel, Sandbox } from "../../helpers/sandbox.js";
import { DaemonProcess } from "../../helpers/daemon-harness.js";
import { DaemonClient } from "../../../cli/src/daemon-client.js";

// 250 real cgroup attachments through the gRPC socket, listed page by page through the CLI.

interface ListJson {
  attachments: { id: string; target: string }[];
  nextPageToken: string;
  totalCount: number;
}

describe("List pagination over 250 attachments (real kernel)", () => {
  let sb: Sandbox;
  let daemon: DaemonProcess;
  let client: DaemonClient;
  let pinRoot: string;
  const ids = new Set<string>();

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfpg");
    pinRoot = await sb.pinRoot();
    daemon = new DaemonProcess({ pinRoot, ports: 300, yaml: "default_policy: { mode: denylist }" });
    await daemon.start();
    client = new DaemonClient(daemon.socket);
  }, 120_000);

  afterAll(async () => {
    for (const id of ids) await client?.detach(id).catch(() => undefined);
    client?.close();
    await daemon?.cleanup();
    await sb?.cleanup();
  }, 120_000);

  it("attaches 250 cgroups with unique ids and DNS ports", async () => {
    const cgroups: string[] = [];
    for (let i = 0; i < 250; i++) cgroups.push(await sb.cgroup());
    const ports = new Set<string>();
    for (let i = 0; i < cgroups.length; i += 10) {
      const batch = await Promise.all(cgroups.slice(i, i + 10).map((cg) => client.attach({ target: { case: "cgroupPath", value: cg } })));
      for (const r of batch) {
        ids.add(r.id);
        ports.add(r.dnsAddress);
      }
    }
    expect(ids.size).toBe(250);
    expect(ports.size).toBe(250);
    expect(readdirSync(pinRoot).filter((n) => n.startsWith("nf-"))).toHaveLength(250);
  }, 300_000);

  it("pages with page_size/page_token and reports total_count", async () => {
    const seen: string[] = [];
    let token = "";
    const sizes: number[] = [];
    do {
      const args = ["list", "--page-size", "100", "--json", ...(token ? ["--page-token", token] : [])];
      const r = await daemon.cli(...args);
      expect(r.code).toBe(0);
      const page = JSON.parse(r.stdout) as ListJson;
      expect(page.totalCount).toBe(250);
      sizes.push(page.attachments.length);
      seen.push(...page.attachments.map((a) => a.id));
      token = page.nextPageToken;
    } while (token !== "");
    expect(sizes).toEqual([100, 100, 50]);
    expect(new Set(seen)).toEqual(ids);

    const all = JSON.parse((await daemon.cli("list", "--all", "--json", "--page-size", "30")).stdout) as ListJson;
    expect(all.attachments).toHaveLength(250);
    expect(new Set(all.attachments.map((a) => a.id))).toEqual(ids);

    const table = await daemon.cli("list");
    expect(table.stdout.split("\n").filter((l) => l.startsWith("nf-"))).toHaveLength(100);
    expect(table.stdout).toContain("Showing 100 of 250; more with --all or --page-token ");

    const status = JSON.parse((await daemon.cli("status", "--json")).stdout) as { attachmentCount: number };
    expect(status.attachmentCount).toBe(250);
  }, 120_000);
});
