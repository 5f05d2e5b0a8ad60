import { existsSync } from "node:fs";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
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
import { NetfenceError } from "../../daemon/src/errors.js";
import { ConnectionFailed, Http2GrpcChannel } from "./grpc-over-http2.js";

/**
 * Typed DaemonService client over the daemon's unix socket (protobuf-es messages on a small
 * HTTP/2 gRPC channel, see grpc-over-http2.ts). Errors come back as NetfenceError (gRPC status
 * mapped in daemon/src/rpc/grpc-status.ts); an absent or dead socket becomes one clear
 * UNAVAILABLE saying how to start the daemon.
 */
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
    return new NetfenceError("UNAVAILABLE", `daemon not running at ${this.socketPath}: start it with \`netfenced start\``);
  }

  private async unary<I extends DescMessage, O extends DescMessage>(
    method: TypedMethod<I, O>,
    req: MessageShape<I>,
    timeoutMs: number = this.timeoutMs,
  ): Promise<MessageShape<O>> {
    if (!existsSync(this.socketPath)) throw this.notRunning();
    try {
      const bytes = await this.channel.unary(pathOf(method), toBinary(method.input, req), timeoutMs);
      return fromBinary(method.output, bytes);
    } catch (err) {
      if (err instanceof ConnectionFailed) throw this.notRunning();
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

  /** Packet events until the returned iterator is closed or the daemon ends the stream. */
  async *watchEvents(attachmentId = ""): AsyncGenerator<PacketEvent> {
    if (!existsSync(this.socketPath)) throw this.notRunning();
    const method = DaemonService.method.watchEvents;
    try {
      for await (const bytes of this.channel.serverStream(pathOf(method), toBinary(method.input, create(WatchEventsRequestSchema, { attachmentId })))) {
        yield fromBinary(method.output, bytes);
      }
    } catch (err) {
      if (err instanceof ConnectionFailed) throw this.notRunning();
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
