// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * exact.c — where a generation's exact /32 and /128 entries live (netfence.h): in the small hash
 * sized at LOAD (keys carry the generation), or, when they do not fit there, in a large table of
 * the right size installed in the generation's slot of the family's ARRAY_OF_MAPS. Packets follow
 * NF_SETTING_V4_LARGE / _V6_LARGE in the generation's settings. Nothing ever spills into an LPM
 * trie, so every /32 and /128 is answered by one hash lookup.
 *
 *   REPLACE  the new generation goes to the small hash when it fits beside the active generation's
 *            keys, else to a large table: the retired one when it fits (emptied by
 *            gens_prepare_fill), else a new one created at large_cap_for(n), filled while no packet
 *            can see it, installed last (one RCU grace period), then the flip.
 *   UPSERT   into the active generation's table; a full table moves the generation to a bigger
 *            one: every entry copied into a new large table, the batch written, the table installed
 *            (packets see the old table or the new superset, never less), then — small → large —
 *            the settings bit set. The small hash's keys of that generation stay until it retires.
 *   idle     a table ≥ 3/4 full is grown ahead (to ≥ 3 × its entries), so the grace period of
 *            a growth is mostly paid off the request path; and shrinking is lazy (large.c): a
 *            large table no generation uses is dropped.
 */
#include <string.h>
#include <bpf/bpf.h>

#include "loader.h"

#define SMALL_COUNT_LOOKUPS 64 /* an UPSERT batch up to this size counts its new keys exactly */

static int exact_table(int fam)
{
	return fam == FAM_V6 ? T_V6_EXACT : T_V4_EXACT;
}

bool uses_large(const struct att *a, int fam, __u32 gen)
{
	return (a->st->gen[gen & 1].flags & NF_SETTING_LARGE(fam == FAM_V6)) != 0;
}

__u32 large_bits(const struct att *a, __u32 gen)
{
	return a->st->gen[gen & 1].flags & (NF_SETTING_V4_LARGE | NF_SETTING_V6_LARGE);
}

/* Room the small hash has for the inactive generation (the retired keys are gone by the fill). */
static __u32 small_room(const struct att *a, int fam)
{
	__u32 used = a->small_n[fam][a->st->active_gen & 1];
	return used >= a->small_cap[fam] ? 0 : a->small_cap[fam] - used;
}

void exact_plan(const struct att *a, const struct batch b[T_COUNT], __u32 want[FAM_COUNT])
{
	for (int f = 0; f < FAM_COUNT; f++) {
		__u32 n = b[exact_table(f)].n;
		want[f] = n > small_room(a, f) ? large_cap_for(n) : 0;
	}
}

int exact_fill(struct att *a, __u32 gen, const struct batch b[T_COUNT], const __u32 want[FAM_COUNT], int new_fd[FAM_COUNT])
{
	for (int f = 0; f < FAM_COUNT; f++) {
		int t = exact_table(f);
		const struct batch *bt = &b[t];
		if (!want[f]) {
			int err = write_batch(a->table_fd[t], t, bt);
			a->small_n[f][gen] = bt->n;
			if (err)
				return err;
			continue;
		}
		if (want[f] > NF_LARGE_CAP_MAX)
			return fail(E2BIG, "%u %s entries: a large table holds at most %u", bt->n, table_names[t], NF_LARGE_CAP_MAX);
		struct nf_large *l = &a->large[f][gen];
		int fd = -1;
		if (l->fd >= 0 && !l->dirty && large_fits(l->cap, want[f])) {
			fd = l->fd; /* the retired generation's table, emptied: no install, no grace period */
			l->n = bt->n;
		} else {
			new_fd[f] = large_create(f, want[f]);
			if (new_fd[f] < 0)
				return new_fd[f];
			fd = new_fd[f];
		}
		if (fd == l->fd)
			l->dirty = true;
		int err = large_write(fd, f, bt);
		if (err)
			return err;
	}
	return 0;
}

int exact_install(struct att *a, __u32 gen, const __u32 want[FAM_COUNT], int new_fd[FAM_COUNT], const struct batch b[T_COUNT])
{
	for (int f = 0; f < FAM_COUNT; f++) {
		if (!want[f] || new_fd[f] < 0)
			continue;
		int fd = new_fd[f];
		new_fd[f] = -1; /* large_install owns it now, also on error */
		int err = large_install(a, f, gen, fd, want[f], b[exact_table(f)].n);
		if (err)
			return err;
	}
	return 0;
}

/* Keys of the batch not yet in the small hash (exactly for small batches, else an upper bound). */
static __u32 new_small_keys(int fd, int t, const struct batch *b)
{
	if (b->n > SMALL_COUNT_LOOKUPS)
		return b->n;
	__u32 n = 0;
	struct nf_entry v;
	for (__u32 i = 0; i < b->n; i++)
		if (bpf_map_lookup_elem(fd, (const char *)b->keys + (size_t)i * table_key_size[t], &v))
			n++;
	return n;
}

/* Moves the active generation to a new large table for `entries` that also takes `b` (its table is
 * full, or ≥ 3/4 full in the idle loop). */
static int grow_active(struct att *a, int fam, const struct batch *b, __u32 entries)
{
	__u32 gen = a->st->active_gen & 1;
	bool from_large = uses_large(a, fam, gen);
	__u32 cap = large_cap_for(entries);
	if (cap > NF_LARGE_CAP_MAX)
		return fail(E2BIG, "%s: a large table holds at most %u entries", table_names[exact_table(fam)], NF_LARGE_CAP_MAX);
	int fd = large_create(fam, cap);
	if (fd < 0)
		return fd;
	__u32 copied = 0;
	int err = large_copy(a, fam, gen, from_large, fd, &copied);
	if (!err)
		err = large_write(fd, fam, b);
	if (err) {
		close_fd(&fd);
		return err;
	}
	err = large_install(a, fam, gen, fd, cap, copied + b->n); /* packets: the old table or the new superset */
	if (err)
		return err;
	if (!from_large) {
		__u32 g = gen;
		struct nf_gen_settings s = a->st->gen[g];
		store_settings(a, g, s.mode, s.flags | NF_SETTING_LARGE(fam == FAM_V6));
	}
	return 0;
}

int exact_upsert(struct att *a, int fam, const struct batch *b)
{
	if (!b->n)
		return 0;
	__u32 gen = a->st->active_gen & 1;
	int t = exact_table(fam), err;
	if (uses_large(a, fam, gen)) {
		struct nf_large *l = &a->large[fam][gen];
		__u32 fresh = large_fresh(l->fd, fam, b);
		l->dirty = true;
		err = large_write(l->fd, fam, b);
		if (!err)
			l->n = l->n + fresh > l->cap ? l->cap : l->n + fresh;
	} else {
		__u32 fresh = new_small_keys(a->table_fd[t], t, b);
		err = write_batch(a->table_fd[t], t, b);
		if (!err || err == -E2BIG) {
			__u32 n = a->small_n[fam][gen] + fresh;
			a->small_n[fam][gen] = n > a->small_cap[fam] || err ? a->small_cap[fam] : n;
		}
	}
	if (err != -E2BIG)
		return err;
	__u32 have = uses_large(a, fam, gen) ? a->large[fam][gen].cap : a->small_n[fam][gen];
	return grow_active(a, fam, b, have + b->n);
}

bool exact_pregrow_due(const struct att *a, int fam)
{
	__u32 gen = a->st->active_gen & 1;
	if (uses_large(a, fam, gen)) {
		const struct nf_large *l = &a->large[fam][gen];
		return l->fd >= 0 && (__u64)l->n * 4 >= (__u64)l->cap * 3 && l->cap < NF_LARGE_CAP_MAX;
	}
	__u32 n = a->small_n[fam][gen];
	return n && (__u64)n * 4 >= (__u64)a->small_cap[fam] * 3;
}

int exact_pregrow(struct att *a, int fam)
{
	static const struct batch none = { 0 };
	__u32 gen = a->st->active_gen & 1;
	struct nf_large *l = &a->large[fam][gen];
	if (uses_large(a, fam, gen)) { /* the count may be an upper bound: count for real first */
		l->n = large_count(l->fd, fam);
		if (!exact_pregrow_due(a, fam))
			return 0;
	}
	__u32 have = uses_large(a, fam, gen) ? l->n : a->small_n[fam][gen];
	return grow_active(a, fam, &none, 2 * have);
}

int exact_delete(struct att *a, int fam, const struct batch *b)
{
	if (!b->n)
		return 0;
	__u32 gen = a->st->active_gen & 1;
	int t = exact_table(fam);
	if (uses_large(a, fam, gen))
		return large_delete(a->large[fam][gen].fd, fam, b);
	return delete_keys(a->table_fd[t], t, b->keys, b->n);
}
