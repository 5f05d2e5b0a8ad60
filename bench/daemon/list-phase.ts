import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { percentile } from "../lib/stats.js";
import { round, summarize, type MsSummary } from "./summary.js";

/**
 * `list --all` over N attachments: the real CLI binary (a fresh Node process per run, as an
 * operator types it) timed from spawn to exit, its JSON checked; the raw RPC time from a
 * connected in-process client; and the bare cost of starting Node (`node -e ""`), which bounds
 * what any Node CLI can reach.
 */

export interface ListResult {
  readonly attachments: number;
  readonly cli_command: string;
  readonly cli_wall: MsSummary;
  readonly cli_wall_samples_ms: number[];
  readonly cli_listed: number;
  readonly rpc_list_all_page_100: MsSummary;
  readonly rpc_single_page_1000: MsSummary;
  readonly node_startup_baseline: MsSummary & { readonly what: string };
  readonly cli_version_baseline: MsSummary & { readonly what: string };
  /** The same `list --all --json` from the unbundled modules (NETFENCE_CLI_BUNDLE=0): the CLI before its one-file bundle. */
  readonly cli_modules_wall: MsSummary & { readonly what: string };
  readonly cli_over_node_e_p50: number;
  readonly loadavg_before: string;
  readonly loadavg_after: string;
  /** CPU time (user + system) of the same processes: what they cost without competition for the CPUs. */
  readonly cpu_time: { readonly what: string; readonly cli_list_all_json: MsSummary; readonly cli_version: MsSummary; readonly node_e: MsSummary };
  /** Same CLI, other output/paging: where the time between start-up and exit goes. */
  readonly cli_variants: ReadonlyArray<MsSummary & { readonly args: string }>;
}

function timedProcess(cmd: string, args: readonly string[], timeoutMs = 30_000, env: NodeJS.ProcessEnv = process.env): Promise<{ ms: number; stdout: string; code: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env });
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${cmd} ${args.join(" ")} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("exit", (code) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${cmd} ${args.join(" ")} exited ${code}: ${stderr.slice(0, 500)}`));
      else resolve({ ms, stdout: Buffer.concat(out).toString(), code: code ?? 0 });
    });
  });
}

/**
 * CPU time (user + system) of one run of `argv`, from bash's `times` for its children: unlike
 * the wall time it does not grow when other work competes for the CPUs.
 */
async function childCpuMs(argv: readonly string[]): Promise<number> {
  const r = await timedProcess("bash", ["-c", '"$@" >/dev/null || exit 1; times', "cpu-time", ...argv]);
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  const m = /^(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s$/.exec(last.trim());
  if (m === null) throw new Error(`cannot parse bash times output "${last}"`);
  return (Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000;
}

export async function listBench(opts: { cli: string; socket: string; expected: number; runs: number; cpuProfDir?: string | null }): Promise<ListResult> {
  const args = [opts.cli, "-s", opts.socket, "list", "--all", "--json"];
  const check = (stdout: string, what: string): void => {
    const parsed = JSON.parse(stdout) as { attachments: unknown[]; totalCount: number };
    listed = parsed.attachments.length;
    if (listed !== opts.expected || parsed.totalCount !== opts.expected) {
      throw new Error(`${what} list --all returned ${listed} attachments (total_count ${parsed.totalCount}), expected ${opts.expected}`);
    }
  };
  const loadBefore = readFileSync("/proc/loadavg", "utf8").trim();
  // Interleaved rounds: the CLI, its baseline and the unbundled CLI see the same load.
  const cliMs: number[] = [];
  const nodeMs: number[] = [];
  const versionMs: number[] = [];
  const modulesMs: number[] = [];
  let listed = -1;
  const unbundled = { ...process.env, NETFENCE_CLI_BUNDLE: "0" };
  for (let i = 0; i < opts.runs; i++) {
    const r = await timedProcess(process.execPath, args);
    check(r.stdout, "CLI");
    cliMs.push(r.ms);
    nodeMs.push((await timedProcess(process.execPath, ["-e", ""])).ms);
    const m = await timedProcess(process.execPath, args, 30_000, unbundled);
    check(m.stdout, "unbundled CLI");
    modulesMs.push(m.ms);
    versionMs.push((await timedProcess(process.execPath, [opts.cli, "--version"])).ms);
  }
  const few = Math.min(opts.runs, 7);
  const variants: (MsSummary & { args: string })[] = [];
  for (const extra of [["list", "--all"], ["list", "--all", "--json", "--page-size", "100"], ["list", "--all", "--json", "--page-size", "1000"], ["status"]]) {
    const ms: number[] = [];
    for (let i = 0; i < few; i++) ms.push((await timedProcess(process.execPath, [opts.cli, "-s", "SOCKET", ...extra].map((a) => (a === "SOCKET" ? opts.socket : a)))).ms);
    variants.push({ args: extra.join(" "), ...summarize(ms) });
  }
  const cpu = { list: [] as number[], version: [] as number[], node: [] as number[] };
  for (let i = 0; i < few; i++) {
    cpu.list.push(await childCpuMs([process.execPath, ...args]));
    cpu.version.push(await childCpuMs([process.execPath, opts.cli, "--version"]));
    cpu.node.push(await childCpuMs([process.execPath, "-e", ""]));
  }
  if (opts.cpuProfDir) await timedProcess(process.execPath, ["--cpu-prof", "--cpu-prof-dir", opts.cpuProfDir, ...args]);

  const client = new DaemonClient(opts.socket);
  try {
    await client.getStatus(); // connect the channel first
    const page100: number[] = [];
    const page1000: number[] = [];
    for (let i = 0; i < opts.runs; i++) {
      let t0 = performance.now();
      const all = await client.listAll(100);
      page100.push(performance.now() - t0);
      if (all.attachments.length !== opts.expected) throw new Error(`listAll(100) returned ${all.attachments.length}, expected ${opts.expected}`);
      t0 = performance.now();
      const one = await client.list(1000);
      page1000.push(performance.now() - t0);
      if (one.attachments.length !== Math.min(1000, opts.expected)) throw new Error(`list(1000) returned ${one.attachments.length}`);
    }
    return {
      attachments: opts.expected,
      cli_command: "node cli/dist/index.js -s SOCKET list --all --json (the CLI's own page size for --all)",
      cli_wall: summarize(cliMs),
      cli_wall_samples_ms: cliMs.map((x) => Math.round(x * 10) / 10),
      cli_listed: listed,
      rpc_list_all_page_100: summarize(page100),
      rpc_single_page_1000: summarize(page1000),
      node_startup_baseline: { what: 'node -e "" spawned and waited for (the fixed cost of any Node CLI run)', ...summarize(nodeMs) },
      cli_version_baseline: { what: "node cli/dist/index.js --version: the CLI's start-up and module loading, no RPC", ...summarize(versionMs) },
      cli_modules_wall: { what: "the same list --all --json with NETFENCE_CLI_BUNDLE=0: the unbundled modules (the CLI before issue 13)", ...summarize(modulesMs) },
      cli_over_node_e_p50: round(percentile(cliMs, 50) / percentile(nodeMs, 50), 2),
      loadavg_before: loadBefore,
      loadavg_after: readFileSync("/proc/loadavg", "utf8").trim(),
      cli_variants: variants,
      cpu_time: {
        what: "user + system CPU time of the process (bash `times` for its children), same commands",
        cli_list_all_json: summarize(cpu.list),
        cli_version: summarize(cpu.version),
        node_e: summarize(cpu.node),
      },
    };
  } finally {
    client.close();
  }
}
