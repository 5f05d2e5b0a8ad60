import { describe, expect, it } from "vitest";
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
});
