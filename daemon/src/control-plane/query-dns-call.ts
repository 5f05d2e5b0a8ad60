import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { ControlPlane, DnsQueryRequestSchema, type DnsQueryResponse } from "@netfence/proto/control";
import { NetfenceError } from "@netfence/proto/errors";
import { methodDefinition } from "@netfence/proto/grpc";
import type { DnsProxyAnswer } from "../dns/dns-proxy.js";

const QUERY_DNS_METHOD = methodDefinition(ControlPlane.method.queryDns);

/**
 * One unary ControlPlane.QueryDns call (proxy mode). `domain` goes on the wire as the question
 * name as asked, with its trailing dot ("proxy.test."), as the Go original sends it: control
 * planes written for it match on that form.
 */
export function queryDnsCall(
  client: grpc.Client,
  metadata: grpc.Metadata,
  q: { readonly attachmentId: string; readonly domain: string; readonly queryType: string; readonly timeoutMs: number },
): Promise<DnsProxyAnswer> {
  const { attachmentId, domain } = q;
  const request = create(DnsQueryRequestSchema, { id: attachmentId, domain: domain.endsWith(".") ? domain : `${domain}.`, queryType: q.queryType });
  return new Promise<DnsProxyAnswer>((resolve, reject) => {
    client.makeUnaryRequest(
      QUERY_DNS_METHOD.path,
      QUERY_DNS_METHOD.requestSerialize,
      QUERY_DNS_METHOD.responseDeserialize,
      request,
      metadata,
      { deadline: Date.now() + q.timeoutMs },
      (err: grpc.ServiceError | null, response?: DnsQueryResponse) => {
        if (err || response === undefined) {
          const code = err?.code === grpc.status.DEADLINE_EXCEEDED ? "DEADLINE_EXCEEDED" : "UNAVAILABLE";
          reject(new NetfenceError(code, `QueryDns failed: ${err?.details ?? "no response"}`, { details: { attachmentId, domain }, cause: err }));
          return;
        }
        resolve({ allow: response.allow, addToFilter: response.addToFilter, ips: [...response.ips], ttlSeconds: response.ttlSeconds });
      },
    );
  });
}
