import { requireKernel, Sandbox, type SandboxNetwork } from "./sandbox.js";
import { DaemonProcess } from "./daemon-harness.js";

/**
 * The set-up the daemon integration tests share: a sandbox with its network, a pin root and a
 * test cgroup, echo servers, and the real daemon (dist/) started with the given config — torn down
 * in the reverse order by `cleanup()`.
 */
export interface DaemonRig {
  readonly sb: Sandbox;
  readonly net: SandboxNetwork;
  readonly pinRoot: string;
  readonly cg: string;
  readonly daemon: DaemonProcess;
  cleanup(): Promise<void>;
}

export interface DaemonRigOptions {
  /** Echo servers started before the daemon, in the server namespace (default) or the workload's (its loopback). */
  readonly servers?: { readonly ns?: "server" | "workload"; readonly ports: readonly number[] };
  /** Extra daemon config, written once the network's addresses are known. */
  readonly yaml?: (net: SandboxNetwork) => string;
  /** The test bridge gets an address in the root namespace (network({ hostAddress: true })). */
  readonly hostAddress?: boolean;
  /** Runs after the sandbox is made and before the daemon starts (the test's own objects). */
  readonly before?: (sb: Sandbox, net: SandboxNetwork, cg: string) => Promise<void>;
}

export async function daemonRig(prefix: string, opts: DaemonRigOptions = {}): Promise<DaemonRig> {
  await requireKernel();
  const sb = await Sandbox.create(prefix);
  let daemon: DaemonProcess | undefined;
  const cleanup = async (): Promise<void> => {
    await daemon?.cleanup();
    await sb.cleanup();
  };
  try {
    const net = await sb.network({ hostAddress: opts.hostAddress === true });
    const pinRoot = await sb.pinRoot();
    const cg = await sb.cgroup();
    const ns = opts.servers?.ns === "workload" ? net.workloadNs : net.serverNs;
    for (const port of opts.servers?.ports ?? []) await sb.echoServer(ns, port);
    await opts.before?.(sb, net, cg);
    daemon = new DaemonProcess({ pinRoot, yaml: opts.yaml?.(net) });
    await daemon.start();
    return { sb, net, pinRoot, cg, daemon, cleanup };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
