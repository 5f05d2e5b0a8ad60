import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDnsServerFactory } from "../../../daemon/src/dns/dns-server-factory.js";
import type { AttachmentDnsServerHandle as DnsServerHandle } from "../../../daemon/src/dns/dns-server-factory.js";
import { FakeUpstream, RecordingAllower, dnsPolicy, silentLogger, udpQuery } from "./helpers/fake-dns.js";

let upstream: FakeUpstream;
const handles: DnsServerHandle[] = [];

beforeEach(async () => {
  upstream = await FakeUpstream.start();
});

afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.stop()));
  await upstream.close();
});

describe("createDnsServerFactory", () => {
  it("starts independent servers per attachment sharing one upstream socket", async () => {
    const allower = new RecordingAllower();
    allower.delayMs = 1;
    const factory = createDnsServerFactory({ defaultUpstreams: [upstream.address], learned: allower, logger: silentLogger });
    const a = await factory.start("att-a", { host: "127.0.0.1", port: 0 }, () => dnsPolicy("allowlist", ["*.a.test"]));
    const b = await factory.start("att-b", { host: "127.0.0.1", port: 0 }, () => dnsPolicy("denylist", [], ["*.a.test"]));
    handles.push(a, b);
    expect(a.address).not.toBe(b.address);
    expect((await udpQuery(a.address, "x.a.test")).rcode).toBe("NOERROR");
    expect((await udpQuery(b.address, "x.a.test")).rcode).toBe("REFUSED");
    expect((await udpQuery(b.address, "x.b.test")).rcode).toBe("NOERROR");
    expect(a.stats()).toEqual({ allowed: 1n, blocked: 0n });
    expect(b.stats()).toEqual({ allowed: 1n, blocked: 1n });
    expect(b.detailedStats()).toMatchObject({ allowed: 1n, blocked: 1n, outcomes: { allowed: 1, refused: 1, servfail: 0, formerr: 0 } });
    expect(allower.calls.map((c) => [c.attachmentId, c.name])).toEqual([["att-a", "x.a.test"], ["att-b", "x.b.test"]]);
    expect(new Set(upstream.received.map((r) => r.port)).size).toBe(1);
  });

  it("rejects an invalid default upstream at creation", () => {
    expect(() => createDnsServerFactory({ defaultUpstreams: ["resolver.example"], learned: new RecordingAllower(), logger: silentLogger }))
      .toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});
