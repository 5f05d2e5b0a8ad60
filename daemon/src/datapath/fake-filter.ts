import { statSync } from "node:fs";
import { NetfenceError } from "@netfence/proto/errors";
import { formatCidr, parseCidr, type Cidr } from "@netfence/proto/parse";
import { HITS_CAP, HITS_OVERFLOW } from "./hits-wire.js";
import type {
  AdoptedAttachment,
  AttachResult,
  AttachSpec,
  Filter,
  FilterCounters,
  FilterEntry,
  FilterMode,
  FilterPolicy,
  KernelPacketEvent,
  MigrationInfo,
  PortGuardSpec,
  TamperFinding,
  VerifyRequest,
  PinnedAttachment,
  ProtectedEntry,
  RuleHitCount,
  TargetSpec,
} from "./filter.js";
import { PINNED_LAYOUT } from "./filter.js";
import { fakeDecide } from "./fake-verdict.js";
import { FakeBpffs, type FakePinned } from "./fake-bpffs.js";

/**
 * In-memory Filter for unit tests (never used by the daemon itself). It evaluates verdicts (fake-verdict.ts) with
 * the kernel's semantics for IP packets — own DNS server, other tenants' DNS ports, protected
 * allow and deny, longest live prefix wins, deny wins at equal prefix, allowlist / denylist /
 * block-all / disabled, closed loopback and link-local, deadlines — so manager tests can assert
 * what traffic would do (bpf/include/policy.h nf_decide; L2 and ICMPv6 rules are not modelled).
 * Kernel behaviour itself is proven by the kernel tests. An expired entry is treated as absent
 * and the lookup falls back to shorter live prefixes, as bpf/include/policy.h does (the kernel
 * steps over at most NF_LPM_EXPIRED_HOPS expired prefixes; the daemon collects them within 1 s).
 *
 * "Pins" live in a FakeBpffs that outlives a FakeFilter, so restart/adopt can be tested by
 * building a second FakeFilter over the same FakeBpffs.
 */

export { FakeBpffs, type FakePinned } from "./fake-bpffs.js";

export type FakeFilterMethod =
  | "attach" | "detach" | "replacePolicy" | "upsertEntries" | "deleteEntries" | "setMode" | "adopt" | "relink" | "inspect"
  | "beginMigration" | "finishMigration" | "abortMigration";

const ID_RE = /^[A-Za-z0-9_-]{1,63}$/;

export class FakeFilter implements Filter {
  /** Every mutating call, in order (tests check which primitive the manager used). */
  readonly calls: { method: FakeFilterMethod; id: string }[] = [];
  private readonly driven = new Set<string>();
  private readonly failures = new Map<FakeFilterMethod, NetfenceError>();
  private readonly listeners = new Set<(e: KernelPacketEvent | null) => void>();
  private closed = false;
  /** Clock used for deadline checks; tests may replace it. */
  now: () => number = () => Date.now();

  constructor(readonly bpffs: FakeBpffs = new FakeBpffs()) {}

  /** The next call of `method` throws `err` (once). */
  failNext(method: FakeFilterMethod, err: NetfenceError = new NetfenceError("INTERNAL", `injected ${method} failure`)): void {
    this.failures.set(method, err);
  }

  private enter(method: FakeFilterMethod, id: string): void {
    if (this.closed) throw new NetfenceError("UNAVAILABLE", "filter is closed");
    this.calls.push({ method, id });
    const err = this.failures.get(method);
    if (err !== undefined) {
      this.failures.delete(method);
      throw err;
    }
  }

  private get(id: string): FakePinned {
    const p = this.bpffs.pinned.get(id);
    if (p === undefined || !this.driven.has(id)) throw new NetfenceError("NOT_FOUND", `attachment ${id} is not loaded`, { details: { id } });
    return p;
  }

  async attach(spec: AttachSpec, policy: FilterPolicy): Promise<AttachResult> {
    if (!ID_RE.test(spec.id)) throw new NetfenceError("INVALID_ARGUMENT", `invalid attachment id "${spec.id}"`);
    this.enter("attach", spec.id);
    if (this.bpffs.pinned.has(spec.id)) throw new NetfenceError("ALREADY_EXISTS", `attachment ${spec.id} is already pinned`);
    for (const p of this.bpffs.pinned.values()) {
      if (p.spec.slot === spec.slot) throw new NetfenceError("ALREADY_EXISTS", `slot ${spec.slot} is in use`);
    }
    const entries = new Map(policy.entries.map((e) => [formatCidr(e.cidr), e]));
    this.bpffs.pinned.set(spec.id, { spec, mode: policy.mode, audit: policy.audit, entries, allowed: 0n, blocked: 0n, targetGone: false });
    this.driven.add(spec.id);
    return spec.target.kind === "interface" ? { method: "tcx", ifindex: 100 + spec.slot } : { method: "cgroup-link", ifindex: 0 };
  }

  async detach(id: string): Promise<void> {
    this.enter("detach", id);
    if (!this.bpffs.pinned.has(id)) throw new NetfenceError("NOT_FOUND", `attachment ${id} is not pinned`, { details: { id } });
    this.bpffs.pinned.delete(id);
    this.driven.delete(id);
  }

  async replacePolicy(id: string, policy: FilterPolicy): Promise<void> {
    this.enter("replacePolicy", id);
    const p = this.get(id);
    p.mode = policy.mode;
    p.audit = policy.audit;
    p.entries = new Map(policy.entries.map((e) => [formatCidr(e.cidr), e]));
    this.repaired(id, "rewrite");
  }

  async upsertEntries(id: string, entries: readonly FilterEntry[]): Promise<void> {
    this.enter("upsertEntries", id);
    const p = this.get(id);
    for (const e of entries) p.entries.set(formatCidr(e.cidr), e);
  }

  async deleteEntries(id: string, cidrs: readonly Cidr[]): Promise<void> {
    this.enter("deleteEntries", id);
    const p = this.get(id);
    for (const c of cidrs) p.entries.delete(formatCidr(c));
  }

  async setMode(id: string, mode: FilterMode, audit: boolean): Promise<void> {
    this.enter("setMode", id);
    const p = this.get(id);
    p.mode = mode;
    p.audit = audit;
  }

  async counters(ids: readonly string[]): Promise<Map<string, FilterCounters>> {
    const out = new Map<string, FilterCounters>();
    for (const id of ids) {
      const p = this.bpffs.pinned.get(id);
      if (p !== undefined) out.set(id, { allowed: p.allowed, blocked: p.blocked, audited: 0n, eventsLost: 0n });
    }
    return out;
  }

  async ruleHits(id: string, upto = 0): Promise<RuleHitCount[]> {
    const p = this.get(id);
    const read = (r: number): boolean => upto === 0 || r < upto || r === HITS_OVERFLOW;
    return [...(p.hits?.values() ?? [])].filter((h) => h.packets > 0n && read(h.ruleId)).sort((a, b) => a.ruleId - b.ruleId);
  }

  /** clearRuleHits calls, in order (tests). */
  readonly clearedHits: { id: string; ruleIds: number[] }[] = [];

  async clearRuleHits(id: string, ruleIds: readonly number[]): Promise<void> {
    const p = this.get(id);
    this.clearedHits.push({ id, ruleIds: [...ruleIds] });
    for (const r of ruleIds) p.hits?.delete(r);
  }

  async setProtected(entries: readonly ProtectedEntry[]): Promise<void> {
    this.bpffs.protectedEntries = [...entries];
  }

  async setPortGuard(spec: PortGuardSpec): Promise<void> {
    if (this.closed) throw new NetfenceError("UNAVAILABLE", "filter is closed");
    if (!(spec.portMin >= 1 && spec.portMin <= spec.portMax && spec.portMax <= 65535)) {
      throw new NetfenceError("INVALID_ARGUMENT", `invalid port guard range ${spec.portMin}-${spec.portMax}`);
    }
    this.bpffs.portGuard = { ...spec };
  }

  async removePortGuard(): Promise<void> {
    this.bpffs.portGuard = null;
  }

  async listPinned(): Promise<string[]> {
    return [...this.bpffs.pinned.keys()];
  }

  async adopt(id: string): Promise<AdoptedAttachment> {
    this.enter("adopt", id);
    const p = this.bpffs.pinned.get(id);
    if (p === undefined) throw new NetfenceError("NOT_FOUND", `attachment ${id} is not pinned`, { details: { id } });
    if (p.layout !== undefined) {
      throw new NetfenceError("FAILED_PRECONDITION", `ADOPT ${id}: pinned state has layout ${p.layout}`, { details: { id, reason: PINNED_LAYOUT } });
    }
    this.driven.add(id);
    return {
      id,
      slot: p.spec.slot,
      kind: p.spec.target.kind,
      method: p.spec.target.kind === "interface" ? "tcx" : "cgroup-link",
      ifindex: p.spec.target.kind === "interface" ? 100 + p.spec.slot : 0,
      mode: p.mode,
      audit: p.audit,
      attached: p.detached !== true,
    };
  }

  async relink(id: string, target: TargetSpec): Promise<AttachResult> {
    this.enter("relink", id);
    const p = this.get(id);
    p.detached = false;
    p.spec = { ...p.spec, target };
    this.repaired(id, "relink");
    return target.kind === "interface" ? { method: "tcx", ifindex: 100 + p.spec.slot } : { method: "cgroup-link", ifindex: 0 };
  }

  async beginMigration(id: string): Promise<MigrationInfo> {
    this.enter("beginMigration", id);
    const p = this.bpffs.pinned.get(id);
    if (p?.layout === undefined) throw new NetfenceError("FAILED_PRECONDITION", `attachment ${id} has no pins of another layout`);
    if (this.bpffs.aside.has(id)) throw new NetfenceError("ALREADY_EXISTS", `pins of ${id} are set aside already`);
    this.bpffs.pinned.delete(id);
    this.bpffs.aside.set(id, p);
    return { layout: p.layout, magic: 0, progId: 1, method: p.spec.target.kind === "interface" ? "tcx" : "cgroup-link", detached: false };
  }

  async finishMigration(id: string): Promise<MigrationInfo> {
    this.enter("finishMigration", id);
    this.get(id);
    const old = this.bpffs.aside.get(id);
    if (old === undefined) throw new NetfenceError("NOT_FOUND", `no pins of ${id} set aside`);
    this.bpffs.aside.delete(id);
    return { layout: old.layout ?? 0, magic: 0, progId: 1, method: old.spec.target.kind === "interface" ? "tcx" : "cgroup-link", detached: old.detached !== true };
  }

  async abortMigration(id: string): Promise<void> {
    this.enter("abortMigration", id);
    const old = this.bpffs.aside.get(id);
    if (old === undefined) throw new NetfenceError("NOT_FOUND", `no pins of ${id} set aside`);
    if (this.bpffs.pinned.has(id)) throw new NetfenceError("ALREADY_EXISTS", `attachment ${id} is pinned again`);
    this.bpffs.aside.delete(id);
    this.bpffs.pinned.set(id, old);
  }

  async verify(requests: ReadonlyMap<string, VerifyRequest>): Promise<Map<string, TamperFinding[]>> {
    return new Map([...requests.keys()].map((id) => [id, [...(this.bpffs.tamper.get(id) ?? [])]]));
  }

  async restorePins(id: string): Promise<void> {
    this.repaired(this.get(id) && id, "repin");
  }

  expectPolicy(): void {}
  private repaired(id: string, repair: TamperFinding["repair"]): void {
    const left = (this.bpffs.tamper.get(id) ?? []).filter((f) => f.repair !== repair);
    if (left.length === 0) this.bpffs.tamper.delete(id);
    else this.bpffs.tamper.set(id, left);
  }

  listMigrating = async (): Promise<string[]> => [...this.bpffs.aside.keys()];

  async inspect(id: string): Promise<PinnedAttachment> {
    const adopted = await this.adopt(id);
    this.calls.push({ method: "inspect", id });
    const p = this.bpffs.pinned.get(id)!;
    const now = this.now();
    return {
      ...adopted,
      direction: p.spec.target.kind === "interface" ? p.spec.target.direction : "ingress",
      // The kernel reports the cgroup's id, which is its directory's inode number on cgroup2.
      cgroupId: p.spec.target.kind === "cgroup" ? (statSync(p.spec.target.path, { bigint: true, throwIfNoEntry: false })?.ino ?? 0n) : 0n,
      dnsPort: p.spec.dns.port,
      policy: { mode: p.mode, audit: p.audit, entries: [...p.entries.values()].filter((e) => e.expiresAtMs === null || e.expiresAtMs > now) },
    };
  }

  async *events(): AsyncIterable<KernelPacketEvent> {
    const queue: KernelPacketEvent[] = [];
    let wake: (() => void) | null = null;
    let done = this.closed;
    const listener = (e: KernelPacketEvent | null): void => {
      if (e === null) done = true;
      else queue.push(e);
      wake?.();
    };
    this.listeners.add(listener);
    try {
      while (true) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (done) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
    } finally {
      this.listeners.delete(listener);
    }
  }

  /** The fake has no kernel: interface attachments are made by no known method. */
  tcAttachMethod(): "" {
    return "";
  }

  /** sd_notify messages the daemon sent through this filter, as "socket message". */
  readonly notifications: string[] = [];

  async notify(socket: string, message: string): Promise<void> {
    this.notifications.push(`${socket} ${message}`);
  }

  /** Set by stopSupervising (the first step of a daemon stop). */
  supervising = true;

  stopSupervising(): void {
    this.supervising = false;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const l of this.listeners) l(null);
  }

  /** What the kernel would do with a packet to `dst` from attachment `id`. Pure (no counters). */
  verdict(id: string, dst: string, opts: { protocol?: number; port?: number } = {}): "allow" | "block" {
    return fakeDecide(this.bpffs, id, dst, opts, this.now()).verdict;
  }

  /** Simulates one packet: counts it and emits an event when blocked. */
  sendPacket(id: string, dst: string, opts: { protocol?: number; port?: number } = {}): "allow" | "block" {
    const { verdict: v, reason, rule } = fakeDecide(this.bpffs, id, dst, opts, this.now());
    const p = this.bpffs.pinned.get(id);
    if (p === undefined) return v;
    const slot = rule >= HITS_CAP ? HITS_OVERFLOW : rule;
    p.hits ??= new Map();
    p.hits.set(slot, { ruleId: slot, packets: (p.hits.get(slot)?.packets ?? 0n) + 1n, lastHitMs: this.now() });
    if (v === "allow") p.allowed += 1n;
    else {
      p.blocked += 1n;
      const ip = parseCidr(dst);
      const event: KernelPacketEvent = {
        timeMs: this.now(),
        slot: p.spec.slot,
        attachmentId: id,
        family: ip.family,
        protocol: opts.protocol ?? 6,
        src: ip.family === 4 ? "10.0.0.2" : "fd00::2",
        dst,
        srcPort: 40000,
        dstPort: opts.port ?? 0,
        verdict: "blocked",
        reason,
        rule: null,
        suppressed: 0,
      };
      for (const l of this.listeners) l(event);
    }
    return v;
  }

  /** Live entries of an attachment, keyed by canonical prefix (tests). */
  entries(id: string): Map<string, FilterEntry> {
    return new Map(this.bpffs.pinned.get(id)?.entries ?? []);
  }
}
