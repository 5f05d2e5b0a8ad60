import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import postgres from "postgres";
import { startPostgres, type TestPostgres } from "../../helpers/postgres.js";
import { SimFleet } from "../../helpers/sim-daemons.js";
import { waitFor } from "../../helpers/daemon-harness.js";
import { migrate } from "../../../control-plane-example/src/fleet/migrations.js";
import { startFleetCp, type RunningFleetCp } from "../../../control-plane-example/src/fleet/fleet-cp.js";
import { AdminClient, AdminError } from "../../../control-plane-example/src/fleet/admin-client.js";
import type { FleetStatus } from "../../../control-plane-example/src/fleet/fleet-status.js";

// One in-process fleet replica on a real PostgreSQL: the admin API's errors (token, invalid
// policy, unknown route, bad body), a delete falling back to the built-in defaults, and a replica
// refusing a database without the schema.
let pg: TestPostgres;
let cp: RunningFleetCp;
let sims: SimFleet;
const TOKEN = "t0ken";
const silent = pino({ level: "silent" });

beforeAll(async () => {
  pg = await startPostgres();
  const sql = postgres(pg.url, { max: 1, onnotice: () => undefined });
  // Before migrate: the replica refuses to start and says what to do.
  await expect(startFleetCp({ listen: "127.0.0.1:0", databaseUrl: pg.url, logger: silent })).rejects.toThrow(
    'database schema is at version 0, this netfence-cp needs 1: run "netfence-cp migrate --database <url>" first');
  await migrate(sql);
  await sql.end();
  cp = await startFleetCp({ listen: "127.0.0.1:0", databaseUrl: pg.url, adminListen: "127.0.0.1:0", adminToken: TOKEN, replicaId: "solo", logger: silent });
  sims = new SimFleet([`127.0.0.1:${cp.port}`]);
  sims.add(3, 2, (d, a) => ({ app: a === 0 ? "web" : "db", host: String(d) }));
});
afterAll(async () => {
  sims?.stop();
  await cp?.stop();
  await pg?.stop();
});

describe("fleet replica and admin API", () => {
  it("refuses requests without the token, invalid policies with every problem, unknown routes and bad bodies; nothing changes", async () => {
    const base = `http://127.0.0.1:${cp.adminPort}`;
    const anon = await new AdminClient(base).get("/v1/policies").then(() => null, (e: unknown) => e as AdminError);
    expect(anon).toMatchObject({ status: 401, message: "missing or invalid bearer token" });
    const admin = new AdminClient(base, TOKEN);
    const bad = await admin.send("PUT", "/v1/policies/web", {
      match: { app: "web" }, mode: "allowlist", allow: ["10.0.0.0/33"], dns: { mode: "sometimes" }, colour: "blue", expectedVersion: 0, author: "a", reason: "r",
    }).then(() => null, (e: unknown) => e as AdminError);
    expect(bad!.status).toBe(400);
    expect(bad!.message).toBe("invalid policy; nothing changed");
    expect(bad!.problems).toEqual(['policy "web": unknown key "colour"']);
    const bad2 = await admin.send("PUT", "/v1/policies/web", { match: { app: "web" }, mode: "allowlist", allow: ["10.0.0.0/33"], dns: { mode: "sometimes" }, expectedVersion: 0, author: "a", reason: "r" })
      .then(() => null, (e: unknown) => e as AdminError);
    expect(bad2!.problems.join("\n")).toMatch(/allow\[0\].*10\.0\.0\.0\/33/);
    expect(bad2!.problems.join("\n")).toMatch(/dns: mode must be one of/);
    await expect(admin.send("PUT", "/v1/policies/web", { mode: "allowlist", author: "a", reason: "r" })).rejects.toMatchObject({ status: 400, message: "expectedVersion is required: 0 to create, else the version you read" });
    await expect(admin.send("PUT", "/v1/policies/bad%20name", { mode: "allowlist", expectedVersion: 0, author: "a", reason: "r" })).rejects.toMatchObject({ status: 400 });
    await expect(admin.get("/v1/nothing")).rejects.toMatchObject({ status: 404 });
    await expect(admin.get("/v1/policies/web")).rejects.toMatchObject({ status: 404, message: 'no policy "web"' });
    const raw = await fetch(`${base}/v1/policies/web`, { method: "PUT", headers: { authorization: `Bearer ${TOKEN}` }, body: "{not json" });
    expect(raw.status).toBe(400);
    expect(await admin.get("/v1/policies")).toMatchObject({ revision: 0, policies: [] });
  });

  it("a created policy reaches the selected attachments only; deleting it falls back to the built-in defaults", async () => {
    const admin = new AdminClient(`http://127.0.0.1:${cp.adminPort}`, TOKEN);
    await waitFor(() => sims.attachments().every((a) => a.daemon.versions.get(a.id) === "defaults@0"), "everyone on the built-in defaults", 10_000);
    const created = await admin.send<{ version: number }>("PUT", "/v1/policies/web", { priority: 5, match: { app: "web" }, mode: "allowlist", allow: ["10.9.0.0/16"], expectedVersion: 0, author: "alice", reason: "open web" });
    expect(created.version).toBe(1);
    const version = (id: string) => sims.attachments().find((a) => a.id === id)!.daemon.versions.get(id);
    await waitFor(() => ["sim0-0", "sim1-0", "sim2-0"].every((id) => version(id) === "web@1"), "web attachments on web@1", 10_000);
    expect(["sim0-1", "sim1-1", "sim2-1"].map(version)).toEqual(["defaults@0", "defaults@0", "defaults@0"]);
    await admin.send("DELETE", "/v1/policies/web", { expectedVersion: 1, author: "alice", reason: "close web" });
    await waitFor(() => sims.attachments().every((a) => a.daemon.versions.get(a.id) === "defaults@0"), "back to the defaults", 10_000);
    // The sims record a version before their CommandResult reaches the replica: wait for the acks.
    let st = await admin.get<FleetStatus>("/v1/status");
    await waitFor(async () => (st = await admin.get<FleetStatus>("/v1/status")).attachmentsByVersion["defaults@0"] === 6, "the acks of defaults@0 stored", 10_000);
    expect(st.attachmentsByVersion).toEqual({ "defaults@0": 6 });
    expect(st.attachmentsBehind).toBe(0);
    expect(st.replicas).toEqual([expect.objectContaining({ replicaId: "solo", alive: true, daemons: 3 })]);
    const shown = await admin.get<{ policy: unknown; history: Array<{ version: number; deleted: boolean }> }>("/v1/policies/web");
    expect(shown.policy).toBeNull();
    expect(shown.history.map((h) => [h.version, h.deleted])).toEqual([[1, false], [2, true]]);
  });
});
