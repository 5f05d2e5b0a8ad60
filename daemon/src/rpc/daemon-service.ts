import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { EmptySchema, timestampFromMs, type Empty } from "@bufbuild/protobuf/wkt";
import {
  AdoptFailureSchema,
  AdoptOrphansResponseSchema,
  AttachResponseSchema,
  AttachmentInfoSchema,
  ConnectionState,
  DaemonStatusSchema,
  ListOrphansResponseSchema,
  ListResponseSchema,
  OrphanAttachmentSchema,
  type AdoptOrphansRequest,
  type AdoptOrphansResponse,
  type AttachRequest,
  type AttachResponse,
  type DaemonStatus,
  type DetachOrphanRequest,
  type DetachRequest,
  type SetAuditRequest,
  type ListOrphansResponse,
  type ListRequest,
  type ListResponse,
  type WatchEventsRequest,
  type HistoryRequest,
  type HistoryResponse,
} from "@netfence/proto/daemon";
import { AttachmentType } from "@netfence/proto/types";
import type { PacketEvent } from "@netfence/proto/control";
import { invalidArgument, NetfenceError } from "@netfence/proto/errors";
import type { AttachmentView, AttachmentStatsView } from "../attachments/attachment-view.js";
import type { AttachInput } from "../attachments/attach-flow.js";
import type { KernelPacketEvent } from "../datapath/filter.js";
import { dnsModeToWire, policyModeToWire } from "@netfence/proto/modes";
import { packetEventToWire } from "./packet-event.js";
import { toServiceError } from "@netfence/proto/grpc-status";
import { DIRECTION_KEY, parseAttachOptions } from "../attachments/attach-options.js";
import type { OrphanInfo } from "../attachments/orphan.js";
import type { ExplainQuery } from "../explain/explain-query.js";
import type { Explanation } from "../explain/explainer.js";
import { explainQueryFromWire, explanationToWire } from "./explain-wire.js";
import type { ExplainRequest, ExplainResponse } from "@netfence/proto/daemon";
import type { RulesView } from "../attachments/rules-view.js";
import type { ListRulesRequest, ListRulesResponse } from "@netfence/proto/daemon";
import { listRules, type OwnerCountView } from "./list-rules.js";
import { historyCall, type HistoryReader } from "./history-rpc.js";
import { applyPolicyCall, flushCall, type ApplyPolicyFn, type FlushFn } from "./apply-rpc.js";
import type { ApplyPolicyRequest, ApplyPolicyResponse, FlushResponse } from "@netfence/proto/daemon";

/**
 * DaemonService: request validation at the edge, then the attachment manager. The typed
 * `DaemonServiceImpl` is usable in memory (tests); `daemonServiceHandlers` adapts it to grpc-js.
 */

/** The part of the attachment manager the service needs (the manager implements it). */
export interface AttachmentService {
  attach(input: AttachInput): Promise<AttachmentView>;
  detach(id: string): Promise<void>;
  list(): AttachmentView[];
  statsFor(ids: readonly string[]): Promise<AttachmentStatsView[]>;
  readonly size: number;
  readonly daemonId: string;
  /** Pinned filters the state store does not account for (optional: absent = none). */
  orphans?(): OrphanInfo[];
  adoptOrphan?(id: string): Promise<AttachmentView>;
  detachOrphan?(id: string): Promise<void>;
  /** Audit mode on/off for one attachment, its mode unchanged (standalone daemons). */
  setAudit?(id: string, audit: boolean): Promise<void>;
  /** Start-up problems for the operator. */
  warnings?(): string[];
  /** The effective policy as the kernel holds it, with per-rule hit counts (optional). */
  listRules?(id: string): Promise<RulesView>;
}

export interface DaemonServiceDeps {
  readonly registry: AttachmentService;
  readonly version: string;
  readonly hostname: string;
  /** Control-plane connection state; null without a control plane. */
  readonly controlPlane: { state(): "disconnected" | "connecting" | "connected"; address(): string } | null;
  /** A fresh subscription to packet events per call. */
  readonly events: () => AsyncIterable<KernelPacketEvent>;
  /** An attachment's metadata, carried by its packet events (undefined: not attached). */
  readonly metadataOf?: (id: string) => Readonly<Record<string, string>> | undefined;
  /** How interface attachments are made on this kernel ("tcx" or "clsact"), "" if unknown. */
  readonly tcAttachMethod?: () => string;
  /** `netfenced explain` (explain/explainer.ts); absent: FAILED_PRECONDITION. */
  readonly explain?: (q: ExplainQuery) => Promise<Explanation>;
  /** The audit trail of policy changes (History); absent: an empty history. */
  readonly history?: HistoryReader;
  /** `netfenced apply -f` (apply/apply-policy.ts); absent: FAILED_PRECONDITION. */
  readonly applyPolicy?: ApplyPolicyFn;
  /** `netfenced flush` (apply/flush.ts); absent: FAILED_PRECONDITION. */
  readonly flush?: FlushFn;
  /** Blocked attempts by socket owner per attachment (issue 15, ListRules.blocked_by_owner); absent: none counted. */
  readonly blockedOwners?: (id: string) => readonly OwnerCountView[];
}

/** Metadata key selecting the TC hook of an interface attachment (the proto has no field). */
export const DIRECTION_METADATA_KEY = DIRECTION_KEY;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
const MAX_METADATA_ENTRIES = 64;
const MAX_METADATA_KEY = 128;
const MAX_METADATA_VALUE = 1024;
const MAX_TARGET = 4096;

export class DaemonServiceImpl {
  constructor(private readonly deps: DaemonServiceDeps) {}

  async attach(req: AttachRequest): Promise<AttachResponse> {
    const input = parseAttachRequest(req);
    const view = await this.deps.registry.attach(input);
    return create(AttachResponseSchema, { id: view.id, dnsAddress: view.dnsAddress });
  }

  async detach(req: DetachRequest): Promise<Empty> {
    const id = req.id.trim();
    if (id === "") throw invalidArgument("detach needs an attachment id");
    if (id.length > 128) throw invalidArgument("attachment id is too long");
    await this.deps.registry.detach(id);
    return create(EmptySchema);
  }

  async list(req: ListRequest): Promise<ListResponse> {
    if (req.pageSize < 0) throw invalidArgument(`page_size must not be negative (got ${req.pageSize})`);
    const pageSize = Math.min(req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize, MAX_PAGE_SIZE);
    const all = this.deps.registry.list();
    let start = 0;
    if (req.pageToken !== "") {
      const after = decodePageToken(req.pageToken);
      start = all.findIndex((a) => a.attachedAtMs > after.attachedAtMs || (a.attachedAtMs === after.attachedAtMs && a.id > after.id));
      if (start === -1) start = all.length;
    }
    const page = all.slice(start, start + pageSize);
    const stats = new Map((await this.deps.registry.statsFor(page.map((a) => a.id))).map((s) => [s.id, s]));
    const last = page.at(-1);
    return create(ListResponseSchema, {
      attachments: page.map((a) => {
        const s = stats.get(a.id);
        return create(AttachmentInfoSchema, {
          id: a.id,
          target: a.target,
          type: a.type === "interface" ? AttachmentType.TC : AttachmentType.CGROUP,
          mode: policyModeToWire(a.mode),
          dnsMode: dnsModeToWire(a.dnsMode),
          dnsAddress: a.dnsAddress,
          metadata: { ...a.metadata },
          packetsAllowed: s?.packetsAllowed ?? 0n,
          packetsBlocked: s?.packetsBlocked ?? 0n,
          dnsQueriesAllowed: s?.dnsQueriesAllowed ?? 0n,
          dnsQueriesBlocked: s?.dnsQueriesBlocked ?? 0n,
          attachedAt: timestampFromMs(a.attachedAtMs),
          attachMethod: a.method,
          packetsAudited: s?.packetsAudited ?? 0n,
          audit: a.audit,
          eventsLost: s?.eventsLost ?? 0n,
        });
      }),
      nextPageToken: last !== undefined && start + pageSize < all.length ? encodePageToken(last) : "",
      totalCount: all.length,
    });
  }

  async getStatus(): Promise<DaemonStatus> {
    const cp = this.deps.controlPlane;
    const state = cp?.state();
    return create(DaemonStatusSchema, {
      version: this.deps.version,
      daemonId: this.deps.registry.daemonId,
      hostname: this.deps.hostname,
      controlPlaneState:
        state === "connected" ? ConnectionState.CONNECTED : state === "connecting" ? ConnectionState.CONNECTING : ConnectionState.DISCONNECTED,
      controlPlaneAddress: cp?.address() ?? "",
      attachmentCount: this.deps.registry.size,
      tcAttachMethod: this.deps.tcAttachMethod?.() ?? "",
      historyEntries: this.deps.history?.size ?? 0,
      historyWriteErrors: this.deps.history?.writeErrors ?? 0,
      orphanCount: this.deps.registry.orphans?.().length ?? 0,
      warnings: this.deps.registry.warnings?.() ?? [],
    });
  }

  async listOrphans(): Promise<ListOrphansResponse> {
    return create(ListOrphansResponseSchema, {
      orphans: (this.deps.registry.orphans?.() ?? []).map((o) =>
        create(OrphanAttachmentSchema, {
          id: o.id,
          target: o.targetText,
          type: o.kind === "interface" ? AttachmentType.TC : o.kind === "cgroup" ? AttachmentType.CGROUP : AttachmentType.UNSPECIFIED,
          mode: o.mode === null ? 0 : policyModeToWire(o.mode),
          attached: o.attached,
          dnsPort: o.dnsPort,
          entries: o.entries,
          attachMethod: o.method ?? "",
          problem: o.problem ?? "",
        }),
      ),
    });
  }

  /** Re-registers one orphan (`id`) or every one (`all`); with `all`, one failing does not stop the others. */
  async adoptOrphans(req: AdoptOrphansRequest): Promise<AdoptOrphansResponse> {
    const registry = this.deps.registry;
    const id = req.id.trim();
    if ((id === "") === !req.all) throw invalidArgument("adopt needs either an orphan id or all");
    if (registry.adoptOrphan === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon cannot adopt orphans");
    if (!req.all) {
      const view = await registry.adoptOrphan(id);
      return create(AdoptOrphansResponseSchema, { adopted: [{ id: view.id, dnsAddress: view.dnsAddress }] });
    }
    const out = create(AdoptOrphansResponseSchema, {});
    for (const o of registry.orphans?.() ?? []) {
      try {
        const view = await registry.adoptOrphan(o.id);
        out.adopted.push(create(AttachResponseSchema, { id: view.id, dnsAddress: view.dnsAddress }));
      } catch (err) {
        out.failed.push(create(AdoptFailureSchema, { id: o.id, error: err instanceof Error ? err.message : String(err) }));
      }
    }
    return out;
  }

  listRules(req: ListRulesRequest): Promise<ListRulesResponse> {
    return listRules(req, this.deps.registry.listRules?.bind(this.deps.registry), this.deps.blockedOwners);
  }

  async history(req: HistoryRequest): Promise<HistoryResponse> {
    return historyCall(this.deps.history ?? { query: () => [] }, req);
  }

  async detachOrphan(req: DetachOrphanRequest): Promise<Empty> {
    const id = req.id.trim();
    if (id === "") throw invalidArgument("detach --orphan needs an orphan id");
    if (this.deps.registry.detachOrphan === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon has no orphans to detach");
    await this.deps.registry.detachOrphan(id);
    return create(EmptySchema);
  }

  /**
   * Audit mode for one attachment of a standalone daemon. With a control plane it owns the policy
   * (SetMode/BulkUpdate/SubscribedAck.audit): a local change would be silently overwritten by its
   * next BulkUpdate, so it is refused.
   */
  async setAudit(req: SetAuditRequest): Promise<Empty> {
    const id = req.id.trim();
    if (id === "") throw invalidArgument("audit needs an attachment id");
    if (this.deps.controlPlane !== null) {
      throw new NetfenceError("FAILED_PRECONDITION", "this daemon takes its policy from a control plane (control_plane.url): turn audit mode on there (SetMode/BulkUpdate audit)");
    }
    if (this.deps.registry.setAudit === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon cannot change audit mode");
    await this.deps.registry.setAudit(id, req.audit);
    return create(EmptySchema);
  }

  /** The standalone policy file; refused with a control plane (it owns the policy). */
  applyPolicy(req: ApplyPolicyRequest): Promise<ApplyPolicyResponse> {
    return applyPolicyCall(req, this.deps.applyPolicy, this.deps.controlPlane !== null);
  }

  flush(): Promise<FlushResponse> {
    return flushCall(this.deps.flush);
  }

  /** Packet events, optionally for one attachment; ends when `signal` aborts or events end. */
  async explain(req: ExplainRequest): Promise<ExplainResponse> {
    if (this.deps.explain === undefined) throw new NetfenceError("FAILED_PRECONDITION", "this daemon cannot explain verdicts");
    return explanationToWire(await this.deps.explain(explainQueryFromWire(req)));
  }

  async *watchEvents(req: WatchEventsRequest, signal: AbortSignal): AsyncGenerator<PacketEvent> {
    const id = req.attachmentId.trim();
    if (id !== "" && !this.deps.registry.list().some((a) => a.id === id)) {
      throw new NetfenceError("NOT_FOUND", `no attachment with id "${id}"`, { details: { id } });
    }
    const iterator = this.deps.events()[Symbol.asyncIterator]();
    const aborted = new Promise<IteratorResult<KernelPacketEvent>>((resolve) => {
      if (signal.aborted) resolve({ done: true, value: undefined });
      signal.addEventListener("abort", () => resolve({ done: true, value: undefined }), { once: true });
    });
    try {
      for (;;) {
        const next = await Promise.race([iterator.next(), aborted]);
        if (next.done) return;
        const e = next.value;
        if (id === "" || e.attachmentId === id) yield packetEventToWire(e, e.attachmentId === null ? undefined : this.deps.metadataOf?.(e.attachmentId));
      }
    } finally {
      await iterator.return?.();
    }
  }
}

export function parseAttachRequest(req: AttachRequest): AttachInput {
  const metadata: Record<string, string> = {};
  const entries = Object.entries(req.metadata);
  if (entries.length > MAX_METADATA_ENTRIES) throw invalidArgument(`too many metadata entries (${entries.length} > ${MAX_METADATA_ENTRIES})`);
  for (const [k, v] of entries) {
    if (k === "" || k.length > MAX_METADATA_KEY) throw invalidArgument(`metadata key "${k.slice(0, 40)}" must be 1..${MAX_METADATA_KEY} characters`);
    if (v.length > MAX_METADATA_VALUE) throw invalidArgument(`metadata value of "${k}" is longer than ${MAX_METADATA_VALUE} characters`);
    metadata[k] = v;
  }
  switch (req.target.case) {
    case "interfaceName": {
      const name = req.target.value.trim();
      if (name === "") throw invalidArgument("interface_name is empty");
      if (name.length > MAX_TARGET) throw invalidArgument("interface_name is too long");
      const { direction } = parseAttachOptions(metadata, "interface");
      return { target: { kind: "interface", name, direction }, metadata };
    }
    case "cgroupPath": {
      const path = req.target.value.trim();
      if (path === "") throw invalidArgument("cgroup_path is empty");
      if (path.length > MAX_TARGET) throw invalidArgument("cgroup_path is too long");
      parseAttachOptions(metadata, "cgroup");
      return { target: { kind: "cgroup", path }, metadata };
    }
    default:
      throw invalidArgument("attach needs a target: interface_name or cgroup_path");
  }
}

function encodePageToken(a: AttachmentView): string {
  return Buffer.from(JSON.stringify([a.attachedAtMs, a.id])).toString("base64url");
}

function decodePageToken(token: string): { attachedAtMs: number; id: string } {
  try {
    if (token.length > 512) throw new Error("too long");
    const v: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === "number" && typeof v[1] === "string") return { attachedAtMs: v[0], id: v[1] };
  } catch {
    // fall through
  }
  throw invalidArgument("page_token is not one this daemon issued");
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => void;

/**
 * grpc-js handlers keyed by the RPC names of the .proto (as `serviceDefinition` keys them).
 * `impl` may be a promise: the socket is bound first (so a second daemon is refused before it
 * touches any pin) and calls arriving during start-up wait until the daemon is ready.
 */
export function daemonServiceHandlers(impl: DaemonServiceImpl | Promise<DaemonServiceImpl>): grpc.UntypedServiceImplementation {
  const ready = Promise.resolve(impl);
  ready.catch(() => undefined);
  const unary =
    <Req, Res>(fn: (s: DaemonServiceImpl, req: Req) => Promise<Res>): Unary<Req, Res> =>
    (call, cb) => {
      ready.then((s) => fn(s, call.request)).then(
        (res) => cb(null, res),
        (err: unknown) => cb(toServiceError(err)),
      );
    };
  return {
    Attach: unary((s, r: AttachRequest) => s.attach(r)),
    Detach: unary((s, r: DetachRequest) => s.detach(r)),
    List: unary((s, r: ListRequest) => s.list(r)),
    GetStatus: unary((s, _r: Empty) => s.getStatus()),
    ListOrphans: unary((s, _r: Empty) => s.listOrphans()),
    AdoptOrphans: unary((s, r: AdoptOrphansRequest) => s.adoptOrphans(r)),
    DetachOrphan: unary((s, r: DetachOrphanRequest) => s.detachOrphan(r)),
    Explain: unary((s, r: ExplainRequest) => s.explain(r)),
    ListRules: unary((s, r: ListRulesRequest) => s.listRules(r)),
    History: unary((s, r: HistoryRequest) => s.history(r)),
    SetAudit: unary((s, r: SetAuditRequest) => s.setAudit(r)),
    ApplyPolicy: unary((s, r: ApplyPolicyRequest) => s.applyPolicy(r)),
    Flush: unary((s, _r: Empty) => s.flush()),
    WatchEvents: (call: grpc.ServerWritableStream<WatchEventsRequest, PacketEvent>) => {
      const ac = new AbortController();
      call.on("cancelled", () => ac.abort());
      call.on("close", () => ac.abort());
      void (async () => {
        try {
          const s = await ready;
          for await (const ev of s.watchEvents(call.request, ac.signal)) {
            if (!call.write(ev)) await new Promise<void>((r) => call.once("drain", () => r()));
          }
          call.end();
        } catch (err) {
          // grpc-js sends the status of an 'error' event (destroy() would drop it).
          call.emit("error", toServiceError(err));
        }
      })();
    },
  };
}
