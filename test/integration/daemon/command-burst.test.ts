import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { LocalPolicySource } from "../../../daemon/src/attachments/local-policy-source.js";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { FileStateStore } from "../../../daemon/src/store/state-store.js";
import { findCgroup2Mount } from "../../../daemon/src/attachments/target.js";
import { parseCidr } from "@netfence/proto/parse";
import { EMPTY_DNS_POLICY } from "../../../daemon/src/policy/policy.js";
import { NetfenceError } from "@netfence/proto/errors";
import { probe, requireKernel, Sandbox, type SandboxNetwork } from "../../helpers/sandbox.js";
import { startFilter } from "../../helpers/kernel-filter-fixture.js";

// A burst of 10k commands through the single-writer queue into the real kernel (with a durable
// store): every one applied in order, an invalid one changes nothing, and traffic reflects the
// end state.

const PORT = 7331;

describe("10k-command burst (real kernel, file store)", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let manager: AttachmentManager;
  let dataDir: string;

  beforeAll(async () => {
    await requireKernel();
    sb = await Sandbox.create("nfbu");
    net = await sb.network();
    await sb.echoServer(net.serverNs, PORT);
    filter = await startFilter(sb);
    dataDir = mkdtempSync(path.join(os.tmpdir(), "nf-burst-"));
    manager = new AttachmentManager({
      filter,
      policySource: new LocalPolicySource({ mode: "allowlist", audit: false, allowCidrs: [], denyCidrs: [], dns: EMPTY_DNS_POLICY }),
      store: new FileStateStore(dataDir),
      dnsServers: { start: async () => ({ stop: async () => undefined, stats: () => ({ allowed: 0n, blocked: 0n }) }) },
      logger: pino({ level: "silent" }),
      dns: { listenAddr: "127.0.0.1", portMin: 39990, portMax: 39999 },
      cgroupRoot: findCgroup2Mount(),
    });
    await manager.start();
  }, 60_000);

  afterAll(async () => {
    for (const a of manager?.list() ?? []) await manager.detach(a.id).catch(() => undefined);
    await manager?.stop();
    await filter?.close();
    rmSync(dataDir, { recursive: true, force: true });
    await sb?.cleanup();
  }, 60_000);

  const reach = (ip: string) => probe(sb, net.workloadNs, "tcp", ip, { port: PORT, timeoutMs: 800 });

  it("applies every command in order and the kernel ends in the final state", async () => {
    const { id } = await manager.attach({ target: { kind: "interface", name: net.hostIf, direction: "ingress" }, metadata: {} });
    expect(await reach(net.serverIp4[0]!)).toBe(false);
    const server = parseCidr(`${net.serverIp4[0]}/32`);
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 10_000; i++) {
      ops.push(manager.applyCommand(id, { kind: "allow-cidr", rule: { cidr: parseCidr(`100.${64 + (i >> 8)}.${i & 255}.0/24`), expiresAtMs: null } }));
      if (i === 5000) ops.push(manager.applyCommand(id, { kind: "allow-cidr", rule: { cidr: server, expiresAtMs: null } }));
      if (i === 7000) ops.push(manager.applyCommand("nf-doesnotexist", { kind: "set-mode", mode: "disabled", audit: null }).catch((e: NetfenceError) => e.code));
      if (i === 9000) ops.push(manager.applyCommand(id, { kind: "remove-cidr", cidr: parseCidr("100.64.1.0/24") }));
    }
    const results = await Promise.all(ops);
    expect(results.filter((r) => r === "NOT_FOUND")).toHaveLength(1);
    const pol = manager.policyOf(id);
    expect(pol.allowCidrs).toHaveLength(10_000); // 10k + server − removed one
    expect(await reach(net.serverIp4[0]!)).toBe(true);
    expect(await reach(net.serverIp4[1]!)).toBe(false);
    // The durable state has all of it.
    await manager.persist();
    const stored = await new FileStateStore(dataDir).load();
    expect(stored!.attachments[0]!.policy.allowCidrs).toHaveLength(10_000);
  }, 300_000);
});
