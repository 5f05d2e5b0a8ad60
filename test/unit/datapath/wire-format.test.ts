import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  ENTRY_SCOPE_KINDS, GUARD, LAYOUT, MAX_WORKLOAD_ADDRS, MODE_CODES, Op, PROT_DENY, PROT_FROM, REASONS, PROTOCOL_VERSION, LAYOUT_VERSION,
  SETTING_KEEP, SETTING_V4_LARGE, SETTING_V6_LARGE, THROTTLE_PIN, WIRE_FAMILY_SCOPE,
} from "../../../daemon/src/datapath/wire-format.js";
import { projectRoot } from "../../../daemon/src/datapath/project-root.js";
import { HITS_CAP, HITS_OVERFLOW, RULE_ID } from "../../../daemon/src/datapath/hits-wire.js";
import { SUM_BASIS_A, SUM_BASIS_B, SUM_RECORD, TAMPER, VERIFY } from "../../../daemon/src/datapath/tamper-wire.js";

/**
 * wire-format.ts mirrors bpf/include/netfence.h by hand. This test compiles a C probe against the
 * real header and compares every size and offset the TypeScript side relies on.
 */
describe("wire-format.ts matches bpf/include/netfence.h", () => {
  const header = path.join(projectRoot(), "bpf", "include");
  const fields: Array<[string, string]> = [];
  for (const [struct, layout] of Object.entries(LAYOUT)) {
    for (const field of Object.keys(layout)) fields.push([struct, field]);
  }
  const prints = fields
    .map(([s, f]) => (f === "size" ? `printf("%s.size=%zu\\n", "${s}", sizeof(struct ${s}));` : `printf("%s.%s=%zu\\n", "${s}", "${f}", offsetof(struct ${s}, ${f}));`))
    .join("\n");
  const consts = [
    "NF_PROTOCOL_VERSION", "NF_LAYOUT_VERSION", "NF_OP_HELLO", "NF_OP_LOAD", "NF_OP_LINK", "NF_OP_UNLOAD", "NF_OP_ADOPT", "NF_OP_REPLACE",
    "NF_OP_UPSERT", "NF_OP_DELETE", "NF_OP_SET_MODE", "NF_OP_COUNTERS", "NF_OP_PROTECTED", "NF_OP_EVENTS",
    "NF_OP_PORT_GUARD", "NF_OP_PORT_UNGUARD",
    "NF_OP_NOTIFY", "NF_OP_RELINK", "NF_OP_DUMP", "NF_OP_TABLES", "NF_OP_LOOKUP", "NF_LOOKUP_NONE", "NF_LOOKUP_SMALL", "NF_LOOKUP_LARGE", "NF_LOOKUP_LPM",
    "NF_OP_HITS", "NF_OP_HITS_CLEAR", "NF_HITS_CAP", "NF_HITS_OVERFLOW",
    ...Object.keys(RULE_ID).map((k) => `NF_RULE_${k}`),
    "NF_OP_MIGRATE_BEGIN", "NF_OP_MIGRATE_FINISH", "NF_OP_MIGRATE_ABORT", "NF_STATE_STABLE_PREFIX", "NF_OP_VERIFY", "NF_OP_RESTORE",
    "NF_VERIFY_PINS", "NF_VERIFY_CONTENT", "NF_TAMPER_DETACHED", "NF_TAMPER_PROG_REPLACED", "NF_TAMPER_PIN_REPLACED", "NF_TAMPER_PIN_MISSING",
    "NF_TAMPER_STATE", "NF_TAMPER_UNKNOWN", "NF_SETTING_V4_LARGE", "NF_SETTING_V6_LARGE",
    "NF_MODE_DISABLED", "NF_MODE_ALLOWLIST", "NF_MODE_DENYLIST", "NF_MODE_BLOCK_ALL", "NF_REASON_MALFORMED", "NF_CNT_MAX",
    "NF_REASON_SPOOFED", "NF_REASON_NON_IP", "NF_REASON_OTHER_TENANT_DNS", "NF_REASON_ROUTER_MESSAGE", "NF_REASON_PROTECTED_DENY",
    "NF_REASON_LOCAL_CLOSED", "NF_PROT_DENY", "NF_MAX_WORKLOAD_ADDRS",
    "NF_REASON_POLICY_DEPTH", "NF_REASON_KEPT", "NF_SETTING_KEEP", "NF_PROT_FROM", "NF_WIRE_SCOPE", "NF_ENTRY_SCOPE_KINDS",
    ...Object.keys(GUARD).map((k) => `NF_GUARD_${k}`),
  ].map((c) => `printf("${c}=%d\\n", (int)${c});`).join("\n") + `\nprintf("NF_SUM_BASIS_A=%u\\n", NF_SUM_BASIS_A);\nprintf("NF_SUM_BASIS_B=%u\\n", NF_SUM_BASIS_B);\nprintf("NF_THROTTLE_PIN=%s\\n", NF_THROTTLE_PIN);\nprintf("NF_SUM_RECORD=%u\\n", NF_SUM_RECORD);`;
  const src = `#include <stdio.h>\n#include <stddef.h>\n#include "netfence.h"\nint main(void){\n${prints}\n${consts}\nreturn 0;}\n`;

  const dir = mkdtempSync(path.join(tmpdir(), "nf-layout-"));
  let out: Map<string, number>;
  let text: Map<string, string>;
  try {
    writeFileSync(path.join(dir, "probe.c"), src);
    execFileSync("cc", ["-I", header, "-o", path.join(dir, "probe"), path.join(dir, "probe.c")]);
    text = new Map(execFileSync(path.join(dir, "probe")).toString().trim().split("\n").map((l) => {
      const [k, v] = l.split("=");
      return [k!, v ?? ""];
    }));
    out = new Map([...text].map(([k, v]) => [k, Number(v)]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  it.each(fields)("%s.%s", (struct, field) => {
    expect(out.get(`${struct}.${field}`)).toBe((LAYOUT as Record<string, Record<string, number>>)[struct]![field]);
  });

  it("constants and op codes", () => {
    expect(out.get("NF_PROTOCOL_VERSION")).toBe(PROTOCOL_VERSION);
    expect(out.get("NF_LAYOUT_VERSION")).toBe(LAYOUT_VERSION);
    for (const [name, code] of Object.entries(Op)) expect(out.get(`NF_OP_${name}`), name).toBe(code);
    expect([out.get("NF_LOOKUP_NONE"), out.get("NF_LOOKUP_SMALL"), out.get("NF_LOOKUP_LARGE"), out.get("NF_LOOKUP_LPM")]).toEqual([0, 1, 2, 3]); // lookup-wire.ts TABLES
    expect(out.get("NF_SETTING_V4_LARGE")).toBe(SETTING_V4_LARGE);
    expect(out.get("NF_SETTING_V6_LARGE")).toBe(SETTING_V6_LARGE);
    expect(out.get("NF_MODE_DISABLED")).toBe(MODE_CODES.disabled);
    expect(out.get("NF_MODE_ALLOWLIST")).toBe(MODE_CODES.allowlist);
    expect(out.get("NF_MODE_DENYLIST")).toBe(MODE_CODES.denylist);
    expect(out.get("NF_MODE_BLOCK_ALL")).toBe(MODE_CODES["block-all"]);
    expect(REASONS[out.get("NF_REASON_MALFORMED")!]).toBe("malformed");
    expect(out.get("NF_CNT_MAX")).toBe(4);
    const reasons: Record<string, string> = {
      SPOOFED: "spoofed", NON_IP: "non-ip", OTHER_TENANT_DNS: "other-tenant-dns", ROUTER_MESSAGE: "router-message",
      PROTECTED_DENY: "protected-deny", LOCAL_CLOSED: "local-closed",
    };
    for (const [c, text] of Object.entries(reasons)) expect(REASONS[out.get(`NF_REASON_${c}`)!], c).toBe(text);
    expect(REASONS[out.get("NF_REASON_POLICY_DEPTH")!]).toBe("policy-depth");
    expect(REASONS[out.get("NF_REASON_KEPT")!]).toBe("kept-established");
    expect(REASONS).toHaveLength(out.get("NF_REASON_KEPT")! + 1);
    expect(out.get("NF_SETTING_KEEP")).toBe(SETTING_KEEP);
    expect(out.get("NF_PROT_FROM")).toBe(PROT_FROM);
    expect(out.get("NF_WIRE_SCOPE")).toBe(WIRE_FAMILY_SCOPE);
    expect(out.get("NF_ENTRY_SCOPE_KINDS")).toBe(ENTRY_SCOPE_KINDS);
    for (const [name, bit] of Object.entries(GUARD)) expect(out.get(`NF_GUARD_${name}`), name).toBe(bit);
    expect(out.get("NF_PROT_DENY")).toBe(PROT_DENY);
    expect(out.get("NF_MAX_WORKLOAD_ADDRS")).toBe(MAX_WORKLOAD_ADDRS);
    expect(out.get("NF_HITS_CAP")).toBe(HITS_CAP);
    expect(out.get("NF_HITS_OVERFLOW")).toBe(HITS_OVERFLOW);
    for (const [name, id] of Object.entries(RULE_ID)) expect(out.get(`NF_RULE_${name}`), name).toBe(id);
    expect([out.get("NF_VERIFY_PINS"), out.get("NF_VERIFY_CONTENT")]).toEqual([VERIFY.PINS, VERIFY.CONTENT]);
    for (const [name, bit] of Object.entries(TAMPER)) expect(out.get(`NF_TAMPER_${name}`), name).toBe(bit);
    expect([out.get("NF_SUM_BASIS_A"), out.get("NF_SUM_BASIS_B"), out.get("NF_SUM_RECORD")]).toEqual([SUM_BASIS_A, SUM_BASIS_B, SUM_RECORD]);
    expect(text.get("NF_THROTTLE_PIN")).toBe(THROTTLE_PIN);
    // The migration reads an old layout's nf_state only up to tc_priority.
    expect(out.get("NF_STATE_STABLE_PREFIX")).toBe(LAYOUT.nf_state.tc_priority + 4);
  });
});

describe("wire-format encoders for the guards, protected-deny and L2 events", () => {
  it("LOAD carries the guards, the DNS port range, the workload MAC and addresses", async () => {
    const { encodeLoad } = await import("../../../daemon/src/datapath/wire-format.js");
    const b = encodeLoad({
      id: "a", slot: 3, kind: 1, direction: 0, dnsPort: 11003, dnsIp4: Uint8Array.of(10, 0, 0, 1), dnsIp6: null,
      guards: GUARD.DHCP | GUARD.MAC, dnsPortMin: 11000, dnsPortMax: 11500, mac: Uint8Array.of(2, 0, 0, 0, 0, 9),
      ip4: [Uint8Array.of(10, 0, 0, 2)], ip6: [new Uint8Array(16).fill(0xfd, 0, 1)],
    });
    const L = LAYOUT.nf_load_req;
    expect(b.length).toBe(L.size);
    expect(b.readUInt32LE(L.guards)).toBe(GUARD.DHCP | GUARD.MAC);
    expect([b.readUInt16LE(L.dns_port_min), b.readUInt16LE(L.dns_port_max)]).toEqual([11000, 11500]);
    expect([...b.subarray(L.mac, L.mac + 6)]).toEqual([2, 0, 0, 0, 0, 9]);
    expect([b.readUInt8(L.n_ip4), b.readUInt8(L.n_ip6)]).toEqual([1, 1]);
    expect([...b.subarray(L.ip4, L.ip4 + 4)]).toEqual([10, 0, 0, 2]);
    expect(b.readUInt8(L.ip6)).toBe(0xfd);
    expect(() => encodeLoad({ id: "a", slot: 0, kind: 1, direction: 0, dnsPort: 0, dnsIp4: null, dnsIp6: null, ip4: Array.from({ length: 9 }, () => new Uint8Array(4)) })).toThrow(RangeError);
  });

  it("PROTECTED marks protected-deny entries", async () => {
    const { encodeProtected } = await import("../../../daemon/src/datapath/wire-format.js");
    const { parseCidr } = await import("@netfence/proto/parse");
    const b = encodeProtected([
      { cidr: parseCidr("10.0.0.0/8"), protocol: 0, port: 0 },
      { cidr: parseCidr("192.0.2.0/24"), protocol: 6, port: 22, action: "deny" },
    ]);
    const L = LAYOUT.nf_wire_protected;
    expect(b.readUInt32LE(0)).toBe(2);
    expect(b.readUInt8(4 + L.flags)).toBe(0);
    expect(b.readUInt8(4 + L.size + L.flags)).toBe(PROT_DENY);
    expect(b.readUInt16LE(4 + L.size + L.port)).toBe(22);
  });

  it("events of L2 frames decode as family 0", async () => {
    const { decodeEvents } = await import("../../../daemon/src/datapath/wire-decode.js");
    const L = LAYOUT.nf_event;
    const b = Buffer.alloc(L.size);
    b.writeUInt8(0, L.family);
    b.writeUInt16LE(0x88b5, L.dport);
    b.set([2, 0, 0, 0, 0, 1], L.saddr);
    const [ev] = decodeEvents(b);
    expect(ev?.family).toBe(0);
    expect(ev?.dport).toBe(0x88b5);
  });

  it("layout 6: REPLACE carries the keep flag, the scope entries first, then address entries with their scope id and kinds", async () => {
    const { encodePolicy, encodeMode } = await import("../../../daemon/src/datapath/wire-format.js");
    const { parseCidr } = await import("@netfence/proto/parse");
    const scope = Buffer.alloc(LAYOUT.nf_wire_entry.size);
    scope.writeUInt8(WIRE_FAMILY_SCOPE, 0);
    scope.writeUInt8(80, 1);
    const b = encodePolicy("a", "allowlist", true, [{ cidr: parseCidr("10.0.0.1/32"), allow: false, deny: false, expiresAtMs: null, scopeId: 7, scopeKinds: 1 << 3 }], true, scope);
    const P = LAYOUT.nf_policy_req;
    const E = LAYOUT.nf_wire_entry;
    expect(b.readUInt32LE(P.flags)).toBe(1 | SETTING_KEEP);
    expect(b.readUInt32LE(P.count)).toBe(2);
    expect(b.readUInt8(P.size + E.family)).toBe(WIRE_FAMILY_SCOPE);
    const addr = P.size + E.size;
    expect([b.readUInt8(addr + E.family), b.readUInt8(addr + E.flags), b.readUInt16LE(addr + E.scope)]).toEqual([4, 1 << 3, 7]);
    // kinds without a scope id are not sent; a bad id or a partial scope record is refused
    const plain = encodePolicy("a", "allowlist", false, [{ cidr: parseCidr("10.0.0.1/32"), allow: true, deny: false, expiresAtMs: null, scopeKinds: ENTRY_SCOPE_KINDS }]);
    expect(plain.readUInt8(P.size + E.flags)).toBe(1);
    expect(() => encodePolicy("a", "allowlist", false, [{ cidr: parseCidr("10.0.0.1/32"), allow: true, deny: false, expiresAtMs: null, scopeId: 70000 }])).toThrow();
    expect(() => encodePolicy("a", "allowlist", false, [], false, new Uint8Array(10))).toThrow();
    expect(encodeMode("a", "denylist", false, true).readUInt32LE(LAYOUT.nf_mode_req.flags)).toBe(SETTING_KEEP);
  });

  it("layout 7: the event throttle key carries the owner uid, packed (44 bytes, no holes, 4-aligned)", () => {
    const K = LAYOUT.nf_throttle_key;
    expect(LAYOUT_VERSION).toBe(7);
    expect(K.uid).toBe(K.daddr + 16);
    expect(K.size).toBe(K.uid + 4); // slot 4 + dport 2 + proto 1 + reason 1 + saddr 16 + daddr 16 + uid 4
    expect(K.size % 4).toBe(0);
    expect(THROTTLE_PIN).not.toBe("throttle"); // a new pin: layouts before 7 pinned the 40-byte key as "throttle"
  });

  it("layout 6: events carry the owner; PROTECTED marks management from-port entries", async () => {
    const { decodeEvents } = await import("../../../daemon/src/datapath/wire-decode.js");
    const { encodeProtected } = await import("../../../daemon/src/datapath/wire-format.js");
    const { parseCidr } = await import("@netfence/proto/parse");
    const L = LAYOUT.nf_event;
    const b = Buffer.alloc(L.size);
    b.writeUInt8(4, L.family);
    b.writeUInt32LE(1000, L.uid);
    b.writeUInt32LE(0xffffffff, L.gid);
    const [ev] = decodeEvents(b);
    expect([ev?.uid, ev?.gid]).toEqual([1000, 0xffffffff]);
    const p = encodeProtected([{ cidr: parseCidr("192.0.2.0/24"), protocol: 6, port: 22, from: true }]);
    expect(p.readUInt8(4 + LAYOUT.nf_wire_protected.flags)).toBe(PROT_FROM);
  });
});
