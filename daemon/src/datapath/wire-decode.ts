/**
 * The loader's replies, decoded (counters, HELLO, port guard, state, DUMP, events): the other
 * half of the protocol whose layout, constants and request encoders are wire-format.ts. Every
 * offset comes from its LAYOUT table (checked against netfence.h by a test).
 */
import type { ExactTables, ExactTablesFamily, FilterEntry, FilterMode, MigrationInfo } from "./filter.js";
import {
  COUNTERS_PER_ATTACHMENT, ENTRY_ALLOW, ENTRY_DENY, ENTRY_SCOPE_KINDS, FEAT_TCX, ID_LEN, KIND_CGROUP, LAYOUT, METHOD, MODE_NAMES, SETTING_AUDIT, SETTING_KEEP,
  WIRE_FAMILY_SCOPE,
} from "./wire-format.js";
import { decodeScopeWireEntry, rebuildScoped, type DumpedAddress } from "./scope-decode.js";
import type { ScopeWireEntry } from "./scope-wire.js";

/** NF_CNT_* indexes of the per-attachment u64 counters in a COUNTERS reply. */
export const CNT = { ALLOWED: 0, BLOCKED: 1, AUDITED: 2, EVENTS_LOST: 3 } as const;

/** A COUNTERS reply: per requested attachment, COUNTERS_PER_ATTACHMENT u64 values. */
export function decodeCounters(b: Buffer, count: number): { allowed: bigint; blocked: bigint; audited: bigint; eventsLost: bigint }[] {
  const out: { allowed: bigint; blocked: bigint; audited: bigint; eventsLost: bigint }[] = [];
  for (let i = 0; i < count; i++) {
    const at = (cnt: number): number => (i * COUNTERS_PER_ATTACHMENT + cnt) * 8;
    out.push({
      allowed: b.readBigUInt64LE(at(CNT.ALLOWED)),
      blocked: b.readBigUInt64LE(at(CNT.BLOCKED)),
      audited: b.readBigUInt64LE(at(CNT.AUDITED)),
      // NF_CNT_EVENTS_LOST: events the kernel could not put in the ring buffer (it was full).
      eventsLost: b.readBigUInt64LE(at(CNT.EVENTS_LOST)),
    });
  }
  return out;
}

export interface PortGuardReply {
  cgroupId: bigint;
  progId4: number;
  progId6: number;
  /** Pinned links on the same cgroup were found and updated in place. */
  updated: boolean;
}

export function decodePortGuard(b: Buffer): PortGuardReply {
  const L = LAYOUT.nf_port_guard_reply;
  return { cgroupId: b.readBigUInt64LE(L.cgroup_id), progId4: b.readUInt32LE(L.prog_id4), progId6: b.readUInt32LE(L.prog_id6), updated: b.readUInt32LE(L.updated) === 1 };
}

export interface HelloReply {
  version: number;
  layout: number;
  tcx: boolean;
}

export function decodeHello(b: Buffer): HelloReply {
  const L = LAYOUT.nf_hello_reply;
  return { version: b.readUInt32LE(L.version), layout: b.readUInt32LE(L.layout), tcx: (b.readUInt32LE(L.features) & FEAT_TCX) !== 0 };
}

export interface StateView {
  activeGen: number;
  slot: number;
  mode: FilterMode;
  audit: boolean;
  keep: boolean;
  kind: number;
  method: number;
  direction: number;
  ifindex: number;
  id: string;
}

export function decodeState(b: Buffer, off = 0): StateView {
  const L = LAYOUT.nf_state;
  const gen = b.readUInt32LE(off + L.active_gen) & 1;
  const modeCode = b.readUInt32LE(off + L.gen + gen * 8);
  const flags = b.readUInt32LE(off + L.gen + gen * 8 + 4);
  const idBytes = b.subarray(off + L.id, off + L.id + ID_LEN);
  const nul = idBytes.indexOf(0);
  return {
    activeGen: gen,
    slot: b.readUInt32LE(off + L.slot),
    mode: MODE_NAMES[modeCode] ?? "block-all",
    audit: (flags & SETTING_AUDIT) !== 0,
    keep: (flags & SETTING_KEEP) !== 0,
    kind: b.readUInt8(off + L.kind),
    method: b.readUInt8(off + L.method),
    direction: b.readUInt8(off + L.direction),
    ifindex: b.readUInt32LE(off + L.ifindex),
    id: idBytes.subarray(0, nul === -1 ? ID_LEN : nul).toString("utf8"),
  };
}

/** An attachment as its pins describe it (NF_OP_DUMP): settings and the active generation's entries. */
export interface DumpView {
  cgroupId: bigint;
  slot: number;
  ifindex: number;
  mode: FilterMode;
  audit: boolean;
  progId: number;
  attached: boolean;
  dnsPort: number;
  kind: number;
  method: number;
  direction: number;
  /** Address entries, each with the scoped rules its scope set holds (FilterEntry.scoped, scope-decode.ts). */
  entries: FilterEntry[];
  /** NF_SETTING_KEEP of the active generation. */
  keep: boolean;
  /** Entries of the scope table (layout 6) in the active generation, expired ones included. */
  scopeEntries: number;
  /** Why some scoped rules could not be rebuilt exactly (adoption refuses then); null when all could. */
  scopeProblem: string | null;
}

/** `nowMs`: what counts as expired among the scope entries (the loader sends them all: dump.c). */
export function decodeDump(b: Buffer, nowMs = Date.now()): DumpView {
  const L = LAYOUT.nf_dump_reply;
  const E = LAYOUT.nf_wire_entry;
  const count = b.readUInt32LE(L.count);
  if (b.length < L.size + count * E.size) throw new RangeError(`DUMP reply announces ${count} entries in ${b.length} bytes`);
  const addresses: DumpedAddress[] = [];
  const table: ScopeWireEntry[] = [];
  let scopeProblem: string | null = null;
  for (let i = 0; i < count; i++) {
    const off = L.size + i * E.size;
    const rawFamily = b.readUInt8(off + E.family);
    if (rawFamily === WIRE_FAMILY_SCOPE) { // the scope table: rebuilt into the address entries below
      const s = decodeScopeWireEntry(b, off);
      if (typeof s === "string") scopeProblem ??= s;
      else table.push(s);
      continue;
    }
    const family = rawFamily === 6 ? 6 : 4;
    const flags = b.readUInt8(off + E.flags);
    const ms = Number(b.readBigUInt64LE(off + E.expires_ms));
    const scopeId = b.readUInt16LE(off + E.scope);
    addresses.push({
      entry: {
        cidr: { family, addr: Uint8Array.from(b.subarray(off + E.addr, off + E.addr + (family === 4 ? 4 : 16))), prefixLen: b.readUInt8(off + E.prefixlen) },
        allow: (flags & ENTRY_ALLOW) !== 0,
        deny: (flags & ENTRY_DENY) !== 0,
        expiresAtMs: ms === 0 ? null : ms,
        ruleId: b.readUInt32LE(off + E.rule_id),
      },
      scopeId,
      scopeKinds: scopeId === 0 ? 0 : flags & ENTRY_SCOPE_KINDS,
    });
  }
  const kind = b.readUInt8(L.kind);
  const rebuilt = rebuildScoped(addresses, table, kind === KIND_CGROUP, nowMs);
  return {
    cgroupId: b.readBigUInt64LE(L.cgroup_id),
    slot: b.readUInt32LE(L.slot),
    ifindex: b.readUInt32LE(L.ifindex),
    mode: MODE_NAMES[b.readUInt32LE(L.mode)] ?? "block-all",
    audit: (b.readUInt32LE(L.flags) & SETTING_AUDIT) !== 0,
    keep: (b.readUInt32LE(L.flags) & SETTING_KEEP) !== 0,
    scopeEntries: table.length,
    scopeProblem: scopeProblem ?? rebuilt.problem,
    progId: b.readUInt32LE(L.prog_id),
    attached: b.readUInt32LE(L.attached) !== 0,
    dnsPort: b.readUInt16LE(L.dns_port),
    kind,
    method: b.readUInt8(L.method),
    direction: b.readUInt8(L.direction),
    entries: rebuilt.entries,
  };
}

export interface RawEvent {
  tsNs: bigint;
  suppressed: bigint;
  slot: number;
  sport: number;
  dport: number;
  /** 0 = an L2 frame: saddr/daddr hold MACs (6 bytes), dport the ethertype. */
  family: 0 | 4 | 6;
  proto: number;
  verdict: number;
  reason: number;
  rulePrefixLen: number;
  saddr: Uint8Array;
  daddr: Uint8Array;
  ruleAddr: Uint8Array;
  /** The socket owner (cgroup attachments); OWNER_UNKNOWN (0xffffffff) when unknown. */
  uid: number;
  gid: number;
}

export function decodeEvents(b: Buffer): RawEvent[] {
  const L = LAYOUT.nf_event;
  const out: RawEvent[] = [];
  for (let off = 0; off + L.size <= b.length; off += L.size) {
    out.push({
      tsNs: b.readBigUInt64LE(off + L.ts_ns),
      suppressed: b.readBigUInt64LE(off + L.suppressed),
      slot: b.readUInt32LE(off + L.slot),
      sport: b.readUInt16LE(off + L.sport),
      dport: b.readUInt16LE(off + L.dport),
      family: decodeFamily(b.readUInt8(off + L.family)),
      proto: b.readUInt8(off + L.proto),
      verdict: b.readUInt8(off + L.verdict),
      reason: b.readUInt8(off + L.reason),
      rulePrefixLen: b.readUInt8(off + L.rule_prefixlen),
      saddr: Uint8Array.from(b.subarray(off + L.saddr, off + L.saddr + 16)),
      daddr: Uint8Array.from(b.subarray(off + L.daddr, off + L.daddr + 16)),
      ruleAddr: Uint8Array.from(b.subarray(off + L.rule_addr, off + L.rule_addr + 16)),
      uid: b.readUInt32LE(off + L.uid),
      gid: b.readUInt32LE(off + L.gid),
    });
  }
  return out;
}

function decodeFamily(v: number): 0 | 4 | 6 {
  return v === 6 ? 6 : v === 4 ? 4 : 0;
}

export type { ExactTables, ExactTablesFamily } from "./filter.js";

export function decodeTables(b: Buffer): ExactTables {
  const L = LAYOUT.nf_tables_family;
  if (b.length < LAYOUT.nf_tables_reply.size) throw new RangeError(`TABLES reply of ${b.length} bytes`);
  const fam = (i: number): ExactTablesFamily => {
    const o = LAYOUT.nf_tables_reply.fam + i * L.size;
    return {
      smallCap: b.readUInt32LE(o + L.small_cap),
      smallCount: b.readUInt32LE(o + L.small_n),
      largeCap: b.readUInt32LE(o + L.large_cap),
      largeCount: b.readUInt32LE(o + L.large_n),
      usesLarge: b.readUInt32LE(o + L.uses_large) !== 0,
      lpmCount: b.readUInt32LE(o + L.lpm_n),
      lpmHostCount: b.readUInt32LE(o + L.lpm_host_n),
      otherLargeCap: b.readUInt32LE(o + L.other_large_cap),
    };
  };
  return { v4: fam(0), v6: fam(1), scopeCount: b.readUInt32LE(LAYOUT.nf_tables_reply.scope_n) };
}

/** MIGRATE_BEGIN / MIGRATE_FINISH: the old pins' layout, magic, program and attach method. */
export function decodeMigrate(b: Buffer): MigrationInfo {
  const L = LAYOUT.nf_migrate_reply;
  if (b.length < L.size) throw new RangeError(`MIGRATE reply of ${b.length} bytes`);
  const method = b.readUInt8(L.method);
  return {
    layout: b.readUInt32LE(L.layout),
    magic: b.readUInt32LE(L.magic),
    progId: b.readUInt32LE(L.prog_id),
    method: method === METHOD.TCX ? "tcx" : method === METHOD.CLSACT ? "clsact" : method === METHOD.CGROUP_LINK ? "cgroup-link" : null,
    detached: b.readUInt8(L.detached) !== 0,
  };
}
