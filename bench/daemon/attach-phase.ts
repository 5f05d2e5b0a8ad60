import type { DaemonClient } from "../../cli/src/daemon-client.js";
import type { Prober } from "./prober-client.js";
import { Deadline } from "../lib/time-limit.js";

/**
 * Attach latency through the real DaemonService: time from the Attach RPC call until it returns
 * (one gRPC channel, already connected; attaches one after another). With no control plane the
 * daemon applies the local default policy, and the filter is enforcing when Attach returns —
 * `verifiedAttach` proves that on a sample with a probe sent right after the return.
 */

export type AttachTarget = { readonly kind: "cgroup"; readonly path: string } | { readonly kind: "interface"; readonly name: string };

export interface AttachSample {
  readonly id: string;
  readonly ms: number;
  /** Epoch ms (sub-ms) when the Attach call returned. */
  readonly returnedAtMs: number;
}

const wallMs = (): number => performance.timeOrigin + performance.now();

export async function timedAttach(client: DaemonClient, target: AttachTarget): Promise<AttachSample> {
  const t0 = performance.now();
  const res = await client.attach({
    target: target.kind === "cgroup" ? { case: "cgroupPath", value: target.path } : { case: "interfaceName", value: target.name },
    metadata: { bench: "daemon" },
  });
  const ms = performance.now() - t0;
  return { id: res.id, ms, returnedAtMs: wallMs() };
}

/** The sandbox's echo servers: one address the default policy allows, one it does not list. */
export interface ProbePlan {
  readonly allowedIp: string;
  readonly unlistedIp: string;
  readonly port: number;
  readonly timeoutMs: number;
}

export interface VerifiedSample {
  readonly kind: AttachTarget["kind"];
  readonly attach_ms: number;
  /** Before the attach, the unlisted address answered (the path works; a later block is the filter's). */
  readonly unlisted_answered_before: boolean;
  /** The first probe after the return, to the unlisted address: blocked? */
  readonly unlisted_blocked_after: boolean;
  readonly blocked_reason: string;
  /** How long after Attach returned the blocked probe's first packet was sent. */
  readonly probe_sent_after_return_ms: number;
  /** Then the allowlisted address (TCP): answered? (the policy is applied, not a blanket block) */
  readonly allowed_answered_after: boolean;
}

/**
 * One verified attach. For a cgroup target the prober is moved into the cgroup first (its next
 * socket is then subject to the cgroup's filter); for an interface target the prober's traffic
 * leaves the workload namespace through that interface.
 */
export async function verifiedAttach(client: DaemonClient, prober: Prober, target: AttachTarget, plan: ProbePlan): Promise<{ sample: AttachSample; verified: VerifiedSample }> {
  if (target.kind === "cgroup") await prober.moveTo(target.path);
  const before = await prober.probe("udp", plan.unlistedIp, plan.port, plan.timeoutMs);
  const sample = await timedAttach(client, target);
  const after = await prober.probe("udp", plan.unlistedIp, plan.port, plan.timeoutMs);
  const allowed = await prober.probe("tcp", plan.allowedIp, plan.port, plan.timeoutMs);
  return {
    sample,
    verified: {
      kind: target.kind,
      attach_ms: sample.ms,
      unlisted_answered_before: before.ok,
      unlisted_blocked_after: !after.ok,
      blocked_reason: after.ok ? "" : after.reason,
      probe_sent_after_return_ms: after.sentAtMs - sample.returnedAtMs,
      allowed_answered_after: allowed.ok,
    },
  };
}

/**
 * Attaches every target in order (bounded by `limitMs`); every `verifyEvery`-th one is verified.
 * `shouldStop` is asked before each attach (e.g. a memory floor): a reason ends the series early.
 */
export async function attachSeries(opts: {
  client: DaemonClient;
  targets: readonly AttachTarget[];
  limitMs: number;
  prober?: Prober;
  plan?: ProbePlan;
  verifyEvery?: number;
  shouldStop?: () => string | null;
  onProgress?: (done: number) => void;
}): Promise<{ samples: AttachSample[]; verified: VerifiedSample[]; stopped: string | null }> {
  const samples: AttachSample[] = [];
  const verified: VerifiedSample[] = [];
  const deadline = new Deadline(opts.limitMs);
  for (let i = 0; i < opts.targets.length; i++) {
    if (deadline.expired()) throw new Error(`attaching ${opts.targets.length} targets did not finish within ${opts.limitMs} ms (${i} done)`);
    const stop = opts.shouldStop?.() ?? null;
    if (stop !== null) return { samples, verified, stopped: stop };
    const target = opts.targets[i]!;
    const every = opts.verifyEvery ?? 0;
    if (opts.prober && opts.plan && every > 0 && i % every === every - 1) {
      const r = await verifiedAttach(opts.client, opts.prober, target, opts.plan);
      samples.push(r.sample);
      verified.push(r.verified);
    } else {
      samples.push(await timedAttach(opts.client, target));
    }
    if ((i + 1) % 100 === 0) opts.onProgress?.(i + 1);
  }
  return { samples, verified, stopped: null };
}

/**
 * Attaches targets with `concurrency` calls in flight (the daemon serialises kernel work; this
 * overlaps its gRPC, state-file and DNS-server work). Used to build up scale, not for latency.
 */
export async function attachConcurrently(opts: {
  client: DaemonClient;
  targets: readonly AttachTarget[];
  concurrency: number;
  limitMs: number;
  shouldStop?: () => string | null;
  onProgress?: (done: number) => void;
}): Promise<{ ids: string[]; wallMs: number; stopped: string | null }> {
  const ids: string[] = [];
  const deadline = new Deadline(opts.limitMs);
  let next = 0;
  let stopped: string | null = null;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < opts.targets.length && stopped === null) {
      if (deadline.expired()) throw new Error(`attaching ${opts.targets.length} targets did not finish within ${opts.limitMs} ms (${ids.length} done)`);
      stopped = opts.shouldStop?.() ?? null;
      if (stopped !== null) return;
      const target = opts.targets[next++]!;
      ids.push((await timedAttach(opts.client, target)).id);
      if (ids.length % 100 === 0) opts.onProgress?.(ids.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));
  return { ids, wallMs: performance.now() - t0, stopped };
}

/** Detaches ids through the daemon, `concurrency` calls in flight; returns the wall time. */
export async function detachAll(client: DaemonClient, ids: readonly string[], concurrency = 16): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++]!;
      await client.detach(id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker));
  return performance.now() - t0;
}
