/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * guards.h — the narrow always-allowed set and the anti-spoofing checks (SPEC §6), decided before
 * any policy lookup: the attachment's own DNS server, other tenants' DNS servers, IPv6 neighbour
 * discovery and the RA guard, DHCP/DHCPv6/MLD where enabled, and the L2 front end (source MAC,
 * ARP, non-IP frames). The reason for each entry is in docs/operator-guide.md ("What is always
 * allowed, and why"). Included by policy.h. What the common path (an IPv4/IPv6 packet to an
 * ordinary destination) runs is inlined and is a few compares; the checks behind them are global
 * functions (see policy.h), so their code neither crowds the common path nor multiplies the
 * verifier's work.
 */
#ifndef NETFENCE_GUARDS_H
#define NETFENCE_GUARDS_H

#define NF_SPECIAL_NONE 0 /* nothing special: on to the protected sets and the policy */
#define NF_SPECIAL_PASS 1 /* always allowed */
#define NF_SPECIAL_DROP 2 /* dropped by a guard, in every mode (*reason set) */
/* What the global checks below return for a drop: NF_DROP_BY(reason) (a global function returns a
 * scalar; it cannot write through a pointer to the caller's scalar). */
#define NF_DROP_BY(reason) (0x100 | (reason))

/* The attachment's DNS address: its own port passes; another port of the daemon's DNS range is
 * another tenant's DNS server and is dropped (a tenant must not query, or fill, another's server). */
__noinline int nf_to_dns(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st)
{
	if (!p || !st)
		return NF_SPECIAL_NONE;
	nf_l4(skb, p);
	if (p->l4_proto != IPPROTO_UDP && p->l4_proto != IPPROTO_TCP)
		return NF_SPECIAL_NONE;
	if (st->dns_port && p->dport == st->dns_port)
		return NF_SPECIAL_PASS;
	if (st->dns_port_min && p->dport >= st->dns_port_min && p->dport <= st->dns_port_max)
		return NF_DROP_BY(NF_REASON_OTHER_TENANT_DNS);
	return NF_SPECIAL_NONE;
}

/* Is `a` (16 bytes) one of the workload's IPv6 addresses? */
static __always_inline int nf_workload_ip6(const struct nf_state *st, const __u8 *a)
{
	__u64 hi = *(const __u64 *)a, lo = *(const __u64 *)(a + 8);
#pragma unroll
	for (int i = 0; i < NF_MAX_WORKLOAD_ADDRS; i++) {
		if (i >= st->n_ip6)
			break;
		if (*(const __u64 *)st->ip6[i] == hi && *(const __u64 *)(st->ip6[i] + 8) == lo)
			return 1;
	}
	return 0;
}

/*
 * ICMPv6 from the workload. Neighbour discovery — router solicitation (133), neighbour solicitation
 * (135) and advertisement (136) — passes with hop limit 255 (RFC 4861: a router never forwards it)
 * to a link-local or link-local multicast destination, and an advertisement must announce one of
 * the workload's addresses (when named) or a link-local one. Router advertisements (134) and
 * redirects (137) are dropped in every mode (RA guard, RFC 6105) unless the workload is a router.
 * MLD (130-132, 143) passes with hop limit 1 to ff02::/16 where enabled. Anything else: policy.
 */
__noinline int nf_icmp6(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st)
{
	if (!p || !st)
		return NF_SPECIAL_NONE;
	nf_l4(skb, p);
	if (p->l4_proto != IPPROTO_ICMPV6_)
		return NF_SPECIAL_NONE;
	__u16 type = p->dport;
	const __u8 *a = p->daddr.v6;
	int router_msg = type == 134 || type == 137;
	if (router_msg && !(st->guards & NF_GUARD_ROUTER))
		return NF_DROP_BY(NF_REASON_ROUTER_MESSAGE);
	if (type == 133 || type == 135 || type == 136 || router_msg) {
		if (p->hop_limit != 255 || !(nf_v6_link_local(a) || nf_v6_ll_multicast(a)))
			return NF_SPECIAL_NONE;
		if (type == 136 && st->n_ip6) {
			__u8 target[16];
			if (bpf_skb_load_bytes(skb, p->l4_data + 8, target, 16) < 0)
				return NF_DROP_BY(NF_REASON_MALFORMED);
			if (!nf_v6_link_local(target) && !nf_workload_ip6(st, target))
				return NF_DROP_BY(NF_REASON_SPOOFED);
		}
		return NF_SPECIAL_PASS;
	}
	if ((st->guards & NF_GUARD_MLD) && (type == 130 || type == 131 || type == 132 || type == 143) && p->hop_limit == 1 &&
	    nf_v6_ll_multicast(a))
		return NF_SPECIAL_PASS;
	return NF_SPECIAL_NONE;
}

/* NF_SPECIAL_* from a global check's result (setting *reason for a drop). */
static __always_inline int nf_special_result(int r, __u8 *reason)
{
	if (r & 0x100) {
		*reason = r & 0xff;
		return NF_SPECIAL_DROP;
	}
	return r;
}

/* Steps d and e of nf_decide(): what is decided before the protected sets and the policy. */
static __always_inline int nf_special(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st, __u8 *reason)
{
	if (p->family == 4) {
		__u32 d = p->daddr.v4;
		__u32 dns = *(const __u32 *)st->dns_ip4;
		if (dns && d == dns)
			return nf_special_result(nf_to_dns(skb, p, st), reason);
		if ((st->guards & NF_GUARD_DHCP) && d == 0xffffffff) {
			nf_l4(skb, p);
			if (p->l4_proto == IPPROTO_UDP && p->sport == 68 && p->dport == 67)
				return NF_SPECIAL_PASS;
		}
		return NF_SPECIAL_NONE;
	}
	const __u8 *a = p->daddr.v6;
	__u64 hi = *(const __u64 *)a, lo = *(const __u64 *)(a + 8);
	if (hi == 0 && nf_v6_v4_mapped(a)) { /* malformed (step c), tested here where the address is loaded */
		*reason = NF_REASON_MALFORMED;
		return NF_SPECIAL_DROP;
	}
	__u64 dns_hi = *(const __u64 *)st->dns_ip6, dns_lo = *(const __u64 *)(st->dns_ip6 + 8);
	if ((dns_hi | dns_lo) && hi == dns_hi && lo == dns_lo)
		return nf_special_result(nf_to_dns(skb, p, st), reason);
	/* ICMPv6, possibly behind extension headers (MLD carries a hop-by-hop header; an RA hidden
	 * behind one must still meet the RA guard). */
	if (p->proto == IPPROTO_ICMPV6_ || nf_is_ext_hdr(p->proto)) {
		int r = nf_special_result(nf_icmp6(skb, p, st), reason);
		if (r != NF_SPECIAL_NONE)
			return r;
		if (nf_is_ext_hdr(p->l4_proto)) {
			/* A chain longer than nf_l4 walks could hide an RA (RFC 7113): nothing legitimate
			 * sends one, so it is malformed rather than decided by the policy. */
			*reason = NF_REASON_MALFORMED;
			return NF_SPECIAL_DROP;
		}
	}
	/* ff02::1:2, all DHCP relay agents and servers */
	if ((st->guards & NF_GUARD_DHCPV6) && hi == bpf_cpu_to_be64(0xff02000000000000ull) && lo == bpf_cpu_to_be64(0x10002)) {
		nf_l4(skb, p);
		if (p->l4_proto == IPPROTO_UDP && p->sport == 546 && p->dport == 547)
			return NF_SPECIAL_PASS;
	}
	return NF_SPECIAL_NONE;
}

/* ---------------------------------------------------------------- L2 front end (TC on Ethernet devices) */

struct nf_arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline int nf_mac_eq(const __u8 *a, const __u8 *b)
{
	return *(const __u32 *)a == *(const __u32 *)b && *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

#define NF_L2_IP 0   /* an IP packet: on to nf_decide() */
#define NF_L2_PASS 1 /* valid ARP, or a non-IP frame the attachment lets through */
#define NF_L2_DROP 2 /* *reason set */

/*
 * ARP must be Ethernet/IPv4 ARP; when the workload's addresses are named, the sender protocol
 * address must be one of them (or 0.0.0.0, an ARP probe), and when its MAC is named the sender
 * hardware address must be it: a workload cannot repoint a neighbour's gateway or a neighbour.
 */
__noinline int nf_arp(struct __sk_buff *skb, __u32 off, const struct nf_state *st)
{
	struct nf_arp_eth arp;
	if (!st || bpf_skb_load_bytes(skb, off, &arp, sizeof(arp)) < 0)
		return NF_DROP_BY(NF_REASON_MALFORMED);
	if (arp.htype != bpf_htons(1) || arp.ptype != bpf_htons(ETH_P_IP) || arp.hlen != 6 || arp.plen != 4)
		return NF_DROP_BY(NF_REASON_MALFORMED);
	if ((st->guards & NF_GUARD_MAC) && !nf_mac_eq(arp.sha, st->mac))
		return NF_DROP_BY(NF_REASON_SPOOFED);
	__u32 spa;
	__builtin_memcpy(&spa, arp.spa, 4);
	if (st->n_ip4 && spa != 0) {
		int ok = 0;
#pragma unroll
		for (int i = 0; i < NF_MAX_WORKLOAD_ADDRS; i++) {
			if (i >= st->n_ip4)
				break;
			if (*(const __u32 *)st->ip4[i] == spa)
				ok = 1;
		}
		if (!ok)
			return NF_DROP_BY(NF_REASON_SPOOFED);
	}
	return NF_L2_PASS;
}

/*
 * Ethernet front end: the source MAC (when named), up to two VLAN tags (802.1Q/802.1ad: tagged
 * frames are evaluated, never waved through), then IPv4/IPv6 (parsed into p), ARP (checked), or
 * anything else (dropped unless NF_GUARD_ALLOW_NON_IP or the mode is disabled). For events, p
 * describes the frame (family 0, destination MAC, ethertype) when it is not IP.
 */
static __always_inline int nf_l2(struct __sk_buff *skb, const struct nf_state *st, struct nf_pkt *p, __u8 *reason)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end) {
		*reason = NF_REASON_MALFORMED;
		return NF_L2_DROP;
	}
	__u16 proto = eth->h_proto;
	if ((st->guards & NF_GUARD_MAC) && !nf_mac_eq(eth->h_source, st->mac)) {
		__builtin_memcpy(p->daddr.mac, eth->h_dest, 6);
		p->dport = bpf_ntohs(proto);
		*reason = NF_REASON_SPOOFED;
		return NF_L2_DROP;
	}
	__u32 off = sizeof(*eth);
#pragma unroll
	for (int i = 0; i < 3; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (i == 2) { /* more than two tags: evaluate as malformed rather than pass */
			*reason = NF_REASON_MALFORMED;
			return NF_L2_DROP;
		}
		struct vlan_hdr_ *vh = data + off;
		if ((void *)(vh + 1) > data_end) {
			*reason = NF_REASON_MALFORMED;
			return NF_L2_DROP;
		}
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_IP) || proto == bpf_htons(ETH_P_IPV6)) {
		nf_parse_ip(skb, proto, off, p);
		return NF_L2_IP;
	}
	/* Not IP: for events, the frame's destination MAC and ethertype (the common path skips this). */
	__builtin_memcpy(p->daddr.mac, eth->h_dest, 6);
	p->dport = bpf_ntohs(proto);
	if (proto == bpf_htons(ETH_P_ARP)) {
		int r = nf_arp(skb, off, st);
		if (r & 0x100) {
			*reason = r & 0xff;
			return NF_L2_DROP;
		}
		return NF_L2_PASS;
	}
	if (st->guards & NF_GUARD_ALLOW_NON_IP)
		return NF_L2_PASS;
	if (st->gen[st->active_gen & 1].mode == NF_MODE_DISABLED)
		return NF_L2_PASS;
	*reason = NF_REASON_NON_IP;
	return NF_L2_DROP;
}

#endif /* NETFENCE_GUARDS_H */
