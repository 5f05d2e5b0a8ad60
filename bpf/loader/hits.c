// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * hits.c — the per-rule hit counters of an attachment (nf_hits, netfence.h "rule hit counts"):
 * HITS reads them (summed over CPUs, the latest hit time of any CPU as wall-clock ms), HITS_CLEAR
 * zeroes the counters of rule ids the daemon recycles. The loader does not know what a rule is: ids
 * are the daemon's.
 */
#include <string.h>
#include <bpf/bpf.h>

#include "loader.h"

/* Reads the per-CPU values of ids [0, upto) into `vals` (upto * ncpu): batched where the kernel can. */
static int read_ids(int fd, int ncpu, __u32 upto, struct nf_hit *vals)
{
	__u32 keys[1024], out_batch = 0, n = 0;
	bool first = true;
	while (n < upto) {
		__u32 count = upto - n < 1024 ? upto - n : 1024;
		int err = bpf_map_lookup_batch(fd, first ? NULL : &out_batch, &out_batch, keys, vals + (size_t)n * ncpu, &count, NULL);
		first = false;
		if (err && errno != ENOENT) {
			if (n == 0 && (errno == EINVAL || errno == ENOTSUPP || errno == EOPNOTSUPP))
				break; /* no batch ops for this map type on this kernel: element by element below */
			return fail(errno, "HITS: batched read");
		}
		n += count;
		if (err) /* ENOENT: the last batch */
			return 0;
	}
	if (n >= upto)
		return 0;
	for (__u32 k = 0; k < upto; k++)
		if (bpf_map_lookup_elem(fd, &k, vals + (size_t)k * ncpu))
			return fail(errno, "HITS: reading rule %u", k);
	return 0;
}

int op_hits(const void *req, size_t len, void **reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_hits_req))
		return fail(0, "HITS: short request");
	struct att *a;
	int err = adopted_request(req, len, "HITS", &a);
	if (err)
		return err;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return fail(-ncpu, "HITS: possible CPUs");
	__u32 upto = ((const struct nf_hits_req *)req)->upto;
	if (upto == 0 || upto > NF_HITS_OVERFLOW)
		upto = NF_HITS_OVERFLOW;
	/* ids [0, upto), then the overflow bucket at index upto */
	struct nf_hit *vals = calloc((size_t)(upto + 1) * ncpu, sizeof(*vals));
	struct nf_hits_reply *h = calloc(1, sizeof(*h) + (size_t)(upto + 1) * sizeof(struct nf_wire_hit));
	err = vals && h ? read_ids(a->hits_fd, ncpu, upto, vals) : fail(ENOMEM, "HITS");
	__u32 ov = NF_HITS_OVERFLOW;
	if (!err && bpf_map_lookup_elem(a->hits_fd, &ov, vals + (size_t)upto * ncpu))
		err = fail(errno, "HITS: reading the overflow bucket");
	if (!err) {
		/* coarse monotonic (what the program stores) → wall clock */
		__s64 now_real = clock_ns(CLOCK_REALTIME), now_mono = clock_ns(CLOCK_MONOTONIC_COARSE);
		struct nf_wire_hit *out = (struct nf_wire_hit *)(h + 1);
		h->cap = NF_HITS_CAP;
		for (__u32 k = 0; k <= upto; k++) {
			__u64 packets = 0, last = 0;
			for (int cpu = 0; cpu < ncpu; cpu++) {
				const struct nf_hit *v = &vals[(size_t)k * ncpu + cpu];
				packets += v->packets;
				if (v->last_ns > last)
					last = v->last_ns;
			}
			if (!packets)
				continue;
			struct nf_wire_hit *w = &out[h->count++];
			memset(w, 0, sizeof(*w));
			w->rule_id = k == upto ? NF_HITS_OVERFLOW : k;
			w->packets = packets;
			if (last) {
				__s64 ms = (now_real - (now_mono - (__s64)last)) / 1000000;
				w->last_hit_ms = ms > 0 ? (__u64)ms : 1;
			}
		}
		*reply = h;
		*reply_len = sizeof(*h) + (size_t)h->count * sizeof(struct nf_wire_hit);
		h = NULL;
	}
	free(vals);
	free(h);
	return err;
}

int op_hits_clear(const void *req, size_t len)
{
	if (len < sizeof(struct nf_hits_clear_req))
		return fail(0, "HITS_CLEAR: short request");
	const struct nf_hits_clear_req *r = req;
	if ((len - sizeof(*r)) / 4 < r->count)
		return fail(EINVAL, "HITS_CLEAR: %u ids announced, %zu bytes sent", r->count, len - sizeof(*r));
	char id[NF_ID_LEN];
	int err = id_request(req, len, "HITS_CLEAR", id);
	struct att *a;
	if (!err)
		err = find_or_adopt(id, &a);
	if (err)
		return err;
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return fail(-ncpu, "HITS_CLEAR: possible CPUs");
	/* Batched (a recycled replace may free thousands of ids), in chunks; element by element where
	 * the kernel has no batch update for this map type. */
	enum { CHUNK = 256 };
	struct nf_hit *zero = calloc((size_t)CHUNK * ncpu, sizeof(*zero));
	__u32 keys[CHUNK];
	if (!zero)
		return fail(ENOMEM, "HITS_CLEAR");
	const __u32 *ids = (const __u32 *)(r + 1);
	bool batch = true;
	for (__u32 i = 0; i < r->count && !err; i += CHUNK) {
		__u32 n = r->count - i < CHUNK ? r->count - i : CHUNK;
		for (__u32 j = 0; j < n && !err; j++) {
			keys[j] = ids[i + j];
			if (keys[j] >= NF_HITS_CAP)
				err = fail(EINVAL, "HITS_CLEAR %s: rule id %u out of range (cap %u)", a->id, keys[j], NF_HITS_CAP);
		}
		__u32 done = n;
		if (!err && batch && bpf_map_update_batch(a->hits_fd, keys, zero, &done, NULL) == 0)
			continue;
		if (!err && batch && (errno == EINVAL || errno == ENOTSUPP || errno == EOPNOTSUPP))
			batch = false;
		else if (!err && batch)
			err = fail(errno, "HITS_CLEAR %s: batched update", a->id);
		for (__u32 j = 0; j < n && !err; j++)
			if (bpf_map_update_elem(a->hits_fd, &keys[j], zero, BPF_ANY))
				err = fail(errno, "HITS_CLEAR %s: rule %u", a->id, keys[j]);
	}
	free(zero);
	return err;
}
