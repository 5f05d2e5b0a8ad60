// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TC classifier for interface attachments. Attached (TCX link where the kernel has it, clsact
 * otherwise) to the ingress of the host-side veth/tap — i.e. to the packets the workload sends —
 * or to egress to filter a host NIC's own traffic. Parses Ethernet and up to two VLAN tags
 * (802.1Q/802.1ad: tagged frames are evaluated, never waved through), then hands the IP packet
 * to nf_decide(). Non-IP frames (ARP, …) pass.
 */
#include "policy.h"

#define TC_ACT_UNSPEC (-1) /* == TCX_NEXT: pass on to the next filter, if any, else accept */
#define TC_ACT_SHOT 2      /* == TCX_DROP */

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

static __always_inline int nf_tc_parse(struct __sk_buff *skb, struct nf_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return 0;
	__u16 proto = eth->h_proto;
	__u32 off = sizeof(*eth);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr_ *vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return 0;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		p->family = 4; /* more than two tags: evaluate as malformed rather than pass */
		p->malformed = 1;
		return 0;
	}
	nf_parse_ip(skb, proto, off, p);
	return off;
}

SEC("tc")
int netfence_tc(struct __sk_buff *skb)
{
	struct nf_pkt p = {};
	int off = nf_tc_parse(skb, &p);
	if (p.malformed && off > 0 && skb->len > (__u32)off) {
		/* The IP header may sit outside the linear area: pull it in once and re-parse. */
		__u32 want = off + (p.family == 6 ? 40 : 60);
		bpf_skb_pull_data(skb, want < skb->len ? want : skb->len);
		__builtin_memset(&p, 0, sizeof(p));
		nf_tc_parse(skb, &p);
	}
	return nf_decide(skb, &p) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
