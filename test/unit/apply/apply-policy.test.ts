import { describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { create } from "@bufbuild/protobuf";
import { ApplyPolicyRequestSchema } from "@netfence/proto/daemon";
import { NetfenceError } from "@netfence/proto/errors";
import type { NetfenceError as NfError } from "@netfence/proto/errors";
import { PolicyApplier, type ApplyHost } from "../../../daemon/src/apply/apply-policy.js";
import { MANAGEMENT_OFF } from "../../../daemon/src/apply/management.js";
import type { AttachmentView } from "../../../daemon/src/attachments/attachment-view.js";
import type { AttachmentPolicy, PolicyCommand } from "../../../daemon/src/policy/policy.js";
import type { HistoryRecord } from "../../../daemon/src/history/history-entry.js";
import { DaemonServiceImpl, type AttachmentService } from "../../../daemon/src/rpc/daemon-service.js";

// The applier's all-or-nothing contract against a fake manager: a failing step undoes the steps
// done before it (new attachments detached, replaced policies restated, removed ones re-created).

/** A fake cgroup2 mount with the cgroups a, b, c. */
function cgroupRoot(): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "nf-apply-cg-"));
  for (const n of ["a", "b", "c"]) {
    mkdirSync(path.join(root, n));
    writeFileSync(path.join(root, n, "cgroup.procs"), "");
  }
  return root;
}

class FakeHost implements ApplyHost {
  readonly views = new Map<string, AttachmentView>();
  readonly policies = new Map<string, AttachmentPolicy>();
  readonly calls: string[] = [];
  failOn: string | null = null;

  list(): AttachmentView[] {
    return [...this.views.values()];
  }
  holderOf(key: string): string | null {
    for (const v of this.views.values()) if (key === (v.type === "cgroup" ? `cg:${v.target}` : `if:${v.target}:ingress`)) return v.id;
    return null;
  }
  policyOf(id: string): AttachmentPolicy {
    return this.policies.get(id)!;
  }
  async attach(input: Parameters<ApplyHost["attach"]>[0]): Promise<AttachmentView> {
    this.calls.push(`attach ${input.id}`);
    if (this.failOn === `attach ${input.id}`) throw new NetfenceError("UNAVAILABLE", "attach failed");
    const view: AttachmentView = {
      id: input.id!, target: input.target.kind === "cgroup" ? input.target.path : input.target.name, type: input.target.kind, mode: input.policy!.mode,
      audit: false, dnsMode: "disabled", dnsAddress: "", metadata: { ...input.metadata }, attachedAtMs: 0, method: "cgroup-link",
    };
    this.views.set(view.id, view);
    this.policies.set(view.id, input.policy!);
    return view;
  }
  async detach(id: string): Promise<void> {
    this.calls.push(`detach ${id}`);
    if (this.failOn === `detach ${id}`) throw new NetfenceError("UNAVAILABLE", "detach failed");
    this.views.delete(id);
    this.policies.delete(id);
  }
  async applyCommand(id: string, c: PolicyCommand): Promise<void> {
    this.calls.push(`command ${id}`);
    if (this.failOn === `command ${id}`) throw new NetfenceError("UNAVAILABLE", "command failed");
    if (c.kind !== "bulk-update") throw new Error("unexpected");
    const p = this.policies.get(id)!;
    this.policies.set(id, { ...p, mode: c.mode, audit: c.audit, allowCidrs: c.allowCidrs, denyCidrs: c.denyCidrs, dns: c.dns ?? p.dns });
  }
}

const file = (root: string, items: string[]) => `version: 1\nattachments:\n${items.map((i) => `  - ${i.replace("ROOT", root)}`).join("\n")}\n`;

describe("PolicyApplier", () => {
  it("applies, is idempotent, and records the apply in the audit trail", async () => {
    const root = cgroupRoot();
    const host = new FakeHost();
    const records: HistoryRecord[] = [];
    const applier = new PolicyApplier({ host, cgroupRoot: root, management: MANAGEMENT_OFF, record: (r) => records.push(r), logger: pino({ level: "silent" }) });
    const text = file(root, ["{name: a, cgroup: ROOT/a, mode: denylist, deny: [{cidr: 10.0.0.0/8}]}"]);
    expect((await applier.apply("p.yaml", text, false)).applied).toBe(true);
    expect(await applier.apply("p.yaml", text, false)).toEqual({ changed: false, applied: false, changes: [] });
    expect(records.map((r) => [r.source, r.action, r.result])).toEqual([["apply", "apply", "applied"], ["apply", "apply", "unchanged"]]);
    expect(host.views.get("a")?.metadata).toEqual({ "netfence.applied": "true" });
  });

  it("a failing step undoes everything done before it; the attachments of others are never touched", async () => {
    const root = cgroupRoot();
    const host = new FakeHost();
    const applier = new PolicyApplier({ host, cgroupRoot: root, management: MANAGEMENT_OFF, record: () => undefined, logger: pino({ level: "silent" }) });
    await applier.apply("p.yaml", file(root, ["{name: a, cgroup: ROOT/a, mode: denylist}", "{name: b, cgroup: ROOT/b, mode: denylist}"]), false);
    host.views.set("foreign", { ...host.views.get("a")!, id: "foreign", metadata: {} });
    const before = new Map(host.policies);
    // new c, a changed, b changed (fails), … : c detached and a restored.
    host.failOn = "command b";
    host.calls.length = 0;
    const next = file(root, ["{name: a, cgroup: ROOT/a, mode: block-all}", "{name: b, cgroup: ROOT/b, mode: block-all}", "{name: c, cgroup: ROOT/c}"]);
    await expect(applier.apply("p.yaml", next, false)).rejects.toThrow(/apply failed: command failed; everything done before was undone \(2 step\(s\)\)/);
    expect(host.calls).toEqual(["attach c", "command a", "command b", "command a", "detach c"]);
    expect(host.policies.get("a")!.mode).toBe(before.get("a")!.mode);
    expect([...host.views.keys()].sort()).toEqual(["a", "b", "foreign"]);
    // A removal that fails: the removed one before it is re-created with its policy and id.
    host.failOn = "detach b";
    host.calls.length = 0;
    await expect(applier.apply("p.yaml", "version: 1\nattachments: []\n", false)).rejects.toThrow(/detach failed/);
    expect(host.calls).toEqual(["detach a", "detach b", "attach a"]);
    expect(host.policies.get("a")).toEqual(before.get("a"));
  });

  it("a target already held by an attachment the file did not make is refused at validation, naming its line; nothing is called", async () => {
    const root = cgroupRoot();
    const host = new FakeHost();
    const applier = new PolicyApplier({ host, cgroupRoot: root, management: MANAGEMENT_OFF, record: () => undefined, logger: pino({ level: "silent" }) });
    await applier.apply("p.yaml", file(root, ["{name: a, cgroup: ROOT/a}"]), false);
    host.views.set("nf-made-by-attach", { ...host.views.get("a")!, id: "nf-made-by-attach", target: path.join(root, "b"), metadata: {} });
    host.calls.length = 0;
    const text = file(root, ["{name: a, cgroup: ROOT/a}", "{name: b, cgroup: ROOT/b}"]);
    await expect(applier.apply("p.yaml", text, false)).rejects.toThrow(/p\.yaml:4:\d+: attachment "b": .*b is already attached as nf-made-by-attach: detach it first/);
    expect(host.calls).toEqual([]);
  });

  it("a flush waits for the apply in progress and every apply after it is refused", async () => {
    const root = cgroupRoot();
    const host = new FakeHost();
    let release = (): void => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const attach = host.attach.bind(host);
    host.attach = async (input) => {
      await gate; // the apply is in the middle of its first attach
      return attach(input);
    };
    const applier = new PolicyApplier({ host, cgroupRoot: root, management: MANAGEMENT_OFF, record: () => undefined, logger: pino({ level: "silent" }) });
    const applying = applier.apply("p.yaml", file(root, ["{name: a, cgroup: ROOT/a}", "{name: b, cgroup: ROOT/b}"]), false);
    const order: string[] = [];
    const flushing = applier.flush(async () => {
      order.push(`flush sees ${[...host.views.keys()].sort().join(",")}`);
      for (const id of [...host.views.keys()]) await host.detach(id);
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual([]); // not beside the apply
    release();
    await applying;
    await flushing;
    expect(order).toEqual(["flush sees a,b"]);
    expect(host.views.size).toBe(0);
    await expect(applier.apply("p.yaml", file(root, ["{name: c, cgroup: ROOT/c}"]), false)).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    expect(host.views.size).toBe(0);
  });

  it("ApplyPolicy is refused when a control plane is configured", async () => {
    let called = false;
    const svc = (cp: boolean) => new DaemonServiceImpl({
      registry: { list: () => [], size: 0, daemonId: "d" } as unknown as AttachmentService,
      version: "0", hostname: "h",
      controlPlane: cp ? { state: () => "connected", address: () => "cp:1" } : null,
      events: () => ({ [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) }),
      applyPolicy: async () => ((called = true), { changed: false, applied: false, changes: [] }),
    });
    const req = create(ApplyPolicyRequestSchema, { fileName: "p.yaml", content: "version: 1\n" });
    const code = await svc(true).applyPolicy(req).then(() => "OK", (e: NfError) => e.code);
    expect(code).toBe("FAILED_PRECONDITION");
    expect(called).toBe(false);
    expect((await svc(false).applyPolicy(req)).changed).toBe(false);
    expect(called).toBe(true);
  });
});
