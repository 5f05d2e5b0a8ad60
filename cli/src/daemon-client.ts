import { lstatSync, statSync } from "node:fs";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
import { EmptySchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AdoptOrphansRequestSchema,
  AttachRequestSchema,
  DaemonService,
  DetachOrphanRequestSchema,
  DetachRequestSchema,
  ExplainRequestSchema,
  SetAuditRequestSchema,
  ListRequestSchema,
  ListRulesRequestSchema,
  WatchEventsRequestSchema,
  HistoryRequestSchema,
  type HistoryResponse,
  type AdoptOrphansResponse,
  type AttachResponse,
  type AttachmentInfo,
  type ExplainResponse,
  type ListOrphansResponse,
  type DaemonStatus,
  type ListResponse,
  type ListRulesResponse,
} from "@netfence/proto/daemon";
import type { PacketEvent } from "@netfence/proto/control";
import { ApplyPolicyRequestSchema, FlushRequestSchema, type ApplyPolicyResponse, type FlushResponse } from "@netfence/proto/daemon";
import { NetfenceError } from "@netfence/proto/errors";
import { ConnectionFailed, Http2GrpcChannel } from "./grpc-over-http2.js";

/**
 * Typed DaemonService client over the daemon's unix socket (protobuf-es messages on a small
 * HTTP/2 gRPC channel, see grpc-over-http2.ts). Errors come back as NetfenceError (gRPC status
 * mapped in @netfence/proto/grpc-status); an absent or dead socket becomes one clear
 * UNAVAILABLE saying how to start the daemon.
 */
/** `details.reason` of the UNAVAILABLE error raised when no daemon listens on the socket (exit code 3). */
export const DAEMON_NOT_RUNNING = "daemon-not-running";

type TypedMethod<I extends DescMessage, O extends DescMessage> = DescMethod & { input: I; output: O };

export class DaemonClient {
  private readonly channel: Http2GrpcChannel;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 60_000,
  ) {
    this.channel = new Http2GrpcChannel(socketPath);
  }

  private notRunning(): NetfenceError {
    return new NetfenceError("UNAVAILABLE", `daemon not running at ${this.socketPath}: start it with \`netfenced start\``, {
      details: { socket: this.socketPath, reason: DAEMON_NOT_RUNNING },
    });
  }

  /** No socket → not running; a directory on the way we may not search → permission denied. */
  private checkSocket(): void {
    try {
      lstatSync(this.socketPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw this.connectionFailed(new ConnectionFailed((err as Error).message, code));
    }
  }

  /** The connection failed: a socket we may not use is not a daemon that is not running. */
  private connectionFailed(err: ConnectionFailed): NetfenceError {
    if (err.errno !== "EACCES" && err.errno !== "EPERM") return this.notRunning();
    let owner = "";
    try {
      const st = statSync(this.socketPath);
      owner = ` (socket mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}, uid ${st.uid}, gid ${st.gid})`;
    } catch {
      // a directory on the way is not searchable: no details
    }
    return new NetfenceError(
      "PERMISSION_DENIED",
      `permission denied on ${this.socketPath}${owner}: run the command as root (e.g. with sudo), or as a member of the socket's group with access to its directory`,
    );
  }

  private async unary<I extends DescMessage, O extends DescMessage>(
    method: TypedMethod<I, O>,
    req: MessageShape<I>,
    timeoutMs: number = this.timeoutMs,
  ): Promise<MessageShape<O>> {
    this.checkSocket();
    try {
      const bytes = await this.channel.unary(pathOf(method), toBinary(method.input, req), timeoutMs);
      return fromBinary(method.output, bytes);
    } catch (err) {
      if (err instanceof ConnectionFailed) throw this.connectionFailed(err);
      throw err;
    }
  }

  /**
   * No client deadline: the daemon bounds an attach itself (control_plane.subscribe_ack_timeout)
   * and rolls it back on timeout; a client giving up first would leave an attach it never saw.
   */
  attach(req: MessageInitShape<typeof AttachRequestSchema>): Promise<AttachResponse> {
    return this.unary(DaemonService.method.attach, create(AttachRequestSchema, req), Infinity);
  }

  async detach(id: string): Promise<void> {
    await this.unary(DaemonService.method.detach, create(DetachRequestSchema, { id }));
  }

  list(pageSize = 0, pageToken = ""): Promise<ListResponse> {
    return this.unary(DaemonService.method.list, create(ListRequestSchema, { pageSize, pageToken }));
  }

  /** Every page, following next_page_token. */
  async listAll(pageSize = 100): Promise<{ attachments: AttachmentInfo[]; totalCount: number }> {
    const attachments: AttachmentInfo[] = [];
    let token = "";
    let totalCount = 0;
    do {
      const page = await this.list(pageSize, token);
      attachments.push(...page.attachments);
      totalCount = page.totalCount;
      token = page.nextPageToken;
    } while (token !== "");
    return { attachments, totalCount };
  }

  getStatus(): Promise<DaemonStatus> {
    return this.unary(DaemonService.method.getStatus, create(EmptySchema));
  }

  listOrphans(): Promise<ListOrphansResponse> {
    return this.unary(DaemonService.method.listOrphans, create(EmptySchema));
  }

  adoptOrphans(target: { id: string } | { all: true }): Promise<AdoptOrphansResponse> {
    return this.unary(DaemonService.method.adoptOrphans, create(AdoptOrphansRequestSchema, "all" in target ? { all: true } : { id: target.id }));
  }

  explain(req: { attachmentId: string; address: string; domain: string; port: number; protocol: string; user?: string; group?: string }): Promise<ExplainResponse> {
    return this.unary(DaemonService.method.explain, create(ExplainRequestSchema, req));
  }

  /** The effective policy as the kernel holds it, with per-rule hit counts (issue 14). */
  listRules(id: string): Promise<ListRulesResponse> {
    return this.unary(DaemonService.method.listRules, create(ListRulesRequestSchema, { id }));
  }

  /** The audit trail (History extension): oldest first, the newest `limit` (0 = the daemon's maximum). */
  async history(req: { attachmentId?: string; sinceMs?: number; limit?: number }): Promise<HistoryResponse> {
    return this.unary(
      DaemonService.method.history,
      create(HistoryRequestSchema, {
        attachmentId: req.attachmentId ?? "",
        limit: req.limit ?? 0,
        ...(req.sinceMs !== undefined ? { since: timestampFromMs(req.sinceMs) } : {}),
      }),
    );
  }

  /** The standalone policy file; no client deadline (the daemon bounds each step itself). */
  applyPolicy(fileName: string, content: string, dryRun: boolean): Promise<ApplyPolicyResponse> {
    return this.unary(DaemonService.method.applyPolicy, create(ApplyPolicyRequestSchema, { fileName, content, dryRun }), Infinity);
  }

  flush(): Promise<FlushResponse> {
    return this.unary(DaemonService.method.flush, create(FlushRequestSchema), Infinity);
  }

  async setAudit(id: string, audit: boolean): Promise<void> {
    await this.unary(DaemonService.method.setAudit, create(SetAuditRequestSchema, { id, audit }));
  }

  async detachOrphan(id: string): Promise<void> {
    await this.unary(DaemonService.method.detachOrphan, create(DetachOrphanRequestSchema, { id }));
  }

  /** Packet events until the returned iterator is closed or the daemon ends the stream. */
  async *watchEvents(attachmentId = ""): AsyncGenerator<PacketEvent> {
    this.checkSocket();
    const method = DaemonService.method.watchEvents;
    try {
      for await (const bytes of this.channel.serverStream(pathOf(method), toBinary(method.input, create(WatchEventsRequestSchema, { attachmentId })))) {
        yield fromBinary(method.output, bytes);
      }
    } catch (err) {
      if (err instanceof ConnectionFailed) throw this.connectionFailed(err);
      throw err;
    }
  }

  close(): void {
    this.channel.close();
  }
}

function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}
