// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * replace-cost.c — prog-run's diagnostics of the atomic replace (split from prog-run.c):
 *
 *   prog-run mim-cost <reps>
 *       Diagnostic for the atomic replace: times, <reps> times, the two kernel operations a
 *       netfence REPLACE does per table outside of filling entries — creating an inner map shaped
 *       like netfence's exact hash (BENCH_MAX_ENTRIES, BPF_F_NO_PREALLOC) and installing it into an
 *       ARRAY_OF_MAPS slot from user space. Prints {"create_ms":[..],"install_ms":[..]}.
 *
 *   prog-run replace-cost <entries-file> <reps>
 *       Diagnostic for the atomic replace: two ways to publish a new policy generation made of
 *       <entries-file> into netfence-shaped double buffers (4 ARRAY_OF_MAPS with 2 slots: IPv4/IPv6
 *       exact hashes and LPM tries of BENCH_MAX_ENTRIES, BPF_F_NO_PREALLOC), timed <reps> times:
 *         fresh    — what the loader's REPLACE does today: create 4 inner maps, fill them, install
 *                    each into the inactive slot, flip the generation word
 *         in_place — fill the empty maps already installed in the inactive slot, flip; fresh empty
 *                    maps are installed into the slot that just went inactive off the clock (as the
 *                    loader's release_stale_generation does 200 ms after a flip)
 *       Prints {"fresh_ms":[..],"in_place_ms":[..],"in_place_hash_fill_ms":[..],"in_place_lpm_fill_ms":[..]}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "prog-run.h"

/* Prints `"name":[v0,v1,...]` (ms, three decimals), preceded by `sep` ("{" or ","). */
static void print_ms(const char *sep, const char *name, const double *v, unsigned n)
{
	printf("%s\"%s\":[", sep, name);
	for (unsigned r = 0; r < n; r++)
		printf("%s%.3f", r ? "," : "", v[r]);
	printf("]");
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int cmd_mim_cost(int argc, char **argv)
{
	unsigned reps = argc > 0 ? (unsigned)strtoul(argv[0], NULL, 10) : 5;
	if (!reps || reps > MAX_ROUNDS)
		return die("bad reps", EINVAL);
	LIBBPF_OPTS(bpf_map_create_opts, io, .map_flags = BPF_F_NO_PREALLOC);
	int tmpl = bpf_map_create(BPF_MAP_TYPE_HASH, "nfb_tmpl", sizeof(struct bench_exact_v4_key), sizeof(struct bench_entry),
				  BENCH_MAX_ENTRIES, &io);
	if (tmpl < 0)
		return die("creating the template map", errno);
	LIBBPF_OPTS(bpf_map_create_opts, oo, .inner_map_fd = tmpl);
	int outer = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "nfb_outer", 4, 4, BENCH_GENERATIONS, &oo);
	if (outer < 0)
		return die("creating the outer map", errno);
	double create[MAX_ROUNDS], install[MAX_ROUNDS];
	for (unsigned r = 0; r < reps; r++) {
		double t0 = now_ms();
		int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "nfb_inner", sizeof(struct bench_exact_v4_key), sizeof(struct bench_entry),
					BENCH_MAX_ENTRIES, &io);
		double t1 = now_ms();
		if (fd < 0)
			return die("creating an inner map", errno);
		__u32 slot = r % BENCH_GENERATIONS;
		if (bpf_map_update_elem(outer, &slot, &fd, BPF_ANY))
			return die("installing an inner map", errno);
		double t2 = now_ms();
		close(fd);
		create[r] = t1 - t0;
		install[r] = t2 - t1;
	}
	print_ms("{", "create_ms", create, reps);
	print_ms(",", "install_ms", install, reps);
	printf("}\n");
	close(outer);
	close(tmpl);
	return 0;
}

enum { RT_X4, RT_X6, RT_L4, RT_L6, RT_N };
static const __u32 rt_type[RT_N] = { BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_LPM_TRIE };
static const __u32 rt_key[RT_N] = { 4, 16, 8, 20 };

static int rt_create(int t)
{
	LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = BPF_F_NO_PREALLOC);
	return bpf_map_create(rt_type[t], "nfb_rt", rt_key[t], sizeof(struct bench_entry), BENCH_MAX_ENTRIES, &o);
}

struct rt_batch {
	unsigned char *keys;
	struct bench_entry *vals;
	__u32 n;
};

static double rt_hash_ms, rt_lpm_ms; /* time of the last rt_fill spent in hashes / tries */

/* Fills the 4 maps: exact hashes with one bpf_map_update_batch, tries element by element (no batch op). */
static int rt_fill(const int fds[RT_N], struct rt_batch b[RT_N])
{
	rt_hash_ms = rt_lpm_ms = 0;
	for (int t = 0; t < RT_N; t++) {
		if (!b[t].n)
			continue;
		__u32 n = b[t].n;
		double t0 = now_ms();
		if (rt_type[t] == BPF_MAP_TYPE_HASH) {
			if (bpf_map_update_batch(fds[t], b[t].keys, b[t].vals, &n, NULL))
				return -errno;
		} else {
			for (__u32 i = 0; i < n; i++)
				if (bpf_map_update_elem(fds[t], b[t].keys + (size_t)i * rt_key[t], &b[t].vals[i], BPF_ANY))
					return -errno;
		}
		*(rt_type[t] == BPF_MAP_TYPE_HASH ? &rt_hash_ms : &rt_lpm_ms) += now_ms() - t0;
	}
	return 0;
}

int cmd_replace_cost(int argc, char **argv)
{
	if (argc < 2)
		return die("usage: replace-cost <entries-file> <reps>", EINVAL);
	unsigned reps = (unsigned)strtoul(argv[1], NULL, 10);
	if (!reps || reps > MAX_ROUNDS)
		return die("bad reps", EINVAL);
	void *buf;
	__u32 count;
	const struct bench_file_entry *es = read_entries(argv[0], &buf, &count);
	if (!es)
		return die(argv[0], buf ? EINVAL : errno);
	struct rt_batch b[RT_N];
	for (int t = 0; t < RT_N; t++) {
		b[t].keys = calloc(count + 1, rt_key[t]);
		b[t].vals = calloc(count + 1, sizeof(struct bench_entry));
		b[t].n = 0;
		if (!b[t].keys || !b[t].vals)
			return die("allocating", ENOMEM);
	}
	for (__u32 i = 0; i < count; i++) {
		const struct bench_file_entry *e = &es[i];
		int t = e->family == 4 ? (e->prefixlen == 32 ? RT_X4 : RT_L4) : (e->prefixlen == 128 ? RT_X6 : RT_L6);
		unsigned char *k = b[t].keys + (size_t)b[t].n * rt_key[t];
		unsigned alen = e->family == 4 ? 4 : 16;
		if (t == RT_L4 || t == RT_L6) {
			__u32 pl = e->prefixlen;
			memcpy(k, &pl, 4);
			memcpy(k + 4, e->addr, alen);
		} else {
			memcpy(k, e->addr, alen);
		}
		b[t].vals[b[t].n++] = (struct bench_entry){ .rule_id = e->rule_id, .flags = e->flags, .prefixlen = e->prefixlen };
	}
	int outer[RT_N], cur[2][RT_N];
	for (int t = 0; t < RT_N; t++) {
		int tmpl = rt_create(t);
		LIBBPF_OPTS(bpf_map_create_opts, oo, .inner_map_fd = tmpl);
		outer[t] = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "nfb_rt_outer", 4, 4, BENCH_GENERATIONS, &oo);
		if (tmpl < 0 || outer[t] < 0)
			return die("creating the double buffers", errno);
		close(tmpl);
		for (__u32 g = 0; g < BENCH_GENERATIONS; g++) {
			cur[g][t] = rt_create(t);
			if (cur[g][t] < 0 || bpf_map_update_elem(outer[t], &g, &cur[g][t], BPF_ANY))
				return die("installing the initial generations", errno);
		}
	}
	volatile __u32 active = 0; /* stands for the loader's active-generation store (mmap'd state) */
	double fresh[MAX_ROUNDS], in_place[MAX_ROUNDS], hash_ms[MAX_ROUNDS], lpm_ms[MAX_ROUNDS];
	for (unsigned r = 0; r < reps; r++) {
		/* today's REPLACE */
		__u32 next = active ^ 1;
		double t0 = now_ms();
		int fds[RT_N];
		for (int t = 0; t < RT_N; t++)
			if ((fds[t] = rt_create(t)) < 0)
				return die("creating an inner map", errno);
		int err = rt_fill(fds, b);
		if (err)
			return die("filling", -err);
		for (int t = 0; t < RT_N; t++)
			if (bpf_map_update_elem(outer[t], &next, &fds[t], BPF_ANY))
				return die("installing", errno);
		__atomic_store_n(&active, next, __ATOMIC_RELEASE);
		fresh[r] = now_ms() - t0;
		for (int t = 0; t < RT_N; t++) {
			close(cur[next][t]);
			cur[next][t] = fds[t];
		}
		/* off the clock: fresh empty maps into the slot that went inactive (release_stale_generation) */
		__u32 stale = active ^ 1;
		for (int t = 0; t < RT_N; t++) {
			int fd = rt_create(t);
			if (fd < 0 || bpf_map_update_elem(outer[t], &stale, &fd, BPF_ANY))
				return die("re-installing empty maps", errno);
			close(cur[stale][t]);
			cur[stale][t] = fd;
		}
		/* proposed: fill the installed empty maps of the inactive slot, flip */
		next = active ^ 1;
		t0 = now_ms();
		err = rt_fill(cur[next], b);
		if (err)
			return die("filling in place", -err);
		__atomic_store_n(&active, next, __ATOMIC_RELEASE);
		in_place[r] = now_ms() - t0;
		hash_ms[r] = rt_hash_ms;
		lpm_ms[r] = rt_lpm_ms;
		stale = active ^ 1;
		for (int t = 0; t < RT_N; t++) {
			int fd = rt_create(t);
			if (fd < 0 || bpf_map_update_elem(outer[t], &stale, &fd, BPF_ANY))
				return die("re-installing empty maps", errno);
			close(cur[stale][t]);
			cur[stale][t] = fd;
		}
	}
	print_ms("{", "fresh_ms", fresh, reps);
	print_ms(",", "in_place_ms", in_place, reps);
	print_ms(",", "in_place_hash_fill_ms", hash_ms, reps);
	print_ms(",", "in_place_lpm_fill_ms", lpm_ms, reps);
	printf("}\n");
	for (int t = 0; t < RT_N; t++) {
		close(outer[t]);
		close(cur[0][t]);
		close(cur[1][t]);
		free(b[t].keys);
		free(b[t].vals);
	}
	free(buf);
	return 0;
}
