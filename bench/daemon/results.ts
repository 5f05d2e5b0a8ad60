/** The daemon benchmark's results file (run.ts writes it, report.ts renders it). */
import type { machineInfo } from "../lib/machine.js";
import type { ListResult } from "./list-phase.js";
import type { RestartSample } from "./restart-phase.js";
import type { MsSummary } from "./summary.js";
import type { AttachmentKernelMemory, FilterAttachCost, GracePeriodCost, StateSaveCost } from "./diagnostics.js";
import type { baselineSummary } from "./bpftool-baseline.js";

export interface VerificationSummary {
  readonly samples: number;
  readonly unlisted_answered_before_attach: number;
  readonly unlisted_blocked_right_after_return: number;
  readonly allowed_answered_after_attach: number;
  readonly blocked_reasons: Record<string, number>;
  readonly probe_sent_after_return: MsSummary;
  readonly all_verified: boolean;
}

export interface DaemonBenchResults {
  readonly benchmark: "daemon";
  readonly quick: boolean;
  readonly machine: ReturnType<typeof machineInfo>;
  readonly loadavg1_end: number;
  readonly duration_s: number;
  readonly units: Record<string, string>;
  readonly setup: Record<string, unknown>;
  readonly attach_latency: {
    readonly what: string;
    readonly cgroup_first: MsSummary & { readonly attachments_before: string };
    readonly cgroup_at_scale: (MsSummary & { readonly attachments_before: string }) | null;
    readonly build_up: { readonly what: string; readonly attachments: number; readonly concurrency: number; readonly wall_ms: number; readonly ms_per_attach: number };
    readonly attachments_reached: number;
    readonly cpu_first: { readonly what: string; readonly daemon_ms_per_attach: number; readonly loader_ms_per_attach: number | null };
    readonly stopped_early: string | null;
    readonly interface: MsSummary & { readonly what: string };
    readonly interface_verified_cycles: MsSummary & { readonly what: string };
    readonly enforcement_check_cgroup: VerificationSummary;
    readonly enforcement_check_interface: VerificationSummary;
    readonly detach_all_ms: number;
  };
  readonly list_all: ListResult;
  readonly rss: {
    readonly what: string;
    readonly daemon_0_attachments_mib: number;
    readonly daemon_at_latency_count_mib: number;
    readonly daemon_at_total_mib: number;
    readonly daemon_at_total_mb: number;
    readonly daemon_at_total_hwm_mib: number;
    readonly daemon_at_total_after_restarts_mib: number;
    readonly per_attachment_kib: number;
    readonly loader_child_at_total_mib: number | null;
    readonly attachments: number;
  };
  readonly kernel_memory: {
    readonly what: string;
    readonly attachments: number;
    readonly bpf_objects: AttachmentKernelMemory;
    /** bpf_objects.per_attachment_kib × attachments. */
    readonly bpf_objects_total_mib: number;
    readonly vmalloc_used_delta_mib: number;
    readonly mem_available_delta_mib: number;
    readonly per_attachment_vmalloc_kib: number;
    readonly mem_available_at_total_mib: number;
    readonly mem_floor_mib: number;
  };
  readonly diagnostics: {
    readonly filter_only: FilterAttachCost;
    readonly rcu: GracePeriodCost | { readonly unavailable: string };
    readonly state_save_at_total: StateSaveCost;
  };
  readonly restart: {
    readonly attachments: number;
    readonly cold_start_0_attachments_ms: number;
    readonly cold_start_0_attachments_cpu_ms: number;
    readonly runs: RestartSample[];
    readonly worst_spawn_to_list_all_ms: number;
  };
  readonly baselines: {
    readonly bpftool_cgroup: ReturnType<typeof baselineSummary>;
    readonly tc_interface: ReturnType<typeof baselineSummary>;
    readonly idle_node_rss: { readonly what: string; readonly rss_mib: number };
  };
  readonly targets: TargetCheck[];
}

export interface TargetCheck {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
  /** How the measured figure was chosen (which statistic, which sample). */
  readonly basis: string;
}
