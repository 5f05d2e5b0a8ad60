import type { DaemonBenchResults, TargetCheck } from "./results.js";
export type { TargetCheck } from "./results.js";
import { mdRow, spliceResultsSection } from "../lib/readme-results.js";

/**
 * Targets of issue 4 ("bench/daemon") checked against a run, and the generated results section of
 * bench/daemon/README.md (between the markers; the rest of the file is written by hand).
 */


export function evaluateTargets(r: DaemonBenchResults): TargetCheck[] {
  const a = r.attach_latency.cgroup_first;
  const l = r.list_all.cli_wall;
  // The largest of: VmRSS at the total, the process's peak (VmHWM) then, VmRSS after the restarts.
  const rssMib = Math.max(r.rss.daemon_at_total_mib, r.rss.daemon_at_total_hwm_mib, r.rss.daemon_at_total_after_restarts_mib);
  const rssMb = Math.round(rssMib * 1.048576 * 10) / 10;
  const restart = r.restart.worst_spawn_to_list_all_ms;
  const n = r.rss.attachments;
  // A run that stopped short of its total has not tested the scale targets: never "met".
  const full = r.attach_latency.stopped_early === null;
  const short = full ? "" : ` — only ${n} attachments (stopped early)`;
  return [
    {
      name: `attach→enforcing latency p50 (${a.count} cgroup attaches, no control plane)`,
      target: "≤ 20 ms",
      measured: `${a.p50_ms} ms (p99 ${a.p99_ms} ms)`,
      met: a.p50_ms <= 20,
      basis: "Attach RPC call → return; enforcement verified on every 10th attach",
    },
    {
      name: `list --all over ${r.list_all.attachments} attachments (real CLI, wall time)`,
      target: "≤ 200 ms",
      measured: `${l.p50_ms} ms median of ${l.count} runs (p99 ${l.p99_ms} ms, max ${l.max_ms} ms; node -e "" p50 ${r.list_all.node_startup_baseline.p50_ms} ms)${short}`,
      met: full && l.p50_ms <= 200,
      basis: "median wall time of the CLI process, spawn → exit",
    },
    {
      name: `daemon RSS with ${n} attachments`,
      target: "≤ 150 MB",
      measured: `${rssMb} MB (${rssMib} MiB)${short}`,
      met: full && rssMb <= 150,
      basis: "the largest of VmRSS at the total, VmHWM (peak) then, and VmRSS after the restarts, of the daemon process (10^6-byte MB, the stricter reading)",
    },
    {
      name: `restart-to-ready with ${r.restart.attachments} attachments`,
      target: "≤ 2 s",
      measured: `${restart} ms (worst of ${r.restart.runs.length} restarts)${short}`,
      met: full && restart <= 2000,
      basis: "new process spawned → GetStatus answered and one List returned every attachment",
    },
  ];
}

export function renderMarkdown(existing: string, r: DaemonBenchResults): string {
  return spliceResultsSection(existing, "bench/daemon/run.ts", resultsSection(r));
}

const row = mdRow;

function resultsSection(r: DaemonBenchResults): string {
  const m = r.machine;
  const al = r.attach_latency;
  const out: string[] = [];
  out.push(
    `Run ${m.date} on ${m.nproc} × ${m.cpuModel}, ${m.memTotalMiB} MiB, kernel ${m.kernel}, Node ${m.node}` +
      ` (${r.duration_s} s${r.quick ? ", QUICK run: not representative" : ""}); 1-minute load average ${m.loadavg1} at the start, ${r.loadavg1_end} at the end` +
      " (other work shares this machine). Raw figures: `bench/results/daemon.json`.",
    "",
    "### Targets",
    "",
    row(["target", "measured", "met"]),
    row(["---", "---", "---"]),
  );
  for (const t of r.targets) out.push(row([`${t.name} (${t.target})`, t.measured, t.met ? "yes" : "**no**"]));

  const v = al.enforcement_check_cgroup;
  const vi = al.enforcement_check_interface;
  out.push(
    "",
    "### 1. Attach → enforcing",
    "",
    row(["series", "n", "p50 ms", "p99 ms", "mean ms", "max ms"]),
    row(["---", "---:", "---:", "---:", "---:", "---:"]),
    row([`netfenced, cgroup, attachments ${al.cgroup_first.attachments_before}→${al.cgroup_first.count}`, al.cgroup_first.count, al.cgroup_first.p50_ms, al.cgroup_first.p99_ms, al.cgroup_first.mean_ms, al.cgroup_first.max_ms]),
  );
  const sc = al.cgroup_at_scale;
  if (sc !== null) {
    out.push(row([`netfenced, cgroup, attachments ${sc.attachments_before}→${Number(sc.attachments_before) + sc.count}`, sc.count, sc.p50_ms, sc.p99_ms, sc.mean_ms, sc.max_ms]));
  }
  out.push(
    row([`netfenced, interface (tcx), ${al.interface.count} veths`, al.interface.count, al.interface.p50_ms, al.interface.p99_ms, al.interface.mean_ms, al.interface.max_ms]),
    row([`netfenced, interface, verified attach/detach cycles`, al.interface_verified_cycles.count, al.interface_verified_cycles.p50_ms, al.interface_verified_cycles.p99_ms, al.interface_verified_cycles.mean_ms, al.interface_verified_cycles.max_ms]),
  );
  for (const [name, b] of [
    ["baseline: bpftool prog load + bpftool cgroup attach (2 processes)", r.baselines.bpftool_cgroup],
    ["baseline: bpftool prog load + tc qdisc + tc filter (3 processes)", r.baselines.tc_interface],
  ] as const) {
    out.push(row([name, b.per_attach.count, b.per_attach.p50_ms, b.per_attach.p99_ms, b.per_attach.mean_ms, b.per_attach.max_ms]));
  }
  out.push(
    "",
    `Enforcement, checked right after Attach returned: cgroup — ${v.unlisted_blocked_right_after_return}/${v.samples} blocked an unlisted address that had answered just before the attach ` +
      `(${Object.entries(v.blocked_reasons).map(([k, c]) => `${k}: ${c}`).join(", ") || "—"}), the allowlisted address still answered in ${v.allowed_answered_after_attach}/${v.samples}; ` +
      `interface — ${vi.unlisted_blocked_right_after_return}/${vi.samples} blocked (${Object.entries(vi.blocked_reasons).map(([k, c]) => `${k}: ${c}`).join(", ") || "—"}), allowlisted answered in ${vi.allowed_answered_after_attach}/${vi.samples}. ` +
      `The blocked probe's first packet left p50 ${v.probe_sent_after_return.p50_ms} ms / max ${v.probe_sent_after_return.max_ms} ms (cgroup) after the return. ` +
      `Baseline load step alone (bpftool prog load, one process): p50 ${r.baselines.bpftool_cgroup.load_step.p50_ms} ms (cgroup object), ${r.baselines.tc_interface.load_step.p50_ms} ms (tc object). ` +
      `CPU time per attach over the first ${al.cgroup_first.count} (does not grow with other load): daemon ${al.cpu_first.daemon_ms_per_attach} ms, loader child ${al.cpu_first.loader_ms_per_attach ?? "—"} ms. ` +
      `Build-up: ${al.build_up.what}: ${al.build_up.wall_ms} ms, ${al.build_up.ms_per_attach} ms per attach. ` +
      `Detaching all ${r.rss.attachments} through the daemon (16 calls in flight): ${al.detach_all_ms} ms.` +
      (al.stopped_early !== null ? ` **Attaching stopped early at ${al.attachments_reached} attachments: ${al.stopped_early}.**` : ""),
  );
  const fo = r.diagnostics.filter_only;
  const gp = r.diagnostics.rcu;
  out.push(
    "",
    "Where an attach's time goes (diagnostics, same run):",
    "",
    row(["step", "p50 ms", "p99 ms", "n"]),
    row(["---", "---:", "---:", "---:"]),
    row([`data path alone: KernelFilter.attach (loader LOAD + REPLACE + LINK), no daemon`, fo.attach.p50_ms, fo.attach.p99_ms, fo.attach.count]),
    row([`data path alone: KernelFilter.detach`, fo.detach.p50_ms, fo.detach.p99_ms, fo.detach.count]),
  );
  out.push(
    row([`data path alone: re-adopt pinned attachments one ADOPT at a time (as the daemon's restore does), per attachment`, fo.adopt_sequential_ms_per_attachment, "", fo.attaches]),
    row([`data path alone: re-adopt with all ADOPTs sent at once, per attachment`, fo.adopt_pipelined_ms_per_attachment, "", fo.attaches]),
  );
  if ("unavailable" in gp) out.push("", `(grace-period figure unavailable: ${gp.unavailable})`);
  else out.push(row([`kernel: one RCU grace period seen from user space (${gp.what.split(": ")[1] ?? ""})`, gp.grace_period.p50_ms, gp.grace_period.p99_ms, gp.grace_period.count]));
  const ss = r.diagnostics.state_save_at_total;
  out.push(row([`daemon: one state-file save at ${r.rss.attachments} attachments (${ss.state_file_kib} KiB; stringify + write + fsync + rename + dir fsync)`, ss.save.p50_ms, ss.save.p99_ms, ss.save.count]));

  const l = r.list_all;
  out.push(
    "",
    `### 2. \`list --all\` over ${l.attachments} attachments`,
    "",
    `Load average before / after the interleaved rounds: ${l.loadavg_before} / ${l.loadavg_after}; CLI p50 = ${l.cli_over_node_e_p50}× \`node -e ""\`.`,
    "",
    row(["what", "p50 ms", "max ms", "n"]),
    row(["---", "---:", "---:", "---:"]),
    row([`CLI process wall time: ${l.cli_command} (p99 ${l.cli_wall.p99_ms} ms)`, l.cli_wall.p50_ms, l.cli_wall.max_ms, l.cli_wall.count]),
    row([`before: the same from the unbundled modules, NETFENCE_CLI_BUNDLE=0 (p99 ${l.cli_modules_wall.p99_ms} ms)`, l.cli_modules_wall.p50_ms, l.cli_modules_wall.max_ms, l.cli_modules_wall.count]),
    row(["raw RPC, connected client: every page at 100 per page", l.rpc_list_all_page_100.p50_ms, l.rpc_list_all_page_100.max_ms, l.rpc_list_all_page_100.count]),
    row(["raw RPC, connected client: one List of page_size 1000", l.rpc_single_page_1000.p50_ms, l.rpc_single_page_1000.max_ms, l.rpc_single_page_1000.count]),
    row([`baseline: \`node -e ""\` (starting Node at all; p99 ${l.node_startup_baseline.p99_ms} ms)`, l.node_startup_baseline.p50_ms, l.node_startup_baseline.max_ms, l.node_startup_baseline.count]),
    row([`diagnostic: \`netfenced --version\` (the CLI's start-up and imports, no RPC)`, l.cli_version_baseline.p50_ms, l.cli_version_baseline.max_ms, l.cli_version_baseline.count]),
    ...l.cli_variants.map((v) => row([`diagnostic: \`netfenced -s SOCKET ${v.args}\``, v.p50_ms, v.max_ms, v.count])),
    "",
    `CPU time (user + system) of the same processes, which unlike wall time does not grow with other load: \`list --all --json\` p50 ${l.cpu_time.cli_list_all_json.p50_ms} ms, ` +
      `\`netfenced --version\` ${l.cpu_time.cli_version.p50_ms} ms, \`node -e ""\` ${l.cpu_time.node_e.p50_ms} ms.`,
  );

  const rss = r.rss;
  out.push(
    "",
    "### 3. Memory (VmRSS)",
    "",
    row(["process", "MiB"]),
    row(["---", "---:"]),
    row(["netfenced, 0 attachments (1 s after start)", rss.daemon_0_attachments_mib]),
    row([`netfenced, ${r.attach_latency.cgroup_first.count} attachments`, rss.daemon_at_latency_count_mib]),
    row([`netfenced, ${rss.attachments} attachments (HWM ${rss.daemon_at_total_hwm_mib})`, rss.daemon_at_total_mib]),
    row([`netfenced, ${rss.attachments} attachments, after the restarts (re-adopted)`, rss.daemon_at_total_after_restarts_mib]),
    row([`loader child (C), ${rss.attachments} attachments`, rss.loader_child_at_total_mib ?? "—"]),
    row(["baseline: idle Node process", r.baselines.idle_node_rss.rss_mib]),
    "",
    `≈ ${rss.per_attachment_kib} KiB of daemon RSS per attachment (${rss.attachments} attachments vs none).`,
    "",
    `Kernel memory held by the ${r.kernel_memory.attachments} attachments: the kernel's own accounting of their maps and program (bpftool bytes_memlock, ${r.kernel_memory.bpf_objects.sampled_attachments} sampled) ` +
      `${r.kernel_memory.bpf_objects.per_attachment_kib} KiB per attachment (${Object.entries(r.kernel_memory.bpf_objects.by_object_kib).map(([k, v]) => `${k} ${v}`).join(", ")}) → ${r.kernel_memory.bpf_objects_total_mib} MiB in all; ` +
      `/proc/meminfo (other work adds noise): VmallocUsed +${r.kernel_memory.vmalloc_used_delta_mib} MiB ` +
      `(≈ ${r.kernel_memory.per_attachment_vmalloc_kib} KiB per attachment), MemAvailable ${r.kernel_memory.mem_available_delta_mib >= 0 ? "−" : "+"}${Math.abs(r.kernel_memory.mem_available_delta_mib)} MiB ` +
      `(${r.kernel_memory.mem_available_at_total_mib} MiB left; the run stops attaching below ${r.kernel_memory.mem_floor_mib} MiB).`,
  );

  const rs = r.restart;
  out.push(
    "",
    `### 4. Restart to ready with ${rs.attachments} attachments`,
    "",
    `Cold start with no attachments (spawn → GetStatus): ${rs.cold_start_0_attachments_ms} ms (daemon CPU time ${rs.cold_start_0_attachments_cpu_ms} ms).`,
    "",
    row(["stop", "signal → exit ms", "spawn → GetStatus ms", "spawn → List of all ms", "listed", "same ids / daemon id", "blocked while down / after", "log: spawn → starting / → restored / → ready ms", "daemon CPU ms to ready", "old loader still exiting at spawn"]),
    row(["---", "---:", "---:", "---:", "---:", "---", "---", "---", "---:", "---"]),
  );
  for (const s of rs.runs) {
    out.push(
      row([
        s.signal,
        s.stop_ms,
        s.spawn_to_status_ms,
        s.spawn_to_list_all_ms,
        s.listed,
        `${s.same_ids ? "yes" : "NO"} / ${s.same_daemon_id ? "yes" : "NO"}`,
        `${s.blocked_while_down === null ? "—" : s.blocked_while_down ? "yes" : "NO"} / ${s.blocked_after_restart === null ? "—" : s.blocked_after_restart ? "yes" : "NO"}`,
        `${s.phases.spawn_to_first_log_ms ?? "—"} / ${s.phases.starting_to_restored_ms ?? "—"} / ${s.phases.restored_to_ready_ms ?? "—"}`,
        s.daemon_cpu_to_ready_ms,
        s.old_loader_alive_at_spawn ? "yes" : "no",
      ]),
    );
  }
  return out.join("\n");
}
