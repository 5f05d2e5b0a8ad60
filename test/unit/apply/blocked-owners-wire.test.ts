import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BlockedByOwnerSchema, ListRulesRequestSchema } from "@netfence/proto/daemon";
import { DaemonServiceImpl, type AttachmentService } from "../../../daemon/src/rpc/daemon-service.js";
import type { RulesView } from "../../../daemon/src/attachments/rules-view.js";
import { ownerRows } from "../../../cli/src/commands/status.js";

// status --rules (issue 15): ListRules carries the attachment's blocked attempts by socket owner
// (lane S's BlockedOwners counts, handed in as DaemonServiceDeps.blockedOwners), and the CLI prints them.

const T = Date.UTC(2026, 11, 3, 9, 0, 0);

describe("ListRules.blocked_by_owner", () => {
  it("carries the counts of the attachment asked for, in the order given", async () => {
    const view: RulesView = { id: "web", mode: "allowlist", audit: false, capacity: 240, overflowedRules: 0, rules: [] };
    const svc = new DaemonServiceImpl({
      registry: { list: () => [], size: 0, daemonId: "d", listRules: async () => view } as unknown as AttachmentService,
      version: "0", hostname: "h", controlPlane: null,
      events: () => ({ [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true, value: undefined }) }) }),
      blockedOwners: (id) => (id === "web" ? [
        { uid: 65534, kind: "uid", user: "nobody", blocked: 7, audited: 0, lastMs: T },
        { uid: null, kind: "unknown", user: null, blocked: 2, audited: 1, lastMs: 0 },
      ] : []),
    });
    const r = await svc.listRules(create(ListRulesRequestSchema, { id: "web" }));
    expect(r.blockedByOwner.map((o) => [o.kind, o.uid, o.user, o.blocked, o.audited, o.last !== undefined])).toEqual([
      ["uid", 65534, "nobody", 7n, 0n, true],
      ["unknown", 0, "", 2n, 1n, false],
    ]);
  });

  it("status --rules prints a row per owner", () => {
    const rows = ownerRows([
      create(BlockedByOwnerSchema, { kind: "uid", uid: 1, user: "daemon", blocked: 3n, last: timestampFromMs(T - 5000) }),
      create(BlockedByOwnerSchema, { kind: "uid", uid: 4242, blocked: 1n }),
      create(BlockedByOwnerSchema, { kind: "other", blocked: 9n }),
    ], T);
    expect(rows).toEqual([["daemon", "1", "3", "0", "5s ago"], ["-", "4242", "1", "0", "-"], ["(other uids)", "-", "9", "0", "-"]]);
  });
});
