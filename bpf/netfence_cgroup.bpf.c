// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup_skb/egress program for cgroup attachments: every packet a process of the cgroup (or of
 * a descendant) sends is checked, so established connections are severed when a destination is
 * revoked (the Go original hooked connect() only and could not). skb data starts at the IP
 * header here; skb->protocol says which. Raw sockets are covered too (their packets take the same
 * output path); AF_PACKET sockets are not (they bypass IP: see docs/operator-guide.md).
 */
#include "policy.h"

SEC("cgroup_skb/egress")
int netfence_cgroup(struct __sk_buff *skb)
{
	struct nf_state *st = nf_state_get();
	if (!st)
		return 1;
	struct nf_pkt p = {};
	nf_parse_ip(skb, (__u16)skb->protocol, 0, &p);
	if (!p.family)
		return 1; /* only IPv4/IPv6 reach this hook */
	return nf_decide(skb, &p, st); /* 1 = pass, 0 = drop (the sender sees EPERM) */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
