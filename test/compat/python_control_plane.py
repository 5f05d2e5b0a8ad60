#!/usr/bin/env python3
"""A minimal netfence.v1 control plane in Python grpcio, to prove wire compatibility.

It knows nothing of the TypeScript code: it compiles proto/netfence/v1/*.proto with
grpc_tools at start-up into a temporary directory, then serves ControlPlane:

  * SyncRequest  -> SyncAck
  * Subscribed   -> SubscribedAck carrying --ack-policy (proto3 JSON of SubscribedAck)
  * QueryDns     -> --dns-answer (proto3 JSON of DnsQueryResponse)

Like a control plane written for the Go original, it never sets command_id by itself.

Protocol with the test (JSON lines):
  stdout: {"listening": PORT} once, then {"event": <DaemonEvent as proto3 JSON>} per event,
          {"pushed": N} after each push.
  stdin:  {"push": <ControlCommand as proto3 JSON>} sends the command on every open stream.
          {"stage": KEY, "command": <ControlCommand as proto3 JSON>} parses and keeps it ({"staged": KEY});
          {"send": KEY} sends a staged command on every open stream ({"sent": KEY, "sentWallMs": ...}):
          benchmarks time the send without the JSON parsing of a large command.
Every line carries "wallMs" (wall clock, ms since the epoch, when it was written).
Optional --push-after-subscribe JSON sends one command right after each SubscribedAck.
--no-ack answers no Subscribed by itself (the test pushes the SubscribedAck when it wants).
"""
import argparse
import json
import os
import queue
import sys
import tempfile
import threading
import time
from concurrent import futures


def compile_protos(proto_dir):
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="netfence-pystubs-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        "-I", proto_dir,
        "-I", well_known,
        "--python_out=" + out,
        "--grpc_python_out=" + out,
        os.path.join(proto_dir, "netfence/v1/types.proto"),
        os.path.join(proto_dir, "netfence/v1/control.proto"),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--ack-policy", default='{"mode": "POLICY_MODE_ALLOWLIST"}')
    parser.add_argument("--dns-answer", default='{"allow": false}')
    parser.add_argument("--push-after-subscribe", default=None)
    parser.add_argument("--no-ack", action="store_true")
    args = parser.parse_args()

    compile_protos(os.path.abspath(args.proto_dir))
    import grpc
    from google.protobuf import json_format
    from netfence.v1 import control_pb2, control_pb2_grpc

    ack_policy = json_format.Parse(args.ack_policy, control_pb2.SubscribedAck())
    dns_answer = json_format.Parse(args.dns_answer, control_pb2.DnsQueryResponse())
    follow_up = args.push_after_subscribe

    out_lock = threading.Lock()

    def emit(obj):
        with out_lock:
            obj["wallMs"] = time.time() * 1000
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    streams = []
    streams_lock = threading.Lock()

    class ControlPlane(control_pb2_grpc.ControlPlaneServicer):
        def Connect(self, request_iterator, context):
            outbox = queue.Queue()
            with streams_lock:
                streams.append(outbox)

            def read():
                try:
                    for event in request_iterator:
                        emit({"event": json_format.MessageToDict(event)})
                        kind = event.WhichOneof("event")
                        if kind == "sync":
                            outbox.put(control_pb2.ControlCommand(sync_ack=control_pb2.SyncAck()))
                        elif kind == "subscribed" and not args.no_ack:
                            ack = control_pb2.ControlCommand(id=event.subscribed.id)
                            ack.subscribed_ack.CopyFrom(ack_policy)
                            outbox.put(ack)
                            if follow_up is not None:
                                cmd = json_format.Parse(follow_up, control_pb2.ControlCommand())
                                if not cmd.id:
                                    cmd.id = event.subscribed.id
                                outbox.put(cmd)
                except grpc.RpcError:
                    pass
                finally:
                    outbox.put(None)

            threading.Thread(target=read, daemon=True).start()
            try:
                while True:
                    cmd = outbox.get()
                    if cmd is None:
                        return
                    yield cmd
            finally:
                with streams_lock:
                    if outbox in streams:
                        streams.remove(outbox)

        def QueryDns(self, request, context):
            emit({"dnsQuery": json_format.MessageToDict(request)})
            return dns_answer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    control_pb2_grpc.add_ControlPlaneServicer_to_server(ControlPlane(), server)
    port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    server.start()
    emit({"listening": port})

    staged = {}
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        if "push" in request:
            cmd = json_format.ParseDict(request["push"], control_pb2.ControlCommand())
            with streams_lock:
                targets = list(streams)
            for outbox in targets:
                outbox.put(cmd)
            emit({"pushed": len(targets)})
        elif "stage" in request:
            staged[request["stage"]] = json_format.ParseDict(request["command"], control_pb2.ControlCommand())
            emit({"staged": request["stage"]})
        elif "send" in request:
            cmd = staged[request["send"]]
            with streams_lock:
                targets = list(streams)
            sent_ms = time.time() * 1000  # before the put: serialising happens on the stream's thread
            for outbox in targets:
                outbox.put(cmd)
            emit({"sent": request["send"], "streams": len(targets), "sentWallMs": sent_ms})
        elif request.get("quit"):
            server.stop(0)
            return
    # stdin closed (e.g. started without a pipe): keep serving until killed.
    server.wait_for_termination()


if __name__ == "__main__":
    main()
