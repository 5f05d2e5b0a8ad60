import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import postgres from "postgres";
import { parse as parseYaml } from "yaml";
import { migrate } from "./migrations.js";
import { AdminClient, AdminError } from "./admin-client.js";
import type { FleetStatus } from "./fleet-status.js";
import type { DaemonRow } from "./fleet-status.js";
import type { AuditRow, PolicyRow } from "./fleet-store.js";

const DEFAULT_ADMIN = "http://127.0.0.1:50052";

interface AdminOpts { admin?: string; adminToken?: string; json?: boolean }

function client(o: AdminOpts): AdminClient {
  return new AdminClient(o.admin ?? process.env["NETFENCE_CP_ADMIN"] ?? DEFAULT_ADMIN, o.adminToken ?? process.env["NETFENCE_CP_ADMIN_TOKEN"] ?? null);
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Runs a subcommand body: errors → one line per problem on stderr, exit code 2 (409: 3). */
async function guarded(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof AdminError) {
      process.stderr.write(`netfence-cp: ${err.message}\n`);
      for (const p of err.problems) process.stderr.write(`  ${p}\n`);
      process.exitCode = err.status === 409 ? 3 : 2;
      return;
    }
    process.stderr.write(`netfence-cp: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  }
}

function withAdmin(c: Command): Command {
  return c
    .option("--admin <url>", `a replica's admin API (default: $NETFENCE_CP_ADMIN or ${DEFAULT_ADMIN})`)
    .option("--admin-token <token>", "bearer token of the admin API (default: $NETFENCE_CP_ADMIN_TOKEN)")
    .option("--json", "print the API's JSON");
}

/** The fleet-mode subcommands of netfence-cp: migrate, policy list|show|apply|delete, daemons, audit, status. */
export function addFleetCommands(root: Command): void {
  root.enablePositionalOptions();
  root.command("migrate")
    .description("create or upgrade the fleet schema in PostgreSQL (idempotent)")
    .requiredOption("--database <url>", "postgres://...")
    .action(async (o: { database: string }) => guarded(async () => {
      const sql = postgres(o.database, { max: 1, onnotice: () => undefined });
      try {
        const r = await migrate(sql);
        out(r.applied.length === 0 ? `schema already at version ${r.current}` : `schema at version ${r.current} (applied ${r.applied.join(", ")})`);
      } finally {
        await sql.end({ timeout: 5 });
      }
    }));

  const policy = root.command("policy").description("fleet policies (through a replica's admin API)");
  withAdmin(policy.command("list").description("live policies in selection order")).action(async (o: AdminOpts) => guarded(async () => {
    const r = await client(o).get<{ revision: number; policies: PolicyRow[] }>("/v1/policies");
    if (o.json) return out(JSON.stringify(r, null, 2));
    out(`revision ${r.revision}`);
    for (const p of r.policies) out(`${p.priority}\t${p.name}@${p.version}\tmatch ${JSON.stringify(p.selector)}\tmode ${String(p.rules["mode"])}\t${p.updatedBy}: ${p.reason}`);
  }));
  withAdmin(policy.command("show <name>").description("a policy and its version history")).action(async (name: string, o: AdminOpts) => guarded(async () => {
    out(JSON.stringify(await client(o).get(`/v1/policies/${encodeURIComponent(name)}`), null, 2));
  }));
  withAdmin(policy.command("apply <file>")
    .description("create or update a policy from a YAML file: name, priority, match, mode, allow, deny, dns")
    .requiredOption("--expected-version <n>", "0 to create; else the version you are replacing (a stale one is refused)")
    .requiredOption("--author <who>", "who makes the change")
    .requiredOption("--reason <why>", "why (kept in the audit log)"))
    .action(async (file: string, o: AdminOpts & { expectedVersion: string; author: string; reason: string }) => guarded(async () => {
      const doc = parseYaml(await readFile(file, "utf8")) as unknown;
      if (typeof doc !== "object" || doc === null || Array.isArray(doc) || typeof (doc as Record<string, unknown>)["name"] !== "string") {
        throw new Error(`${file}: a policy file is a mapping with at least "name" and "mode"`);
      }
      const body = doc as Record<string, unknown>;
      const r = await client(o).send<{ name: string; version: number; revision: number }>("PUT", `/v1/policies/${encodeURIComponent(String(body["name"]))}`, {
        ...body, expectedVersion: versionArg(o.expectedVersion), author: o.author, reason: o.reason,
      });
      out(o.json ? JSON.stringify(r) : `${r.name} is now at version ${r.version} (fleet revision ${r.revision})`);
    }));
  withAdmin(policy.command("delete <name>")
    .description("delete a policy")
    .requiredOption("--expected-version <n>", "the version you are deleting (a stale one is refused)")
    .requiredOption("--author <who>", "who makes the change")
    .requiredOption("--reason <why>", "why (kept in the audit log)"))
    .action(async (name: string, o: AdminOpts & { expectedVersion: string; author: string; reason: string }) => guarded(async () => {
      const r = await client(o).send<{ name: string; version: number; revision: number }>("DELETE", `/v1/policies/${encodeURIComponent(name)}`, {
        expectedVersion: versionArg(o.expectedVersion), author: o.author, reason: o.reason,
      });
      out(o.json ? JSON.stringify(r) : `${r.name} deleted (version ${r.version}, fleet revision ${r.revision})`);
    }));

  withAdmin(root.command("daemons").description("daemons, the replica holding each, attachments and their acked policy version")).action(async (o: AdminOpts) => guarded(async () => {
    const r = await client(o).get<DaemonRow[]>("/v1/daemons");
    if (o.json) return out(JSON.stringify(r, null, 2));
    for (const d of r) {
      out(`${d.daemonId}\t${d.hostname}\t${d.replicaId ?? "(disconnected)"}`);
      for (const a of d.attachments) out(`  ${a.attachmentId}\t${a.target}\t${a.ackedVersion ?? "(not confirmed)"}`);
    }
  }));
  withAdmin(root.command("audit").description("the audit log, newest first").option("--limit <n>", "entries", "50")).action(async (o: AdminOpts & { limit: string }) => guarded(async () => {
    const r = await client(o).get<AuditRow[]>(`/v1/audit?limit=${encodeURIComponent(o.limit)}`);
    if (o.json) return out(JSON.stringify(r, null, 2));
    for (const a of r) out(`${a.at}\t${a.author}\t${a.action} ${a.policy}@${a.version}\trevision ${a.revision}\t${a.reason}`);
  }));
  withAdmin(root.command("status").description("how many attachments run each policy version; replicas")).action(async (o: AdminOpts) => guarded(async () => {
    const s = await client(o).get<FleetStatus>("/v1/status");
    if (o.json) return out(JSON.stringify(s, null, 2));
    out(`revision ${s.revision}; daemons connected ${s.daemons.connected}, disconnected ${s.daemons.disconnected}`);
    for (const r of s.replicas) out(`replica ${r.replicaId}\t${r.address}\t${r.alive ? "alive" : "DEAD"}\t${r.daemons} daemons`);
    const current = new Set(s.currentVersions);
    for (const [v, n] of Object.entries(s.attachmentsByVersion)) out(`${n}\tattachments on ${v}${current.has(v) ? "" : "  (not current)"}`);
    out(`${s.attachmentsBehind} attachments behind`);
  }));
}

function versionArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--expected-version must be a whole number (0 to create), got "${v}"`);
  return n;
}
