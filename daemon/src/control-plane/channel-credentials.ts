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
