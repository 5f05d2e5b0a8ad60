/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h — maps and the verdict shared by the TC and cgroup programs.
 * Layout of every value and key: netfence.h (the contract). Policy logic lives here and only
 * here: the loader holds none, the daemon only computes which entries exist.
 */
#ifndef NETFENCE_POLICY_H
#define NETFENCE_POLICY_H

/*
 * The programs read only stable ABI: the __sk_buff context (rewritten by the verifier) and
 * on-the-wire Ethernet/VLAN/IPv4/IPv6 headers. None of that needs CO-RE relocation, and an object
 * with relocations makes libbpf parse the kernel's whole BTF on every load (≈ 20 ms per attach,
 * measured). So vmlinux.h types are used without preserve_access_index; a program that reads a
 * kernel-internal structure must use BPF_CORE_READ() (which relocates regardless of this define).
 */
#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netfence.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMPV6_ 58
#define NF_NO_RULE 255
/* How many expired LPM matches a lookup steps over before giving up (a TTL'd prefix that
 * expired but is not yet garbage-collected must not hide a shorter live prefix). */
#define NF_LPM_EXPIRED_HOPS 4

/* ---------------------------------------------------------------- per-attachment maps */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct nf_state);
} nf_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NF_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} nf_counters SEC(".maps");

/* The four policy tables; keys carry the generation (see netfence.h). The loader sets the
 * exact hashes' max_entries at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_EXACT_CAP_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_exact_v4_key);
	__type(value, struct nf_entry);
} nf_v4_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NF_EXACT_CAP_DEFAULT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_exact_v6_key);
	__type(value, struct nf_entry);
} nf_v6_exact SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NF_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_lpm_v4_key);
	__type(value, struct nf_entry);
} nf_v4_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NF_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_lpm_v6_key);
	__type(value, struct nf_entry);
} nf_v6_lpm SEC(".maps");

/* The last event this CPU reported for this attachment: a flood of drops to the same destination
 * is folded here, before the (much dearer) L4 reads and throttle lookup. Not pinned: only the
 * program uses it. */
struct nf_recent {
	__u64 ts_ns;
	__u64 folded; /* packets folded since; added to the next event's `suppressed` */
	__u8 daddr[16];
	__u8 family, proto, reason, _pad[5];
};
#define NF_RECENT_NS (1000ull * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_recent);
} nf_recent SEC(".maps");

/* ---------------------------------------------------------------- host-wide shared maps */
/* The loader replaces these with the pinned host-wide instances (bpf_map__reuse_fd). */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} nf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct nf_throttle_key);
	__type(value, struct nf_throttle_val);
} nf_throttle SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_prot_v4_key);
	__type(value, struct nf_protected);
} nf_protected_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_prot_v6_key);
	__type(value, struct nf_protected);
} nf_protected_v6 SEC(".maps");

/* ---------------------------------------------------------------- packet summary */

struct nf_pkt {
	__u8 family; /* 4, 6; 0 = not IP (always passes) */
	__u8 proto;  /* first L4 protocol (IPv6: the header after the fixed one) */
	__u8 malformed;
	__u8 is_fragment; /* non-first fragment: no L4 header */
	__u32 l4_off;     /* offset of the L4 header (or of the first IPv6 extension header) */
	__u32 l3_off;
	union {
		__u32 v4;
		__u8 v6[16];
	} daddr;
};

/* What decided, for events. */
struct nf_match {
	__u8 flags;
	__u8 prefixlen;
	__u8 addr[16];
};

static __always_inline void nf_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&nf_counters, &idx);
	if (c)
		*c += 1; /* per-CPU value: no atomics needed */
}

static __always_inline int nf_entry_live(const struct nf_entry *e)
{
	return e->expires_ns == 0 || e->expires_ns > bpf_ktime_get_ns();
}

/* ---------------------------------------------------------------- lookups */

static __always_inline int nf_lookup_v4(__u32 gen, __u32 daddr, struct nf_match *m)
{
	struct nf_exact_v4_key k = { .gen = gen };
	__builtin_memcpy(k.addr, &daddr, 4);
	struct nf_entry *e = bpf_map_lookup_elem(&nf_v4_exact, &k);
	if (e && nf_entry_live(e)) {
		m->flags = e->flags;
		m->prefixlen = 32;
		__builtin_memcpy(m->addr, &daddr, 4);
		return 1;
	}
	struct nf_lpm_v4_key lk = { .prefixlen = 8 + 32, .gen = (__u8)gen };
	__builtin_memcpy(lk.addr, &daddr, 4);
#pragma unroll
	for (int i = 0; i < NF_LPM_EXPIRED_HOPS; i++) {
		e = bpf_map_lookup_elem(&nf_v4_lpm, &lk);
		if (!e)
			return 0;
		if (nf_entry_live(e)) {
			m->flags = e->flags;
			m->prefixlen = e->prefixlen;
			__builtin_memcpy(m->addr, &daddr, 4);
			return 1;
		}
		if (e->prefixlen == 0)
			return 0;
		lk.prefixlen = 8 + e->prefixlen - 1; /* look for a shorter live prefix */
	}
	return 0;
}

static __always_inline int nf_lookup_v6(__u32 gen, const __u8 *daddr, struct nf_match *m)
{
	struct nf_exact_v6_key k = { .gen = gen };
	__builtin_memcpy(k.addr, daddr, 16);
	struct nf_entry *e = bpf_map_lookup_elem(&nf_v6_exact, &k);
	if (e && nf_entry_live(e)) {
		m->flags = e->flags;
		m->prefixlen = 128;
		__builtin_memcpy(m->addr, daddr, 16);
		return 1;
	}
	struct nf_lpm_v6_key lk = { .prefixlen = 8 + 128, .gen = (__u8)gen };
	__builtin_memcpy(lk.addr, daddr, 16);
#pragma unroll
	for (int i = 0; i < NF_LPM_EXPIRED_HOPS; i++) {
		e = bpf_map_lookup_elem(&nf_v6_lpm, &lk);
		if (!e)
			return 0;
		if (nf_entry_live(e)) {
			m->flags = e->flags;
			m->prefixlen = e->prefixlen;
			__builtin_memcpy(m->addr, daddr, 16);
			return 1;
		}
		if (e->prefixlen == 0)
			return 0;
		lk.prefixlen = 8 + e->prefixlen - 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- L4 (slow path only) */

/* Reads the L4 protocol and ports with bpf_skb_load_bytes, walking IPv6 extension headers.
 * Only called on rare paths (DNS server match, protected match, events), so the common
 * per-packet path never pays for it. */
static __always_inline void nf_read_l4(struct __sk_buff *skb, const struct nf_pkt *p, __u8 *proto, __u16 *sport,
				       __u16 *dport)
{
	__u32 off = p->l4_off;
	__u8 nh = p->proto;
	*sport = 0;
	*dport = 0;
	if (p->family == 6) {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u8 ext[2];
			if (nh != 0 && nh != 43 && nh != 60 && nh != 44 && nh != 51)
				break;
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				break;
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
	*proto = nh;
	if (p->is_fragment)
		return;
	if (nh == IPPROTO_TCP || nh == IPPROTO_UDP) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, off, ports, 4) == 0) {
			*sport = bpf_ntohs(ports[0]);
			*dport = bpf_ntohs(ports[1]);
		}
	} else if (nh == IPPROTO_ICMP || nh == IPPROTO_ICMPV6_) {
		__u8 type;
		if (bpf_skb_load_bytes(skb, off, &type, 1) == 0)
			*dport = type; /* ICMP type reported in the port field */
	}
}

/* ---------------------------------------------------------------- always allowed */

static __always_inline int nf_always_allowed(struct __sk_buff *skb, const struct nf_pkt *p, const struct nf_state *st)
{
	int to_dns = 0;
	if (p->family == 4) {
		__u8 first = p->daddr.v4 & 0xff; /* network order: first byte is lowest */
		if (first == 127)
			return 1;
		to_dns = st->dns_port && p->daddr.v4 == *(const __u32 *)st->dns_ip4;
	} else {
		const __u8 *a = p->daddr.v6;
		__u64 hi = *(const __u64 *)a, lo = *(const __u64 *)(a + 8);
		if (hi == 0 && lo == bpf_cpu_to_be64(1))
			return 1; /* ::1 */
		if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
			return 1; /* fe80::/10 link-local */
		if (a[0] == 0xff && a[1] == 0x02)
			return 1; /* ff02::/16 link-local multicast (ND, MLD) */
		if (p->proto == IPPROTO_ICMPV6_) {
			__u8 proto;
			__u16 sport, type;
			nf_read_l4(skb, p, &proto, &sport, &type);
			if (type >= 133 && type <= 137)
				return 1; /* router/neighbour solicitation/advertisement, redirect: link-scope */
		}
		to_dns = st->dns_port && hi == *(const __u64 *)st->dns_ip6 && lo == *(const __u64 *)(st->dns_ip6 + 8);
	}
	if (to_dns) {
		__u8 proto;
		__u16 sport, dport;
		nf_read_l4(skb, p, &proto, &sport, &dport);
		if ((proto == IPPROTO_UDP || proto == IPPROTO_TCP) && dport == st->dns_port)
			return 1;
	}
	return 0;
}

static __always_inline int nf_protected(struct __sk_buff *skb, const struct nf_pkt *p)
{
	struct nf_protected *v;
	if (p->family == 4) {
		struct nf_prot_v4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, &p->daddr.v4, 4);
		v = bpf_map_lookup_elem(&nf_protected_v4, &k);
	} else {
		struct nf_prot_v6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, p->daddr.v6, 16);
		v = bpf_map_lookup_elem(&nf_protected_v6, &k);
	}
	if (!v)
		return 0;
	if (v->port == 0 && v->proto == 0)
		return 1;
	__u8 proto;
	__u16 sport, dport;
	nf_read_l4(skb, p, &proto, &sport, &dport);
	return (v->proto == 0 || v->proto == proto) && (v->port == 0 || v->port == dport);
}

/* ---------------------------------------------------------------- events */

static __always_inline void nf_report(struct __sk_buff *skb, const struct nf_pkt *p, const struct nf_state *st,
				      __u8 verdict, __u8 reason, const struct nf_match *m)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 folded = 0;
	struct nf_recent *r = bpf_map_lookup_elem(&nf_recent, &zero);
	if (r) {
		const __u64 *a = (const __u64 *)r->daddr, *b = (const __u64 *)p->daddr.v6;
		if (now - r->ts_ns < NF_RECENT_NS && r->reason == reason && r->proto == p->proto && r->family == p->family &&
		    a[0] == b[0] && a[1] == b[1]) {
			r->folded++;
			return;
		}
		folded = r->folded;
		r->folded = 0;
		r->ts_ns = now;
		r->reason = reason;
		r->proto = p->proto;
		r->family = p->family;
		__builtin_memcpy(r->daddr, p->daddr.v6, 16);
	}
	struct nf_throttle_key tk = {};
	__u8 proto = p->proto;
	__u16 sport = 0, dport = 0;
	if (p->family)
		nf_read_l4(skb, p, &proto, &sport, &dport);
	tk.slot = st->slot;
	tk.dport = dport;
	tk.proto = proto;
	tk.reason = reason;
	if (p->family == 4) {
		bpf_skb_load_bytes(skb, p->l3_off + 12, tk.saddr, 4);
		__builtin_memcpy(tk.daddr, &p->daddr.v4, 4);
	} else if (p->family == 6) {
		bpf_skb_load_bytes(skb, p->l3_off + 8, tk.saddr, 16);
		__builtin_memcpy(tk.daddr, p->daddr.v6, 16);
	}
	__u64 suppressed = folded;
	struct nf_throttle_val *tv = bpf_map_lookup_elem(&nf_throttle, &tk);
	if (tv) {
		if (now - tv->last_ns < NF_EVENT_THROTTLE_NS) {
			__sync_fetch_and_add(&tv->suppressed, 1 + folded);
			return;
		}
		suppressed += tv->suppressed;
		tv->suppressed = 0;
		tv->last_ns = now;
	} else {
		struct nf_throttle_val nv = { .last_ns = now, .suppressed = 0 };
		bpf_map_update_elem(&nf_throttle, &tk, &nv, BPF_ANY);
	}
	struct nf_event *ev = bpf_ringbuf_reserve(&nf_events, sizeof(*ev), 0);
	if (!ev) {
		nf_count(NF_CNT_EVENTS_LOST);
		return;
	}
	ev->ts_ns = now;
	ev->suppressed = suppressed;
	ev->slot = st->slot;
	ev->sport = sport;
	ev->dport = dport;
	ev->family = p->family;
	ev->proto = proto;
	ev->verdict = verdict;
	ev->reason = reason;
	ev->direction = 1;
	ev->rule_prefixlen = m ? m->prefixlen : NF_NO_RULE;
	ev->_pad[0] = ev->_pad[1] = 0;
	__builtin_memcpy(ev->saddr, tk.saddr, 16);
	__builtin_memcpy(ev->daddr, tk.daddr, 16);
	if (m)
		__builtin_memcpy(ev->rule_addr, m->addr, 16);
	else
		__builtin_memset(ev->rule_addr, 0, 16);
	bpf_ringbuf_submit(ev, 0);
}

/* ---------------------------------------------------------------- the verdict */

/* Returns 1 = pass, 0 = drop. `p` has been parsed by the program's own front end. */
static __always_inline int nf_decide(struct __sk_buff *skb, const struct nf_pkt *p)
{
	__u32 zero = 0;
	struct nf_state *st = bpf_map_lookup_elem(&nf_state, &zero);
	if (!st)
		return 1; /* not initialised yet: the loader writes state before attaching */
	__u32 gen = st->active_gen & 1;
	struct nf_gen_settings s = st->gen[gen];
	struct nf_match m = { .prefixlen = NF_NO_RULE };
	__u8 reason;
	int matched = 0;

	if (s.mode == NF_MODE_DISABLED || p->family == 0)
		goto pass;
	if (p->malformed) {
		reason = NF_REASON_MALFORMED;
		goto block;
	}
	if (nf_always_allowed(skb, p, st) || (st->protected_n && nf_protected(skb, p)))
		goto pass;
	if (s.mode == NF_MODE_BLOCK_ALL) {
		reason = NF_REASON_MODE_BLOCK_ALL;
		goto block;
	}
	if (p->family == 4)
		matched = nf_lookup_v4(gen, p->daddr.v4, &m);
	else
		matched = nf_lookup_v6(gen, p->daddr.v6, &m);
	if (matched) {
		if (m.flags & NF_ENTRY_DENY) { /* deny wins at equal prefix length */
			reason = NF_REASON_DENY_CIDR;
			goto block;
		}
		if (m.flags & NF_ENTRY_ALLOW)
			goto pass;
	}
	if (s.mode == NF_MODE_DENYLIST)
		goto pass;
	reason = NF_REASON_NOT_IN_ALLOWLIST;
	matched = 0;
block:
	if (s.flags & NF_SETTING_AUDIT) {
		nf_count(NF_CNT_AUDITED);
		nf_report(skb, p, st, NF_VERDICT_AUDIT, reason, matched ? &m : 0);
		return 1;
	}
	nf_count(NF_CNT_BLOCKED);
	nf_report(skb, p, st, NF_VERDICT_BLOCKED, reason, matched ? &m : 0);
	return 0;
pass:
	nf_count(NF_CNT_ALLOWED);
	return 1;
}

/* ---------------------------------------------------------------- L3 front end */

/* Parses the IP header at `off` (direct packet access; fixed headers only). */
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
		p->l4_off = off + sizeof(*ip6);
	}
}

#endif /* NETFENCE_POLICY_H */
