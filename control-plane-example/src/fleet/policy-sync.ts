import type { Sql } from "postgres";
import type pino from "pino";
import type { DaemonHandle } from "@netfence/control-plane-sdk";
import type { PolicyController, PushSummary } from "../policy-file/policy-controller.js";
import { currentRevision, loadPolicies, POLICY_CHANNEL } from "./fleet-store.js";
import { toPolicyFile } from "./policy-set.js";

export interface PolicySyncOptions {
  readonly sql: Sql;
  readonly controller: PolicyController;
  readonly daemons: () => readonly DaemonHandle[];
  readonly log: pino.Logger;
  /** Safety net besides NOTIFY: check the fleet revision this often (default 10 s). */
  readonly pollMs?: number;
  readonly onReload?: (result: { revision: number; summary: PushSummary }) => void;
}

/**
 * Keeps one replica's policy set equal to the database's: LISTEN on the policy channel (a commit
 * NOTIFYs the new revision), re-LISTEN and reload after a database reconnect, and poll the
 * revision as a safety net. Reloads are coalesced: while one runs, any number of notifications
 * make exactly one more. Each reload reads the whole set in one snapshot and hands it to the
 * shared PolicyController, which pushes BulkUpdates to the attachments whose policy changed.
 */
export class PolicySync {
  private loaded = -1;
  private running: Promise<void> | null = null;
  private again = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private unlisten: (() => Promise<void>) | null = null;
  private stopped = false;

  constructor(private readonly opts: PolicySyncOptions) {}

  get revision(): number {
    return this.loaded;
  }

  /** Marks the set the controller started with as loaded at `revision`. */
  initial(revision: number): void {
    this.loaded = revision;
  }

  async start(): Promise<void> {
    const sub = await this.opts.sql.listen(POLICY_CHANNEL, () => this.request(), () => this.request());
    this.unlisten = () => sub.unlisten();
    this.pollTimer = setInterval(() => {
      currentRevision(this.opts.sql).then((r) => {
        if (r > this.loaded) this.request();
      }, (err: unknown) => this.opts.log.warn({ err: String(err) }, "polling the fleet revision failed"));
    }, this.opts.pollMs ?? 10_000);
    this.pollTimer.unref();
  }

  /** Reload soon (coalesced); resolves when the set in force is at least as new as the database's now. */
  request(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running !== null) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reloadOnce();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
    await this.unlisten?.().catch(() => undefined);
    await this.running;
  }

  private async reloadOnce(): Promise<void> {
    let snapshot: Awaited<ReturnType<typeof loadPolicies>>;
    try {
      snapshot = await loadPolicies(this.opts.sql);
    } catch (err) {
      this.opts.log.warn({ err: String(err) }, "loading the policy set failed; keeping the one in force");
      return;
    }
    if (snapshot.revision <= this.loaded) return;
    let file;
    try {
      file = toPolicyFile(snapshot.policies);
    } catch (err) {
      // Every change is validated before commit; this is a row edited by hand in the database.
      this.opts.log.error({ revision: snapshot.revision, err: String(err) }, "policy set in the database is invalid; keeping the one in force");
      return;
    }
    this.loaded = snapshot.revision;
    this.opts.log.info({ revision: snapshot.revision, policies: snapshot.policies.length }, "policy set changed; pushing");
    const summary = await this.opts.controller.reload(file, this.opts.daemons());
    this.opts.log.info({ revision: snapshot.revision, ...summary }, "policy changes pushed");
    this.opts.onReload?.({ revision: snapshot.revision, summary });
  }
}
