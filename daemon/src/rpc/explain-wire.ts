import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AddressExplanationSchema,
  DomainExplanationSchema,
  DomainLearnedAddressSchema,
  ExplainEntrySchema,
  ExplainResponseSchema,
  ExplainSourceSchema,
  ExplainScopedRuleSchema,
  ExplainSkippedSchema,
  RuleOriginSchema,
  type ExplainRequest,
  type ExplainResponse,
  type RuleOrigin as WireOrigin,
} from "@netfence/proto/daemon";
import { dnsModeToWire, policyModeToWire } from "@netfence/proto/modes";
import type { ExplainQuery } from "../explain/explain-query.js";
import type { Explanation } from "../explain/explainer.js";
import type { RuleOrigin } from "../policy/rule-origins.js";
import type { FilterMode } from "../policy/compiled.js";
import type { DnsModeName } from "../policy/policy.js";

/** The RPC's request as the explainer's question (validated there). */
export function explainQueryFromWire(req: ExplainRequest): ExplainQuery {
  return { attachmentId: req.attachmentId, address: req.address, domain: req.domain, port: req.port, protocol: req.protocol, user: req.user, group: req.group };
}

/** A missing origin (an attachment adopted from its pins) is sent as an empty RuleOrigin. */
function origin(o: RuleOrigin | null): WireOrigin {
  if (o === null) return create(RuleOriginSchema, {});
  return create(RuleOriginSchema, { source: o.source, commandId: o.commandId, what: o.what, at: timestampFromMs(o.atMs) });
}

const ts = (ms: number | null) => (ms === null ? undefined : timestampFromMs(ms));

export function explanationToWire(e: Explanation): ExplainResponse {
  const a = e.address;
  const d = e.domain;
  return create(ExplainResponseSchema, {
    attachmentId: e.attachmentId,
    address:
      a === null
        ? undefined
        : create(AddressExplanationSchema, {
            address: a.address,
            protocol: a.protocol ?? 0,
            port: a.port ?? 0,
            verdict: a.verdict,
            reason: a.reason,
            step: a.step,
            mode: policyModeToWire(a.mode as FilterMode),
            audit: a.audit,
            modeOrigin: origin(a.modeOrigin),
            entry:
              a.entry === null
                ? undefined
                : create(ExplainEntrySchema, {
                    cidr: a.entry.cidr,
                    allow: a.entry.allow,
                    deny: a.entry.deny,
                    ruleId: a.entry.ruleId,
                    expiresAt: ts(a.entry.expiresAtMs),
                    ttlLeftMs: BigInt(a.entry.ttlLeftMs ?? -1),
                    table: a.entry.table,
                    used: a.entryUsed,
                    scoped: a.scoped.map((r) => create(ExplainScopedRuleSchema, { ruleId: r.ruleId, action: r.action, scope: r.scope, matched: r.matched })),
                  }),
            sources: a.sources.map((s) =>
              s.kind === "cidr-rule"
                ? create(ExplainSourceSchema, { kind: s.kind, action: s.action, cidr: s.cidr, expiresAt: ts(s.expiresAtMs), origin: origin(s.origin) })
                : create(ExplainSourceSchema, { kind: s.kind, name: s.name, expiresAt: ts(s.expiresAtMs), learnedAt: ts(s.learnedAtMs), answerTtlSeconds: s.ttlSeconds ?? 0 }),
            ),
            protectedCidr: a.protectedCidr ?? "",
            names: [...a.names],
            notes: [...a.notes],
            expiredSkipped: a.expiredSkipped,
            owner: a.owner,
            skipped: a.skipped.map((x) => create(ExplainSkippedSchema, { cidr: x.cidr, why: x.why })),
            keep: a.keep,
            scopeSource: a.scopeSource,
          }),
    domain:
      d === null
        ? undefined
        : create(DomainExplanationSchema, {
            domain: d.domain,
            dnsMode: dnsModeToWire(d.dnsMode as DnsModeName),
            dnsModeOrigin: origin(d.dnsModeOrigin),
            resolves: d.resolves,
            ruleAction: d.rule?.action ?? "",
            ruleDomain: d.rule?.domain ?? "",
            ruleIncludeSubdomains: d.rule?.includeSubdomains ?? false,
            ruleOrigin: d.rule === null ? undefined : origin(d.rule.origin),
            learned: d.learned.map((l) =>
              create(DomainLearnedAddressSchema, {
                address: l.address,
                expiresAt: timestampFromMs(l.expiresAtMs),
                ttlLeftMs: BigInt(l.ttlLeftMs),
                learnedAt: ts(l.learnedAtMs),
                answerTtlSeconds: l.ttlSeconds ?? 0,
                sharedWith: [...l.sharedWith],
              }),
            ),
            notes: [...d.notes],
          }),
  });
}
