import * as grpc from "@grpc/grpc-js";
import { existsSync } from "node:fs";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import {
  AttachRequestSchema,
  DaemonService,
  DetachRequestSchema,
  ListRequestSchema,
  WatchEventsRequestSchema,
  type AttachResponse,
  type AttachmentInfo,
  type DaemonStatus,
  type ListResponse,
} from "../../proto/gen/netfence/v1/daemon_pb.js";
import type { PacketEvent } from "../../proto/gen/netfence/v1/control_pb.js";
import { methodDefinition, type TypedMethod } from "../../daemon/src/rpc/grpc-adapter.js";
import { fromServiceError } from "../../daemon/src/rpc/grpc-status.js";
import { NetfenceError } from "../../daemon/src/errors.js";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";

/**
 * Typed DaemonService client over the daemon's unix socket. Errors come back as NetfenceError
 * (gRPC status mapped in rpc/grpc-status.ts); an absent or dead socket becomes one clear
 * UNAVAILABLE saying how to start the daemon.
 */
export class DaemonClient {
  private readonly client: grpc.Client;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 60_000,
  ) {
    this.client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  }

  private notRunning(): NetfenceError {
    return new NetfenceError("UNAVAILABLE", `daemon not running at ${this.socketPath}: start it with \`netfenced start\``);
  }

  private unary<I extends DescMessage, O extends DescMessage>(
    method: TypedMethod<I, O>,
    req: MessageShape<I>,
    timeoutMs: number = this.timeoutMs,
  ): Promise<MessageShape<O>> {
    if (!existsSync(this.socketPath)) return Promise.reject(this.notRunning());
    const def = methodDefinition(method);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        req,
        new grpc.Metadata(),
        { deadline: timeoutMs === Infinity ? Infinity : Date.now() + timeoutMs },
        (err, res) => {
          if (err) reject(this.mapError(err));
          else resolve(res!);
        },
      );
    });
  }

  private mapError(err: grpc.ServiceError): NetfenceError {
    if (err.code === grpc.status.UNAVAILABLE && /ECONNREFUSED|ENOENT|No connection established|connect/i.test(err.details ?? err.message)) {
      return this.notRunning();
    }
    return fromServiceError(err);
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

  /** Packet events until the returned iterator is closed or the daemon ends the stream. */
  async *watchEvents(attachmentId = ""): AsyncGenerator<PacketEvent> {
    if (!existsSync(this.socketPath)) throw this.notRunning();
    const def = methodDefinition(DaemonService.method.watchEvents);
    const call = this.client.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      create(WatchEventsRequestSchema, { attachmentId }),
    );
    try {
      for await (const ev of call as AsyncIterable<PacketEvent>) yield ev;
    } catch (err) {
      throw this.mapError(err as grpc.ServiceError);
    } finally {
      call.cancel();
    }
  }

  close(): void {
    this.client.close();
  }
}
