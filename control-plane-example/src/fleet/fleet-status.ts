import type { Sql } from "postgres";
import { DEFAULTS_VERSION, policyVersionOf } from "./policy-set.js";

/** How long a replica may be silent (its last_seen) before status reports it dead. */
export const REPLICA_DEAD_AFTER_S = 15;

export interface AttachmentRow {
  readonly attachmentId: string;
  readonly target: string;
  readonly metadata: Record<string, string>;
  /** "name@version" the daemon confirmed in the kernel; null before its first confirmation. */
  readonly ackedVersion: string | null;
  readonly ackedAt: string | null;
}

export interface DaemonRow {
  readonly daemonId: string;
  readonly hostname: string;
  readonly metadata: Record<string, string>;
  /** The replica holding its stream; null while disconnected. */
  readonly replicaId: string | null;
  readonly connectedAt: string | null;
  readonly attachments: AttachmentRow[];
}

export async function listDaemons(sql: Sql, opts: { limit?: number } = {}): Promise<DaemonRow[]> {
  const rows = await sql<Array<{
    daemon_id: string; hostname: string; metadata: Record<string, string>; replica_id: string | null; connected_at: Date | null;
    atts: Array<{ attachment_id: string; target: string; metadata: Record<string, string>; acked_version: string | null; acked_at: string | null }> | null;
  }>>`
    SELECT d.daemon_id, d.hostname, d.metadata, d.replica_id, d.connected_at,
      (SELECT json_agg(json_build_object('attachment_id', a.attachment_id, 'target', a.target, 'metadata', a.metadata,
                                         'acked_version', a.acked_version, 'acked_at', a.acked_at) ORDER BY a.attachment_id)
         FROM nf_attachments a WHERE a.daemon_id = d.daemon_id) AS atts
    FROM nf_daemons d ORDER BY d.daemon_id LIMIT ${Math.max(1, Math.min(opts.limit ?? 10_000, 100_000))}`;
  return rows.map((r) => ({
    daemonId: r.daemon_id, hostname: r.hostname, metadata: r.metadata, replicaId: r.replica_id,
    connectedAt: r.connected_at?.toISOString() ?? null,
    attachments: (r.atts ?? []).map((a) => ({ attachmentId: a.attachment_id, target: a.target, metadata: a.metadata, ackedVersion: a.acked_version, ackedAt: a.acked_at })),
  }));
}

export interface FleetStatus {
  readonly revision: number;
  /** The version each live policy is at ("name@version"), plus the built-in defaults. */
  readonly currentVersions: string[];
  readonly replicas: Array<{ replicaId: string; address: string; alive: boolean; daemons: number; lastSeen: string }>;
  readonly daemons: { connected: number; disconnected: number };
  /** Attachments of connected daemons per acked version ("(none)" = not confirmed yet). */
  readonly attachmentsByVersion: Record<string, number>;
  /** Of those, how many hold a version that is not current (an older version or a deleted policy). */
  readonly attachmentsBehind: number;
}

export async function fleetStatus(sql: Sql): Promise<FleetStatus> {
  return sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
    const rev = await tx<{ revision: string }[]>`SELECT revision FROM nf_revision`;
    const pols = await tx<{ name: string; version: string }[]>`SELECT name, version FROM nf_policies ORDER BY priority, name`;
    const reps = await tx<Array<{ replica_id: string; address: string; last_seen: Date; alive: boolean; daemons: string }>>`
      SELECT r.replica_id, r.address, r.last_seen, r.last_seen > now() - make_interval(secs => ${REPLICA_DEAD_AFTER_S}) AS alive,
        (SELECT count(*) FROM nf_daemons d WHERE d.replica_id = r.replica_id) AS daemons
      FROM nf_replicas r ORDER BY r.replica_id`;
    const ds = await tx<Array<{ connected: string; disconnected: string }>>`
      SELECT count(*) FILTER (WHERE replica_id IS NOT NULL) AS connected, count(*) FILTER (WHERE replica_id IS NULL) AS disconnected FROM nf_daemons`;
    const byVersion = await tx<Array<{ v: string | null; n: string }>>`
      SELECT a.acked_version AS v, count(*) AS n FROM nf_attachments a JOIN nf_daemons d USING (daemon_id)
      WHERE d.replica_id IS NOT NULL GROUP BY a.acked_version ORDER BY a.acked_version`;
    const current = [...pols.map((p) => policyVersionOf(p.name, Number(p.version))), DEFAULTS_VERSION];
    const currentSet = new Set(current);
    const attachmentsByVersion: Record<string, number> = {};
    let behind = 0;
    for (const r of byVersion) {
      attachmentsByVersion[r.v ?? "(none)"] = Number(r.n);
      if (r.v === null || !currentSet.has(r.v)) behind += Number(r.n);
    }
    return {
      revision: Number(rev[0]!.revision),
      currentVersions: current,
      replicas: reps.map((r) => ({ replicaId: r.replica_id, address: r.address, alive: r.alive, daemons: Number(r.daemons), lastSeen: r.last_seen.toISOString() })),
      daemons: { connected: Number(ds[0]!.connected), disconnected: Number(ds[0]!.disconnected) },
      attachmentsByVersion,
      attachmentsBehind: behind,
    };
  });
}
