import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres, { type Sql } from "postgres";
import { startPostgres, type TestPostgres } from "../../helpers/postgres.js";
import { migrate, LATEST_SCHEMA } from "../../../control-plane-example/src/fleet/migrations.js";
import { auditLog, deletePolicy, loadPolicies, policyHistory, putPolicy, StaleVersionError, ChangeRequestError } from "../../../control-plane-example/src/fleet/fleet-store.js";
import { toPolicyFile } from "../../../control-plane-example/src/fleet/policy-set.js";
import { selectPolicy } from "../../../control-plane-example/src/policy-file/policy-file.js";
import { PolicyFileError } from "../../../control-plane-example/src/policy-file/parse-policy-file.js";

// The fleet store on a real PostgreSQL (initdb in a temp dir, own port): migrations, versioned
// and audited changes, optimistic concurrency, validation, NOTIFY at commit.
let pg: TestPostgres;
let sql: Sql;
beforeAll(async () => {
  pg = await startPostgres();
  sql = postgres(pg.url, { max: 4, onnotice: () => undefined });
});
afterAll(async () => {
  await sql?.end({ timeout: 5 });
  await pg?.stop();
});

const meta = { author: "alice", reason: "ticket 1" };
const web = { name: "web", priority: 10, selector: { app: ["web"] }, rules: { mode: "allowlist", allow: ["10.0.0.0/8"], dns: { mode: "allowlist", allow: ["*.example.com"] } } };

describe("fleet store", () => {
  it("migrate creates the schema once and is idempotent", async () => {
    const first = await migrate(sql);
    expect(first).toEqual({ applied: [1], current: LATEST_SCHEMA });
    const again = await migrate(sql);
    expect(again).toEqual({ applied: [], current: LATEST_SCHEMA });
    const tables = await sql<{ t: string }[]>`SELECT tablename AS t FROM pg_tables WHERE tablename LIKE 'nf_%' ORDER BY 1`;
    expect(tables.map((r) => r.t)).toEqual(["nf_attachments", "nf_audit", "nf_daemons", "nf_policies", "nf_policy_versions", "nf_replicas", "nf_revision", "nf_schema_migrations"]);
  });

  it("creates, updates and deletes with versions, history, audit and NOTIFY; a stale version is refused and changes nothing", async () => {
    const notified: string[] = [];
    const sub = await sql.listen("netfence_policy", (p) => notified.push(p));
    const created = await putPolicy(sql, { ...web, ...meta, expectedVersion: 0 });
    expect(created).toMatchObject({ name: "web", version: 1 });
    // Creating again (expected 0) is refused: it exists.
    await expect(putPolicy(sql, { ...web, ...meta, expectedVersion: 0 })).rejects.toThrow(/already exists at version 1/);
    const updated = await putPolicy(sql, { ...web, rules: { ...web.rules, allow: ["10.0.0.0/8", "192.168.0.0/16"] }, author: "bob", reason: "ticket 2", expectedVersion: 1 });
    expect(updated.version).toBe(2);
    expect(updated.revision).toBeGreaterThan(created.revision);
    // A second editor who read version 1 is refused; the policy stays at version 2.
    const stale = await putPolicy(sql, { ...web, rules: { mode: "disabled" }, author: "carol", reason: "late", expectedVersion: 1 }).then(() => null, (e: unknown) => e);
    expect(stale).toBeInstanceOf(StaleVersionError);
    expect((stale as Error).message).toBe(`policy "web" is at version 2, not 1: someone changed it since you read it; re-read and retry; nothing changed`);
    const live = await loadPolicies(sql);
    expect(live.policies.map((p) => [p.name, p.version, p.rules["mode"]])).toEqual([["web", 2, "allowlist"]]);
    expect(live.revision).toBe(updated.revision);

    // Author and reason are required; an invalid policy is refused with the YAML parser's message.
    await expect(putPolicy(sql, { ...web, name: "x", author: "", reason: "r", expectedVersion: 0 })).rejects.toBeInstanceOf(ChangeRequestError);
    await expect(putPolicy(sql, { ...web, name: "x", author: "a", reason: " ", expectedVersion: 0 })).rejects.toThrow(/needs a reason/);
    const bad = await putPolicy(sql, { ...web, name: "x", rules: { mode: "allowlist", allow: ["10.0.0.300/8"] }, ...meta, expectedVersion: 0 }).then(() => null, (e: unknown) => e);
    expect(bad).toBeInstanceOf(PolicyFileError);
    expect((bad as PolicyFileError).problems.join("\n")).toMatch(/allow\[0\]/);
    expect((await loadPolicies(sql)).revision).toBe(updated.revision);

    await expect(deletePolicy(sql, { name: "web", expectedVersion: 1, ...meta })).rejects.toBeInstanceOf(StaleVersionError);
    const deleted = await deletePolicy(sql, { name: "web", expectedVersion: 2, author: "dave", reason: "decommissioned" });
    expect(deleted.version).toBe(3);
    expect((await loadPolicies(sql)).policies).toEqual([]);
    const history = await policyHistory(sql, "web");
    expect(history.map((h) => [h.version, h.deleted, h.updatedBy])).toEqual([[1, false, "alice"], [2, false, "bob"], [3, true, "dave"]]);
    const audit = await auditLog(sql, 10);
    expect(audit.map((a) => [a.action, a.policy, a.version, a.author, a.reason])).toEqual([
      ["delete", "web", 3, "dave", "decommissioned"],
      ["update", "web", 2, "bob", "ticket 2"],
      ["create", "web", 1, "alice", "ticket 1"],
    ]);
    // One NOTIFY per committed change (the refused ones sent none), carrying the revision.
    const deadline = Date.now() + 5000;
    while (notified.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(notified).toEqual([created.revision, updated.revision, deleted.revision].map(String));
    await sub.unlisten();
  });

  it("selects by priority then name, first match wins, with the version in the pushed policy", async () => {
    const file = toPolicyFile([
      { name: "b-any", priority: 50, selector: {}, rules: { mode: "denylist", deny: ["198.51.100.0/24"] }, version: 4 },
      { name: "a-web", priority: 10, selector: { app: ["web", "api"] }, rules: { mode: "allowlist", allow: ["10.1.0.0/16"] }, version: 2 },
    ]);
    expect(selectPolicy(file, { app: "api" }).policy).toMatchObject({ mode: "allowlist", version: "a-web@2" });
    expect(selectPolicy(file, { app: "db" }).policy).toMatchObject({ mode: "denylist", version: "b-any@4" });
    expect(selectPolicy(toPolicyFile([]), {}).policy).toMatchObject({ mode: "block-all", version: "defaults@0" });
  });
});
