/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * segment.h — host micro-segmentation (issue 15): the socket owner (uid/gid), the scoped lookup of an
 * entry's scope set (protocol, destination port, owner), keep (connections established before a
 * policy change), and the management "from" port of the protected set. Included by policy.h after
 * nf_entry_live. Layouts: netfence.h. Each check is a global function (see policy.h): only entries
 * that carry a scope, keep-mode attachments and from-port protected entries reach them.
 *
 * NF_CGROUP_PROG (defined by netfence_cgroup.bpf.c) compiles the socket-aware versions: a cgroup_skb
 * program runs in the context of the sending socket. The TC program sees packets of another network
 * namespace's sockets (or crafted frames): the owner is unknown, keep uses the host-wide flow table and
 * from-port entries never match.
 */
#ifndef NETFENCE_SEGMENT_H
#define NETFENCE_SEGMENT_H

#define SOCK_STREAM_ 1

#ifdef NF_CGROUP_PROG
/* The sending socket if it is a full TCP stream socket (not raw, not a request or timewait sock). */
static __always_inline struct bpf_sock *nf_tcp_sock(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 0;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->type != SOCK_STREAM_ || sk->protocol != IPPROTO_TCP)
		return 0;
	return sk;
}
#endif

/*
 * The answer of an entry's scope set for the packet: for each kind the entry has (any owner, uids,
 * gids), one LPM lookup of (gen, kind, scope, principal, protocol, destination port); the live answers'
 * ALLOW/DENY are OR-ed (the rule id: the deny's if any). gen_scope = gen << 16 | scope; m receives the
 * flags and the rule id. Returns the flags (0: no scoped rule of this prefix matches the packet).
 */
__noinline int nf_scope_match(struct __sk_buff *skb, struct nf_pkt *p, __u32 gen_scope, __u32 kinds, struct nf_match *m)
{
	if (!p || !m)
		return 0;
	nf_l4(skb, p);
	if (kinds & (NF_ENTRY_SCOPE_UID | NF_ENTRY_SCOPE_GID))
		nf_owner(skb, p);
	__u8 proto = p->l4_proto;
	__u16 port = 0; /* packets without ports (ICMP, fragments) look up port 0 */
	if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) && !p->is_fragment)
		port = bpf_htons(p->dport);
	struct nf_scope_key k = { .prefixlen = 64 + 8 + 16, .gen = (__u8)(gen_scope >> 16), .scope = (__u16)gen_scope, .proto = proto };
	__builtin_memcpy(k.port, &port, 2);
	__u8 flags = 0;
	__u32 rule = 0;
#pragma unroll
	for (int kind = NF_SCOPE_KIND_ANY; kind <= NF_SCOPE_KIND_GID; kind++) {
		if (!(kinds & (NF_ENTRY_SCOPE_ANY << kind)))
			continue;
		__u32 who = kind == NF_SCOPE_KIND_ANY ? 0 : kind == NF_SCOPE_KIND_UID ? p->uid : p->gid;
		/* An unknown uid (TC: no owner scopes are written there) looks nothing up. An unknown gid (a
		 * socket created before the attach) looks up the principal NF_OWNER_UNKNOWN, where the
		 * daemon writes the deny part of every group rule: a group deny closes such a socket too,
		 * a group allow never opens it (fail closed both ways). */
		if (kind == NF_SCOPE_KIND_UID && who == NF_OWNER_UNKNOWN)
			continue;
		k.kind = (__u8)kind;
		k.principal = who;
		struct nf_entry *e = bpf_map_lookup_elem(&nf_scope, &k);
		if (!e || !nf_entry_live(e))
			continue;
		__u8 f = e->flags & (NF_ENTRY_ALLOW | NF_ENTRY_DENY);
		if ((f & NF_ENTRY_DENY) ? !(flags & NF_ENTRY_DENY) : (f && !flags))
			rule = e->rule_id;
		flags |= f;
	}
	m->flags = flags;
	m->rule_id = rule;
	return flags;
}

/* ---------------------------------------------------------------- keep */

/* A TCP packet that may belong to an established connection: not a fragment, not a bare SYN
 * (a SYN opens a new connection, which is never kept). */
static __always_inline int nf_keep_candidate(struct __sk_buff *skb, struct nf_pkt *p)
{
	nf_l4(skb, p);
	if (p->l4_proto != IPPROTO_TCP || p->is_fragment)
		return 0;
	__u8 tcp_flags;
	if (bpf_skb_load_bytes(skb, p->l4_data + 13, &tcp_flags, 1) < 0)
		return 0;
	return (tcp_flags & 0x12) != 0x02; /* SYN without ACK */
}

/* Whether the packet belongs to a connection seen allowed (the stamp below); a kept packet refreshes it. */
__noinline int nf_kept(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st)
{
	if (!p || !st || !nf_keep_candidate(skb, p))
		return 0;
#ifdef NF_CGROUP_PROG
	struct bpf_sock *sk = nf_tcp_sock(skb);
	if (!sk)
		return 0;
	struct nf_sk *s = bpf_sk_storage_get(&nf_sk, sk, 0, 0);
	if (!s || !s->kept || s->kept_slot != st->slot || s->kept_family != p->family || s->kept_dport != p->dport)
		return 0;
	if (p->family == 4)
		return *(const __u32 *)s->kept_daddr == p->daddr.v4;
	return *(const __u64 *)s->kept_daddr == *(const __u64 *)p->daddr.v6 &&
	       *(const __u64 *)(s->kept_daddr + 8) == *(const __u64 *)(p->daddr.v6 + 8);
#else
	struct nf_flows_key k __attribute__((aligned(8))) = {};
	nf_flows_key_of(skb, p, st, &k);
	__u64 *seen = bpf_map_lookup_elem(&nf_flows, &k);
	if (!seen)
		return 0;
	__u64 now = bpf_ktime_get_coarse_ns(), last = *seen;
	if (now - last >= NF_KEEP_IDLE_NS)
		return 0;
	if (now - last >= NF_FLOW_REFRESH_NS)
		*seen = now;
	return 1;
#endif
}

/* Stamps an allowed TCP packet's connection as kept (keep mode only): cgroup: the socket's nf_sk,
 * written only when it names another destination; TC: the flow in nf_flows, refreshed at most once
 * per NF_FLOW_REFRESH_NS (the allowed-flow events, when on, already wrote it: see nf_pass_flow). */
__noinline int nf_keep_stamp(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st)
{
	if (!p || !st)
		return 0;
	nf_l4(skb, p);
	if (p->l4_proto != IPPROTO_TCP || p->is_fragment)
		return 0;
#ifdef NF_CGROUP_PROG
	struct bpf_sock *sk = nf_tcp_sock(skb);
	if (!sk)
		return 0;
	/* A socket created before the attach gets its storage here: its gid stays unknown. */
	struct nf_sk init = { .uid = bpf_get_socket_uid(skb), .gid = NF_OWNER_UNKNOWN };
	struct nf_sk *s = bpf_sk_storage_get(&nf_sk, sk, &init, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	__u8 d[16] = {};
	if (p->family == 4)
		__builtin_memcpy(d, &p->daddr.v4, 4);
	else
		__builtin_memcpy(d, p->daddr.v6, 16);
	if (s->kept && s->kept_slot == st->slot && s->kept_family == p->family && s->kept_dport == p->dport &&
	    *(const __u64 *)s->kept_daddr == *(const __u64 *)d && *(const __u64 *)(s->kept_daddr + 8) == *(const __u64 *)(d + 8))
		return 0;
	s->kept_slot = st->slot;
	s->kept_family = p->family;
	s->kept_dport = p->dport;
	__builtin_memcpy(s->kept_daddr, d, 16);
	s->kept = 1;
#else
	if (st->guards & NF_GUARD_ALLOWED_FLOWS)
		return 0; /* nf_flow has just written or refreshed this flow's entry */
	struct nf_flows_key k __attribute__((aligned(8))) = {};
	nf_flows_key_of(skb, p, st, &k);
	__u64 now = bpf_ktime_get_coarse_ns();
	__u32 zero = 0;
	struct nf_flow_recent *r = bpf_map_lookup_elem(&nf_flow_recent, &zero);
	if (r) {
		const __u64 *a = (const __u64 *)&r->key, *b = (const __u64 *)&k;
		if (now - r->ts_ns < NF_FLOW_REFRESH_NS && a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] &&
		    a[4] == b[4] && ((const __u32 *)a)[10] == ((const __u32 *)b)[10])
			return 0; /* this CPU stamped this flow less than a second ago */
		r->key = k;
		r->ts_ns = now;
	}
	__u64 *seen = bpf_map_lookup_elem(&nf_flows, &k);
	if (seen) {
		if (now - *seen >= NF_FLOW_REFRESH_NS)
			*seen = now;
	} else {
		bpf_map_update_elem(&nf_flows, &k, &now, BPF_ANY);
	}
#endif
	return 0;
}

/* ---------------------------------------------------------------- management "from" port */

/* A protected entry with NF_PROT_FROM_PORT: a TCP packet from a stream socket bound to `port` in the
 * host's network namespace (the replies of the host's sshd: its connections' sockets, and for the
 * SYN-ACK its listener). cgroup programs only: a TC workload can craft any source port. A bare SYN is
 * never a reply: a workload
 * that binds the port itself (root in its own network namespace) and connects out from it would
 * otherwise reach the management network on any port. */
static __always_inline int nf_from_port(struct __sk_buff *skb, struct nf_pkt *p, __u16 port)
{
#ifdef NF_CGROUP_PROG
	nf_l4(skb, p);
	if (p->l4_proto != IPPROTO_TCP || p->sport != port || p->is_fragment)
		return 0;
	__u8 tcp_flags;
	if (bpf_skb_load_bytes(skb, p->l4_data + 13, &tcp_flags, 1) < 0 || (tcp_flags & 0x12) == 0x02)
		return 0; /* SYN without ACK: an active open */
	struct bpf_sock *sk = nf_owner_sock(skb);
	if (!sk || sk->type != SOCK_STREAM_ || sk->protocol != IPPROTO_TCP || sk->src_port != port)
		return 0;
	/* Only the host's network namespace: see NF_SK_OTHER_NS (for a SYN-ACK, the listener's stamp). */
	struct nf_sk *s = bpf_sk_storage_get(&nf_sk, sk, 0, 0);
	return !s || !(s->flags & NF_SK_OTHER_NS);
#else
	return 0;
#endif
}

#endif /* NETFENCE_SEGMENT_H */
