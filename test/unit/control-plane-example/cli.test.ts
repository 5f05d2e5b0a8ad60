import { afterEach, describe, expect, it, vi } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { netfenceCpCommand } from "../../../control-plane-example/src/cli.js";
import type { RunningNetfenceCp } from "../../../control-plane-example/src/netfence-cp.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
  process.exitCode = undefined;
});

function tempPolicy(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "netfence-cp-cli-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "policy.yaml");
  writeFileSync(file, text);
  return file;
}

async function run(args: string[]): Promise<{ stderr: string; exitCode: number | undefined; cp: RunningNetfenceCp | null }> {
  let stderr = "";
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  let cp: RunningNetfenceCp | null = null;
  try {
    await netfenceCpCommand((running) => {
      cp = running;
    }).exitOverride().configureOutput({ writeErr: (s) => void (stderr += s) }).parseAsync(["node", "netfence-cp", ...args]);
  } finally {
    spy.mockRestore();
  }
  const code = process.exitCode;
  return { stderr, exitCode: typeof code === "number" ? code : undefined, cp };
}

describe("netfence-cp command", () => {
  it("rejects an invalid policy file with file:line:col and exit code 2", async () => {
    const file = tempPolicy("rules:\n  - mode: sometimes\n");
    const r = await run(["--listen", "127.0.0.1:0", "--policy", file, "--log-level", "silent"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(`netfence-cp: ${file}:2:11: rule "rules[0]": mode must be one of disabled, allowlist, denylist, block-all (got "sometimes")\n`);
    expect(r.cp).toBeNull();
  });

  it("rejects --tls-cert without --tls-key", async () => {
    const file = tempPolicy("defaults: {mode: block-all}\n");
    const r = await run(["--policy", file, "--tls-cert", "/x.pem", "--log-level", "silent"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--tls-cert and --tls-key must be given together/);
  });

  it("requires exactly one of --policy (YAML mode) and --database (fleet mode)", async () => {
    // Issue 16: --policy is no longer a mandatory option (fleet mode has none); the check is ours.
    const none = await run(["--log-level", "silent"]);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toBe("netfence-cp: give exactly one of --policy <file> (YAML mode) and --database <url> (fleet mode)\n");
    process.exitCode = undefined;
    const both = await run(["--policy", "/x.yaml", "--database", "postgres://x@127.0.0.1:1/db", "--log-level", "silent"]);
    expect(both.exitCode).toBe(2);
  });

  it("starts serving with a valid policy", async () => {
    const file = tempPolicy("defaults: {mode: block-all}\nrules: []\n");
    const r = await run(["--listen", "127.0.0.1:0", "--policy", file, "--log-level", "silent"]);
    expect(r.exitCode).toBeUndefined();
    expect(r.cp).not.toBeNull();
    const cp = r.cp as unknown as RunningNetfenceCp;
    cleanups.push(() => cp.stop());
    expect(cp.port).toBeGreaterThan(0);
    expect(cp.controller.policyFile().defaults.mode).toBe("block-all");
  });
});
