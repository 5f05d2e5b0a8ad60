import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescMethod, DescService, MessageShape } from "@bufbuild/protobuf";

/**
 * The one bridge between protobuf-es descriptors (generated from proto/) and grpc-js, which
 * wants hand-written (de)serializers. Servers and clients both build their definitions here, so
 * the wire encoding is decided in exactly one place.
 */

/** A method descriptor whose input/output schemas are known statically (as in GenService). */
export type TypedMethod<I extends DescMessage, O extends DescMessage> = DescMethod & { input: I; output: O };

/** grpc-js method definition for one RPC: path "/netfence.v1.Service/Method", binary protobuf-es codecs. */
export function methodDefinition<I extends DescMessage, O extends DescMessage>(
  method: TypedMethod<I, O>,
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  const input = method.input;
  const output = method.output;
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: (value: MessageShape<I>) => Buffer.from(toBinary(input, value)),
    requestDeserialize: (bytes: Buffer) => fromBinary(input, bytes),
    responseSerialize: (value: MessageShape<O>) => Buffer.from(toBinary(output, value)),
    responseDeserialize: (bytes: Buffer) => fromBinary(output, bytes),
    originalName: method.localName,
  };
}

/**
 * grpc-js service definition keyed by the RPC name as written in the .proto ("Connect",
 * "QueryDns"); pass it to `server.addService(def, impl)` with handlers under the same keys.
 */
export function serviceDefinition(desc: DescService): grpc.ServiceDefinition {
  const def: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of desc.methods) {
    def[method.name] = methodDefinition(method) as unknown as grpc.MethodDefinition<object, object>;
  }
  return def as grpc.ServiceDefinition;
}

/**
 * A grpc-js client class for the service (methods named as in the .proto). Untyped by nature;
 * typed callers should prefer `new grpc.Client(...)` with `methodDefinition()` and
 * makeUnaryRequest / makeBidiStreamRequest.
 */
export function makeClientConstructor(desc: DescService): grpc.ServiceClientConstructor {
  return grpc.makeClientConstructor(serviceDefinition(desc), desc.typeName);
}
