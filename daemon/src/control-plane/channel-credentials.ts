import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { NetfenceError } from "@netfence/proto/errors";

export interface ControlPlaneTlsOptions {
  /** Paths to PEM files. With none set, the system roots are used and no client certificate is sent. */
  readonly ca?: string | null;
  readonly cert?: string | null;
  readonly key?: string | null;
}

/** Channel credentials for the control plane: insecure without `tls`, else TLS (mutual with cert+key). */
export function channelCredentials(tls: ControlPlaneTlsOptions | null): grpc.ChannelCredentials {
  if (tls === null) return grpc.credentials.createInsecure();
  const read = (what: string, path: string | null | undefined): Buffer | null => {
    if (!path) return null;
    try {
      return readFileSync(path);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new NetfenceError("FAILED_PRECONDITION", `control_plane.tls.${what}: cannot read ${path}: ${reason}`, { cause: err });
    }
  };
  return grpc.credentials.createSsl(read("ca", tls.ca), read("key", tls.key), read("cert", tls.cert));
}

/**
 * Per-call metadata carrying the bearer token. Sent as plain metadata rather than call
 * credentials so it also works on an insecure channel (grpc-js refuses call credentials there).
 */
export function callMetadata(token: string | null | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (token) md.set("authorization", `Bearer ${token}`);
  return md;
}

/** The options of the control-plane channel (one client per connection attempt). */
export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  // Detects a control plane that vanished without closing TCP. Not more often than every
  // 5 minutes: Go and C-core gRPC servers answer more frequent pings with GOAWAY
  // ("too_many_pings"), which would break the stream of a perfectly healthy control plane.
  "grpc.keepalive_time_ms": 300_000,
  "grpc.keepalive_timeout_ms": 20_000,
  "grpc.keepalive_permit_without_calls": 0,
  // A BulkUpdate with very many prefixes exceeds gRPC's 4 MiB default (≈ 20 bytes per CIDR).
  "grpc.max_receive_message_length": 64 * 1024 * 1024,
  "grpc.use_local_subchannel_pool": 1, // one attempt = one connect: see wait-connected.ts
};
