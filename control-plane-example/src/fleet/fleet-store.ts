import type { Sql, TransactionSql } from "postgres";
import type { PolicyRecord } from "./policy-set.js";
import { validatePolicy } from "./policy-set.js";

/** NOTIFY channel a committed policy change is announced on (payload: the new revision). */
export const POLICY_CHANNEL = "netfence_policy";

/** A change refused because the policy moved on since the caller read it (optimistic concurrency). */
export class StaleVersionError extends Error {
  override readonly name = "StaleVersionError";
  constructor(readonly policy: string, readonly expected: number, readonly actual: number | null) {
    super(actual === null
      ? `policy "${policy}" does not exist (expected version ${expected}); nothing changed`
      : expected === 0
        ? `policy "${policy}" already exists at version ${actual}; pass its current version to update it; nothing changed`
        : `policy "${policy}" is at version ${actual}, not ${expected}: someone changed it since you read it; re-read and retry; nothing changed`);
  }
}

/** A change without an author or a reason. */
export class ChangeRequestError extends Error {
  override readonly name = "ChangeRequestError";
}

export interface ChangeMeta {
  readonly author: string;
  readonly reason: string;
}

export interface PutPolicy extends ChangeMeta {
  readonly name: string;
  readonly priority: number;
  readonly selector: Readonly<Record<string, readonly string[]>>;
  readonly rules: Readonly<Record<string, unknown>>;
  /** 0 = create (refused when it exists); otherwise the version the caller read. */
  readonly expectedVersion: number;
}

export interface ChangeResult {
  readonly name: string;
  readonly version: number;
  readonly revision: number;
}

export interface PolicyRow extends PolicyRecord {
  readonly revision: number;
  readonly updatedBy: string;
  readonly reason: string;
  readonly updatedAt: string;
}

interface DbPolicy {
  name: string;
  priority: number;
  selector: Record<string, string[]>;
  rules: Record<string, unknown>;
  version: string;
  revision: string;
  updated_by: string;
  reason: string;
  updated_at: Date;
}

function rowOf(r: DbPolicy): PolicyRow {
  return {
    name: r.name, priority: r.priority, selector: r.selector, rules: r.rules, version: Number(r.version),
    revision: Number(r.revision), updatedBy: r.updated_by, reason: r.reason, updatedAt: r.updated_at.toISOString(),
  };
}

function checkMeta(meta: ChangeMeta): void {
  if (typeof meta.author !== "string" || meta.author.trim() === "") throw new ChangeRequestError("every change needs an author");
  if (typeof meta.reason !== "string" || meta.reason.trim() === "") throw new ChangeRequestError("every change needs a reason");
}

/** The live policies and the revision they are at (one consistent snapshot). */
export async function loadPolicies(sql: Sql): Promise<{ revision: number; policies: PolicyRow[] }> {
  return sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
    const rev = await tx<{ revision: string }[]>`SELECT revision FROM nf_revision`;
    const rows = await tx<DbPolicy[]>`SELECT * FROM nf_policies ORDER BY priority, name`;
    return { revision: Number(rev[0]!.revision), policies: rows.map(rowOf) };
  });
}

export async function currentRevision(sql: Sql): Promise<number> {
  const rev = await sql<{ revision: string }[]>`SELECT revision FROM nf_revision`;
  return Number(rev[0]!.revision);
}

/**
 * Creates or updates a policy in one transaction: validated like a YAML rule, refused unless the
 * stored version equals expectedVersion, then version+1, history row, audit row, fleet revision
 * bumped and NOTIFY sent (delivered to every replica at commit).
 */
export async function putPolicy(sql: Sql, req: PutPolicy): Promise<ChangeResult> {
  checkMeta(req);
  validatePolicy(req);
  return sql.begin(async (tx) => {
    const revision = await bumpRevision(tx);
    const cur = await tx<{ version: string }[]>`SELECT version FROM nf_policies WHERE name = ${req.name} FOR UPDATE`;
    const actual = cur.length === 0 ? null : Number(cur[0]!.version);
    if ((actual ?? 0) !== req.expectedVersion) throw new StaleVersionError(req.name, req.expectedVersion, actual);
    const version = (actual ?? 0) + 1;
    const selector = tx.json(req.selector as Record<string, string[]>);
    const rules = tx.json(req.rules as Record<string, never>);
    await tx`
      INSERT INTO nf_policies (name, priority, selector, rules, version, revision, updated_by, reason)
      VALUES (${req.name}, ${req.priority}, ${selector}, ${rules}, ${version}, ${revision}, ${req.author}, ${req.reason})
      ON CONFLICT (name) DO UPDATE SET priority = EXCLUDED.priority, selector = EXCLUDED.selector, rules = EXCLUDED.rules,
        version = EXCLUDED.version, revision = EXCLUDED.revision, updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason, updated_at = now()`;
    await tx`
      INSERT INTO nf_policy_versions (name, version, priority, selector, rules, revision, updated_by, reason)
      VALUES (${req.name}, ${version}, ${req.priority}, ${selector}, ${rules}, ${revision}, ${req.author}, ${req.reason})`;
    const detail = tx.json({ priority: req.priority, selector: req.selector, rules: req.rules } as never);
    await tx`
      INSERT INTO nf_audit (author, reason, action, policy, version, revision, detail)
      VALUES (${req.author}, ${req.reason}, ${actual === null ? "create" : "update"}, ${req.name}, ${version}, ${revision}, ${detail})`;
    await tx`SELECT pg_notify(${POLICY_CHANNEL}, ${String(revision)})`;
    return { name: req.name, version, revision };
  });
}

/** Deletes a policy at expectedVersion (same transaction shape as putPolicy). */
export async function deletePolicy(sql: Sql, req: ChangeMeta & { readonly name: string; readonly expectedVersion: number }): Promise<ChangeResult> {
  checkMeta(req);
  return sql.begin(async (tx) => {
    const revision = await bumpRevision(tx);
    const cur = await tx<DbPolicy[]>`SELECT * FROM nf_policies WHERE name = ${req.name} FOR UPDATE`;
    const actual = cur.length === 0 ? null : Number(cur[0]!.version);
    if (actual === null || actual !== req.expectedVersion) throw new StaleVersionError(req.name, req.expectedVersion, actual);
    const version = actual + 1;
    const old = cur[0]!;
    await tx`DELETE FROM nf_policies WHERE name = ${req.name}`;
    await tx`
      INSERT INTO nf_policy_versions (name, version, priority, selector, rules, deleted, revision, updated_by, reason)
      VALUES (${req.name}, ${version}, ${old.priority}, ${tx.json(old.selector)}, ${tx.json(old.rules as Record<string, never>)}, true, ${revision}, ${req.author}, ${req.reason})`;
    await tx`
      INSERT INTO nf_audit (author, reason, action, policy, version, revision, detail)
      VALUES (${req.author}, ${req.reason}, 'delete', ${req.name}, ${version}, ${revision}, ${tx.json({ deletedVersion: actual })})`;
    await tx`SELECT pg_notify(${POLICY_CHANNEL}, ${String(revision)})`;
    return { name: req.name, version, revision };
  });
}

/** Takes the fleet revision's row lock (serializes all changes) and returns the next revision. */
async function bumpRevision(tx: TransactionSql): Promise<number> {
  const r = await tx<{ revision: string }[]>`UPDATE nf_revision SET revision = revision + 1 RETURNING revision`;
  return Number(r[0]!.revision);
}

export interface PolicyVersionRow {
  readonly name: string;
  readonly version: number;
  readonly deleted: boolean;
  readonly priority: number;
  readonly selector: Readonly<Record<string, readonly string[]>>;
  readonly rules: Readonly<Record<string, unknown>>;
  readonly revision: number;
  readonly updatedBy: string;
  readonly reason: string;
  readonly updatedAt: string;
}

export async function policyHistory(sql: Sql, name: string): Promise<PolicyVersionRow[]> {
  const rows = await sql<Array<DbPolicy & { deleted: boolean }>>`SELECT * FROM nf_policy_versions WHERE name = ${name} ORDER BY version`;
  return rows.map((r) => ({ ...rowOf(r), deleted: r.deleted }));
}

export interface AuditRow {
  readonly id: number;
  readonly at: string;
  readonly author: string;
  readonly reason: string;
  readonly action: string;
  readonly policy: string;
  readonly version: number;
  readonly revision: number;
  readonly detail: unknown;
}

export async function auditLog(sql: Sql, limit = 100): Promise<AuditRow[]> {
  const rows = await sql<Array<{ id: string; at: Date; author: string; reason: string; action: string; policy: string; version: string; revision: string; detail: unknown }>>`
    SELECT * FROM nf_audit ORDER BY id DESC LIMIT ${Math.max(1, Math.min(limit, 10_000))}`;
  return rows.map((r) => ({ ...r, id: Number(r.id), at: r.at.toISOString(), version: Number(r.version), revision: Number(r.revision) }));
}
