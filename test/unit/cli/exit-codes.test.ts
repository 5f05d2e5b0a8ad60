import { describe, expect, it } from "vitest";
import { NetfenceError } from "@netfence/proto/errors";
import { EXIT, exitCodeOf } from "../../../cli/src/output.js";
import { DAEMON_NOT_RUNNING } from "../../../cli/src/daemon-client.js";

describe("CLI exit codes come from the closed error code, not the message", () => {
  it("maps codes; 'not running' only by the client's closed reason", () => {
    expect(exitCodeOf(new NetfenceError("UNAVAILABLE", "anything", { details: { reason: DAEMON_NOT_RUNNING } }))).toBe(EXIT.notRunning);
    // The same text without the reason (e.g. the daemon's own UNAVAILABLE) is a plain failure.
    expect(exitCodeOf(new NetfenceError("UNAVAILABLE", "daemon not running at /x"))).toBe(EXIT.failed);
    expect(exitCodeOf(new NetfenceError("DEADLINE_EXCEEDED", "slow"))).toBe(EXIT.timeout);
    expect(exitCodeOf(new NetfenceError("INVALID_ARGUMENT", "bad"))).toBe(EXIT.usage);
    expect(exitCodeOf(new NetfenceError("NOT_FOUND", "gone"))).toBe(EXIT.failed);
    expect(exitCodeOf(new NetfenceError("INTERNAL", "daemon not running"))).toBe(EXIT.failed);
  });
});
