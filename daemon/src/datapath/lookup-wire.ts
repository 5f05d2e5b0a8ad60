/**
 * LOOKUP (NF_OP_LOOKUP, explain): the request and the decoded reply — one destination looked up
 * in an attachment's kernel maps as the data path does (bpf/loader/lookup.c). The layouts are in
 * wire-format.ts LAYOUT, checked against netfence-protocol.h by test/unit/datapath/wire-format.test.ts.
 */
import { formatAddr, formatCidr } from "@netfence/proto/parse";
import type { KernelLookup, KernelMatch, LookupPacket, ProtectedMatch } from "./kernel-lookup.js";
export type { KernelLookup, KernelMatch, LookupPacket, ProtectedMatch, ScopedAnswer } from "./kernel-lookup.js";
import { ENTRY_ALLOW, ENTRY_DENY, ID_LEN, LAYOUT, MODE_NAMES, OWNER_UNKNOWN, SETTING_AUDIT } from "./wire-format.js";

/** `packet` absent: protocol 0, port 0, owner unknown (a scoped entry then matches only rules for any protocol and owner). */
export function encodeLookup(id: string, family: 4 | 6, addr: Uint8Array, packet?: LookupPacket): Buffer {
  const L = LAYOUT.nf_lookup_req;
  const b = Buffer.alloc(L.size);
  b.write(id, L.id, ID_LEN - 1, "utf8");
  b.writeUInt8(family, L.family);
  b.set(addr, L.addr);
  b.writeUInt8(packet?.protocol ?? 0, L.proto);
  b.writeUInt16LE(packet?.port ?? 0, L.port);
  b.writeUInt32LE(packet?.uid ?? OWNER_UNKNOWN, L.uid);
  b.writeUInt32LE(packet?.gid ?? OWNER_UNKNOWN, L.gid);
  return b;
}

const TABLES: readonly (KernelMatch["table"] | null)[] = [null, "small-exact", "large-exact", "lpm"];

function prot(b: Buffer, off: number): ProtectedMatch | null {
  const L = LAYOUT.nf_lookup_prot;
  if (b.readUInt8(off + L.found) === 0) return null;
  return { prefixLen: b.readUInt8(off + L.prefixlen), protocol: b.readUInt8(off + L.proto), port: b.readUInt16LE(off + L.port) };
}

export function decodeLookup(b: Buffer, family: 4 | 6): KernelLookup {
  const L = LAYOUT.nf_lookup_reply;
  const S = LAYOUT.nf_state;
  if (b.length < L.size) throw new RangeError(`LOOKUP reply of ${b.length} bytes`);
  const gen = b.readUInt32LE(L.state + S.active_gen) & 1;
  const mode = MODE_NAMES[b.readUInt32LE(L.state + S.gen + gen * 8)] ?? "block-all";
  const flags = b.readUInt32LE(L.state + S.gen + gen * 8 + 4);
  const dns4 = b.subarray(L.state + S.dns_ip4, L.state + S.dns_ip4 + 4);
  const dns6 = b.subarray(L.state + S.dns_ip6, L.state + S.dns_ip6 + 16);
  const table = TABLES[b.readUInt8(L.table)] ?? null;
  let match: KernelMatch | null = null;
  if (table !== null) {
    const prefixLen = b.readUInt8(L.prefixlen);
    const len = family === 4 ? 4 : 16;
    const entryFlags = b.readUInt8(L.flags);
    const expires = Number(b.readBigUInt64LE(L.expires_ms));
    match = {
      cidr: formatCidr({ family, addr: Uint8Array.from(b.subarray(L.addr, L.addr + len)), prefixLen }),
      prefixLen,
      allow: (entryFlags & ENTRY_ALLOW) !== 0,
      deny: (entryFlags & ENTRY_DENY) !== 0,
      ruleId: b.readUInt32LE(L.rule_id),
      expiresAtMs: expires === 0 ? null : expires,
      table,
    };
  }
  return {
    mode,
    audit: (flags & SETTING_AUDIT) !== 0,
    guards: b.readUInt32LE(L.state + S.guards),
    dnsIp4: dns4.every((x) => x === 0) ? null : formatAddr(4, dns4),
    dnsIp6: dns6.every((x) => x === 0) ? null : formatAddr(6, dns6),
    dnsPort: b.readUInt16LE(L.state + S.dns_port),
    dnsPortMin: b.readUInt16LE(L.state + S.dns_port_min),
    dnsPortMax: b.readUInt16LE(L.state + S.dns_port_max),
    protectedCount: b.readUInt32LE(L.state + S.protected_n),
    protectedDenyCount: b.readUInt32LE(L.state + S.pdeny_n),
    match,
    expiredSkipped: b.readUInt8(L.expired_skipped),
    protectedAllow: prot(b, L.prot),
    protectedDeny: prot(b, L.pdeny),
    scoped: match !== null && b.readUInt16LE(L.scope) !== 0
      ? {
          scope: b.readUInt16LE(L.scope),
          allow: (b.readUInt8(L.scope_flags) & ENTRY_ALLOW) !== 0,
          deny: (b.readUInt8(L.scope_flags) & ENTRY_DENY) !== 0,
          ruleId: b.readUInt32LE(L.scope_rule_id),
        }
      : null,
    scopedSkipped: b.readUInt32LE(L.scoped_skipped),
    depthExhausted: b.readUInt8(L.depth) !== 0,
  };
}
