/**
 * The one error type of Netfence. Codes are a closed set that maps 1:1 onto gRPC status codes
 * (the mapping lives in exactly one place: rpc/grpc-status.ts). Type guards check the name, not
 * `instanceof`, so errors that crossed a module or realm boundary are still recognised.
 */
export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "FAILED_PRECONDITION"
  | "RESOURCE_EXHAUSTED"
  | "DEADLINE_EXCEEDED"
  | "UNAVAILABLE"
  | "PERMISSION_DENIED"
  | "ABORTED"
  | "INTERNAL";

export type ErrorDetails = Record<string, string | number | boolean | null | undefined>;

export class NetfenceError extends Error {
  override readonly name = "NetfenceError";
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options: { details?: ErrorDetails; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  /** Wraps anything thrown into a NetfenceError, keeping an existing one as it is. */
  static from(err: unknown, fallback: ErrorCode = "INTERNAL"): NetfenceError {
    if (isNetfenceError(err)) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new NetfenceError(fallback, message, { cause: err });
  }
}

export function isNetfenceError(err: unknown): err is NetfenceError {
  return typeof err === "object" && err !== null && (err as { name?: unknown }).name === "NetfenceError" &&
    typeof (err as { code?: unknown }).code === "string";
}

export function invalidArgument(message: string, details?: ErrorDetails): NetfenceError {
  return new NetfenceError("INVALID_ARGUMENT", message, { details });
}
