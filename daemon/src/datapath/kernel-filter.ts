import { access } from "node:fs/promises";
import { constants as fsConstants } from "node:fs";
import path from "node:path";
import pino, { type Logger } from "pino";
import { NetfenceError, invalidArgument } from "@netfence/proto/errors";
import type { Cidr } from "@netfence/proto/parse";
import type {
  AdoptedAttachment, AttachResult, AttachSpec, Filter, FilterCounters, FilterEntry, FilterMode,
  FilterPolicy, KernelPacketEvent, PortGuardSpec, PinnedAttachment, ProtectedEntry, RuleHitCount, TargetSpec, AttachMethodPreference,
  MigrationInfo, TamperFinding, VerifyRequest,
} from "./filter.js";
import { decodeHits, encodeHitsClear, encodeHitsRequest } from "./hits-wire.js";
import { ContentShadows } from "./content-shadow.js";
import { decodeRestore } from "./tamper-wire.js";
import { verifyWith } from "./tamper-findings.js";
import {
  ID_RE, type KernelFilterOptions, locateTarget, METHOD_NAMES, METHOD_PREF, withLayoutReason, migratingIds, pinnedIds, validateCgroupDir,
} from "./kernel-targets.js";
import { kernelEvent } from "./kernel-event.js";
import { linkLayerOf, readLinkType, type LinkLayer } from "./link-type.js";
import { exactCapacityFor, loadRequestFor } from "./load-request.js";
import { LoaderProcess } from "./loader-process.js";
import { projectRoot } from "./project-root.js";
import { decodeCounters, decodeDump, decodeEvents, decodeHello, decodeMigrate, decodePortGuard, decodeState, decodeTables, type ExactTables, type HelloReply } from "./wire-decode.js";
import {
  DIR_EGRESS, encodeCountersRequest, encodeHello, encodeId, encodeLink, encodeLoad, encodeMode, encodeNotify,
  encodePolicy, encodePortGuard, encodeProtected, KIND_TC, LAYOUT, Op, type WireEntry,
} from "./wire-format.js";
import { ScopeRegistry } from "./scope-registry.js";
import { encodeScopeWire } from "./scope-wire.js";
import * as W from "./policy-writes.js";
import { EventFanout } from "./event-fanout.js";
import { decodeLookup, encodeLookup, type KernelLookup, type LookupPacket } from "./lookup-wire.js";

export type { KernelFilterOptions } from "./kernel-targets.js";


type Known = W.KnownAttachment;

/**
 * The real data path: eBPF programs loaded, pinned and driven by the loader child.
 * Supervises the child: when it dies, pending calls fail with UNAVAILABLE, a new child is
 * started (with backoff) and every known attachment is re-adopted from its pins — the kernel
 * kept enforcing meanwhile.
 */
export class KernelFilter implements Filter {
  private loader!: LoaderProcess;
  private ready: Promise<void> = Promise.resolve();
  private closing = false;
  private restarts = 0;
  private readonly known = new Map<string, Known>();
  private readonly slotToId = new Map<number, string>();
  private readonly fanout = new EventFanout<KernelPacketEvent>();
  private readonly shadows = new ContentShadows();
  private readonly out: W.FrameWriter = { write: (id, op, payload, sent) => this.write(id, op, payload, sent), shadows: this.shadows };
  hello: HelloReply | null = null;

  private constructor(
    private readonly loaderPath: string,
    private readonly bpfDir: string,
    readonly pinRoot: string,
    private readonly logger: Logger,
  ) {}

  static async start(opts: KernelFilterOptions = {}): Promise<KernelFilter> {
    // The project root is only needed for defaults (a bundled daemon passes both paths).
    const loaderPath = opts.loaderPath ?? path.join(projectRoot(), "bpf", "loader", "netfence-loader");
    const bpfDir = path.resolve(opts.bpfDir ?? path.join(projectRoot(), "bpf", "prebuilt"));
    const pinRoot = opts.pinRoot ?? "/sys/fs/bpf/netfence";
    const logger = opts.logger ?? pino({ level: "warn" });
    try {
      await access(loaderPath, fsConstants.X_OK);
    } catch {
      throw new NetfenceError("FAILED_PRECONDITION", `loader helper not found at ${loaderPath}: build it with \`make -C bpf loader\``);
    }
    const f = new KernelFilter(loaderPath, bpfDir, pinRoot, logger);
    await f.spawnLoader();
    return f;
  }

  /** PID of the current loader child (tests kill it to prove supervision). */
  get loaderPid(): number | undefined {
    return this.loader.pid;
  }

  get loaderRestarts(): number {
    return this.restarts;
  }

  /** Resolves once a loader is up (after a restart, once re-adoption finished). */
  whenReady(): Promise<void> {
    return this.ready;
  }

  private async spawnLoader(): Promise<void> {
    this.loader = LoaderProcess.spawn({
      path: this.loaderPath,
      logger: this.logger,
      onEvents: (payload) => this.onEvents(payload),
      onExit: (code, signal) => this.onLoaderExit(code, signal),
    });
    this.hello = decodeHello(await this.loader.request(Op.HELLO, encodeHello(this.pinRoot, this.bpfDir)));
  }

  private onLoaderExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.closing) {
      this.logger.debug({ code, signal }, "loader helper exited while the daemon stops");
      return;
    }
    this.logger.error({ code, signal }, "loader helper exited; restarting it (pinned filters keep enforcing)");
    this.ready = this.restart();
  }

  private async restart(): Promise<void> {
    for (let attempt = 0; !this.closing; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(5000, 50 * 2 ** attempt)));
      try {
        await this.spawnLoader();
        for (const id of this.known.keys()) await this.loader.request(Op.ADOPT, encodeId(id));
        this.restarts++;
        this.logger.info({ attachments: this.known.size }, "loader helper restarted; attachments re-adopted");
        return;
      } catch (err) {
        this.logger.error({ err, attempt }, "loader helper restart failed");
        if (this.loader.alive) this.loader.kill();
      }
    }
  }

  private async call(op: number, payload: Buffer): Promise<Buffer> {
    await this.ready;
    return this.loader.request(op, payload);
  }

  // Writes update the content shadow as their frame is sent (content-shadow.ts); idCall: one checked id.
  private async write(id: string, op: number, payload: Buffer, sent: () => void): Promise<void> {
    await this.ready;
    const reply = this.loader.request(op, payload);
    sent();
    await reply.catch((err: unknown) => this.shadows.failed(id, err));
  }
  private idCall(op: number, id: string): Promise<Buffer> {
    if (!ID_RE.test(id)) throw invalidArgument(`invalid attachment id "${id}"`);
    return this.call(op, encodeId(id));
  }
  private requireKnown(id: string): Known {
    const k = this.known.get(id);
    if (!k) throw new NetfenceError("NOT_FOUND", `attachment ${id} is not loaded in the data path`, { details: { id } });
    return k;
  }

  async attach(spec: AttachSpec, policy: FilterPolicy): Promise<AttachResult> {
    if (!ID_RE.test(spec.id)) throw invalidArgument(`invalid attachment id "${spec.id}"`);
    if (!Number.isInteger(spec.slot) || spec.slot < 0 || spec.slot > 0xffffffff) throw invalidArgument(`invalid slot ${spec.slot}`);
    if (this.known.has(spec.id)) throw new NetfenceError("ALREADY_EXISTS", `attachment ${spec.id} already exists`);
    const { ifindex, cgroupPath } = await locateTarget(spec.target);
    let linkLayer: LinkLayer | null = null;
    if (spec.target.kind === "interface") {
      // Defensive: the daemon checks this when it resolves the target, before the control plane is asked.
      const type = readLinkType(spec.target.name);
      if (type === null) throw new NetfenceError("NOT_FOUND", `interface "${spec.target.name}" does not exist`, { details: { interface: spec.target.name } });
      linkLayer = linkLayerOf(spec.target.name, type);
    }
    const load = loadRequestFor(spec, linkLayer, exactCapacityFor(policy.entries));
    const [keep, scopes] = [policy.keepEstablished === true, new ScopeRegistry()];
    const plan = scopes.replace(policy.entries, Date.now()); // RESOURCE_EXHAUSTED before anything is loaded
    const scopeWire = encodeScopeWire(plan.scopeWire);
    const policyFrame = encodePolicy(spec.id, policy.mode, policy.audit, plan.entries, keep, scopeWire); // checks every entry first
    await this.call(Op.LOAD, encodeLoad(load));
    try {
      await this.write(spec.id, Op.REPLACE, policyFrame, () => this.shadows.replaced(spec.id, { ...policy, entries: plan.entries }, Date.now(), scopeWire));
      plan.commit();
      const reply = await this.call(Op.LINK, encodeLink(spec.id, ifindex, METHOD_PREF[spec.method ?? "auto"], cgroupPath));
      const method = METHOD_NAMES[reply.readUInt32LE(LAYOUT.nf_link_reply.method)];
      if (!method) throw new NetfenceError("INTERNAL", "loader reported an unknown attach method");
      this.known.set(spec.id, { slot: spec.slot, keep, scopes });
      this.slotToId.set(spec.slot, spec.id);
      return { method, ifindex };
    } catch (err) {
      await this.call(Op.UNLOAD, encodeId(spec.id)).catch((e: unknown) =>
        this.logger.error({ err: e, attachment: spec.id }, "rollback of a failed attach failed"),
      );
      throw err;
    }
  }

  async detach(id: string): Promise<void> {
    if (!ID_RE.test(id)) throw invalidArgument(`invalid attachment id "${id}"`);
    const k = this.known.get(id);
    await this.call(Op.UNLOAD, encodeId(id));
    this.known.delete(id);
    this.shadows.forget(id);
    if (k && this.slotToId.get(k.slot) === id) this.slotToId.delete(k.slot);
  }

  async replacePolicy(id: string, policy: FilterPolicy): Promise<void> {
    await W.replacePolicy(this.out, this.requireKnown(id), id, policy);
  }
  async replaceCompiled(id: string, policy: FilterPolicy, entries: readonly WireEntry[], scopeWire: Uint8Array): Promise<void> {
    await W.replaceCompiled(this.out, this.requireKnown(id), id, policy, entries, scopeWire);
  }
  async upsertCompiled(id: string, entries: readonly WireEntry[], scopeWire: Uint8Array): Promise<void> {
    await W.upsertCompiled(this.out, this.requireKnown(id) && id, entries, scopeWire);
  }
  async deleteCompiled(id: string, cidrs: readonly Cidr[], scopeWire: Uint8Array): Promise<void> {
    await W.deleteCompiled(this.out, this.requireKnown(id) && id, cidrs, scopeWire);
  }
  async upsertEntries(id: string, entries: readonly FilterEntry[]): Promise<void> {
    await W.upsertEntries(this.out, this.requireKnown(id), id, entries);
  }
  async deleteEntries(id: string, cidrs: readonly Cidr[]): Promise<void> {
    await W.deleteEntries(this.out, this.requireKnown(id), id, cidrs);
  }

  async setMode(id: string, mode: FilterMode, audit: boolean): Promise<void> {
    const k = this.requireKnown(id);
    await this.write(id, Op.SET_MODE, encodeMode(id, mode, audit, k.keep), () => this.shadows.modeSet(id, mode, audit));
  }

  async ruleHits(id: string, upto = 0): Promise<RuleHitCount[]> {
    this.requireKnown(id);
    return decodeHits(await this.call(Op.HITS, encodeHitsRequest(id, upto)));
  }

  async clearRuleHits(id: string, ruleIds: readonly number[]): Promise<void> {
    this.requireKnown(id);
    if (ruleIds.length > 0) await this.call(Op.HITS_CLEAR, encodeHitsClear(id, ruleIds));
  }

  async counters(ids: readonly string[]): Promise<Map<string, FilterCounters>> {
    for (const id of ids) this.requireKnown(id);
    const out = new Map<string, FilterCounters>();
    if (!ids.length) return out;
    const counters = decodeCounters(await this.call(Op.COUNTERS, encodeCountersRequest(ids)), ids.length);
    ids.forEach((id, i) => out.set(id, counters[i]!));
    return out;
  }

  async setProtected(entries: readonly ProtectedEntry[]): Promise<void> {
    for (const e of entries) {
      if (!Number.isInteger(e.port) || e.port < 0 || e.port > 65535) throw invalidArgument(`invalid protected port ${e.port}`);
      if (!Number.isInteger(e.protocol) || e.protocol < 0 || e.protocol > 255) throw invalidArgument(`invalid protected protocol ${e.protocol}`);
    }
    await this.call(Op.PROTECTED, encodeProtected(entries));
  }

  async setPortGuard(spec: PortGuardSpec): Promise<void> {
    const { portMin, portMax, uid } = spec;
    if (!Number.isInteger(portMin) || !Number.isInteger(portMax) || portMin < 1 || portMax > 65535 || portMin > portMax) {
      throw invalidArgument(`invalid port guard range ${portMin}-${portMax}`);
    }
    if (!Number.isInteger(uid) || uid < 0 || uid > 0xffffffff) throw invalidArgument(`invalid port guard uid ${uid}`);
    const cgroupPath = await validateCgroupDir(spec.cgroupPath);
    const reply = decodePortGuard(await this.call(Op.PORT_GUARD, encodePortGuard(uid, portMin, portMax, cgroupPath)));
    this.logger.info({ cgroup: cgroupPath, portMin, portMax, uid, updated: reply.updated, progIds: [reply.progId4, reply.progId6] }, "DNS port guard installed");
  }

  async removePortGuard(): Promise<void> {
    await this.call(Op.PORT_UNGUARD, Buffer.alloc(0));
  }

  listPinned(): Promise<string[]> {
    return pinnedIds(this.pinRoot, ID_RE);
  }

  async adopt(id: string): Promise<AdoptedAttachment> {
    if (!ID_RE.test(id)) throw invalidArgument(`invalid attachment id "${id}"`);
    const reply = await withLayoutReason(this.call(Op.ADOPT, encodeId(id)));
    const state = decodeState(reply, LAYOUT.nf_adopt_reply.state);
    return { ...this.remember(id, state), attached: reply.readUInt32LE(LAYOUT.nf_adopt_reply.attached) !== 0 };
  }

  /**
   * Takes over a pinned attachment that the loader described (ADOPT's state, DUMP's settings):
   * its id ↔ slot from now on. A pin that was loaded but never attached (a crash between LOAD
   * and LINK) is not a live attachment: FAILED_PRECONDITION.
   */
  private remember(
    id: string,
    s: {
      readonly slot: number; readonly method: number; readonly kind: number; readonly ifindex: number; readonly mode: FilterMode;
      readonly audit: boolean; readonly keep?: boolean;
    },
  ): Omit<AdoptedAttachment, "attached"> {
    const method = METHOD_NAMES[s.method];
    if (!method) throw new NetfenceError("FAILED_PRECONDITION", `pinned attachment ${id} was never attached`, { details: { id } });
    const scopes = new ScopeRegistry(); // its scope ids are another run's: scoped UPSERTs wait for a REPLACE
    scopes.markUnknown();
    this.known.set(id, { slot: s.slot, keep: s.keep === true, scopes });
    this.slotToId.set(s.slot, id);
    return { id, slot: s.slot, kind: s.kind === KIND_TC ? "interface" : "cgroup", method, ifindex: s.ifindex, mode: s.mode, audit: s.audit };
  }

  async relink(id: string, target: TargetSpec, method: AttachMethodPreference = "auto"): Promise<AttachResult> {
    this.requireKnown(id);
    const { ifindex, cgroupPath } = await locateTarget(target);
    const reply = await this.call(Op.RELINK, encodeLink(id, ifindex, METHOD_PREF[method], cgroupPath));
    const name = METHOD_NAMES[reply.readUInt32LE(LAYOUT.nf_link_reply.method)];
    if (!name) throw new NetfenceError("INTERNAL", "loader reported an unknown attach method");
    return { method: name, ifindex };
  }

  async inspect(id: string): Promise<PinnedAttachment> {
    if (!ID_RE.test(id)) throw invalidArgument(`invalid attachment id "${id}"`);
    const d = decodeDump(await withLayoutReason(this.call(Op.DUMP, encodeId(id))));
    return {
      ...this.remember(id, d),
      attached: d.attached,
      direction: d.direction === DIR_EGRESS ? "egress" : "ingress",
      cgroupId: d.cgroupId,
      dnsPort: d.dnsPort,
      policy: { mode: d.mode, audit: d.audit, entries: d.entries, keepEstablished: d.keep }, scopeProblem: d.scopeProblem,
    };
  }

  // Layout migration and tamper checks (lane M): migrate.c, tamper.c.
  async beginMigration(id: string): Promise<MigrationInfo> {
    return decodeMigrate(await this.idCall(Op.MIGRATE_BEGIN, id));
  }
  async finishMigration(id: string): Promise<MigrationInfo> {
    return decodeMigrate(await this.idCall(Op.MIGRATE_FINISH, this.requireKnown(id) && id));
  }
  async abortMigration(id: string): Promise<void> {
    await this.idCall(Op.MIGRATE_ABORT, id);
  }
  listMigrating(): Promise<string[]> {
    return migratingIds(this.pinRoot, ID_RE);
  }
  async verify(requests: ReadonlyMap<string, VerifyRequest>): Promise<Map<string, TamperFinding[]>> {
    await this.ready;
    return verifyWith((payload) => this.loader.request(Op.VERIFY, payload), this.shadows, requests, ID_RE);
  }
  async restorePins(id: string): Promise<void> {
    const r = decodeRestore(await this.idCall(Op.RESTORE, this.requireKnown(id) && id));
    this.logger.info({ attachmentId: id, repinned: r.repinned, stateFixed: r.stateFixed }, "pins restored");
  }
  expectPolicy(id: string, policy: FilterPolicy): void {
    if (!policy.entries.some((e) => (e.scoped?.length ?? 0) > 0)) {
      this.shadows.replaced(id, policy, Date.now());
      return;
    }
    // Scoped: the kernel's scope ids are the previous run's; this run's registry needs them (learned
    // addresses). The same policy is written again (an atomic REPLACE), ahead of any UPSERT.
    this.replacePolicy(id, policy).catch((err: unknown) =>
      this.logger.error({ err, attachmentId: id }, "re-writing an adopted attachment's scoped policy failed; its content is not compared until the next replace"),
    );
  }

  /** Where the active generation's entries are, counted from the maps (diagnostics, tests). */
  async exactTables(id: string): Promise<ExactTables> {
    this.requireKnown(id);
    return decodeTables(await this.call(Op.TABLES, encodeId(id)));
  }

  /** Explain: the destination looked up in the kernel maps as packets look it up (NF_OP_LOOKUP). */
  /** `packet`: the protocol, port and owner scoped entries are evaluated for (layout 6; absent = unknown). */
  async lookup(id: string, family: 4 | 6, addr: Uint8Array, packet?: LookupPacket): Promise<KernelLookup> {
    this.requireKnown(id);
    return decodeLookup(await this.call(Op.LOOKUP, encodeLookup(id, family, addr, packet)), family);
  }

  tcAttachMethod(): "tcx" | "clsact" | "" {
    return this.hello === null ? "" : this.hello.tcx ? "tcx" : "clsact";
  }

  /**
   * sd_notify(3) through the loader child (Node has no unix datagram sockets): one datagram with
   * `message` to `socket` ($NOTIFY_SOCKET). The unit needs NotifyAccess=all since the child sends it.
   */
  async notify(socket: string, message: string): Promise<void> {
    await this.call(Op.NOTIFY, encodeNotify(socket, message));
  }

  /**
   * First step of a stop: a loader that exits from now on (e.g. SIGTERM to the whole process
   * group) is not restarted; requests still work while the current one runs.
   */
  stopSupervising(): void {
    this.closing = true;
  }

  events(): AsyncIterable<KernelPacketEvent> {
    return this.fanout.subscribe();
  }

  async close(): Promise<void> {
    this.closing = true;
    this.fanout.close();
    await this.loader.stop();
  }

  /** Test hook: SIGKILL the loader child (supervision restarts it). */
  killLoader(): void {
    this.loader.kill("SIGKILL");
  }

  private onEvents(payload: Buffer): void {
    for (const raw of decodeEvents(payload)) this.fanout.publish(kernelEvent(raw, this.slotToId.get(raw.slot) ?? null));
  }
}
