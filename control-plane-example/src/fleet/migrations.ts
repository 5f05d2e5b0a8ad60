import type { Sql } from "postgres";

/**
 * The fleet schema, as numbered migrations. Applied in order by `netfence-cp migrate` (a replica
 * only checks the version at start and refuses a schema that is not its own); the missing ones run
 * in one transaction and record themselves in nf_schema_migrations, so running migrate again is a
 * no-op and a new release only appends entries here.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "policies, versions, daemons, attachments, audit",
    sql: `
      -- The fleet-wide revision: bumped by every policy change, in the change's transaction.
      CREATE TABLE nf_revision (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        revision bigint NOT NULL
      );
      INSERT INTO nf_revision (revision) VALUES (0);

      -- One row per live policy: a label selector and the rules, as a rule of the YAML file.
      -- Policies are tried by ascending priority (then name); the first whose selector matches wins.
      CREATE TABLE nf_policies (
        name text PRIMARY KEY,
        priority integer NOT NULL,
        selector jsonb NOT NULL,          -- label -> [accepted values]; {} matches everything
        rules jsonb NOT NULL,             -- {mode, allow, deny, dns} exactly as in the YAML file
        version bigint NOT NULL,          -- per policy, 1 on create, +1 on each update
        revision bigint NOT NULL,         -- nf_revision.revision of the change
        updated_by text NOT NULL,
        reason text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      );

      -- Every version a policy ever had (deleted = the delete itself).
      CREATE TABLE nf_policy_versions (
        name text NOT NULL,
        version bigint NOT NULL,
        priority integer NOT NULL,
        selector jsonb NOT NULL,
        rules jsonb NOT NULL,
        deleted boolean NOT NULL DEFAULT false,
        revision bigint NOT NULL,
        updated_by text NOT NULL,
        reason text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, version)
      );

      -- Replicas announce themselves and refresh last_seen; a replica silent for long is dead.
      CREATE TABLE nf_replicas (
        replica_id text PRIMARY KEY,
        address text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        last_seen timestamptz NOT NULL DEFAULT now()
      );

      CREATE TABLE nf_daemons (
        daemon_id text PRIMARY KEY,
        hostname text NOT NULL,
        metadata jsonb NOT NULL,
        replica_id text,                  -- the replica holding its stream; NULL when disconnected
        connected_at timestamptz,
        disconnected_at timestamptz
      );

      CREATE TABLE nf_attachments (
        daemon_id text NOT NULL REFERENCES nf_daemons (daemon_id) ON DELETE CASCADE,
        attachment_id text NOT NULL,
        target text NOT NULL,
        metadata jsonb NOT NULL,
        policy text,                      -- the selected policy's name (NULL = built-in defaults)
        acked_version text,               -- the policy version the daemon confirmed in the kernel ("name@version")
        acked_at timestamptz,
        PRIMARY KEY (daemon_id, attachment_id)
      );
      CREATE INDEX nf_attachments_version ON nf_attachments (acked_version);

      CREATE TABLE nf_audit (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        author text NOT NULL,
        reason text NOT NULL,
        action text NOT NULL,             -- create | update | delete
        policy text NOT NULL,
        version bigint NOT NULL,
        revision bigint NOT NULL,
        detail jsonb NOT NULL
      );
    `,
  },
];

export interface MigrateResult {
  readonly applied: readonly number[];
  readonly current: number;
}

/**
 * Applies the migrations this release knows and the database lacks, each in a transaction under
 * an advisory lock (two replicas starting at once do not both apply one). Idempotent.
 */
export async function migrate(sql: Sql): Promise<MigrateResult> {
  const applied: number[] = [];
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(7465620)`;
    await tx`CREATE TABLE IF NOT EXISTS nf_schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
    const done = new Set((await tx<{ version: number }[]>`SELECT version FROM nf_schema_migrations`).map((r) => r.version));
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await tx.unsafe(m.sql);
      await tx`INSERT INTO nf_schema_migrations (version, name) VALUES (${m.version}, ${m.name})`;
      applied.push(m.version);
    }
  });
  return { applied, current: await schemaVersion(sql) };
}

/** The highest applied migration (0 = none). */
export async function schemaVersion(sql: Sql): Promise<number> {
  const exists = await sql<{ t: string | null }[]>`SELECT to_regclass('nf_schema_migrations')::text AS t`;
  if (exists[0]?.t === null || exists[0]?.t === undefined) return 0;
  const rows = await sql<{ v: number | null }[]>`SELECT max(version) AS v FROM nf_schema_migrations`;
  return rows[0]?.v ?? 0;
}

export const LATEST_SCHEMA = MIGRATIONS[MIGRATIONS.length - 1]!.version;
