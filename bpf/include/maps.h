/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h — the BPF maps of the Netfence programs, included once by policy.h (which includes
 * vmlinux.h, the libbpf helpers and netfence.h first). Per attachment: state, counters, rule hits,
 * the policy tables and the per-CPU fold caches. Host-wide (the loader swaps in its pinned
 * instances with bpf_map__reuse_fd): events, throttle, flows, the protected sets. The shapes and
 * what each is for are in netfence.h; docs/architecture.md lists the pins.
 */
#ifndef NETFENCE_MAPS_H
#define NETFENCE_MAPS_H

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

/* Per-rule hit counters (netfence.h "rule hit counts"). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NF_HITS_CAP);
	__type(key, __u32);
	__type(value, struct nf_hit);
} nf_hits SEC(".maps");

/* The policy tables (see netfence.h): the small exact hashes and the LPM tries carry the
 * generation in their keys; the loader sets the small hashes' max_entries at load time. */
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

/* The large exact tables: one slot per generation, each an inner hash keyed by the address,
 * created at the size its generation needs and installed by the loader (empty slots at load). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NF_GENERATIONS);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, NF_LARGE_CAP_MIN);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__uint(key_size, sizeof(struct nf_large_v4_key)); /* sizes: BTF would only see */
		__uint(value_size, sizeof(struct nf_entry));     /* a forward declaration here */
	});
} nf_v4_large SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, NF_GENERATIONS);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, NF_LARGE_CAP_MIN);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		__uint(key_size, sizeof(struct nf_large_v6_key)); /* sizes: BTF would only see */
		__uint(value_size, sizeof(struct nf_entry));     /* a forward declaration here */
	});
} nf_v6_large SEC(".maps");

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

/* The scope table (netfence.h "scoped rules"): generation in the key like the LPM tries. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NF_SCOPE_CAP);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_scope_key);
	__type(value, struct nf_entry);
} nf_scope SEC(".maps");

/* Per-socket owner and keep stamp (netfence.h struct nf_sk); used by the cgroup programs only, declared
 * in both objects so that they keep one shape of maps. BPF_F_CLONE: a connection accepted by a listener
 * gets a copy of the listener's stamp (sock_create does not run for accepted sockets), so a server's
 * connections have its owner's gid — not "unknown", to which every group deny applies. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct nf_sk);
} nf_sk SEC(".maps");

/* The last event this CPU reported for this attachment: a flood of drops to the same destination
 * is folded here, before the (much dearer) L4 reads and throttle lookup. Not pinned: only the
 * program uses it. */
struct nf_recent {
	__u64 ts_ns;
	__u64 folded; /* packets folded since; added to that flow's throttle record (report.h) */
	__u8 daddr[16];
	__u8 family, proto, reason, _pad;
	__u32 uid;                 /* the socket owner (layout 7): one owner's drops never fold into another's */
	struct nf_throttle_key tk; /* the throttle key of the packet that started the fold */
};
#define NF_RECENT_NS (1000ull * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_recent);
} nf_recent SEC(".maps");

/* The last allowed flow this CPU looked up for this attachment (report.h nf_flow): a busy flow is
 * answered here, before the shared LRU's hash of a 44-byte key. Not pinned: only the program uses it. */
struct nf_flow_recent {
	struct nf_flows_key key;
	__u64 ts_ns; /* coarse clock of the last LRU check of `key` */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_flow_recent);
} nf_flow_recent SEC(".maps");

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

/* Allowed flows already reported (netfence.h "allowed-flow events"). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NF_FLOWS_CAP);
	__type(key, struct nf_flows_key);
	__type(value, __u64);
} nf_flows SEC(".maps");

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

/* The host-wide protected-DENY set (config `protected_deny`): dropped in every mode. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_prot_v4_key);
	__type(value, struct nf_protected);
} nf_pdeny_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nf_prot_v6_key);
	__type(value, struct nf_protected);
} nf_pdeny_v6 SEC(".maps");

#endif /* NETFENCE_MAPS_H */
