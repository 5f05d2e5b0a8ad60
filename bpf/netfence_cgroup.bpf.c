// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup_skb/egress program for cgroup attachments: every packet a process of the cgroup (or of
 * a descendant) sends is checked, so established connections are severed when a destination is
 * revoked (the Go original hooked connect() only and could not). skb data starts at the IP
 * header here; skb->protocol says which. Raw sockets are covered too (their packets take the same
 * output path); AF_PACKET sockets are not (they bypass IP: see docs/operator-guide.md).
 */
#define NF_CGROUP_PROG /* the socket-aware owner, keep and from-port checks (include/segment.h) */
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

/*
 * cgroup/sock_create, attached next to the skb program with its own link (pinned "link_sock"): stamps
 * each new socket of the cgroup with its creator's uid and gid (nf_sk), the owner that user and
 * group rules match (the uid is also read per packet with bpf_get_socket_uid; the gid only exists
 * here). Never refuses a socket.
 */
SEC("cgroup/sock_create")
int netfence_sock(struct bpf_sock *sk)
{
	__u64 ug = bpf_get_current_uid_gid();
	struct nf_sk init = { .uid = (__u32)ug, .gid = (__u32)(ug >> 32) };
	/* bpf_get_netns_cookie(NULL): the initial (host) network namespace's cookie. */
	if (bpf_get_netns_cookie(sk) != bpf_get_netns_cookie(0))
		init.flags = NF_SK_OTHER_NS;
	struct nf_sk *s = bpf_sk_storage_get(&nf_sk, sk, &init, BPF_SK_STORAGE_GET_F_CREATE);
	if (s) { /* (a new socket has no storage yet: init was used; set anyway for clarity) */
		s->uid = init.uid;
		s->gid = init.gid;
		s->flags = init.flags;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
