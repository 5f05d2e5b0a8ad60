// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * generations.c — the generation/spill state of an attachment (struct nf_gens in loader.h) and
 * its transitions, the only code that changes it; and the emptying of retired generations.
 *
 * Every policy key carries its generation (netfence.h). REPLACE writes the new policy under the
 * inactive generation, then flips nf_state.active_gen; the generation the flip retired keeps its
 * keys until they are deleted, which may happen only once no packet can still look them up (a
 * packet that read active_gen just before the flip may, until an RCU grace period has passed).
 * `retired` says where the inactive generation is on that way:
 *
 *   event                         retired before        retired after          other fields
 *   ----------------------------  --------------------  ---------------------  -----------------------
 *   LOAD (fresh attachment)       -                     EMPTY                  active_used = 0, spilled = {0,0}
 *   ADOPT (pins of another run)   -                     GRACE                  active_used = 1, spilled = {1,1}
 *                                                                              (unknown: stay conservative)
 *   UPSERT into the active gen.   any                   unchanged              active_used = 1
 *   grace period passed           GRACE                 STALE
 *   clear succeeded               STALE, CLEAR_FAILED   EMPTY
 *   clear failed                  STALE, CLEAR_FAILED   CLEAR_FAILED           (the idle loop skips it;
 *                                                                              the next REPLACE retries)
 *   REPLACE: before filling       GRACE → STALE → EMPTY (waits for the grace period, clears; a failed
 *                                 clear fails the REPLACE with nothing visible to packets)
 *   REPLACE: a write failed       EMPTY                 STALE                  (never visible: no grace)
 *   REPLACE: flip                 EMPTY                 active_used ? GRACE    active_used = 1
 *                                                         : EMPTY
 *   exact entry spilled to LPM    any                   unchanged              spilled[family] = 1
 *
 * A fresh attachment's first flip retires a generation that never held a key (active_used = 0):
 * it needs neither a grace period nor a clear, so LINK never waits. `spilled` is sticky: until an
 * exact entry of a family has been stored in the LPM trie, deleting one needs no LPM delete.
 *
 * The idle loop (main.c) empties retired generations between requests, one attachment per turn,
 * with one grace period for every attachment waiting for one (after a restart, all of them).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <bpf/bpf.h>

#include "loader.h"

void gens_loaded(struct nf_gens *s)
{
	*s = (struct nf_gens){ .retired = RETIRED_EMPTY, .active_used = false, .spilled = { false, false } };
}

void gens_adopted(struct nf_gens *s)
{
	*s = (struct nf_gens){ .retired = RETIRED_GRACE, .active_used = true, .spilled = { true, true } };
}

void gens_active_written(struct nf_gens *s)
{
	s->active_used = true;
}

void gens_spilled(struct nf_gens *s, bool v6)
{
	s->spilled[v6] = true;
}

static void gens_grace_passed(struct nf_gens *s)
{
	if (s->retired == RETIRED_GRACE)
		s->retired = RETIRED_STALE;
}

void gens_fill_failed(struct nf_gens *s)
{
	s->retired = RETIRED_STALE;
}

void gens_flipped(struct nf_gens *s)
{
	s->retired = s->active_used ? RETIRED_GRACE : RETIRED_EMPTY;
	s->active_used = true;
}

/*
 * Waits until every BPF program run that started before now has finished. Programs run inside
 * RCU read-side sections, and membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu(). Without it
 * (nohz_full kernels refuse the command) fall back to a wait far longer than any program run.
 */
static void wait_for_running_programs(void)
{
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
		struct timespec ts = { 0, 100 * 1000000l };
		nanosleep(&ts, NULL);
	}
}

/* Deletes every key of generation `gen` from table t: keys listed first (cursor iteration),
 * then deleted (in one batch where the kernel can). */
static int clear_generation(int fd, int t, __u32 gen)
{
	size_t ks = table_key_size[t], cap = 1024, cnt = 0;
	char *keys = malloc(cap * ks), cur[32], last[32];
	if (!keys)
		return fail(ENOMEM, "clearing %s", table_names[t]);
	const void *prev = NULL;
	while (bpf_map_get_next_key(fd, prev, cur) == 0) {
		if (key_gen(t, cur) == gen) {
			if (cnt == cap) {
				char *k = realloc(keys, cap * 2 * ks);
				if (!k) {
					free(keys);
					return fail(ENOMEM, "clearing %s", table_names[t]);
				}
				keys = k;
				cap *= 2;
			}
			memcpy(keys + cnt++ * ks, cur, ks);
		}
		memcpy(last, cur, ks); /* the cursor must not alias the output buffer */
		prev = last;
	}
	int err = 0;
	__u32 done = (__u32)cnt;
	if (cnt && !(is_exact(t) && bpf_map_delete_batch(fd, keys, &done, NULL) == 0)) {
		for (size_t i = 0; i < cnt; i++)
			if (bpf_map_delete_elem(fd, keys + i * ks) && errno != ENOENT) {
				err = fail(errno, "clearing %s", table_names[t]);
				break;
			}
	}
	free(keys);
	return err;
}

/* Deletes the retired generation's keys (the grace period must have passed): → EMPTY or CLEAR_FAILED. */
static int clear_retired(struct att *a)
{
	__u32 gen = (a->st->active_gen & 1) ^ 1;
	for (int t = 0; t < T_COUNT; t++) {
		int err = clear_generation(a->table_fd[t], t, gen);
		if (err) {
			a->gens.retired = RETIRED_CLEAR_FAILED;
			return err;
		}
	}
	a->gens.retired = RETIRED_EMPTY;
	return 0;
}

/* Brings the retired generation to EMPTY before REPLACE fills it: waits for the grace period if
 * it is due, then clears. On error it is CLEAR_FAILED, and nothing was visible to packets. */
int gens_prepare_fill(struct att *a)
{
	if (a->gens.retired == RETIRED_EMPTY)
		return 0;
	if (a->gens.retired == RETIRED_GRACE) {
		wait_for_running_programs();
		gens_grace_passed(&a->gens);
	}
	return clear_retired(a);
}

static bool idle_candidate(const struct att *a)
{
	return a->used && (a->gens.retired == RETIRED_GRACE || a->gens.retired == RETIRED_STALE);
}

bool gens_idle_due(void)
{
	for (size_t i = 0; i < g.n_atts; i++)
		if (idle_candidate(&g.atts[i]))
			return true;
	return false;
}

void gens_idle_work(void)
{
	struct att *next = NULL;
	bool need_grace = false;
	for (size_t i = 0; i < g.n_atts; i++) {
		struct att *a = &g.atts[i];
		if (idle_candidate(a)) {
			if (!next)
				next = a;
			need_grace |= a->gens.retired == RETIRED_GRACE;
		}
	}
	if (!next)
		return;
	if (need_grace) { /* one grace period serves every attachment waiting for one */
		wait_for_running_programs();
		for (size_t i = 0; i < g.n_atts; i++)
			if (g.atts[i].used)
				gens_grace_passed(&g.atts[i].gens);
	}
	if (clear_retired(next))
		fprintf(stderr, "netfence-loader: %s: %s\n", next->id, g.errmsg);
}
