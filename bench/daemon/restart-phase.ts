import { existsSync } from "node:fs";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import { procCpuMs, type BenchDaemon } from "./daemon-process.js";
import type { ProbePlan } from "./attach-phase.js";
import type { Prober } from "./prober-client.js";
import { kibToMib, round } from "./summary.js";

/**
 * Restart-to-ready: stop the daemon (SIGTERM = graceful, or SIGKILL = crash), start the same
 * binary with the same config (data_dir, pin root), and time from the spawn until GetStatus
 * answers and until one List call returns every attachment — re-adopted from the pins.
 * While the daemon is down, a process in an attached cgroup probes an unlisted address: the
 * pinned filter must keep blocking without the daemon.
 */

export interface RestartSample {
  readonly signal: "SIGTERM" | "SIGKILL";
  /** Signal sent → process exited. */
  readonly stop_ms: number;
  /** New process spawned → GetStatus answered (the daemon holds calls until it is ready). */
  readonly spawn_to_status_ms: number;
  /** New process spawned → a List (page size 1000) returned every attachment. The target figure. */
  readonly spawn_to_list_all_ms: number;
  /** stop_ms + spawn_to_list_all_ms (the bench's own probe while the daemon was down excluded). */
  readonly signal_to_list_all_ms: number;
  readonly listed: number;
  readonly same_ids: boolean;
  readonly same_daemon_id: boolean;
  /** The previous daemon's loader child was still exiting when the new daemon was spawned (it competes for the CPUs). */
  readonly old_loader_alive_at_spawn: boolean;
  /** Probe from an attached cgroup while no daemon ran: blocked? (null when not probed) */
  readonly blocked_while_down: boolean | null;
  /** Same probe right after the restart: still blocked? */
  readonly blocked_after_restart: boolean | null;
  readonly rss_after_restart_mib: number;
  /** CPU time (user + system) the new daemon process used from exec until the List answered: what the start costs without competition for the CPUs. */
  readonly daemon_cpu_to_ready_ms: number;
  /** From the new daemon's own log (ms resolution): where the start-up time went. */
  readonly phases: {
    /** Spawn → first log line: Node start-up and loading the daemon's modules. */
    readonly spawn_to_first_log_ms: number | null;
    /** "netfenced starting" → "state restored": socket, loader child, state file, re-adopting every pinned attachment, DNS servers. */
    readonly starting_to_restored_ms: number | null;
    /** "state restored" → "netfenced ready": watcher, policy source, metrics, service. */
    readonly restored_to_ready_ms: number | null;
  };
}

export async function restartOnce(opts: {
  daemon: BenchDaemon;
  signal: "SIGTERM" | "SIGKILL";
  expectedIds: ReadonlySet<string>;
  daemonId: string;
  prober?: Prober;
  plan?: ProbePlan;
  readyTimeoutMs: number;
}): Promise<RestartSample> {
  const { daemon } = opts;
  const oldLoaders = daemon.childPids();
  const stopMs = await daemon.stop(opts.signal);
  let blockedWhileDown: boolean | null = null;
  if (opts.prober && opts.plan) {
    blockedWhileDown = !(await opts.prober.probe("udp", opts.plan.unlistedIp, opts.plan.port, opts.plan.timeoutMs)).ok;
  }
  const oldLoaderAlive = oldLoaders.some((p) => existsSync(`/proc/${p}`));
  const t0 = performance.now();
  const spawnedAtMs = Date.now();
  daemon.spawn();
  const pid = daemon.pid!;
  const status = await daemon.waitReady(opts.readyTimeoutMs);
  const tStatus = performance.now() - t0;
  const client = new DaemonClient(daemon.socket);
  let listed: string[];
  let tList: number;
  let cpuMs = 0;
  try {
    const page = await client.list(1000);
    tList = performance.now() - t0;
    cpuMs = procCpuMs(pid);
    listed = page.attachments.map((a) => a.id);
    if (page.nextPageToken !== "") throw new Error(`List after restart returned ${listed.length} of ${page.totalCount} in one page`);
  } finally {
    client.close();
  }
  let blockedAfter: boolean | null = null;
  if (opts.prober && opts.plan) {
    blockedAfter = !(await opts.prober.probe("udp", opts.plan.unlistedIp, opts.plan.port, opts.plan.timeoutMs)).ok;
  }
  const sameIds = listed.length === opts.expectedIds.size && listed.every((id) => opts.expectedIds.has(id));
  return {
    signal: opts.signal,
    stop_ms: round(stopMs, 1),
    spawn_to_status_ms: round(tStatus, 1),
    spawn_to_list_all_ms: round(tList, 1),
    signal_to_list_all_ms: round(stopMs + tList, 1),
    listed: listed.length,
    same_ids: sameIds,
    same_daemon_id: status.daemonId === opts.daemonId,
    old_loader_alive_at_spawn: oldLoaderAlive,
    blocked_while_down: blockedWhileDown,
    blocked_after_restart: blockedAfter,
    rss_after_restart_mib: kibToMib(daemon.status().vmRssKiB),
    daemon_cpu_to_ready_ms: Math.round(cpuMs),
    phases: phasesOf(daemon.startupMilestones(pid), spawnedAtMs),
  };
}

function phasesOf(m: { starting: number | null; restored: number | null; ready: number | null }, spawnedAtMs: number): RestartSample["phases"] {
  const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : b - a);
  return {
    spawn_to_first_log_ms: diff(spawnedAtMs, m.starting),
    starting_to_restored_ms: diff(m.starting, m.restored),
    restored_to_ready_ms: diff(m.restored, m.ready),
  };
}
