import * as grpc from "@grpc/grpc-js";

/**
 * Calls back once the client's channel is READY, or with an error when the connect attempt failed
 * (TRANSIENT_FAILURE: refused, reset, TLS or HTTP/2 handshake failed) or the deadline passed.
 * Unlike grpc-js's waitForReady, a failed attempt is not retried inside the channel: the caller's
 * Backoff decides when to try again. With the channel option grpc.use_local_subchannel_pool (set
 * by connection.ts) each attempt's client has a private subchannel, so it does not inherit
 * grpc-js's own reconnect backoff (1 s × 1.6ⁿ up to 120 s, reset only on success) from earlier
 * attempts' subchannel in the global pool (issue 13: reconnects waited ~0.8 s after a control
 * plane restart whatever our backoff said).
 */
export function waitConnected(client: grpc.Client, timeoutMs: number, done: (err: Error | null) => void): void {
  const channel = client.getChannel();
  const deadline = Date.now() + timeoutMs;
  const check = (): void => {
    const state = channel.getConnectivityState(true);
    if (state === grpc.connectivityState.READY) return done(null);
    if (state === grpc.connectivityState.TRANSIENT_FAILURE) return done(new Error("connection failed"));
    if (state === grpc.connectivityState.SHUTDOWN) return done(new Error("channel closed"));
    channel.watchConnectivityState(state, deadline, (err) => (err ? done(new Error(`no connection within ${timeoutMs} ms`)) : check()));
  };
  check();
}
