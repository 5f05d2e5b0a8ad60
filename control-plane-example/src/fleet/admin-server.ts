import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Sql } from "postgres";
import type pino from "pino";
import { PolicyFileError } from "../policy-file/parse-policy-file.js";
import { auditLog, ChangeRequestError, deletePolicy, loadPolicies, policyHistory, putPolicy, StaleVersionError } from "./fleet-store.js";
import { fleetStatus, listDaemons } from "./fleet-status.js";
import { policyBodyOf } from "./policy-body.js";

const MAX_BODY = 4 * 1024 * 1024;

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

/**
 * The fleet admin API: HTTP+JSON on each replica (any replica serves it; the database is the only
 * state). Routes:
 *   GET    /v1/policies                 live policies
 *   GET    /v1/policies/<name>          one policy and its version history
 *   PUT    /v1/policies/<name>          create (expectedVersion 0) or update; body: a YAML-style rule
 *                                       {priority, match, mode, allow, deny, dns} + expectedVersion, author, reason
 *   DELETE /v1/policies/<name>          body {expectedVersion, author, reason}
 *   GET    /v1/daemons                  daemons, their replica, attachments and acked versions
 *   GET    /v1/audit?limit=N            newest first
 *   GET    /v1/status                   attachments per acked version, replicas, revision
 * Errors: {"error": "..."} with 400 (invalid, with "problems"), 401, 404, 409 (stale version, with
 * "currentVersion"). With a token, every request needs "Authorization: Bearer <token>".
 */
export class AdminServer {
  private readonly server: Server;

  constructor(private readonly opts: { readonly sql: Sql; readonly token: string | null; readonly log: pino.Logger }) {
    this.server = createServer((req, res) => void this.handle(req, res));
  }

  listen(address: string): Promise<number> {
    const i = address.lastIndexOf(":");
    const host = address.slice(0, i).replace(/^\[|\]$/g, "");
    const port = Number(address.slice(i + 1));
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        const a = this.server.address();
        resolve(typeof a === "object" && a !== null ? a.port : port);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.opts.token !== null && req.headers.authorization !== `Bearer ${this.opts.token}`) throw new HttpError(401, "missing or invalid bearer token");
      const url = new URL(req.url ?? "/", "http://admin");
      const body = await this.route(req.method ?? "GET", url, req);
      send(res, 200, body);
    } catch (err) {
      if (err instanceof HttpError) return send(res, err.status, { error: err.message, ...err.extra });
      if (err instanceof StaleVersionError) return send(res, 409, { error: err.message, currentVersion: err.actual });
      if (err instanceof PolicyFileError) return send(res, 400, { error: "invalid policy; nothing changed", problems: err.problems });
      if (err instanceof ChangeRequestError) return send(res, 400, { error: err.message });
      this.opts.log.error({ err: err instanceof Error ? err.message : String(err) }, "admin request failed");
      send(res, 500, { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private async route(method: string, url: URL, req: IncomingMessage): Promise<unknown> {
    const { sql } = this.opts;
    const parts = url.pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
    if (parts[0] !== "v1") throw new HttpError(404, `no such path ${url.pathname}`);
    const [, what, name] = parts;
    if (what === "policies" && name === undefined && method === "GET") return (await loadPolicies(sql));
    if (what === "policies" && name !== undefined && parts.length === 3) {
      if (method === "GET") {
        const history = await policyHistory(sql, name);
        const live = (await loadPolicies(sql)).policies.find((p) => p.name === name) ?? null;
        if (history.length === 0) throw new HttpError(404, `no policy "${name}"`);
        return { policy: live, history };
      }
      if (method === "PUT") {
        const b = await readJson(req);
        const result = await putPolicy(sql, { ...policyBodyOf(name, b), ...metaOf(b) });
        this.opts.log.info({ ...result, author: b["author"], reason: b["reason"] }, "policy changed");
        return result;
      }
      if (method === "DELETE") {
        const b = await readJson(req);
        const result = await deletePolicy(sql, { name, ...metaOf(b) });
        this.opts.log.info({ ...result, author: b["author"], reason: b["reason"] }, "policy deleted");
        return result;
      }
    }
    if (method === "GET" && what === "daemons") return listDaemons(sql, { limit: numberParam(url, "limit") });
    if (method === "GET" && what === "audit") return auditLog(sql, numberParam(url, "limit") ?? 100);
    if (method === "GET" && what === "status") return fleetStatus(sql);
    throw new HttpError(404, `no route ${method} ${url.pathname}`);
  }
}

function metaOf(b: Record<string, unknown>): { expectedVersion: number; author: string; reason: string } {
  const ev = b["expectedVersion"];
  if (typeof ev !== "number" || !Number.isInteger(ev) || ev < 0) throw new HttpError(400, "expectedVersion is required: 0 to create, else the version you read");
  return { expectedVersion: ev, author: typeof b["author"] === "string" ? b["author"] : "", reason: typeof b["reason"] === "string" ? b["reason"] : "" };
}

function numberParam(url: URL, key: string): number | undefined {
  const v = url.searchParams.get(key);
  if (v === null) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new HttpError(400, `${key} must be a positive integer`);
  return n;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, "request body too large");
    chunks.push(c as Buffer);
  }
  let v: unknown;
  try {
    v = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, "the request body must be JSON");
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new HttpError(400, "the request body must be a JSON object");
  return v as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
