import type { AttachmentCore } from "./attachment-core.js";
import type { AttachmentResources } from "./attachment-resources.js";
import { planExpiry } from "../plan/expiry-plan.js";
import { targetAlive } from "./target.js";
import { watchDir, type DirWatch } from "./dir-events.js";
import type { TamperWatch } from "./tamper-watch.js";

export interface MaintenanceOptions {
  /** Period of the TTL collection; 0 = off. Default 1000. */
  readonly gcIntervalMs?: number;
  /** Period of the integrity check (pins removed by someone else); 0 = off. Default 2000. */
  readonly integrityIntervalMs?: number;
  /** Changes when the host's addresses do: learned addresses are then checked again. */
  readonly hostAddressesVersion?: () => number;
  /**
   * The filter's pin root (one directory per attachment). Watched with inotify: the full integrity
   * check (every pin directory listed, every attachment looked at) then runs when something in it
   * changed and every integritySweepMs, instead of every integrityIntervalMs. Absent or not
   * watchable: every integrityIntervalMs, as before.
   */
  readonly pinRoot?: string;
  /** Period of the full integrity check while the pin root is watched (default 30 s). */
  readonly integritySweepMs?: number;
}

/**
 * The timers of the single writer: TTL garbage collection (expired CIDR rules and learned
 * addresses out of the policy and the kernel; a host-address change re-checks learned addresses)
 * and the integrity check (SPEC §9: pins removed by someone else are restored; DNS servers that
 * could not listen are retried). Each tick is one queued operation; a tick never overlaps itself.
 */
export class Maintenance {
  private gcTimer: NodeJS.Timeout | null = null;
  private gcQueued = false;
  private integrityTimer: NodeJS.Timeout | null = null;
  private integrityQueued = false;
  private hostVersion = -1;
  private readonly dnsDownLogged = new Map<string, number>();
  private pinWatch: DirWatch | null = null;
  private pinsChanged = true;
  private lastFullIntegrity = 0;
  /** Attachments restored by the integrity check since start (metrics, tests). */
  integrityRestores = 0;

  constructor(
    private readonly core: AttachmentCore,
    private readonly resources: AttachmentResources,
    private readonly opts: MaintenanceOptions,
    private readonly tamper: TamperWatch,
  ) {}

  /** The host addresses the learned addresses were last checked against (start-up). */
  noteHostVersion(): void {
    this.hostVersion = this.opts.hostAddressesVersion?.() ?? -1;
  }

  start(): void {
    const interval = this.opts.gcIntervalMs ?? 1000;
    if (interval > 0) {
      this.gcTimer = setInterval(() => this.scheduleGc(), interval);
      this.gcTimer.unref();
    }
    const integrity = this.opts.integrityIntervalMs ?? 2000;
    if (integrity > 0) {
      this.integrityTimer = setInterval(() => this.integrityTick(), integrity);
      this.integrityTimer.unref();
    }
  }

  /**
   * The integrity timer (issue 13: idle cost). The full check lists every pin directory; with the
   * pin root watched it runs only when the pin root changed (an attach, a detach — or pins removed
   * by someone else, the case it exists for), every integritySweepMs as a safety net, and while a
   * DNS server waits to be restarted. Otherwise a tick costs no system call.
   */
  private integrityTick(): void {
    if (this.integrityQueued || this.core.registry.isClosed) return;
    const now = Date.now();
    const full = this.pinWatch === null || this.pinsChanged || now - this.lastFullIntegrity >= (this.opts.integritySweepMs ?? 30_000);
    if (!full && ![...this.core.registry.records.values()].some((r) => r.dns === null)) return;
    if (full) {
      this.pinsChanged = false;
      this.lastFullIntegrity = now;
      this.armPinWatch(); // afresh each time: the pin root itself may have been removed and re-created
    }
    this.integrityQueued = true;
    this.checkIntegrity()
      .catch((err: unknown) => this.core.log.error({ err }, "integrity check failed"))
      .finally(() => {
        this.integrityQueued = false;
      });
  }

  private armPinWatch(): void {
    this.pinWatch?.close();
    this.pinWatch = null;
    if (this.opts.pinRoot === undefined || this.integrityTimer === null) return;
    // Only marks: the next tick (≤ integrityIntervalMs, as before) runs the full check, so a burst
    // of attaches (each one a new pin directory) costs at most one full check per tick.
    const changed = (): void => {
      this.pinsChanged = true;
    };
    this.pinWatch = watchDir(this.opts.pinRoot, changed, () => {
      this.pinWatch = null;
      changed();
    });
  }

  stop(): void {
    if (this.gcTimer !== null) clearInterval(this.gcTimer);
    this.gcTimer = null;
    if (this.integrityTimer !== null) clearInterval(this.integrityTimer);
    this.integrityTimer = null;
    this.pinWatch?.close();
    this.pinWatch = null;
  }

  private scheduleGc(): void {
    if (this.gcQueued || this.core.registry.isClosed) return;
    this.gcQueued = true;
    const hostVersion = this.opts.hostAddressesVersion?.() ?? -1;
    if (hostVersion !== this.hostVersion) {
      // The host gained or lost an address: a learned address may now be one of its own.
      this.hostVersion = hostVersion;
      void this.core.learned.recheckAll();
    }
    this.core.queue
      .run("expiry", () => this.collectExpiredNow())
      .catch((err: unknown) => this.core.log.error({ err }, "TTL garbage collection failed"))
      .finally(() => {
        this.gcQueued = false;
      });
  }

  /** Removes expired CIDR rules and learned addresses from the policy and the kernel (caller in the queue). */
  async collectExpiredNow(): Promise<number> {
    const { registry, filter, learned, log } = this.core;
    const now = this.core.now();
    let removed = 0;
    for (const rec of registry.records.values()) {
      const plan = planExpiry(rec.state, now);
      if (plan === null) continue;
      try {
        // Expired entries are already ignored by the kernel, so two separate calls are safe here.
        if (plan.deletes.length > 0) await filter.deleteEntries(rec.id, plan.deletes);
        if (plan.upserts.length > 0) await filter.upsertEntries(rec.id, plan.upserts);
      } catch (err) {
        log.warn({ attachmentId: rec.id, err }, "expired entries could not be removed; retrying");
        continue;
      }
      plan.commit();
      rec.stored = null;
      removed += plan.count;
      // An explicit allow that expired may have been what let a learned address through.
      for (const cidr of plan.allowsExpired) {
        await learned.recheck(rec, { scope: cidr }).catch((err: unknown) => log.warn({ attachmentId: rec.id, err }, "re-checking learned addresses failed"));
      }
      log.debug({ attachmentId: rec.id, prefixes: plan.count }, "expired entries removed");
    }
    if (removed > 0) this.core.persistence.saveSoon();
    return removed;
  }

  /**
   * Integrity check (SPEC §9): a live attachment whose pins vanished — removed by someone else,
   * which for a pinned link also detaches it — is reported and restored with its current policy,
   * same id, slot and DNS port. A vanished target is the target watcher's business, not this.
   * DNS servers that could not be restarted at start-up are retried here too.
   * Returns the ids of the filters restored.
   */
  checkIntegrity(): Promise<string[]> {
    const { registry, filter, log, queue } = this.core;
    return queue.run("integrity", async () => {
      if (registry.isClosed || registry.size === 0) return [];
      const pinned = new Set(await filter.listPinned());
      const restored: string[] = [];
      for (const rec of registry.records.values()) {
        if (rec.dns === null) {
          // A DNS server that could not bind at restart (port briefly held elsewhere): retry.
          rec.dns = await this.resources.startDns(rec).catch((err: unknown) => {
            // Reported every 30 s while it lasts (e.g. a port squatted while the daemon was down).
            const last = this.dnsDownLogged.get(rec.id) ?? 0;
            if (this.core.now() - last >= 30_000) {
              this.dnsDownLogged.set(rec.id, this.core.now());
              log.error({ attachmentId: rec.id, dnsAddress: rec.dnsAddress, err }, "DNS server still cannot listen; retrying every 2 s");
            }
            return null;
          });
          if (rec.dns !== null) {
            this.dnsDownLogged.delete(rec.id);
            log.info({ attachmentId: rec.id, dnsAddress: rec.dnsAddress }, "DNS server restarted");
          }
        }
        if (pinned.has(rec.id) || !targetAlive(rec.target, rec.ifindex)) continue;
        const alog = log.child({ attachmentId: rec.id });
        alog.error({ target: rec.targetText }, "the pins of this attachment were removed by someone else; restoring the filter");
        const detail = "the pin directory was removed";
        // The loader still holds every object (a removed link pin does not detach a link it holds):
        // pin them again, with no moment unfiltered.
        if (await this.tamper.repair(rec, [{ kind: "pins-removed", detail, repair: "repin" }], { pins: true })) {
          restored.push(rec.id);
          this.integrityRestores++;
          this.tamper.report(rec.id, "pins-removed", `${detail}; pinned again`, true);
          continue;
        }
        // Else (e.g. the loader was restarted meanwhile and could not adopt): drop whatever the
        // filter still holds for the id, then attach afresh.
        await filter.detach(rec.id).catch(() => undefined);
        try {
          await filter.attach(this.resources.specOf(rec), rec.state.compile(this.core.now()));
          restored.push(rec.id);
          this.integrityRestores++;
          alog.warn("filter restored");
          this.tamper.report(rec.id, "pins-removed", `${detail}; attachment re-created`, true);
        } catch (err) {
          alog.error({ err }, "restoring the filter failed; will retry");
          this.tamper.report(rec.id, "pins-removed", detail, false);
        }
      }
      return restored;
    });
  }
}
