import type { Sql, TransactionSql } from "postgres";
import type pino from "pino";
import type { AttachmentInfo, DaemonHandle } from "@netfence/control-plane-sdk";

/**
 * What one replica writes about the daemons it holds: the daemon row (which replica holds its
 * stream), its attachments, and per attachment the policy version the daemon confirmed in the
 * kernel. Acks are batched (one UPDATE per flush for all of them), so a change pushed to 3,000
 * attachments costs a handful of queries, not 3,000.
 */
export class FleetTracker {
  private readonly acks = new Map<string, { daemonId: string; attachmentId: string; version: string }>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(
    private readonly sql: Sql,
    readonly replicaId: string,
    private readonly log: pino.Logger,
    private readonly flushMs = 50,
  ) {}

  /** Announces this replica and refreshes its last_seen every `everyMs` until stop(). */
  async register(address: string, everyMs = 5000): Promise<void> {
    await this.sql`
      INSERT INTO nf_replicas (replica_id, address) VALUES (${this.replicaId}, ${address})
      ON CONFLICT (replica_id) DO UPDATE SET address = EXCLUDED.address, started_at = now(), last_seen = now()`;
    this.heartbeat = setInterval(() => {
      this.sql`UPDATE nf_replicas SET last_seen = now() WHERE replica_id = ${this.replicaId}`.catch((err: unknown) =>
        this.log.warn({ err: String(err) }, "replica heartbeat to the database failed"));
    }, everyMs);
    this.heartbeat.unref();
  }

  /** A daemon (re)synced on this replica: it is ours now, with exactly these attachments. */
  async daemonSynced(daemon: DaemonHandle): Promise<void> {
    const atts = [...daemon.attachments.values()];
    await this.sql.begin(async (tx) => {
      await tx`
        INSERT INTO nf_daemons (daemon_id, hostname, metadata, replica_id, connected_at, disconnected_at)
        VALUES (${daemon.daemonId}, ${daemon.info.hostname}, ${tx.json(daemon.info.metadata as Record<string, string>)}, ${this.replicaId}, now(), NULL)
        ON CONFLICT (daemon_id) DO UPDATE SET hostname = EXCLUDED.hostname, metadata = EXCLUDED.metadata,
          replica_id = EXCLUDED.replica_id, connected_at = now(), disconnected_at = NULL`;
      const ids = atts.map((a) => a.id);
      await tx`DELETE FROM nf_attachments WHERE daemon_id = ${daemon.daemonId} AND NOT (attachment_id = ANY(${ids}::text[]))`;
      if (atts.length > 0) await this.upsertAttachments(tx, daemon.daemonId, atts);
    });
  }

  async attachmentSubscribed(daemon: DaemonHandle, attachment: AttachmentInfo): Promise<void> {
    await this.upsertAttachments(this.sql, daemon.daemonId, [attachment]);
  }

  async attachmentGone(daemonId: string, attachmentId: string): Promise<void> {
    this.acks.delete(`${daemonId}\0${attachmentId}`);
    await this.sql`DELETE FROM nf_attachments WHERE daemon_id = ${daemonId} AND attachment_id = ${attachmentId}`;
  }

  /** The stream ended: the daemon is no longer ours (unless it already synced on another replica). */
  async daemonDisconnected(daemonId: string): Promise<void> {
    await this.sql`UPDATE nf_daemons SET replica_id = NULL, disconnected_at = now() WHERE daemon_id = ${daemonId} AND replica_id = ${this.replicaId}`;
  }

  /** A daemon confirmed `version` in the kernel for an attachment (written in the next batch). */
  acked(daemonId: string, attachmentId: string, version: string): void {
    this.acks.set(`${daemonId}\0${attachmentId}`, { daemonId, attachmentId, version });
    if (this.timer === null) this.timer = setTimeout(() => void this.flush(), this.flushMs);
  }

  /** Writes the pending acks now; resolves when they (and any flush before) are written. */
  flush(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const batch = [...this.acks.values()];
    this.acks.clear();
    this.flushing = this.flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        await this.sql`
          UPDATE nf_attachments a SET acked_version = v.version, policy = split_part(v.version, '@', 1), acked_at = now()
          FROM (SELECT unnest(${batch.map((b) => b.daemonId)}::text[]) AS daemon_id,
                       unnest(${batch.map((b) => b.attachmentId)}::text[]) AS attachment_id,
                       unnest(${batch.map((b) => b.version)}::text[]) AS version) v
          WHERE a.daemon_id = v.daemon_id AND a.attachment_id = v.attachment_id`;
      } catch (err) {
        this.log.warn({ err: String(err), acks: batch.length }, "writing policy acks to the database failed");
      }
    });
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    await this.flush();
  }

  private async upsertAttachments(sql: Sql | TransactionSql, daemonId: string, atts: readonly AttachmentInfo[]): Promise<void> {
    await sql`
      INSERT INTO nf_attachments (daemon_id, attachment_id, target, metadata)
      SELECT ${daemonId}, x.id, x.target, x.metadata::jsonb
      FROM unnest(${atts.map((a) => a.id)}::text[], ${atts.map((a) => a.target)}::text[], ${atts.map((a) => JSON.stringify(a.metadata))}::text[]) AS x(id, target, metadata)
      ON CONFLICT (daemon_id, attachment_id) DO UPDATE SET target = EXCLUDED.target, metadata = EXCLUDED.metadata`;
  }
}
