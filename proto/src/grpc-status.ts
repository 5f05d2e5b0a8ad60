import type * as grpc from "@grpc/grpc-js";
import { NetfenceError, isNetfenceError, type ErrorCode } from "./errors.js";

/**
 * The ONE place mapping NetfenceError codes to gRPC status codes (and back, for clients).
 * Anything that is not a NetfenceError becomes INTERNAL with its message. The numbers are the
 * gRPC wire status codes; spelled out (not grpc-js's enum) so the CLI's client can use this
 * module without loading grpc-js.
 */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const TO_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: GrpcCode.INVALID_ARGUMENT,
  NOT_FOUND: GrpcCode.NOT_FOUND,
  ALREADY_EXISTS: GrpcCode.ALREADY_EXISTS,
  FAILED_PRECONDITION: GrpcCode.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: GrpcCode.RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED: GrpcCode.DEADLINE_EXCEEDED,
  UNAVAILABLE: GrpcCode.UNAVAILABLE,
  PERMISSION_DENIED: GrpcCode.PERMISSION_DENIED,
  ABORTED: GrpcCode.ABORTED,
  INTERNAL: GrpcCode.INTERNAL,
};

const FROM_STATUS = new Map<number, ErrorCode>([
  ...Object.entries(TO_STATUS).map(([k, v]) => [v, k as ErrorCode] as const),
  [GrpcCode.CANCELLED, "ABORTED"],
  [GrpcCode.UNAUTHENTICATED, "PERMISSION_DENIED"],
  [GrpcCode.OUT_OF_RANGE, "INVALID_ARGUMENT"],
]);

const NAMES = new Map<number, string>(Object.entries(GrpcCode).map(([k, v]) => [v, k]));

export function grpcStatusOf(code: ErrorCode): number {
  return TO_STATUS[code];
}

/** What a grpc-js handler passes to its callback (or emits as 'error' on a stream). */
export function toServiceError(err: unknown): grpc.ServerErrorResponse {
  const e = NetfenceError.from(err);
  return Object.assign(new Error(e.message), { code: TO_STATUS[e.code], details: e.message });
}

/** Client side: a gRPC status (code + details) back into a NetfenceError. */
export function fromServiceError(err: unknown): NetfenceError {
  if (isNetfenceError(err)) return err;
  const se = err as { code?: unknown; details?: string; message?: string };
  if (typeof se?.code === "number") {
    const code = FROM_STATUS.get(se.code) ?? "INTERNAL";
    return new NetfenceError(code, se.details || se.message || NAMES.get(se.code) || "unknown error", { cause: err });
  }
  return NetfenceError.from(err);
}
