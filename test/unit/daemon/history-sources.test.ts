import { afterEach, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { parseCidr } from "@netfence/proto/parse";
import { NetfenceError } from "@netfence/proto/errors";
import { AttachmentManager } from "../../../daemon/src/attachments/manager.js";
import { AttachmentCore } from "../../../daemon/src/attachments/attachment-core.js";
import { LocalPolicySource } from "../../../daemon/src/attachments/local-policy-source.js";
import { FakeFilter } from "../../../daemon/src/datapath/fake-filter.js";
import { MemoryStateStore } from "../../../daemon/src/store/state-store.js";
import { PolicyHistory } from "../../../daemon/src/history/policy-history.js";
import type { HistoryEntry } from "../../../daemon/src/history/history-entry.js";
import { FakeDnsServers, fakeCgroupRoot, policy, silentLogger } from "./fakes.js";

// Who the audit trail says a change came from, for the paths a control plane does not take:
// the default policy of a standalone daemon, the local API (CLI), detach; and that a command the
// applier refuses (unknown attachment, kernel failure) is recorded as rejected with nothing changed.

const roots: string[] = [];
const managers: AttachmentManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function rig(): Promise<{ manager: AttachmentManager; filter: FakeFilter; entries: HistoryEntry[]; history: PolicyHistory }> {
  const cgroupRoot = fakeCgroupRoot("a");
  roots.push(cgroupRoot);
  const entries: HistoryEntry[] = [];
  const history = await PolicyHistory.open({ dir: null, maxEntries: 100, maxAgeMs: 3600_000, logger: silentLogger, onRecord: (e) => entries.push(e) });
  const filter = new FakeFilter();
  const store = new MemoryStateStore();
  const dns = { listenAddr: "127.0.0.1", portMin: 11000, portMax: 11010 };
  const core = new AttachmentCore({ filter, store, logger: silentLogger, dns, history });
  const manager = new AttachmentManager({
    core, filter, store, dns, policySource: new LocalPolicySource(policy({ mode: "allowlist", allowCidrs: [{ cidr: parseCidr("10.0.0.0/8"), expiresAtMs: null }] })),
    dnsServers: new FakeDnsServers(), logger: silentLogger, cgroupRoot, gcIntervalMs: 0, fallbackDaemonId: "nfd-test",
  });
  managers.push(manager);
  await manager.start();
  return { manager, filter, entries, history };
}

const settle = () => new Promise((r) => setImmediate(r));

describe("audit trail sources", () => {
  it("default policy on attach, cli for local commands and detach; refused commands are rejected", async () => {
    const { manager, entries, filter } = await rig();
    const v = await manager.attach({ target: { kind: "cgroup", path: "a" }, metadata: {} });
    expect(entries.at(-1)).toMatchObject({ attachmentId: v.id, source: "default-policy", action: "attach", result: "applied" });
    expect(entries.at(-1)!.summary).toContain("mode allowlist; allow 1 [10.0.0.0/8]");

    await manager.applyCommand(v.id, { kind: "set-mode", mode: "denylist", audit: null });
    await settle();
    expect(entries.at(-1)).toMatchObject({ source: "cli", action: "set-mode", summary: "mode allowlist→denylist", result: "applied", commandId: "" });

    await manager.applyCommand(v.id, { kind: "set-mode", mode: "denylist", audit: null });
    await settle();
    expect(entries.at(-1)).toMatchObject({ action: "set-mode", result: "applied" });

    await manager.applyCommand(v.id, { kind: "bulk-update", mode: "denylist", audit: false, allowCidrs: [{ cidr: parseCidr("10.0.0.0/8"), expiresAtMs: null }], denyCidrs: [], dns: null });
    await settle();
    expect(entries.at(-1)).toMatchObject({ action: "bulk-update", result: "unchanged" });

    await expect(manager.applyCommand("nf-nope", { kind: "set-mode", mode: "block-all", audit: null })).rejects.toThrow(/no attachment/);
    await settle();
    expect(entries.at(-1)).toMatchObject({ attachmentId: "nf-nope", source: "cli", result: "rejected" });
    expect(entries.at(-1)!.error).toMatch(/no attachment/);

    // A kernel failure: rejected, and the policy is what it was.
    filter.failNext("setMode", new NetfenceError("INTERNAL", "map update failed"));
    await expect(manager.applyCommand(v.id, { kind: "set-mode", mode: "block-all", audit: null })).rejects.toThrow(/map update failed/);
    await settle();
    expect(entries.at(-1)).toMatchObject({ attachmentId: v.id, action: "set-mode", result: "rejected", error: "map update failed" });
    expect(manager.policyOf(v.id).mode).toBe("denylist");

    await manager.detach(v.id);
    expect(entries.at(-1)).toMatchObject({ attachmentId: v.id, source: "cli", action: "detach", result: "applied" });
  });
});
