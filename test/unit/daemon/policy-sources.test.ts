import { describe, expect, it } from "vitest";
import { LatePolicySource } from "../../../daemon/src/attachments/late-policy-source.js";
import { LocalPolicySource } from "../../../daemon/src/attachments/local-policy-source.js";
import type { AttachmentView } from "../../../daemon/src/attachments/attachment-view.js";
import { RecordingPolicySource, policy } from "./fakes.js";

const view: AttachmentView = {
  id: "nf-000000000001",
  target: "veth1",
  type: "interface",
  mode: "disabled",
  dnsMode: "disabled",
  dnsAddress: "127.0.0.1:11000",
  metadata: {},
  attachedAtMs: 1,
  method: "tcx",
};

describe("policy sources", () => {
  it("LocalPolicySource answers every attachment with the configured default", async () => {
    const p = policy({ mode: "denylist" });
    expect(await new LocalPolicySource(p).subscribe(view)).toBe(p);
  });

  it("LatePolicySource refuses before its target is set, then forwards both ways", async () => {
    const late = new LatePolicySource();
    await expect(late.subscribe(view)).rejects.toMatchObject({ code: "UNAVAILABLE" });
    late.unsubscribed("nf-x", "removed"); // dropped, no target yet
    const target = new RecordingPolicySource(policy({ mode: "block-all" }));
    late.set(target);
    expect((await late.subscribe(view)).mode).toBe("block-all");
    late.unsubscribed("nf-y", "detached");
    expect(target.unsubscribedCalls).toEqual([{ id: "nf-y", reason: "detached" }]);
  });
});
