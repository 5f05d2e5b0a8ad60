// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TC classifier for interface attachments. Attached (TCX link where the kernel has it, clsact
 * otherwise) to the ingress of the host-side veth/tap — i.e. to the packets the workload sends —
 * or to egress to filter a host NIC's own traffic.
 *   Ethernet devices (ARPHRD_ETHER): the L2 front end (guards.h nf_l2: source MAC, VLAN tags,
 *     ARP, non-IP frames), then nf_decide() for IPv4/IPv6.
 *   L3 devices (tun, wireguard: ARPHRD_NONE, ARPHRD_RAWIP; NF_GUARD_L3_DEVICE): the data starts at
 *     the IP header and skb->protocol says which; anything else there is a non-IP frame.
 * The daemon refuses other link types (loopback, ipip, gre, …) before loading anything.
 */
#include "policy.h"

#define TC_ACT_UNSPEC (-1) /* == TCX_NEXT: pass on to the next filter, if any, else accept */
#define TC_ACT_SHOT 2      /* == TCX_DROP */

/* Parses the frame into p: NF_L2_IP (p is an IP packet), NF_L2_PASS or NF_L2_DROP (*reason). */
static __always_inline int nf_tc_front(struct __sk_buff *skb, const struct nf_state *st, struct nf_pkt *p, __u8 *reason)
{
	if (!(st->guards & NF_GUARD_L3_DEVICE))
		return nf_l2(skb, st, p, reason);
	nf_parse_ip(skb, (__u16)skb->protocol, 0, p);
	if (p->family)
		return NF_L2_IP;
	p->dport = bpf_ntohs((__u16)skb->protocol);
	if ((st->guards & NF_GUARD_ALLOW_NON_IP) || st->gen[st->active_gen & 1].mode == NF_MODE_DISABLED)
		return NF_L2_PASS;
	*reason = NF_REASON_NON_IP;
	return NF_L2_DROP;
}

SEC("tc")
int netfence_tc(struct __sk_buff *skb)
{
	struct nf_state *st = nf_state_get();
	if (!st)
		return TC_ACT_UNSPEC; /* cannot happen: a one-entry array always has its entry */
	struct nf_pkt p = {};
	__u8 reason = NF_REASON_MALFORMED;
	int r = nf_tc_front(skb, st, &p, &reason);
	if (p.malformed || (r == NF_L2_DROP && reason == NF_REASON_MALFORMED)) {
		/* The headers may sit outside the linear area: pull them in once and parse again
		 * (a frame that is really truncated stays malformed). */
		__u32 want = 14 + 8 + 60;
		bpf_skb_pull_data(skb, want < skb->len ? want : skb->len);
		__builtin_memset(&p, 0, sizeof(p));
		reason = NF_REASON_MALFORMED;
		r = nf_tc_front(skb, st, &p, &reason);
	}
	if (r == NF_L2_PASS)
		return nf_pass(NF_RULE_ALWAYS_ALLOWED) ? TC_ACT_UNSPEC : TC_ACT_SHOT; /* ARP, allowed non-IP, mode disabled */
	if (r == NF_L2_DROP) {
		p.family = 0;
		nf_guard_drop(skb, &p, st, reason);
		return TC_ACT_SHOT;
	}
	return nf_decide(skb, &p, st) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
