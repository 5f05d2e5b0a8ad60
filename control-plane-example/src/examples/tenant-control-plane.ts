// A complete small control plane on the SDK (the example of docs/control-plane-guide.md §5).
// Run: node control-plane-example/dist/examples/tenant-control-plane.js
import { ControlPlaneServer, type ControlPlaneHooks, type PolicySpec } from "@netfence/control-plane-sdk";

const tenants: Record<string, PolicySpec> = {
  acme: {
    mode: "allowlist",
    allow: ["10.20.0.0/16", { cidr: "203.0.113.10", ttlSeconds: 3600 }],
    deny: ["169.254.169.254"],
    dns: { mode: "allowlist", allow: ["*.pypi.org", "files.pythonhosted.org"] },
  },
};
const fallback: PolicySpec = { mode: "block-all", dns: { mode: "disabled" } };

const hooks: ControlPlaneHooks = {
  // Called for every attachment, before its attach call returns. Must answer quickly (< 5 s).
  onSubscribed(daemon, attachment) {
    return tenants[attachment.metadata["tenant"] ?? ""] ?? fallback;
  },
  // (Re)connected daemon: reconcile everything it has.
  async onDaemonSynced(daemon) {
    for (const a of daemon.attachments.values()) {
      const outcome = await daemon.bulkUpdate(a.id, tenants[a.metadata["tenant"] ?? ""] ?? fallback);
      if (!outcome.applied) console.error(`${daemon.daemonId}/${a.id}: ${outcome.error}`);
    }
  },
  onUnsubscribed(daemon, attachmentId, reason) {
    console.log(`${daemon.daemonId}: ${attachmentId} gone (${reason})`);
  },
  onHeartbeat(daemon, stats) {
    for (const s of stats) console.log(`${s.id}: ${s.packetsAllowed} allowed, ${s.packetsBlocked} blocked`);
  },
  // Only needed for DNS_MODE_PROXY attachments.
  onQueryDns(query) {
    return query.domain.endsWith(".internal") ? { allow: true, ips: ["10.0.0.53"], ttlSeconds: 60 } : { allow: false };
  },
};

const server = new ControlPlaneServer({
  hooks,
  // Optional: require "authorization: Bearer <token>" (daemon config control_plane.token).
  authenticate: process.env.CP_TOKEN ? (authorization) => authorization === `Bearer ${process.env.CP_TOKEN}` : undefined,
});
const port = await server.listen(process.env.CP_LISTEN ?? "127.0.0.1:50051");
console.log(`control plane listening on port ${port}`);

// Later, e.g. from your API: revoke an address on one attachment and know it took effect.
async function revoke(attachmentId: string, cidr: string): Promise<void> {
  const daemon = server.daemonOf(attachmentId);
  if (!daemon) throw new Error(`${attachmentId} is not connected`);
  const outcome = await daemon.removeCidr(attachmentId, cidr); // rejects on timeout/disconnect
  if (!outcome.applied) throw new Error(outcome.error ?? "rejected");
}

export { revoke };
