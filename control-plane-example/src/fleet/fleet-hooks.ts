import type pino from "pino";
import type {
  AttachmentInfo,
  AttachmentStatsInfo,
  CommandOutcome,
  ControlPlaneHooks,
  DaemonHandle,
  DnsDecision,
  DnsQuery,
  PolicySpec,
  UnsubscribeReason,
} from "@netfence/control-plane-sdk";
import type { PolicyController } from "../policy-file/policy-controller.js";
import type { FleetTracker } from "./fleet-tracker.js";

/**
 * Fleet mode's hooks: the YAML mode's PolicyController decides and pushes (one code path for
 * both modes), and the tracker records in PostgreSQL which replica holds which daemon and
 * attachment. A database error is logged and never holds up enforcement: the daemon still gets
 * its policy from the replica's in-memory copy of the policy set.
 */
export class FleetHooks implements ControlPlaneHooks {
  constructor(
    private readonly controller: PolicyController,
    private readonly tracker: FleetTracker,
    private readonly log: pino.Logger,
    /** The replica's current handle of a daemon id (ControlPlaneServer.daemon). */
    private readonly currentHandle: (daemonId: string) => DaemonHandle | undefined,
  ) {}

  async onDaemonSynced(daemon: DaemonHandle): Promise<void> {
    await this.db("record the synced daemon", daemon.daemonId, () => this.tracker.daemonSynced(daemon));
    await this.controller.onDaemonSynced(daemon);
  }

  async onSubscribed(daemon: DaemonHandle, attachment: AttachmentInfo): Promise<PolicySpec> {
    await this.db("record the attachment", daemon.daemonId, () => this.tracker.attachmentSubscribed(daemon, attachment));
    return this.controller.onSubscribed(daemon, attachment);
  }

  onSubscribedResult(daemon: DaemonHandle, attachmentId: string, outcome: CommandOutcome): void {
    this.controller.onSubscribedResult(daemon, attachmentId, outcome);
  }

  async onUnsubscribed(daemon: DaemonHandle, attachmentId: string, reason: UnsubscribeReason): Promise<void> {
    this.controller.onUnsubscribed(daemon, attachmentId, reason);
    await this.db("remove the attachment", daemon.daemonId, () => this.tracker.attachmentGone(daemon.daemonId, attachmentId));
  }

  onHeartbeat(daemon: DaemonHandle, stats: readonly AttachmentStatsInfo[]): void {
    this.controller.onHeartbeat(daemon, stats);
  }

  onQueryDns(query: DnsQuery, daemon: DaemonHandle | undefined): DnsDecision {
    return this.controller.onQueryDns(query, daemon);
  }

  async onDaemonDisconnected(daemon: DaemonHandle, reason: string): Promise<void> {
    this.controller.onDaemonDisconnected(daemon, reason);
    // An old stream of a daemon that already resynced here: the daemon is still ours.
    const current = this.currentHandle(daemon.daemonId);
    if (current !== undefined && current !== daemon && current.connected) return;
    await this.db("record the disconnect", daemon.daemonId, () => this.tracker.daemonDisconnected(daemon.daemonId));
  }

  private async db(what: string, daemonId: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.log.warn({ daemonId, err: err instanceof Error ? err.message : String(err) }, `could not ${what} in the database; enforcement unaffected`);
    }
  }
}
