// Kernel portability matrix as a vitest file. Deliberately NOT named *.test.ts: the regular suite
// (vitest.config.ts includes test/**/*.test.ts) never picks it up, because booting two kernels under qemu
// takes ~1 min. Run it with its own config, which only includes it when NETFENCE_PORTABILITY=1:
//   NETFENCE_PORTABILITY=1 npx vitest run --config test/portability/vitest.config.ts
// CI calls `bash test/portability/run.sh` directly; this wrapper asserts the same result per kernel.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");

interface MatrixRow {
  kernel: string;
  pass: boolean;
  method: string;
  detail: string;
}

interface RunResult {
  code: number | null;
  output: string;
}

function runMatrix(): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [join(here, "run.sh")], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr.on("data", (b: Buffer) => (output += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

// "MATRIX debian 6.1.0-56-amd64: PASS method=clsact kernel=6.1.0-56-amd64"
function parseRows(output: string): MatrixRow[] {
  const rows: MatrixRow[] = [];
  for (const line of output.split("\n")) {
    const m = /^MATRIX (.+?): (PASS|FAIL) (.*)$/.exec(line);
    if (!m) continue;
    const method = /method=(\S+)/.exec(m[3] ?? "")?.[1] ?? "none";
    rows.push({ kernel: m[1] ?? "", pass: m[2] === "PASS", method, detail: m[3] ?? "" });
  }
  return rows;
}

describe("kernel portability matrix (host + Debian 6.1 + Debian 6.12 under qemu)", () => {
  it("the real loader and prebuilt objects pass every data-path check on all three kernels", async () => {
    const { code, output } = await runMatrix();
    const rows = parseRows(output);
    for (const r of rows) console.log(`${r.kernel}: ${r.pass ? "PASS" : "FAIL"} attach method ${r.method}`);
    if (code !== 0) console.log(output);
    expect(rows.map((r) => r.kernel.split(" ")[0])).toEqual(["host", "debian", "debian"]);
    expect(rows.some((r) => r.kernel.startsWith("debian 6.1.")), "a 6.1 kernel was booted").toBe(true);
    expect(rows.some((r) => r.kernel.startsWith("debian 6.12.")), "a 6.12 kernel was booted").toBe(true);
    for (const r of rows) expect(r.pass, `${r.kernel}: ${r.detail}`).toBe(true);
    if (process.env.WITH_NODE !== "0") {
      // the daemon's TypeScript driver (KernelFilter under Node) attached end to end in each guest, same method
      for (const r of rows.filter((row) => row.kernel.startsWith("debian"))) expect(r.detail).toContain(`node=${r.method}`);
      // and the kernel-level attack checks of the security suite passed there (guest-security-check.ts)
      for (const r of rows.filter((row) => row.kernel.startsWith("debian"))) expect(r.detail).toContain("security=pass");
    }
    if (!process.env.FORCE_METHOD) {
      // both TC attach paths were exercised: TCX where the kernel has it, the clsact fallback where not
      expect(new Set(rows.map((r) => r.method))).toEqual(new Set(["tcx", "clsact"]));
    }
    expect(code).toBe(0);
  }, 600_000);
});
