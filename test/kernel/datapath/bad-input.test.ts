import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelFilter } from "../../../daemon/src/datapath/kernel-filter.js";
import { parseCidr } from "@netfence/proto/parse";
import { type FilterSandbox, allow, closeFilterSandbox, filterSandbox, interfaceSpec, noDns, policy } from "../../helpers/kernel-filter-fixture.js";
import { probe, type SandboxNetwork, type Sandbox } from "../../helpers/sandbox.js";

const PORT = 7106;

describe("bad input gets a clear error and changes nothing", () => {
  let sb: Sandbox;
  let net: SandboxNetwork;
  let filter: KernelFilter;
  let ctx: FilterSandbox | undefined;
  const id = `t-bad-${process.pid}`;

  beforeAll(async () => {
    ctx = await filterSandbox("badi", PORT);
    ({ sb, net, filter } = ctx);
    await filter.attach(interfaceSpec(id, 51, net.hostIf), policy("allowlist", [allow(`${net.serverIp4[0]}/32`)]));
  });
  afterAll(async () => {
    await closeFilterSandbox(ctx);
  });

  it("invalid CIDRs are rejected with INVALID_ARGUMENT", () => {
    for (const text of ["10.0.0.0/33", "::/129", "garbage", "10.0.0.0/-1", "1.2.3/8", "", "10.0.0.0/8/8"]) {
      expect(() => parseCidr(text), text).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    }
    expect(parseCidr("10.1.2.3/8")).toMatchObject({ family: 4, prefixLen: 8, addr: Uint8Array.from([10, 0, 0, 0]) });
  });

  it("a missing interface → NOT_FOUND, nothing pinned", async () => {
    await expect(filter.attach(interfaceSpec("t-bad-missing", 52, "nf-nope0"), policy("allowlist", []))).rejects.toMatchObject({
      code: "NOT_FOUND",
      message: expect.stringContaining('interface "nf-nope0" does not exist'),
    });
    expect(await filter.listPinned()).toEqual([id]);
  });

  it("a non-cgroup path or a relative path → INVALID_ARGUMENT, nothing pinned", async () => {
    for (const p of ["/etc", "../..", "/proc/self"]) {
      await expect(filter.attach({ id: "t-bad-cg", slot: 53, target: { kind: "cgroup", path: p }, dns: noDns }, policy("allowlist", []))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    expect(await filter.listPinned()).toEqual([id]);
  });

  it("invalid ids, duplicate attachments and unknown ids are refused", async () => {
    await expect(filter.attach(interfaceSpec("../evil", 54, net.hostIf), policy("allowlist", []))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(filter.attach(interfaceSpec(id, 51, net.hostIf), policy("allowlist", []))).rejects.toMatchObject({ code: "ALREADY_EXISTS" });
    await expect(filter.upsertEntries("t-unknown", [allow("10.0.0.1/32")])).rejects.toMatchObject({ code: "NOT_FOUND" });
    await expect(filter.detach("t-unknown")).rejects.toMatchObject({ code: "NOT_FOUND" });
  });

  it("a malformed entry in a batch rejects the whole batch; the policy is unchanged", async () => {
    const bad = { ...allow("10.0.0.0/8"), cidr: { family: 4 as const, addr: new Uint8Array(4), prefixLen: 40 } };
    await expect(filter.upsertEntries(id, [allow(`${net.serverIp4[1]}/32`), bad])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await probe(sb, net.workloadNs, "tcp", net.serverIp4[1]!, { port: PORT, timeoutMs: 600 })).toBe(false);
    expect(await probe(sb, net.workloadNs, "tcp", net.serverIp4[0]!, { port: PORT })).toBe(true);
  });
});
