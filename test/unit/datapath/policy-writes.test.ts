import { describe, expect, it } from "vitest";
import type { FilterEntry, ScopedRuleEntry } from "../../../daemon/src/policy/compiled.js";
import { ContentShadows } from "../../../daemon/src/datapath/content-shadow.js";
import { ScopeRegistry } from "../../../daemon/src/datapath/scope-registry.js";
import { replacePolicy, upsertEntries, type FrameWriter, type KnownAttachment } from "../../../daemon/src/datapath/policy-writes.js";
import { NetfenceError } from "@netfence/proto/errors";

// A REPLACE the loader refuses after it was sent: the kernel keeps the old generation, so the
// scope registry (which took the new one at send time, for the UPSERTs pipelined behind it) must
// not keep handing out the new generation's ids — scoped UPSERTs are refused until a REPLACE lands.

const scoped: ScopedRuleEntry = { scope: { protocols: [6], ports: [{ from: 443, to: 443 }], users: [], groups: [] }, allow: true, deny: false, ruleId: 7, expiresAtMs: null };
const entry = (last: number): FilterEntry => ({
  cidr: { family: 4, addr: new Uint8Array([10, 0, 0, last]), prefixLen: 32 }, allow: false, deny: false, expiresAtMs: null, scoped: [scoped],
});

class Writer implements FrameWriter {
  readonly shadows = new ContentShadows();
  refuse = false;
  frames = 0;
  async write(_id: string, _op: number, _payload: Buffer, sent: () => void): Promise<void> {
    sent(); // on the wire: the loader answers later
    this.frames++;
    if (this.refuse) throw new NetfenceError("RESOURCE_EXHAUSTED", "loader refused the REPLACE");
  }
}

describe("policy writes: a refused REPLACE", () => {
  it("leaves the scope registry unknown until the next REPLACE lands", async () => {
    const w = new Writer();
    const k: KnownAttachment = { slot: 1, keep: false, scopes: new ScopeRegistry() };
    await replacePolicy(w, k, "a", { mode: "allowlist", audit: false, entries: [entry(1)] });
    await upsertEntries(w, k, "a", [entry(2)]); // known: fine
    w.refuse = true;
    await expect(replacePolicy(w, k, "a", { mode: "allowlist", audit: false, entries: [entry(3)] })).rejects.toThrow(/refused/);
    w.refuse = false;
    await expect(upsertEntries(w, k, "a", [entry(4)])).rejects.toMatchObject({ code: "FAILED_PRECONDITION" });
    await replacePolicy(w, k, "a", { mode: "allowlist", audit: false, entries: [entry(5)] });
    await upsertEntries(w, k, "a", [entry(6)]);
    expect(k.scopes.scopeEntries).toBe(1); // one set (tcp/443, any owner) shared by .5 and .6
  });
});
