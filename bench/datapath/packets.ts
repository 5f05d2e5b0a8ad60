/**
 * Crafted frames for BPF_PROG_TEST_RUN: Ethernet + IPv4/IPv6 + a TCP SYN to port 443, as a
 * workload behind a host-side veth would send them. Returned as hex for the prog-run helper.
 */

const SRC_MAC = "02aabbccdd01";
const DST_MAC = "02aabbccdd02";

function ipv4Checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function tcpSyn(): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(40000, 0); // source port
  t.writeUInt16BE(443, 2); // destination port
  t.writeUInt32BE(1, 4); // sequence
  t[12] = 5 << 4; // data offset
  t[13] = 0x02; // SYN
  t.writeUInt16BE(64240, 14); // window
  return t;
}

export function tcpSynFrame(family: 4 | 6, src: Uint8Array, dst: Uint8Array): string {
  const tcp = tcpSyn();
  let l3: Buffer;
  let ethType: string;
  if (family === 4) {
    l3 = Buffer.alloc(20);
    l3[0] = 0x45;
    l3.writeUInt16BE(20 + tcp.length, 2);
    l3.writeUInt16BE(0x4000, 6); // DF
    l3[8] = 64;
    l3[9] = 6;
    Buffer.from(src).copy(l3, 12);
    Buffer.from(dst).copy(l3, 16);
    l3.writeUInt16BE(ipv4Checksum(l3), 10);
    ethType = "0800";
  } else {
    l3 = Buffer.alloc(40);
    l3.writeUInt32BE(0x60000000, 0);
    l3.writeUInt16BE(tcp.length, 4);
    l3[6] = 6;
    l3[7] = 64;
    Buffer.from(src).copy(l3, 8);
    Buffer.from(dst).copy(l3, 24);
    ethType = "86dd";
  }
  return DST_MAC + SRC_MAC + ethType + l3.toString("hex") + tcp.toString("hex");
}
