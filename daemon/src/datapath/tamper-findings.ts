import { invalidArgument } from "@netfence/proto/errors";
import type { TamperFinding, VerifyRequest } from "./filter.js";
import type { ContentExpectation, ContentShadows } from "./content-shadow.js";
import { TAMPER, decodeVerify, encodeVerify, type VerifyItem, type VerifyResult } from "./tamper-wire.js";

const MAP_PINS = new Set(["state", "counters", "v4_exact", "v4_lpm", "v6_exact", "v6_lpm", "v4_large", "v6_large"]);

/**
 * What one VERIFY result means, in findings: the kernel's answer (tamper bits, pins) and, when the
 * content was checked, the comparison with what the daemon wrote (`expected`, taken when VERIFY
 * was sent).
 */
export function findingsOf(r: VerifyResult, expected: ContentExpectation | null): TamperFinding[] {
  const out: TamperFinding[] = [];
  if (r.tamper & TAMPER.UNKNOWN) {
    out.push({ kind: "pins-removed", detail: "the loader neither holds this attachment nor can adopt its pins", repair: "repin" });
    return out;
  }
  if (r.tamper & TAMPER.DETACHED) out.push({ kind: "filter-detached", detail: "our filter is not attached any more (clsact filter deleted or replaced by a classic BPF one, link detached)", repair: "relink" });
  if (r.tamper & TAMPER.PROG_REPLACED) {
    out.push({ kind: "program-replaced", detail: `program ${r.seenProgId} runs where ours (${r.progId}) was attached`, repair: "relink" });
  }
  if (r.tamper & TAMPER.PIN_MISSING) out.push({ kind: "pins-removed", detail: `pins missing or foreign: ${r.badPins.join(", ")}`, repair: "repin" });
  if (r.tamper & TAMPER.PIN_REPLACED) {
    const maps = r.badPins.filter((p) => MAP_PINS.has(p));
    const kind = maps.length > 0 ? "map-replaced" : "program-replaced";
    out.push({ kind, detail: `pins naming another object than ours: ${r.badPins.join(", ")}`, repair: "repin" });
  }
  if (r.tamper & TAMPER.STATE) {
    out.push({ kind: "map-content", detail: "the state map's fixed fields (DNS server, guards, workload addresses) were rewritten", repair: "repin" });
  }
  if (r.contentChecked && expected !== null) {
    const same = r.mode === expected.mode && r.audit === expected.audit && r.entries === expected.entries && r.sumA === expected.sumA && r.sumB === expected.sumB;
    if (!same) {
      const what = r.mode !== expected.mode || r.audit !== expected.audit
        ? `mode ${r.mode ?? "?"}${r.audit ? " (audit)" : ""} instead of ${expected.mode}${expected.audit ? " (audit)" : ""}`
        : `${r.entries} entries (${expected.entries} written) with a checksum other than the one written`;
      out.push({ kind: "map-content", detail: `the active policy differs from what the daemon wrote: ${what}`, repair: "rewrite" });
    }
  }
  return out;
}

/**
 * One VERIFY round trip: `send` puts the frame on the wire synchronously (the loader answers in
 * order), and the expected contents are taken in the same turn, so they match the writes sent before it.
 */
export async function verifyWith(
  send: (payload: Buffer) => Promise<Buffer>, shadows: ContentShadows, requests: ReadonlyMap<string, VerifyRequest>, validId: RegExp,
): Promise<Map<string, TamperFinding[]>> {
  const items: VerifyItem[] = [];
  for (const [id, r] of requests) {
    if (!validId.test(id)) throw invalidArgument(`invalid attachment id "${id}"`);
    items.push({ id, pins: r.pins === true, content: r.content === true });
  }
  const out = new Map<string, TamperFinding[]>();
  if (items.length === 0) return out;
  const reply = send(encodeVerify(items));
  const expected = items.map((it) => (it.content ? shadows.expect(it.id) : null)); // as of this frame
  const results = decodeVerify(await reply, items.length);
  items.forEach((it, i) => out.set(it.id, findingsOf(results[i]!, expected[i]!)));
  return out;
}
