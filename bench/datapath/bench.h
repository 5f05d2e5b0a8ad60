/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * bench.h — keys, values and the entries-file format of the benchmark's OWN programs and helper
 * (noop, single_lpm, hash_lpm*, prog-run). Deliberately independent of bpf/include/netfence.h,
 * whose layout the data path may change: the baselines stay the same whatever netfence does.
 * Values mirror netfence's layout-1 entry (16 bytes: deadline, rule id, flags, prefix length),
 * so the baselines do the same work per match (including the expiry check).
 */
#ifndef NETFENCE_BENCH_H
#define NETFENCE_BENCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define BENCH_MAX_ENTRIES 262144 /* per table, as netfence's tables (>= 10^5 allow + deny) */
#define BENCH_GENERATIONS 2
#define BENCH_ENTRY_ALLOW 1

struct bench_entry {
	__u64 expires_ns; /* 0 = never */
	__u32 rule_id;
	__u8 flags;
	__u8 prefixlen;
	__u8 _pad[2];
};

struct bench_exact_v4_key {
	__u8 addr[4];
};
struct bench_exact_v6_key {
	__u8 addr[16];
};
struct bench_lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};
struct bench_lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Entries file (written by bench/datapath/entries-file.ts): a __u32 count, then count records. */
struct bench_file_entry {
	__u8 family; /* 4 or 6 */
	__u8 prefixlen;
	__u8 flags;
	__u8 _pad;
	__u32 rule_id;
	__u8 addr[16];
};

#endif /* NETFENCE_BENCH_H */
