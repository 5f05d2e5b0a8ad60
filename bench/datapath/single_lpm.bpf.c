// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Baseline (b) of the per-packet benchmark: the Go original's design — every entry of a family,
 * /32 (/128) hosts and prefixes alike, in ONE LPM trie. Allowlist semantics: a live matching
 * entry with the allow flag passes, anything else is dropped. Same key/value layout as
 * netfence (struct nf_lpm_v*_key, struct bench_entry, including the in-kernel expiry check) and a
 * per-CPU allowed/blocked counter, so the only design difference measured is the lookup
 * structure. Keys and values: bench/datapath/bench.h (netfence's layout-1 shapes).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "bench.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BENCH_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bench_lpm_v4_key);
	__type(value, struct bench_entry);
} lpm_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, BENCH_MAX_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct bench_lpm_v6_key);
	__type(value, struct bench_entry);
} lpm_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline int verdict(struct bench_entry *e)
{
	__u32 idx = 1;
	int pass = e && (e->expires_ns == 0 || e->expires_ns > bpf_ktime_get_ns()) && (e->flags & BENCH_ENTRY_ALLOW);
	if (pass)
		idx = 0;
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
	return pass ? -1 /* TC_ACT_UNSPEC */ : 2 /* TC_ACT_SHOT */;
}

SEC("tc")
int single_lpm(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return 2;
		struct bench_lpm_v4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, &ip->daddr, 4);
		return verdict(bpf_map_lookup_elem(&lpm_v4, &k));
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return 2;
		struct bench_lpm_v6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, &ip6->daddr, 16);
		return verdict(bpf_map_lookup_elem(&lpm_v6, &k));
	}
	return -1; /* not IP */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
