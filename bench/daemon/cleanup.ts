/**
 * The daemon benchmark's clean-up: everything it created goes, also after a failure or a signal.
 * Attachments are detached through the daemon (restarted for it if it is down), loader children
 * that outlive a killed daemon are stopped by PID (only ours), then pins, veths, cgroups and the
 * sandbox are removed; what could not be removed is reported.
 */
import { existsSync, readFileSync } from "node:fs";
import { copyFile, readdir, rm } from "node:fs/promises";
import { DaemonClient } from "../../cli/src/daemon-client.js";
import type { Sandbox } from "../../test/helpers/sandbox.js";
import { withTimeout } from "../lib/time-limit.js";
import { detachAll } from "./attach-phase.js";
import type { CgroupTargets, VethTargets } from "./bench-targets.js";
import type { BenchDaemon } from "./daemon-process.js";
import type { Prober } from "./prober-client.js";

export interface BenchResources {
  readonly daemon: BenchDaemon | null;
  readonly prober: Prober | null;
  /** Loader children seen during the run (a SIGKILLed daemon's loader lingers until EOF). */
  readonly loaderPids: ReadonlySet<number> & { add(pid: number): unknown };
  readonly pinRoot: string;
  readonly baselinePins: string;
  readonly veths: VethTargets;
  readonly cgroups: CgroupTargets;
  readonly sandbox: Sandbox;
  readonly keepLog: string | null;
  readonly tmpDir: string;
  readonly log: (msg: string) => void;
}

export async function cleanUpBench(r: BenchResources): Promise<void> {
  const { daemon, prober, loaderPids, pinRoot, baselinePins, veths, cgroups, sandbox, keepLog, tmpDir, log } = r;
  const problems: string[] = [];
  if (daemon !== null) {
    if (!daemon.running) {
      // Restart it (bounded) so that the attachments are detached the normal way.
      try {
        daemon.spawn();
        await daemon.waitReady(20_000);
      } catch (err) {
        problems.push(`daemon could not be restarted for the detach: ${(err as Error).message.split("\n")[0]}`);
      }
    }
    if (daemon.running) {
      for (const pid of daemon.childPids()) loaderPids.add(pid);
      const client = new DaemonClient(daemon.socket, 20_000);
      try {
        const { attachments } = await withTimeout("listing for cleanup", 30_000, client.listAll(1000));
        const ms = await withTimeout("detaching for cleanup", 90_000, detachAll(client, attachments.map((a) => a.id)));
        const left = (await client.getStatus()).attachmentCount;
        log(`cleanup: detached ${attachments.length} attachments through the daemon in ${Math.round(ms)} ms (${left} left)`);
        if (left !== 0) problems.push(`${left} attachments left after detach`);
      } catch (err) {
        problems.push(`detach through the daemon failed: ${(err as Error).message.split("\n")[0]}`);
      } finally {
        client.close();
      }
      await daemon.stop("SIGTERM").catch(() => undefined);
    }
    daemon.retire();
    if (daemon.running) await daemon.stop("SIGKILL").catch(() => undefined);
  }
  // A loader child outlives a SIGKILLed daemon only until it sees EOF; make sure (by PID, only ours).
  for (const pid of loaderPids) {
    const comm = (() => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
      } catch {
        return "";
      }
    })();
    if (comm.startsWith("netfence-loader")) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
  // Pins left over (none after a clean detach) are removed with the pin root: links and programs go with them.
  const pinsLeft = existsSync(pinRoot) ? (await readdir(pinRoot).catch(() => [])).filter((n) => n.startsWith("nf-")) : [];
  if (pinsLeft.length > 0) problems.push(`${pinsLeft.length} attachment pin dirs left in ${pinRoot} (removed now)`);
  await rm(pinRoot, { recursive: true, force: true }).catch(() => undefined);
  await rm(baselinePins, { recursive: true, force: true }).catch(() => undefined);
  await prober?.stop().catch(() => undefined);
  await veths.remove().catch((err: unknown) => problems.push(`veth removal: ${(err as Error).message}`));
  const cgLeft = await cgroups.remove().catch((err: unknown) => [`${(err as Error).message}`]);
  if (cgLeft.length > 0) problems.push(`cgroups not removed: ${cgLeft.join("; ")}`);
  await sandbox.cleanup();
  if (keepLog !== null && daemon !== null) await copyFile(daemon.logFile, keepLog).catch(() => undefined);
  await rm(tmpDir, { recursive: true, force: true }).catch(() => undefined);
  if (problems.length > 0) log(`cleanup problems: ${problems.join(" | ")}`);
  else log("cleanup: everything removed");
}

/**
 * The clean-up of the single-daemon cgroup benchmarks (scale-push, metrics-scrape): their
 * attachments detached through the daemon (bounded to 60 s), the daemon stopped, their cgroups
 * and the cgroup2 mount they made (if any) removed; what could not be removed is reported.
 */
export async function tearDownCgroupBench(
  daemon: BenchDaemon,
  ids: readonly string[],
  targets: CgroupTargets,
  cg: { release(): Promise<void> },
): Promise<void> {
  if (daemon.running) {
    const client = new DaemonClient(daemon.socket);
    const deadline = Date.now() + 60_000;
    for (const id of ids) {
      if (Date.now() > deadline) break;
      await client.detach(id).catch(() => undefined);
    }
    client.close();
    await daemon.stop("SIGTERM").catch(() => undefined);
  }
  const left = await targets.remove();
  if (left.length > 0) console.error(`cgroups not removed: ${left.join(", ")}`);
  await cg.release();
}
