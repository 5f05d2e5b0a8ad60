/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * packet.h — what the programs read from a packet: the IP header summary every packet gets (fixed
 * headers, direct packet access) and the L4 header, read only on rare paths with bpf_skb_load_bytes.
 * Included by policy.h after the maps; stable ABI only (wire headers and __sk_buff).
 */
#ifndef NETFENCE_PACKET_H
#define NETFENCE_PACKET_H

struct nf_pkt {
	__u8 family;      /* 4, 6; 0 = an L2 frame that is not IP (events: MACs and the ethertype) */
	__u8 proto;       /* first L4 protocol (IPv6: the header after the fixed one) */
	__u8 malformed;
	__u8 is_fragment; /* non-first fragment: no L4 header */
	__u8 hop_limit;   /* IPv6 hop limit, IPv4 TTL */
	__u8 l4_done;     /* the L4 fields below have been read (nf_l4) */
	__u8 l4_proto;    /* the L4 protocol after IPv6 extension headers; 255 = unknown */
	__u8 owner_done;  /* uid/gid below have been read (nf_owner) */
	__u16 sport;      /* host byte order; ICMP/ICMPv6: 0 */
	__u16 dport;      /* host byte order; ICMP/ICMPv6: the type; family 0: the ethertype */
	__u32 l4_off;     /* offset of the L4 header (or of the first IPv6 extension header) */
	__u32 l4_data;    /* after nf_l4: offset of the L4 header proper */
	__u32 l3_off;
	__u32 uid;        /* after nf_owner: the socket owner, NF_OWNER_UNKNOWN when unknown (TC: always) */
	__u32 gid;
	union {
		__u32 v4;
		__u8 v6[16];
		__u8 mac[6]; /* family 0: destination MAC */
	} daddr;
};

/* Parses the IP header at `off` (direct packet access; fixed headers only). `eth_proto` is network order. */
static __always_inline void nf_parse_ip(struct __sk_buff *skb, __u16 eth_proto, __u32 off, struct nf_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	p->l3_off = off;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		p->family = 4;
		if ((void *)(ip + 1) > data_end || ip->ihl < 5) {
			p->malformed = 1;
			return;
		}
		p->daddr.v4 = ip->daddr;
		p->proto = ip->protocol;
		p->hop_limit = ip->ttl;
		p->l4_off = off + ip->ihl * 4;
		p->is_fragment = (bpf_ntohs(ip->frag_off) & 0x1fff) != 0;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		p->family = 6;
		if ((void *)(ip6 + 1) > data_end) {
			p->malformed = 1;
			return;
		}
		__builtin_memcpy(p->daddr.v6, &ip6->daddr, 16);
		p->proto = ip6->nexthdr;
		p->hop_limit = ip6->hop_limit;
		p->l4_off = off + sizeof(*ip6);
	}
}

static __always_inline int nf_is_ext_hdr(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51;
}

/*
 * Reads the L4 protocol and ports (ICMP: the type) once, walking up to four IPv6 extension headers.
 * Only called on rare paths (special destinations, ICMPv6, protected sets, events), so the common
 * per-packet path never pays for it. A global function (see NF_GLOBAL in policy.h). A chain longer than four headers leaves l4_proto at the
 * extension header's number (guards.h drops such a packet as malformed).
 */
__noinline int nf_l4_read(struct __sk_buff *skb, struct nf_pkt *p)
{
	if (!p)
		return 0;
	p->l4_done = 1;
	__u32 off = p->l4_off;
	__u8 nh = p->proto;
	if (p->family == 6) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u8 ext[2];
			if (!nf_is_ext_hdr(nh))
				break;
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0) {
				nh = 255;
				break;
			}
			if (nh == 44) { /* fragment header: fixed 8 bytes */
				__u16 frag;
				if (bpf_skb_load_bytes(skb, off + 2, &frag, 2) < 0 || (bpf_ntohs(frag) & 0xfff8))
					nh = 255; /* non-first fragment: no ports */
				else
					nh = ext[0];
				off += 8;
			} else if (nh == 51) { /* AH: length in 4-byte units, minus 2 */
				nh = ext[0];
				off += ((__u32)ext[1] + 2) * 4;
			} else {
				nh = ext[0];
				off += ((__u32)ext[1] + 1) * 8;
			}
		}
	}
	p->l4_proto = nh;
	p->l4_data = off;
	if (p->is_fragment)
		return 0;
	if (nh == IPPROTO_TCP || nh == IPPROTO_UDP || nh == IPPROTO_SCTP) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, off, ports, 4) == 0) {
			p->sport = bpf_ntohs(ports[0]);
			p->dport = bpf_ntohs(ports[1]);
		}
	} else if (nh == IPPROTO_ICMP || nh == IPPROTO_ICMPV6_) {
		__u8 type;
		if (bpf_skb_load_bytes(skb, off, &type, 1) == 0)
			p->dport = type; /* ICMP type reported in the port field */
	}
	return 0;
}

static __always_inline void nf_l4(struct __sk_buff *skb, struct nf_pkt *p)
{
	if (!p->l4_done)
		nf_l4_read(skb, p);
}

/* ---------------------------------------------------------------- the socket owner (issue 15) */

#ifdef NF_CGROUP_PROG
/* The socket that sends the packet, as the cgroup hook sees it: the full socket, or for a SYN-ACK
 * (sent by a request socket) the listener it belongs to. */
static __always_inline struct bpf_sock *nf_owner_sock(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 0;
	struct bpf_sock *fs = bpf_sk_fullsock(sk);
	return fs ? fs : bpf_get_listener_sock(sk);
}

/* Reads the socket owner into p->uid/gid once (NF_OWNER_UNKNOWN when unknown): the uid from the
 * socket, the gid from its nf_sk stamp (sockets created before the attach have none). */
__noinline int nf_owner_read(struct __sk_buff *skb, struct nf_pkt *p)
{
	if (!p)
		return 0;
	p->owner_done = 1;
	p->uid = NF_OWNER_UNKNOWN;
	p->gid = NF_OWNER_UNKNOWN;
	struct bpf_sock *sk = nf_owner_sock(skb);
	if (!sk)
		return 0;
	p->uid = bpf_get_socket_uid(skb); /* (of the full socket: the listener for a SYN-ACK) */
	struct nf_sk *s = bpf_sk_storage_get(&nf_sk, sk, 0, 0);
	if (s)
		p->gid = s->gid;
	return 0;
}
#endif

/* The socket owner, read once. TC programs: always unknown (the packet comes from another network
 * namespace, or is crafted). */
static __always_inline void nf_owner(struct __sk_buff *skb, struct nf_pkt *p)
{
#ifdef NF_CGROUP_PROG
	if (!p->owner_done)
		nf_owner_read(skb, p);
#else
	p->owner_done = 1;
	p->uid = NF_OWNER_UNKNOWN;
	p->gid = NF_OWNER_UNKNOWN;
#endif
}

/* ---------------------------------------------------------------- address classes */

static __always_inline int nf_v6_link_local(const __u8 *a)
{
	return a[0] == 0xfe && (a[1] & 0xc0) == 0x80; /* fe80::/10 */
}

static __always_inline int nf_v6_ll_multicast(const __u8 *a)
{
	return a[0] == 0xff && a[1] == 0x02; /* ff02::/16 */
}

/* ::ffff:0:0/96: nothing legitimate sends it on the wire, and it would dodge the IPv4 rules. */
static __always_inline int nf_v6_v4_mapped(const __u8 *a)
{
	return *(const __u64 *)a == 0 && *(const __u32 *)(a + 8) == bpf_htonl(0x0000ffff);
}

/*
 * The prefix length of the closed local range that covers the destination, 0 if none: loopback
 * (127/8, ::1) and link-local (169.254/16, fe80::/10) are closed unless the attachment's guards
 * open them. An allow entry opens them only if it lies inside the range (prefix at least as long).
 */
static __always_inline __u8 nf_local_closed(const struct nf_pkt *p, __u32 guards)
{
	if (p->family == 4) {
		__u32 d = bpf_ntohl(p->daddr.v4);
		if (!(guards & NF_GUARD_OPEN_LOOPBACK) && (d >> 24) == 127)
			return 8;
		if (!(guards & NF_GUARD_OPEN_LINK_LOCAL) && (d >> 16) == 0xa9fe)
			return 16;
		return 0;
	}
	const __u8 *a = p->daddr.v6;
	if (!(guards & NF_GUARD_OPEN_LOOPBACK) && *(const __u64 *)a == 0 && *(const __u64 *)(a + 8) == bpf_cpu_to_be64(1))
		return 128;
	if (!(guards & NF_GUARD_OPEN_LINK_LOCAL) && nf_v6_link_local(a))
		return 10;
	return 0;
}

#endif /* NETFENCE_PACKET_H */
