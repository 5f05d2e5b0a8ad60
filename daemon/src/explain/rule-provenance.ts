import type { PolicyCommand } from "../policy/policy.js";
import { formatCidr } from "@netfence/proto/parse";

/**
 * Where each rule of an attachment came from (explain): the control-plane command (its id and
 * time), the default policy, the local API. Kept cheap: one shared record per policy-wide change
 * (attach, BulkUpdate, SubscribedAck) and one record per rule changed on its own since — never one
 * per kernel entry. In memory only: after a daemon restart rules read "restored from the state
 * store" until a command touches them again.
 */

export type OriginSource = "control-plane" | "default-policy" | "local-api" | "attach";

export interface RuleOrigin {
  readonly source: OriginSource;
  /** The control-plane command id ("" when there is none: a SubscribedAck, the local API). */
  readonly commandId: string;
  /** What it was: "allow-cidr", "bulk-update", "subscribed-ack", "default-policy", ... */
  readonly what: string;
  readonly atMs: number;
}

interface AttachmentOrigins {
  /** The last change that replaced the whole policy (attach, bulk update). */
  base: RuleOrigin | null;
  /** Rules changed on their own since base: "cidr:allow:10.0.0.0/8", "domain:deny:x.com", "mode", "dns-mode". */
  readonly rules: Map<string, RuleOrigin>;
}

export class RuleProvenance {
  private readonly byAttachment = new Map<string, AttachmentOrigins>();

  private of(id: string): AttachmentOrigins {
    let o = this.byAttachment.get(id);
    if (o === undefined) this.byAttachment.set(id, (o = { base: null, rules: new Map() }));
    return o;
  }

  /** The attachment's whole policy was set (attach, adopt) by `origin`. */
  noteInitial(id: string, origin: RuleOrigin): void {
    const o = this.of(id);
    o.base = origin;
    o.rules.clear();
  }

  /** A command was applied (after its plan committed). */
  noteCommand(id: string, command: PolicyCommand, origin: RuleOrigin): void {
    const o = this.of(id);
    switch (command.kind) {
      case "bulk-update":
        if (command.dns === null) {
          // DNS rules stay as they were: keep their records (and their base), replace the rest.
          const dnsBase = o.rules.get("dns-rules") ?? o.base;
          const kept = [...o.rules].filter(([k]) => k.startsWith("domain:") || k === "dns-mode");
          o.rules.clear();
          for (const [k, v] of kept) o.rules.set(k, v);
          if (dnsBase !== null) o.rules.set("dns-rules", dnsBase);
        } else o.rules.clear();
        o.base = origin;
        return;
      case "set-mode":
        o.rules.set("mode", origin);
        return;
      case "allow-cidr":
      case "deny-cidr":
        o.rules.set(`cidr:${command.kind === "allow-cidr" ? "allow" : "deny"}:${formatCidr(command.rule.cidr)}`, origin);
        return;
      case "remove-cidr": {
        const key = formatCidr(command.cidr);
        o.rules.delete(`cidr:allow:${key}`);
        o.rules.delete(`cidr:deny:${key}`);
        return;
      }
      case "set-dns-mode":
        o.rules.set("dns-mode", origin);
        return;
      case "allow-domain":
      case "deny-domain":
        o.rules.set(`domain:${command.kind === "allow-domain" ? "allow" : "deny"}:${command.rule.domain}`, origin);
        return;
      case "remove-domain":
        o.rules.delete(`domain:allow:${command.domain}`);
        o.rules.delete(`domain:deny:${command.domain}`);
        return;
    }
  }

  /** The origin of a CIDR rule (canonical prefix), or null: restored from the state store. */
  cidr(id: string, action: "allow" | "deny", key: string): RuleOrigin | null {
    const o = this.byAttachment.get(id);
    return o?.rules.get(`cidr:${action}:${key}`) ?? o?.base ?? null;
  }

  domain(id: string, action: "allow" | "deny", domain: string): RuleOrigin | null {
    const o = this.byAttachment.get(id);
    return o?.rules.get(`domain:${action}:${domain}`) ?? o?.rules.get("dns-rules") ?? o?.base ?? null;
  }

  mode(id: string): RuleOrigin | null {
    const o = this.byAttachment.get(id);
    return o?.rules.get("mode") ?? o?.base ?? null;
  }

  dnsMode(id: string): RuleOrigin | null {
    const o = this.byAttachment.get(id);
    return o?.rules.get("dns-mode") ?? o?.rules.get("dns-rules") ?? o?.base ?? null;
  }

  forget(id: string): void {
    this.byAttachment.delete(id);
  }
}
