/**
 * TypeScript mirror of bpf/include/netfence.h — the loader protocol and the kernel structs.
 * MUST MATCH netfence.h: test/unit/datapath/wire-format.test.ts compiles a C probe against the
 * header and compares every size and offset used here.
 * Byte order: little endian for integers (x86-64/arm64 hosts); addresses in network order.
 */
import { invalidArgument } from "@netfence/proto/errors";
import type { FilterEntry, FilterMode, ProtectedEntry } from "./filter.js";

export const PROTOCOL_VERSION = 2;
export const LAYOUT_VERSION = 7;
export const ID_LEN = 64;
export const FRAME_HDR_SIZE = 16;
export const MAX_FRAME = 64 * 1024 * 1024;

export const Op = {
  HELLO: 1,
  LOAD: 2,
  LINK: 3,
  UNLOAD: 4,
  ADOPT: 5,
  REPLACE: 6,
  UPSERT: 7,
  DELETE: 8,
  SET_MODE: 9,
  COUNTERS: 10,
  PROTECTED: 11,
  PORT_GUARD: 20,
  PORT_UNGUARD: 21,
  /** Operations (issue 11), numbered from 40 in netfence.h. */
  NOTIFY: 40,
  RELINK: 41,
  DUMP: 42,
  TABLES: 43,
  /** Explain (issue 14): one destination looked up in the maps as the data path does. */
  LOOKUP: 60,
  /** Rule hit counts (issue 14), numbered from 55 in netfence-protocol.h: hits-wire.ts. */
  HITS: 55,
  HITS_CLEAR: 56,
  /** Migration of pins of another layout (lane M), numbered from 50 in netfence-repair.h. */
  MIGRATE_BEGIN: 50,
  MIGRATE_FINISH: 51,
  MIGRATE_ABORT: 52,
  /** Tamper detection (lane M): tamper-wire.ts. */
  VERIFY: 53,
  RESTORE: 54,
  EVENTS: 100,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

export const MODE_CODES: Record<FilterMode, number> = { disabled: 0, allowlist: 1, denylist: 2, "block-all": 3 };
export const MODE_NAMES: readonly FilterMode[] = ["disabled", "allowlist", "denylist", "block-all"];
export const SETTING_AUDIT = 1;
/** NF_SETTING_KEEP (issue 15): connections established while allowed survive a change that blocks them. */
export const SETTING_KEEP = 8;
/** Loader-owned settings bits (a generation's exact entries are in its large table); never sent. */
export const SETTING_V4_LARGE = 2;
export const SETTING_V6_LARGE = 4;
export const ENTRY_ALLOW = 1;
export const ENTRY_DENY = 2;
export const KIND_TC = 1;
export const KIND_CGROUP = 2;
export const DIR_INGRESS = 0;
export const DIR_EGRESS = 1;
export const METHOD = { NONE: 0, TCX: 1, CLSACT: 2, CGROUP_LINK: 3 } as const;
export const FEAT_TCX = 1;
export const COUNTERS_PER_ATTACHMENT = 4; // NF_CNT_MAX: allowed, blocked, audited, events lost
export const NO_RULE = 255;
export const PROT_DENY = 1;
/** NF_PROT_FROM: `port` is the TCP source port of a stream socket bound to it (cgroup attachments only). */
export const PROT_FROM = 2;
/** NF_OWNER_UNKNOWN: events' uid/gid when the owner is not known. */
export const OWNER_UNKNOWN = 0xffffffff;
/** nf_wire_entry.family of a scope-table entry (layout 6; scope-wire.ts writes them). */
export const WIRE_FAMILY_SCOPE = 2;
/** NF_THROTTLE_PIN: the event throttle's name under <pin_root>/_host (layout 7; "throttle" before). */
export const THROTTLE_PIN = "throttle_owner";
export const MAX_WORKLOAD_ADDRS = 8; // NF_MAX_WORKLOAD_ADDRS, per family

/** NF_GUARD_* (nf_state.guards). */
export const GUARD = {
  OPEN_LOOPBACK: 1 << 0,
  OPEN_LINK_LOCAL: 1 << 1,
  DHCP: 1 << 2,
  DHCPV6: 1 << 3,
  MLD: 1 << 4,
  ROUTER: 1 << 5,
  ALLOW_NON_IP: 1 << 6,
  L3_DEVICE: 1 << 7,
  MAC: 1 << 8,
  ALLOWED_FLOWS: 1 << 9,
} as const;

export { REASONS } from "./reasons.js";

/** NF_ENTRY_SCOPE_ANY | _UID | _GID: which kinds of scope-table entries the address entry's scope set has. */
export const ENTRY_SCOPE_KINDS = (1 << 2) | (1 << 3) | (1 << 4);
const NO_SCOPES = new Uint8Array(0);

/**
 * An address entry as the kernel gets it (layout 6): a FilterEntry plus, when its prefix has scoped
 * rules, the id of its scope set in the generation and the NF_ENTRY_SCOPE_* kinds that set has
 * (scope-compile.ts assigns both; absent = no scoped rule).
 */
export interface WireEntry extends FilterEntry {
  readonly scopeId?: number;
  readonly scopeKinds?: number;
}

/** Sizes and offsets this module relies on (checked against the C header by a test). */
export const LAYOUT = {
  nf_frame_hdr: { size: 16, len: 0, seq: 4, op: 8, status: 12 },
  nf_hello_req: { size: 520, version: 0, pin_root: 8, bpf_dir: 264 },
  nf_hello_reply: { size: 16, version: 0, layout: 4, features: 8 },
  nf_load_req: {
    size: 272, id: 0, slot: 64, kind: 68, direction: 69, dns_port: 70, dns_ip4: 72, dns_ip6: 76, exact_cap: 92, guards: 96,
    dns_port_min: 100, dns_port_max: 102, mac: 104, n_ip4: 110, n_ip6: 111, ip4: 112, ip6: 144,
  },
  nf_link_req: { size: 4168, id: 0, ifindex: 64, method_pref: 68, cgroup_path: 72 },
  nf_link_reply: { size: 8, method: 0, prog_id: 4 },
  nf_state: {
    size: 320, magic: 0, layout: 4, active_gen: 8, slot: 12, gen: 16, dns_ip4: 32, dns_ip6: 36, dns_port: 52,
    kind: 54, method: 55, direction: 56, ifindex: 60, tc_handle: 64, tc_priority: 68, id: 72, protected_n: 136,
    pdeny_n: 140, guards: 144, dns_port_min: 148, dns_port_max: 150, mac: 152, n_ip4: 158, n_ip6: 159, ip4: 160, ip6: 192,
  },
  nf_adopt_reply: { size: 328, state: 0, prog_id: 320, attached: 324 },
  nf_wire_entry: { size: 40, family: 0, prefixlen: 1, flags: 2, rule_id: 4, expires_ms: 8, addr: 16, scope: 32 },
  nf_policy_req: { size: 80, id: 0, mode: 64, flags: 68, count: 72 },
  nf_entries_req: { size: 72, id: 0, count: 64 },
  nf_mode_req: { size: 72, id: 0, mode: 64, flags: 68 },
  nf_wire_protected: { size: 24, family: 0, prefixlen: 1, proto: 2, flags: 3, port: 4, addr: 8 },
  nf_port_guard_req: { size: 4104, uid: 0, port_min: 4, port_max: 6, cgroup_path: 8 },
  nf_port_guard_reply: { size: 24, cgroup_id: 0, prog_id4: 8, prog_id6: 12, updated: 16 },
  nf_notify_req: { size: 640, socket: 0, message: 128 },
  nf_dump_reply: {
    size: 48, cgroup_id: 0, slot: 8, ifindex: 12, mode: 16, flags: 20, prog_id: 24, attached: 28, count: 32, dns_port: 36,
    kind: 38, method: 39, direction: 40,
  },
  nf_tables_family: { size: 32, small_cap: 0, small_n: 4, large_cap: 8, large_n: 12, uses_large: 16, lpm_n: 20, lpm_host_n: 24, other_large_cap: 28 },
  nf_tables_reply: { size: 72, fam: 0, scope_n: 64 },
  nf_lookup_req: { size: 96, id: 0, family: 64, addr: 68, proto: 84, port: 86, uid: 88, gid: 92 },
  nf_lookup_prot: { size: 8, found: 0, prefixlen: 1, proto: 2, port: 4 },
  nf_lookup_reply: {
    size: 384, state: 0, expires_ms: 320, rule_id: 328, table: 332, flags: 333, prefixlen: 334, expired_skipped: 335, addr: 336,
    prot: 352, pdeny: 360, scope: 368, scope_flags: 370, depth: 371, scope_rule_id: 372, scoped_skipped: 376,
  },
  nf_verify_item: { size: 72, id: 0, checks: 64 },
  nf_verify_result: { size: 40, tamper: 0, prog_id: 4, seen_prog_id: 8, mode: 12, flags: 16, entries: 20, sum_a: 24, sum_b: 28, bad_pins: 32, checked: 36 },
  nf_restore_reply: { size: 8, repinned: 0, state_fixed: 4 },
  nf_migrate_reply: { size: 24, layout: 0, magic: 4, prog_id: 8, ifindex: 12, tc_priority: 16, method: 20, kind: 21, direction: 22, detached: 23 },
  nf_event: {
    size: 88, ts_ns: 0, suppressed: 8, slot: 16, sport: 20, dport: 22, family: 24, proto: 25, verdict: 26,
    reason: 27, direction: 28, rule_prefixlen: 29, saddr: 32, daddr: 48, rule_addr: 64, uid: 80, gid: 84,
  },
  /** The kernel's event throttle key (host-wide LRU, pinned as THROTTLE_PIN); not read by the daemon,
   * mirrored so that its shape (layout 7: the owner uid) is checked with the rest. */
  nf_throttle_key: { size: 44, slot: 0, dport: 4, proto: 6, reason: 7, saddr: 8, daddr: 24, uid: 40 },
  /** Rule hit counts (issue 14): encoded and decoded in hits-wire.ts. */
  nf_hit: { size: 24, packets: 0, last_ns: 8, last_jiffies: 16 },
  nf_hits_req: { size: 72, id: 0, upto: 64 },
  nf_hits_reply: { size: 8, cap: 0, count: 4 },
  nf_wire_hit: { size: 24, rule_id: 0, packets: 8, last_hit_ms: 16 },
  nf_hits_clear_req: { size: 72, id: 0, count: 64 },
} as const;

export function encodeFrame(seq: number, op: number, payload: Buffer): Buffer {
  const L = LAYOUT.nf_frame_hdr;
  const h = Buffer.alloc(L.size);
  h.writeUInt32LE(L.size + payload.length, L.len);
  h.writeUInt32LE(seq, L.seq);
  h.writeUInt16LE(op, L.op);
  return payload.length ? Buffer.concat([h, payload]) : h;
}

export interface FrameHeader {
  readonly len: number;
  readonly seq: number;
  readonly op: number;
  /** 0, or a negative errno. */
  readonly status: number;
}

/** The frame header at `off` (the caller checked that FRAME_HDR_SIZE bytes are there). */
export function decodeFrameHeader(b: Buffer, off: number): FrameHeader {
  const L = LAYOUT.nf_frame_hdr;
  return { len: b.readUInt32LE(off + L.len), seq: b.readUInt32LE(off + L.seq), op: b.readUInt16LE(off + L.op), status: b.readInt32LE(off + L.status) };
}

function writeCString(buf: Buffer, offset: number, cap: number, text: string): void {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length >= cap) throw new RangeError(`string of ${bytes.length} bytes does not fit in ${cap}`);
  bytes.copy(buf, offset);
}

export function encodeHello(pinRoot: string, bpfDir: string): Buffer {
  const L = LAYOUT.nf_hello_req;
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(PROTOCOL_VERSION, L.version);
  writeCString(b, L.pin_root, 256, pinRoot);
  writeCString(b, L.bpf_dir, 256, bpfDir);
  return b;
}

export function encodeId(id: string): Buffer {
  const b = Buffer.alloc(ID_LEN);
  writeCString(b, 0, ID_LEN, id);
  return b;
}

export interface LoadRequest {
  id: string;
  slot: number;
  kind: number;
  direction: number;
  dnsPort: number;
  dnsIp4: Uint8Array | null;
  dnsIp6: Uint8Array | null;
  /** Entries per exact-match hash (both generations together); 0 = the loader's default. */
  exactCap?: number;
  /** GUARD bits. */
  guards?: number;
  /** The daemon's whole DNS port range (0/0 = none). */
  dnsPortMin?: number;
  dnsPortMax?: number;
  /** 6 bytes; with GUARD.MAC. */
  mac?: Uint8Array | null;
  /** Workload addresses: 4-byte and 16-byte arrays, at most MAX_WORKLOAD_ADDRS each. */
  ip4?: readonly Uint8Array[];
  ip6?: readonly Uint8Array[];
}

export function encodeLoad(r: LoadRequest): Buffer {
  const L = LAYOUT.nf_load_req;
  const b = Buffer.alloc(L.size);
  writeCString(b, L.id, ID_LEN, r.id);
  b.writeUInt32LE(r.slot, L.slot);
  b.writeUInt8(r.kind, L.kind);
  b.writeUInt8(r.direction, L.direction);
  b.writeUInt16LE(r.dnsPort, L.dns_port);
  if (r.dnsIp4) Buffer.from(r.dnsIp4).copy(b, L.dns_ip4);
  if (r.dnsIp6) Buffer.from(r.dnsIp6).copy(b, L.dns_ip6);
  b.writeUInt32LE(r.exactCap ?? 0, L.exact_cap);
  b.writeUInt32LE(r.guards ?? 0, L.guards);
  b.writeUInt16LE(r.dnsPortMin ?? 0, L.dns_port_min);
  b.writeUInt16LE(r.dnsPortMax ?? 0, L.dns_port_max);
  if (r.mac) b.set(r.mac.subarray(0, 6), L.mac);
  const ip4 = r.ip4 ?? [];
  const ip6 = r.ip6 ?? [];
  if (ip4.length > MAX_WORKLOAD_ADDRS || ip6.length > MAX_WORKLOAD_ADDRS) throw new RangeError(`at most ${MAX_WORKLOAD_ADDRS} workload addresses per family`);
  b.writeUInt8(ip4.length, L.n_ip4);
  b.writeUInt8(ip6.length, L.n_ip6);
  ip4.forEach((a, i) => b.set(a.subarray(0, 4), L.ip4 + i * 4));
  ip6.forEach((a, i) => b.set(a.subarray(0, 16), L.ip6 + i * 16));
  return b;
}

export function encodeLink(id: string, ifindex: number, methodPref: number, cgroupPath: string): Buffer {
  const L = LAYOUT.nf_link_req;
  const b = Buffer.alloc(L.size);
  writeCString(b, L.id, ID_LEN, id);
  b.writeUInt32LE(ifindex, L.ifindex);
  b.writeUInt8(methodPref, L.method_pref);
  writeCString(b, L.cgroup_path, 4096, cgroupPath);
  return b;
}

/**
 * Hot path (10k entries per BulkUpdate, one per DNS answer): plain DataView writes, no BigInt.
 * The one check of an entry on its way to the kernel happens here, as it is written (a separate
 * validation pass would read every entry twice): a malformed entry rejects the whole frame with
 * INVALID_ARGUMENT before anything is sent.
 */
function writeEntry(view: DataView, bytes: Uint8Array, off: number, e: WireEntry, i: number): void {
  const E = LAYOUT.nf_wire_entry;
  const { family, prefixLen, addr } = e.cidr;
  if ((family !== 4 && family !== 6) || !Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > (family === 4 ? 32 : 128)) {
    throw invalidArgument(`entry ${i}: invalid prefix length ${prefixLen}`);
  }
  if (addr.length !== (family === 4 ? 4 : 16)) throw invalidArgument(`entry ${i}: address has ${addr.length} bytes`);
  if (e.expiresAtMs !== null && !(Number.isFinite(e.expiresAtMs) && e.expiresAtMs > 0)) throw invalidArgument(`entry ${i}: invalid deadline`);
  view.setUint8(off + E.family, family);
  view.setUint8(off + E.prefixlen, prefixLen);
  const scope = e.scopeId ?? 0;
  if (!Number.isInteger(scope) || scope < 0 || scope > 0xffff) throw invalidArgument(`entry ${i}: invalid scope id ${scope}`);
  const kinds = scope === 0 ? 0 : (e.scopeKinds ?? 0) & ENTRY_SCOPE_KINDS;
  view.setUint8(off + E.flags, (e.allow ? ENTRY_ALLOW : 0) | (e.deny ? ENTRY_DENY : 0) | kinds);
  view.setUint16(off + E.scope, scope, true);
  view.setUint32(off + E.rule_id, e.ruleId ?? 0, true);
  const ms = e.expiresAtMs === null ? 0 : Math.max(1, Math.ceil(e.expiresAtMs));
  view.setUint32(off + E.expires_ms, ms % 0x100000000, true);
  view.setUint32(off + E.expires_ms + 4, Math.floor(ms / 0x100000000), true);
  bytes.set(addr, off + E.addr);
}

/**
 * Writes the scope entries (already serialised, 40 bytes each: scope-wire.ts) and then the address
 * entries: the loader writes an UPSERT's tables scope first anyway, and a frame that lists the
 * scope table first reads in the order the kernel needs.
 */
function writeEntries(b: Buffer, start: number, entries: readonly WireEntry[], scopeWire: Uint8Array): void {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const E = LAYOUT.nf_wire_entry.size;
  b.set(scopeWire, start);
  const first = start + scopeWire.length;
  for (let i = 0; i < entries.length; i++) writeEntry(view, b, first + i * E, entries[i]!, i);
}

function scopeCount(scopeWire: Uint8Array): number {
  const E = LAYOUT.nf_wire_entry.size;
  if (scopeWire.length % E !== 0) throw invalidArgument(`scope entries of ${scopeWire.length} bytes (not a multiple of ${E})`);
  return scopeWire.length / E;
}

/** nf_policy_req/nf_mode_req.flags: the settings the daemon sets. */
export function settingsFlags(audit: boolean, keep = false): number {
  return (audit ? SETTING_AUDIT : 0) | (keep ? SETTING_KEEP : 0);
}

export function encodePolicy(
  id: string, mode: FilterMode, audit: boolean, entries: readonly WireEntry[], keep = false, scopeWire: Uint8Array = NO_SCOPES,
): Buffer {
  const L = LAYOUT.nf_policy_req;
  const E = LAYOUT.nf_wire_entry.size;
  const n = entries.length + scopeCount(scopeWire);
  const b = Buffer.alloc(L.size + n * E);
  writeCString(b, L.id, ID_LEN, id);
  b.writeUInt32LE(MODE_CODES[mode], L.mode);
  b.writeUInt32LE(settingsFlags(audit, keep), L.flags);
  b.writeUInt32LE(n, L.count);
  writeEntries(b, L.size, entries, scopeWire);
  return b;
}

export function encodeEntries(id: string, entries: readonly WireEntry[], scopeWire: Uint8Array = NO_SCOPES): Buffer {
  const L = LAYOUT.nf_entries_req;
  const E = LAYOUT.nf_wire_entry.size;
  const n = entries.length + scopeCount(scopeWire);
  const b = Buffer.alloc(L.size + n * E);
  writeCString(b, L.id, ID_LEN, id);
  b.writeUInt32LE(n, L.count);
  writeEntries(b, L.size, entries, scopeWire);
  return b;
}

export function encodeMode(id: string, mode: FilterMode, audit: boolean, keep = false): Buffer {
  const L = LAYOUT.nf_mode_req;
  const b = Buffer.alloc(L.size);
  writeCString(b, L.id, ID_LEN, id);
  b.writeUInt32LE(MODE_CODES[mode], L.mode);
  b.writeUInt32LE(settingsFlags(audit, keep), L.flags);
  return b;
}

export function encodeCountersRequest(ids: readonly string[]): Buffer {
  const b = Buffer.alloc(4 + ids.length * ID_LEN);
  b.writeUInt32LE(ids.length, 0);
  ids.forEach((id, i) => writeCString(b, 4 + i * ID_LEN, ID_LEN, id));
  return b;
}

export function encodeProtected(entries: readonly ProtectedEntry[]): Buffer {
  const L = LAYOUT.nf_wire_protected;
  const b = Buffer.alloc(4 + entries.length * L.size);
  b.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => {
    const off = 4 + i * L.size;
    b.writeUInt8(e.cidr.family, off + L.family);
    b.writeUInt8(e.cidr.prefixLen, off + L.prefixlen);
    b.writeUInt8(e.protocol, off + L.proto);
    b.writeUInt8((e.action === "deny" ? PROT_DENY : 0) | (e.from === true ? PROT_FROM : 0), off + L.flags);
    b.writeUInt16LE(e.port, off + L.port);
    b.set(e.cidr.addr.subarray(0, 16), off + L.addr);
  });
  return b;
}

export function encodePortGuard(uid: number, portMin: number, portMax: number, cgroupPath: string): Buffer {
  const L = LAYOUT.nf_port_guard_req;
  const b = Buffer.alloc(L.size);
  b.writeUInt32LE(uid, L.uid);
  b.writeUInt16LE(portMin, L.port_min);
  b.writeUInt16LE(portMax, L.port_max);
  writeCString(b, L.cgroup_path, 4096, cgroupPath);
  return b;
}

export function encodeNotify(socket: string, message: string): Buffer {
  const L = LAYOUT.nf_notify_req;
  const b = Buffer.alloc(L.size);
  writeCString(b, L.socket, 128, socket);
  writeCString(b, L.message, 512, message);
  return b;
}
