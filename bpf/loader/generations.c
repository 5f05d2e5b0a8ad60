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
 *   ADOPT (pins of another run)   -                     GRACE                  active_used = 1,
 *                                                                              (unknown: stay conservative)
 *                                                                              grace_epoch = grace_retire()
 *   UPSERT into the active gen.   any                   unchanged              active_used = 1
 *   grace period passed           GRACE                 STALE                  (grace.c: grace_passed)
 *   clear succeeded               STALE, CLEAR_FAILED   EMPTY
 *   clear failed                  STALE, CLEAR_FAILED   CLEAR_FAILED           (the idle loop skips it;
 *                                                                              the next REPLACE retries)
 *   REPLACE: before filling       GRACE → STALE → EMPTY (waits for the grace period unless the
 *                                 grace thread has passed it, then clears; a failed clear fails the
 *                                 REPLACE with nothing visible to packets)
 *   REPLACE: a write failed       EMPTY                 STALE                  (never visible: no grace)
 *   REPLACE: flip                 EMPTY                 active_used ? GRACE    active_used = 1,
 *                                                         : EMPTY              grace_epoch = grace_retire()
 *
 * A fresh attachment's first flip retires a generation that never held a key (active_used = 0):
 * it needs neither a grace period nor a clear, so LINK never waits.
 *
 * A retired generation's large table (large.c) is "dirty" until cleared: EMPTY says nothing about
 * it. REPLACE clears it only when it reuses it (gens_prepare_fill's `want`); the idle loop drops
 * the large tables no generation uses (lazy shrink) once the retired generation is EMPTY.
 *
 * Grace periods pass on grace.c's thread, not in the request loop's idle time (only if the thread
 * could not start does the idle loop wait itself): a flip asks for one at once, and one wait passes
 * every generation retired before it started (a control plane's full push of REPLACEs over many
 * attachments waits in the background, not once per gap). The
 * idle loop (main.c) empties STALE generations between requests, one attachment per turn, as soon
 * as their grace period has passed — typically within a few ms of the flip, so that a REPLACE
 * that follows finds its retired generation EMPTY and does not clear it on its own path.
 */
#include <stdio.h>
#include <string.h>
#include <bpf/bpf.h>

#include "loader.h"

void gens_loaded(struct nf_gens *s)
{
	*s = (struct nf_gens){ .retired = RETIRED_EMPTY, .active_used = false };
}

void gens_adopted(struct nf_gens *s)
{
	*s = (struct nf_gens){ .retired = RETIRED_GRACE, .active_used = true, .grace_epoch = grace_retire() };
}

void gens_active_written(struct nf_gens *s)
{
	s->active_used = true;
}

/* GRACE → STALE once grace.c has passed the generation's epoch. */
static void gens_grace_check(struct nf_gens *s)
{
	if (s->retired == RETIRED_GRACE && grace_passed(s->grace_epoch))
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
		s->grace_epoch = grace_retire();
}

/* Appends the keys of `chunk` (n keys of table t) that belong to generation `gen` to *keys. */
static int keep_gen_keys(int t, __u32 gen, const char *chunk, __u32 n, char **keys, size_t *cnt, size_t *cap)
{
	size_t ks = table_key_size[t];
	for (__u32 i = 0; i < n; i++) {
		const char *k = chunk + (size_t)i * ks;
		if (key_gen(t, k) != gen)
			continue;
		if (*cnt == *cap) {
			char *p = realloc(*keys, *cap * 2 * ks);
			if (!p)
				return -ENOMEM;
			*keys = p;
			*cap *= 2;
		}
		memcpy(*keys + (*cnt)++ * ks, k, ks);
	}
	return 0;
}

#define LIST_CHUNK 4096

/*
 * Lists generation `gen`'s keys of table t into *out (malloc'ed, *out_n keys). Batched reads
 * (BPF_MAP_LOOKUP_BATCH: the hashes, and the LPM tries since Linux 5.13): a per-key
 * bpf_map_get_next_key cursor was 42 ms for a scope trie of 2 × 10,000 entries, the batches 8 ms.
 * A kernel that refuses the first batch gets the cursor.
 */
static int list_generation(int fd, int t, __u32 gen, char **out, size_t *out_n)
{
	size_t ks = table_key_size[t], cap = 1024, cnt = 0;
	char *keys = malloc(cap * ks), *chunk = malloc((size_t)LIST_CHUNK * ks);
	struct nf_entry *vals = malloc(LIST_CHUNK * sizeof(*vals));
	char in[32], next[32]; /* the batch cursor: a key (LPM: generic batches) or a bucket (hash) */
	bool first = true, batched = true;
	int err = (keys && chunk && vals) ? 0 : -ENOMEM;
	while (!err) {
		__u32 n = LIST_CHUNK;
		int rc = bpf_map_lookup_batch(fd, first ? NULL : in, next, chunk, vals, &n, NULL);
		int e = rc ? errno : 0;
		if (rc && e != ENOENT) { /* ENOENT: the last chunk (n may be > 0) */
			if (first && (e == EINVAL || e == ENOTSUPP || e == EOPNOTSUPP || e == ENOTSUP))
				batched = false;
			else
				err = -e;
			break;
		}
		err = keep_gen_keys(t, gen, chunk, n, &keys, &cnt, &cap);
		if (rc)
			break;
		memcpy(in, next, sizeof(in));
		first = false;
	}
	const void *prev = NULL;
	char cur[32], last[32];
	while (!err && !batched && bpf_map_get_next_key(fd, prev, cur) == 0) {
		err = keep_gen_keys(t, gen, cur, 1, &keys, &cnt, &cap);
		memcpy(last, cur, ks); /* the cursor must not alias the output buffer */
		prev = last;
	}
	free(chunk);
	free(vals);
	if (err) {
		free(keys);
		return fail(-err, "listing %s", table_names[t]);
	}
	*out = keys;
	*out_n = cnt;
	return 0;
}

/* Deletes every key of generation `gen` from table t: keys listed first, then deleted (in one
 * batch where the kernel can). */
static int clear_generation(int fd, int t, __u32 gen)
{
	size_t ks = table_key_size[t], cnt = 0;
	char *keys = NULL;
	int err = list_generation(fd, t, gen, &keys, &cnt);
	if (err)
		return err;
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
 * the grace thread has not passed it yet, then clears. On error it is CLEAR_FAILED, and nothing
 * was visible to packets. */
int gens_prepare_fill(struct att *a, const __u32 want[FAM_COUNT])
{
	a->large_idle_failed = false;
	if (a->gens.retired == RETIRED_GRACE) {
		grace_wait(a->gens.grace_epoch);
		a->gens.retired = RETIRED_STALE;
	}
	if (a->gens.retired != RETIRED_EMPTY) {
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

/* Whether the idle loop has work on `a`: a STALE generation to clear (GRACE ones once the grace
 * thread passed them; without the thread, GRACE ones too: the idle loop then waits itself), or
 * large-table work once the retired generation is past its grace period. */
static bool idle_candidate(struct att *a)
{
	if (!a->used)
		return false;
	gens_grace_check(&a->gens);
	if (a->gens.retired == RETIRED_GRACE)
		return !grace_async();
	return a->gens.retired == RETIRED_STALE || (!a->large_idle_failed && large_idle_due(a));
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
	for (size_t i = 0; i < g.n_atts && !next; i++)
		if (idle_candidate(&g.atts[i]))
			next = &g.atts[i];
	if (!next)
		return;
	if (next->gens.retired == RETIRED_GRACE) { /* no grace thread: wait here */
		grace_wait(next->gens.grace_epoch);
		next->gens.retired = RETIRED_STALE;
	}
	int err = 0;
	if (next->gens.retired == RETIRED_STALE) {
		err = clear_retired(next);
	} else if ((err = large_idle_work(next))) {
		next->large_idle_failed = true; /* not retried until the next REPLACE */
	}
	if (err)
		fprintf(stderr, "netfence-loader: %s: %s\n", next->id, tls.errmsg);
}
