import { describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { NetfenceError, type ErrorCode } from "@netfence/proto/errors";
import { fromServiceError, grpcStatusOf, toServiceError } from "@netfence/proto/grpc-status";

const CODES: [ErrorCode, grpc.status][] = [
  ["INVALID_ARGUMENT", grpc.status.INVALID_ARGUMENT],
  ["NOT_FOUND", grpc.status.NOT_FOUND],
  ["ALREADY_EXISTS", grpc.status.ALREADY_EXISTS],
  ["FAILED_PRECONDITION", grpc.status.FAILED_PRECONDITION],
  ["RESOURCE_EXHAUSTED", grpc.status.RESOURCE_EXHAUSTED],
  ["DEADLINE_EXCEEDED", grpc.status.DEADLINE_EXCEEDED],
  ["UNAVAILABLE", grpc.status.UNAVAILABLE],
  ["PERMISSION_DENIED", grpc.status.PERMISSION_DENIED],
  ["ABORTED", grpc.status.ABORTED],
  ["INTERNAL", grpc.status.INTERNAL],
];

describe("grpc status mapping", () => {
  it.each(CODES)("%s ↔ status %i, message kept", (code, status) => {
    expect(grpcStatusOf(code)).toBe(status);
    const se = toServiceError(new NetfenceError(code, `boom ${code}`));
    expect(se.code).toBe(status);
    expect(se.details).toBe(`boom ${code}`);
    const back = fromServiceError(se);
    expect(back.code).toBe(code);
    expect(back.message).toBe(`boom ${code}`);
  });

  it("maps anything else to INTERNAL", () => {
    expect(toServiceError(new TypeError("x is undefined")).code).toBe(grpc.status.INTERNAL);
    expect(toServiceError("a string").details).toBe("a string");
    expect(fromServiceError({ code: grpc.status.UNKNOWN, details: "?" }).code).toBe("INTERNAL");
    expect(fromServiceError({ code: grpc.status.UNAUTHENTICATED, details: "no token" }).code).toBe("PERMISSION_DENIED");
  });
});
