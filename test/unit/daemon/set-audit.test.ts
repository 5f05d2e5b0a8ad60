import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { SetAuditRequestSchema } from "@netfence/proto/daemon";
import type { NetfenceError } from "@netfence/proto/errors";
import { DaemonServiceImpl, type AttachmentService } from "../../../daemon/src/rpc/daemon-service.js";

// SetAudit (`netfenced audit`) is for standalone daemons: with a control plane it owns the policy.

function service(controlPlane: boolean, calls: [string, boolean][]): DaemonServiceImpl {
  const registry = {
    list: () => [],
    size: 0,
    daemonId: "d",
    setAudit: async (id: string, audit: boolean) => void calls.push([id, audit]),
  } as unknown as AttachmentService;
  return new DaemonServiceImpl({
    registry,
    version: "0",
    hostname: "h",
    controlPlane: controlPlane ? { state: () => "connected", address: () => "cp:1" } : null,
    events: () => ({ [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) }),
  });
}

const codeOf = (p: Promise<unknown>): Promise<string> => p.then(() => "OK", (e: NetfenceError) => e.code);

describe("DaemonService.SetAudit", () => {
  it("applies on a standalone daemon", async () => {
    const calls: [string, boolean][] = [];
    await service(false, calls).setAudit(create(SetAuditRequestSchema, { id: "nf-0123456789ab", audit: true }));
    expect(calls).toEqual([["nf-0123456789ab", true]]);
  });

  it("is refused with a control plane, and without an id; nothing is applied", async () => {
    const calls: [string, boolean][] = [];
    expect(await codeOf(service(true, calls).setAudit(create(SetAuditRequestSchema, { id: "nf-0123456789ab", audit: true })))).toBe("FAILED_PRECONDITION");
    expect(await codeOf(service(false, calls).setAudit(create(SetAuditRequestSchema, { id: " ", audit: true })))).toBe("INVALID_ARGUMENT");
    expect(calls).toEqual([]);
  });
});
