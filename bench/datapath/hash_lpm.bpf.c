// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Diagnostic baselines of the per-packet benchmark (not netfence code): netfence's lookup
 * DESIGN — /32 (/128) entries in an exact-match hash, prefixes in an LPM trie behind it — with
 * nothing else (same front end and counter as single_lpm.bpf.c). Built twice:
 *   hash_lpm.bpf.o      static maps: the verifier inlines the hash lookup and calls the LPM
 *                       lookup directly
 *   hash_lpm_mim.bpf.o  (-DMAP_IN_MAP) the maps reached through an ARRAY_OF_MAPS slot, as
 *                       netfence's double-buffered generations are: every lookup goes through
 *                       the generic bpf_map_lookup_elem helper and an indirect call
 *   hash_lpm_mim_prot.bpf.o  (-DMAP_IN_MAP -DPROTECTED_PROBE) plus, before the policy lookup, a
 *                       lookup in an EMPTY LPM trie — what netfence's nf_protected() does for every
 *                       packet when no protected CIDRs are configured
 * Comparing them with netfence_tc splits its per-packet cost into the lookup design, the
 * map-in-map indirection, the protected-set lookup, and the rest of its verdict path.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "bench.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#define TABLE(name, maptype, keytype)                                \
	struct name##_t {                                            \
		__uint(type, maptype);                               \
		__uint(max_entries, BENCH_MAX_ENTRIES);                 \
		__uint(map_flags, BPF_F_NO_PREALLOC);                \
		__type(key, keytype);                                \
		__type(value, struct bench_entry);                      \
	} name SEC(".maps")

TABLE(exact_v4, BPF_MAP_TYPE_HASH, struct bench_exact_v4_key);
TABLE(exact_v6, BPF_MAP_TYPE_HASH, struct bench_exact_v6_key);
TABLE(lpm_v4, BPF_MAP_TYPE_LPM_TRIE, struct bench_lpm_v4_key);
TABLE(lpm_v6, BPF_MAP_TYPE_LPM_TRIE, struct bench_lpm_v6_key);

#ifdef MAP_IN_MAP
#define OUTER(name, inner)                                                   \
	struct {                                                             \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                    \
		__uint(max_entries, BENCH_GENERATIONS);                         \
		__type(key, __u32);                                          \
		__array(values, struct inner##_t);                           \
	} outer_##inner SEC(".maps") = { .values = { &inner } }
OUTER(exact_v4, exact_v4);
OUTER(exact_v6, exact_v6);
OUTER(lpm_v4, lpm_v4);
OUTER(lpm_v6, lpm_v6);
#define TABLE_OF(name) ({ __u32 gen = 0; bpf_map_lookup_elem(&outer_##name, &gen); })
#else
#define TABLE_OF(name) ((void *)&name)
#endif

#ifdef PROTECTED_PROBE
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bench_lpm_v4_key);
	__type(value, __u32); /* netfence: struct nf_protected (port, proto), 4 bytes */
} protected_v4 SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bench_lpm_v6_key);
	__type(value, __u32); /* netfence: struct nf_protected (port, proto), 4 bytes */
} protected_v6 SEC(".maps");
/* Returns nonzero if the (empty) protected trie matches; never does in this benchmark. */
#define PROTECTED(map, key) (bpf_map_lookup_elem(&map, &key) != 0)
#else
#define PROTECTED(map, key) 0
#endif

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline int live(const struct bench_entry *e)
{
	return e->expires_ns == 0 || e->expires_ns > bpf_ktime_get_ns();
}

static __always_inline int verdict(struct bench_entry *e)
{
	__u32 idx = 1;
	int pass = e && (e->flags & BENCH_ENTRY_ALLOW);
	if (pass)
		idx = 0;
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
	return pass ? -1 /* TC_ACT_UNSPEC */ : 2 /* TC_ACT_SHOT */;
}

SEC("tc")
int hash_lpm(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bench_entry *e;
	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return 2;
		struct bench_lpm_v4_key lk = { .prefixlen = 32 };
		__builtin_memcpy(lk.addr, &ip->daddr, 4);
		if (PROTECTED(protected_v4, lk))
			return -1;
		void *exact = TABLE_OF(exact_v4), *lpm = TABLE_OF(lpm_v4);
		if (!exact || !lpm)
			return 2;
		struct bench_exact_v4_key k;
		__builtin_memcpy(k.addr, &ip->daddr, 4);
		e = bpf_map_lookup_elem(exact, &k);
		if (e && live(e))
			return verdict(e);
		e = bpf_map_lookup_elem(lpm, &lk);
		return verdict(e && live(e) ? e : 0);
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return 2;
		struct bench_lpm_v6_key lk = { .prefixlen = 128 };
		__builtin_memcpy(lk.addr, &ip6->daddr, 16);
		if (PROTECTED(protected_v6, lk))
			return -1;
		void *exact = TABLE_OF(exact_v6), *lpm = TABLE_OF(lpm_v6);
		if (!exact || !lpm)
			return 2;
		struct bench_exact_v6_key k;
		__builtin_memcpy(k.addr, &ip6->daddr, 16);
		e = bpf_map_lookup_elem(exact, &k);
		if (e && live(e))
			return verdict(e);
		e = bpf_map_lookup_elem(lpm, &lk);
		return verdict(e && live(e) ? e : 0);
	}
	return -1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
