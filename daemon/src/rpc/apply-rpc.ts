import { create } from "@bufbuild/protobuf";
import { invalidArgument, NetfenceError } from "@netfence/proto/errors";
import {
  ApplyPolicyResponseSchema,
  FlushResponseSchema,
  type ApplyPolicyRequest,
  type ApplyPolicyResponse,
  type FlushResponse,
} from "@netfence/proto/daemon";
import type { ApplyResult } from "../apply/apply-policy.js";

/** ApplyPolicy and Flush (issue 15): the edge checks; the work is in daemon/src/apply/. */

/** The largest policy file accepted (the file is read whole by the CLI). */
export const MAX_POLICY_FILE_BYTES = 16 << 20;

export type ApplyPolicyFn = (fileName: string, content: string, dryRun: boolean) => Promise<ApplyResult>;
export type FlushFn = () => Promise<{ detached: string[]; removed: string[] }>;

export async function applyPolicyCall(req: ApplyPolicyRequest, apply: ApplyPolicyFn | undefined, hasControlPlane: boolean): Promise<ApplyPolicyResponse> {
  if (hasControlPlane) {
    throw new NetfenceError("FAILED_PRECONDITION", "this daemon takes its policy from a control plane (control_plane.url): a local policy file would be overwritten by it; apply the policy there");
  }
  if (apply === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon cannot apply policy files");
  if (Buffer.byteLength(req.content, "utf8") > MAX_POLICY_FILE_BYTES) throw invalidArgument(`the policy file is larger than ${MAX_POLICY_FILE_BYTES} bytes`);
  const fileName = (req.fileName.trim() || "policy.yaml").slice(0, 256);
  const r = await apply(fileName, req.content, req.dryRun);
  return create(ApplyPolicyResponseSchema, { changed: r.changed, applied: r.applied, changes: [...r.changes] });
}

export async function flushCall(flush: FlushFn | undefined): Promise<FlushResponse> {
  if (flush === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon cannot flush");
  const r = await flush();
  return create(FlushResponseSchema, { detached: r.detached, removed: r.removed });
}
