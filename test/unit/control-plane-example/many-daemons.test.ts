import { afterEach, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import pino from "pino";
import { ControlPlaneServer } from "../../../sdk/src/index.js";
import { ControlPlane, DaemonEventSchema, type ControlCommand, type DaemonEvent } from "@netfence/proto/control";
import { methodDefinition } from "@netfence/proto/grpc";

const CONNECT = methodDefinition(ControlPlane.method.connect);
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

describe("ControlPlaneServer with many daemons", () => {
  it("syncs, acks and processes heartbeats of 1000 daemon streams", async () => {
    const N = 1000;
    let heartbeats = 0;
    const server = new ControlPlaneServer({
      logger: pino({ level: "silent" }),
      hooks: {
        onSubscribed: (d, a) => ({ mode: "allowlist", allow: [`10.${d.info.metadata["n"]}.0.0/16`], dns: { mode: "allowlist", allow: [`${a.id}.example`] } }),
        onHeartbeat: () => void heartbeats++,
      },
    });
    const port = await server.listen("127.0.0.1:0");
    // Several channels so streams spread over connections like real daemons; one process plays them all.
    const channels = Array.from({ length: 8 }, () => new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()));
    cleanups.push(async () => {
      for (const c of channels) c.close();
      await server.close(200);
    });
    const acks = new Map<string, ControlCommand>();
    let syncAcks = 0;
    const calls = Array.from({ length: N }, (_, i) => {
      const call = channels[i % channels.length]!.makeBidiStreamRequest(
        CONNECT.path, CONNECT.requestSerialize, CONNECT.responseDeserialize, new grpc.Metadata(), {},
      ) as grpc.ClientDuplexStream<DaemonEvent, ControlCommand>;
      call.on("data", (cmd: ControlCommand) => {
        if (cmd.command.case === "syncAck") syncAcks++;
        if (cmd.command.case === "subscribedAck") acks.set(cmd.id, cmd);
      });
      call.on("error", () => undefined);
      call.write(create(DaemonEventSchema, { event: { case: "sync", value: { daemonId: `d${i}`, hostname: `h${i}`, metadata: { n: String(i % 256) } } } }));
      call.write(create(DaemonEventSchema, { event: { case: "subscribed", value: { id: `a${i}`, target: `veth${i}` } } }));
      call.write(create(DaemonEventSchema, { event: { case: "heartbeat", value: { stats: [{ id: `a${i}`, packetsAllowed: 1n }] } } }));
      return call;
    });
    cleanups.push(() => { for (const c of calls) c.cancel(); });
    const deadline = Date.now() + 50_000;
    while ((acks.size < N || syncAcks < N || heartbeats < N) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(syncAcks).toBe(N);
    expect(acks.size).toBe(N);
    expect(heartbeats).toBe(N);
    expect(server.daemons().length).toBe(N);
    const ack = acks.get("a513")!;
    expect(ack.command.case === "subscribedAck" && ack.command.value.allowCidrs[0]!.cidr).toBe("10.1.0.0/16");
    expect(ack.command.case === "subscribedAck" && ack.command.value.dns!.allowDomains[0]!.domain).toBe("a513.example");
    expect(ack.commandId).not.toBe("");
  });
});
