// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * generations.c — the generation state of an attachment (struct nf_gens in loader.h) and its
 * transitions, the only code that changes it; and the emptying of retired generations (their keys
 * in the small exact hash and the LPM tries; their large exact tables are large.c's).
 *
 * Every policy key carries its generation (netfence.h). REPLACE writes the new policy under the
 * inactive generation, then flips nf_state.active_gen; the generation the flip retired keeps its
 * keys until they are deleted, which may happen only once no packet can still look them up (a
 * packet that read active_gen just before the flip may, until an RCU grace period has passed).
 * `retired` says where the inactive generation is on that way:
 *
 *   event                         retired before        retired after          other fields
 *   ----------------------------  --------------------  ---------------------  -----------------------
 *   LOAD (fresh attachment)       -                     EMPTY                  active_used = 0
 *   ADOPT (pins of another run)   -                     GRACE                  active_used = 1
 *                                                                              (unknown: stay conservative)
 *   UPSERT into the active gen.   any                   unchanged              active_used = 1
 *   grace period passed           GRACE                 STALE
 *   clear succeeded               STALE, CLEAR_FAILED   EMPTY
 *   clear failed                  STALE, CLEAR_FAILED   CLEAR_FAILED           (the idle loop skips it;
 *                                                                              the next REPLACE retries)
 *   REPLACE: before filling       GRACE → STALE → EMPTY (waits for the grace period, which moves
 *                                 every attachment in GRACE to STALE, then clears; a failed clear
 *                                 fails the REPLACE with nothing visible to packets)
 *   REPLACE: a write failed       EMPTY                 STALE                  (never visible: no grace)
 *   REPLACE: flip                 EMPTY                 active_used ? GRACE    active_used = 1
 *                                                         : EMPTY
 *
 * A fresh attachment's first flip retires a generation that never held a key (active_used = 0):
 * it needs neither a grace period nor a clear, so LINK never waits.
 *
 * A retired generation's large table (large.c) is "dirty" until cleared: EMPTY says nothing about
 * it. REPLACE clears it only when it reuses it (gens_prepare_fill's `want`); the idle loop drops
 * the large tables no generation uses (lazy shrink) once the retired generation is EMPTY.
 *
 * The idle loop (main.c) empties retired generations between requests, one attachment per turn,
 * with one grace period for every attachment waiting for one (after a restart, all of them).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <bpf/bpf.h>

#include "loader.h"

void gens_loaded(struct nf_gens *s)
{
	*s = (struct nf_gens){ .retired = RETIRED_EMPTY, .active_used = false };
}

/*
 * When the idle loop waits for a grace period. A wait (membarrier, ~10 ms here) blocks the
 * request loop, and a control plane's full push sends REPLACEs back to back: waiting in every gap
 * between two of them cost one grace period per REPLACE (500 attachments × 1,000 CIDRs: 7.4 s, of
 * which ~5 s were these waits). So the idle loop waits only once requests have paused for
 * GRACE_QUIET_MS, or once a generation has waited GRACE_MAX_DEFER_MS (progress under a steady
 * stream). Deferring only keeps retired keys longer; a REPLACE that needs its retired generation
 * waits itself, and that one wait passes every attachment (pass_grace_period_for_all).
 */
#define GRACE_QUIET_MS 20
#define GRACE_MAX_DEFER_MS 1000
static __u64 last_request_ms;
static __u64 grace_pending_since_ms; /* 0: no generation in GRACE */

static __u64 monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000 + (__u64)ts.tv_nsec / 1000000;
}

static void grace_pending(void)
{
	if (!grace_pending_since_ms)
		grace_pending_since_ms = monotonic_ms();
}

void gens_request_done(void)
{
	last_request_ms = monotonic_ms();
}

/* Milliseconds until the idle loop may wait for a grace period (0: now), or -1 if none is pending. */
int gens_grace_wait_ms(void)
{
	if (!grace_pending_since_ms)
		return -1;
	__u64 now = monotonic_ms();
	__u64 quiet_at = last_request_ms + GRACE_QUIET_MS, forced_at = grace_pending_since_ms + GRACE_MAX_DEFER_MS;
	__u64 at = quiet_at < forced_at ? quiet_at : forced_at;
	return at <= now ? 0 : (int)(at - now);
}

void gens_adopted(struct nf_gens *s)
{
	*s = (struct nf_gens){ .retired = RETIRED_GRACE, .active_used = true };
	grace_pending();
}

void gens_active_written(struct nf_gens *s)
{
	s->active_used = true;
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
	if (s->retired == RETIRED_GRACE)
		grace_pending();
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

/*
 * One grace period serves every attachment waiting for one: every generation now in GRACE was
 * retired by a flip this (single-threaded) request loop made before the wait started, so no
 * packet can still see it afterwards. Used by the idle loop and by a REPLACE that finds its own
 * retired generation in GRACE: a burst of REPLACEs over many attachments (a control plane's full
 * push) then waits once, not once per attachment (measured 10.8 ms per membarrier here).
 */
static void pass_grace_period_for_all(void)
{
	wait_for_running_programs();
	for (size_t i = 0; i < g.n_atts; i++)
		if (g.atts[i].used)
			gens_grace_passed(&g.atts[i].gens);
	grace_pending_since_ms = 0;
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
	/* One system call for the whole list, the LPM tries included (generic_map_delete_batch): a
	 * per-key delete was 1,000 calls per 1,000-entry generation. If the batch fails part-way
	 * (an old kernel, a key gone), every key is deleted again one by one, ENOENT ignored. */
	if (cnt && bpf_map_delete_batch(fd, keys, &done, NULL) != 0) {
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
	for (int f = 0; f < FAM_COUNT; f++)
		a->small_n[f][gen] = 0;
	a->gens.retired = RETIRED_EMPTY;
	return 0;
}

/* Brings the retired generation to EMPTY before REPLACE fills it: waits for the grace period if
 * it is due, then clears. On error it is CLEAR_FAILED, and nothing was visible to packets. */
int gens_prepare_fill(struct att *a, const __u32 want[FAM_COUNT])
{
	a->large_idle_failed = false;
	if (a->gens.retired != RETIRED_EMPTY) {
		if (a->gens.retired == RETIRED_GRACE)
			pass_grace_period_for_all();
		int err = clear_retired(a);
		if (err)
			return err;
	}
	/* A large table the fill reuses is emptied now (the grace period is behind us). */
	__u32 gen = (a->st->active_gen & 1) ^ 1;
	for (int f = 0; f < FAM_COUNT; f++) {
		const struct nf_large *l = &a->large[f][gen];
		if (want[f] && l->fd >= 0 && l->dirty && large_fits(l->cap, want[f])) {
			int err = large_clear(a, f, gen);
			if (err)
				return err;
		}
	}
	return 0;
}

static bool idle_candidate(const struct att *a, bool grace_ok)
{
	return a->used && ((grace_ok && a->gens.retired == RETIRED_GRACE) || a->gens.retired == RETIRED_STALE ||
			   (!a->large_idle_failed && large_idle_due(a)));
}

bool gens_idle_due(void)
{
	bool grace_ok = gens_grace_wait_ms() == 0;
	for (size_t i = 0; i < g.n_atts; i++)
		if (idle_candidate(&g.atts[i], grace_ok))
			return true;
	return false;
}

void gens_idle_work(void)
{
	struct att *next = NULL;
	bool need_grace = false, grace_ok = gens_grace_wait_ms() == 0;
	for (size_t i = 0; i < g.n_atts; i++) {
		struct att *a = &g.atts[i];
		if (idle_candidate(a, grace_ok)) {
			if (!next)
				next = a;
			need_grace |= a->gens.retired == RETIRED_GRACE;
		}
	}
	if (!next)
		return;
	if (need_grace)
		pass_grace_period_for_all();
	int err = 0;
	if (next->gens.retired == RETIRED_STALE) {
		err = clear_retired(next);
	} else if (next->gens.retired != RETIRED_GRACE && (err = large_idle_work(next))) {
		next->large_idle_failed = true; /* not retried until the next REPLACE */
	}
	if (err)
		fprintf(stderr, "netfence-loader: %s: %s\n", next->id, tls.errmsg);
}
