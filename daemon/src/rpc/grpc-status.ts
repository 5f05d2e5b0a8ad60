import * as grpc from "@grpc/grpc-js";
import { NetfenceError, isNetfenceError, type ErrorCode } from "../errors.js";

/**
 * The ONE place mapping NetfenceError codes to gRPC status codes (and back, for clients).
 * Anything that is not a NetfenceError becomes INTERNAL with its message.
 */
const TO_STATUS: Record<ErrorCode, grpc.status> = {
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  ALREADY_EXISTS: grpc.status.ALREADY_EXISTS,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  ABORTED: grpc.status.ABORTED,
  INTERNAL: grpc.status.INTERNAL,
};

const FROM_STATUS = new Map<grpc.status, ErrorCode>(Object.entries(TO_STATUS).map(([k, v]) => [v, k as ErrorCode]));

export function grpcStatusOf(code: ErrorCode): grpc.status {
  return TO_STATUS[code];
}

/** What a grpc-js handler passes to its callback / `call.destroy()` for a thrown error. */
export function toServiceError(err: unknown): grpc.ServiceError {
  const e = NetfenceError.from(err);
  const se = Object.assign(new Error(e.message), {
    code: TO_STATUS[e.code],
    details: e.message,
    metadata: new grpc.Metadata(),
  });
  return se;
}

/** Client side: a gRPC error back into a NetfenceError (status → code, details → message). */
export function fromServiceError(err: unknown): NetfenceError {
  if (isNetfenceError(err)) return err;
  const se = err as Partial<grpc.ServiceError>;
  if (typeof se?.code === "number") {
    const code = FROM_STATUS.get(se.code) ?? (se.code === grpc.status.CANCELLED ? "ABORTED" : se.code === grpc.status.UNAUTHENTICATED ? "PERMISSION_DENIED" : "INTERNAL");
    return new NetfenceError(code, se.details || se.message || grpc.status[se.code] || "unknown error", { cause: err });
  }
  return NetfenceError.from(err);
}
