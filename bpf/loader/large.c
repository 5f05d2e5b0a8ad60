// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * large.c — the large exact tables (netfence.h): inner hashes keyed by the address alone, one per
 * generation and family, in slot `gen` of the family's ARRAY_OF_MAPS (pinned v4_large, v6_large).
 * Created at the size a generation needs (large_cap_for: ≥ 1.5 × the entries, a power of two),
 * filled while no packet can see them, installed whole. Installing or emptying a slot from user
 * space waits for an RCU grace period (the kernel's map-in-map update), so it happens only when a
 * table grows (exact.c) or, lazily, in the idle loop when no generation uses a table any more.
 * The table a slot held is freed by the kernel after the packets that still use it are done.
 */
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "loader.h"

#define CHUNK 8192 /* entries per batched copy / clear syscall */

static __u32 large_key_size(int fam)
{
	return fam == FAM_V6 ? sizeof(struct nf_large_v6_key) : sizeof(struct nf_large_v4_key);
}

static const char *large_name(int fam)
{
	return fam == FAM_V6 ? "v6_large" : "v4_large";
}

__u32 large_cap_for(__u32 n)
{
	__u64 want = (__u64)n + n / 2, cap = NF_LARGE_CAP_MIN; /* ≤ 2/3 full: below the idle growth's 3/4 */
	while (cap < want)
		cap *= 2;
	return cap > 0xffffffffull ? 0xffffffffu : (__u32)cap;
}

bool large_fits(__u32 cap, __u32 want)
{
	return cap >= want && cap <= 4 * (__u64)want;
}

int large_create(int fam, __u32 cap)
{
	LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = BPF_F_NO_PREALLOC);
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, large_name(fam), large_key_size(fam), sizeof(struct nf_entry), cap, &o);
	return fd < 0 ? fail(errno, "creating a %s table of %u entries", large_name(fam), cap) : fd;
}

int large_install(struct att *a, int fam, __u32 gen, int fd, __u32 cap, __u32 n)
{
	if (bpf_map_update_elem(a->large_fd[fam], &gen, &fd, BPF_ANY)) {
		int err = fail(errno, "installing a %s table of %u entries", large_name(fam), cap);
		close(fd);
		return err;
	}
	struct nf_large *l = &a->large[fam][gen];
	close_fd(&l->fd);
	*l = (struct nf_large){ .fd = fd, .cap = cap, .n = n, .dirty = true };
	return 0;
}

int large_drop(struct att *a, int fam, __u32 gen)
{
	struct nf_large *l = &a->large[fam][gen];
	if (l->fd < 0)
		return 0;
	if (bpf_map_delete_elem(a->large_fd[fam], &gen) && errno != ENOENT)
		return fail(errno, "emptying %s slot %u", large_name(fam), gen);
	close_fd(&l->fd);
	*l = (struct nf_large){ .fd = -1 };
	return 0;
}

int large_clear(struct att *a, int fam, __u32 gen)
{
	struct nf_large *l = &a->large[fam][gen];
	if (l->fd < 0 || !l->dirty)
		return 0;
	size_t ks = large_key_size(fam);
	char *keys = malloc(CHUNK * ks);
	struct nf_entry *vals = malloc(CHUNK * sizeof(*vals));
	int err = keys && vals ? 0 : fail(ENOMEM, "clearing %s", large_name(fam));
	/* lookup-and-delete from the start until the table is empty (a fresh cursor every call). */
	while (!err) {
		__u32 n = CHUNK, out;
		if (bpf_map_lookup_and_delete_batch(l->fd, NULL, &out, keys, vals, &n, NULL) == 0) {
			if (n == 0)
				break;
		} else if (errno == ENOENT) {
			break; /* the walk reached the end: what it returned is deleted too */
		} else {
			err = fail(errno, "clearing %s", large_name(fam));
		}
	}
	free(keys);
	free(vals);
	if (!err) {
		l->dirty = false;
		l->n = 0;
	}
	return err;
}

/* Keys without the generation: a small-hash key is the __u32 generation, then the address. */
static void *strip_gen(int fam, const void *keys, __u32 n)
{
	size_t ks = large_key_size(fam), sks = ks + 4;
	char *out = malloc((n ? n : 1) * ks);
	for (__u32 i = 0; out && i < n; i++)
		memcpy(out + (size_t)i * ks, (const char *)keys + (size_t)i * sks + 4, ks);
	return out;
}

int large_write(int fd, int fam, const struct batch *b)
{
	if (!b->n)
		return 0;
	void *keys = strip_gen(fam, b->keys, b->n);
	if (!keys)
		return fail(ENOMEM, "writing %u %s entries", b->n, large_name(fam));
	__u32 n = b->n;
	int err = bpf_map_update_batch(fd, keys, b->vals, &n, NULL) ? fail(errno, "writing %u %s entries", b->n, large_name(fam)) : 0;
	free(keys);
	return err == -E2BIG ? fail(E2BIG, "%s: table full", large_name(fam)) : err;
}

int large_delete(int fd, int fam, const struct batch *b)
{
	void *keys = strip_gen(fam, b->keys, b->n);
	if (!keys)
		return fail(ENOMEM, "deleting %u %s entries", b->n, large_name(fam));
	size_t ks = large_key_size(fam);
	int err = 0;
	for (__u32 i = 0; i < b->n && !err; i++)
		if (bpf_map_delete_elem(fd, (char *)keys + i * ks) && errno != ENOENT)
			err = fail(errno, "deleting %s entry %u", large_name(fam), i);
	free(keys);
	return err;
}

__u32 large_count(int fd, int fam)
{
	size_t ks = large_key_size(fam);
	char *keys = malloc(CHUNK * ks), in_batch[8], out_batch[8];
	struct nf_entry *vals = malloc(CHUNK * sizeof(*vals));
	__u32 total = 0;
	void *cursor = NULL;
	for (bool more = keys && vals; more;) {
		__u32 n = CHUNK;
		if (bpf_map_lookup_batch(fd, cursor, out_batch, keys, vals, &n, NULL))
			more = false; /* ENOENT: the last chunk; another error: count what was read */
		total += n;
		memcpy(in_batch, out_batch, sizeof(in_batch));
		cursor = in_batch;
	}
	free(keys);
	free(vals);
	return total;
}

__u32 large_fresh(int fd, int fam, const struct batch *b)
{
	if (b->n > 64)
		return b->n;
	void *keys = strip_gen(fam, b->keys, b->n);
	if (!keys)
		return b->n;
	__u32 n = 0;
	struct nf_entry v;
	for (__u32 i = 0; i < b->n; i++)
		n += bpf_map_lookup_elem(fd, (char *)keys + (size_t)i * large_key_size(fam), &v) != 0;
	free(keys);
	return n;
}

int large_copy(struct att *a, int fam, __u32 gen, bool src_large, int dst, __u32 *copied)
{
	int t = fam == FAM_V6 ? T_V6_EXACT : T_V4_EXACT;
	int src = src_large ? a->large[fam][gen].fd : a->table_fd[t];
	size_t ks = src_large ? large_key_size(fam) : table_key_size[t], lks = large_key_size(fam);
	char *keys = malloc(CHUNK * ks), *out = malloc(CHUNK * lks);
	struct nf_entry *vals = malloc(CHUNK * sizeof(*vals));
	int err = keys && vals && out ? 0 : fail(ENOMEM, "copying %s", table_names[t]);
	char in_batch[32], out_batch[32];
	void *cursor = NULL;
	*copied = 0;
	for (bool more = true; more && !err;) {
		__u32 n = CHUNK;
		if (bpf_map_lookup_batch(src, cursor, out_batch, keys, vals, &n, NULL)) {
			if (errno != ENOENT) {
				err = fail(errno, "reading %s", src_large ? large_name(fam) : table_names[t]);
				break;
			}
			more = false; /* the last chunk (n may still be > 0) */
		}
		memcpy(in_batch, out_batch, sizeof(in_batch));
		cursor = in_batch;
		__u32 m = 0;
		for (__u32 i = 0; i < n; i++) {
			const char *k = keys + i * ks;
			if (!src_large && key_gen(t, k) != gen)
				continue;
			memcpy(out + (size_t)m * lks, src_large ? k : k + 4, lks);
			vals[m++] = vals[i];
		}
		if (m && bpf_map_update_batch(dst, out, vals, &m, NULL))
			err = fail(errno, "copying into a new %s table", large_name(fam));
		*copied += m;
	}
	free(keys);
	free(out);
	free(vals);
	return err;
}

void large_loaded(struct att *a, __u32 small_cap)
{
	for (int f = 0; f < FAM_COUNT; f++) {
		a->small_cap[f] = small_cap;
		for (int g = 0; g < NF_GENERATIONS; g++) {
			a->large[f][g] = (struct nf_large){ .fd = -1 };
			a->small_n[f][g] = 0;
		}
	}
}

int large_adopted(struct att *a)
{
	for (int f = 0; f < FAM_COUNT; f++) {
		int t = f == FAM_V6 ? T_V6_EXACT : T_V4_EXACT;
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(a->table_fd[t], &info, &len))
			return fail(errno, "ADOPT %s: %s", a->id, table_names[t]);
		a->small_cap[f] = info.max_entries;
		for (__u32 g = 0; g < NF_GENERATIONS; g++) {
			a->large[f][g] = (struct nf_large){ .fd = -1 };
			a->small_n[f][g] = 0;
			__u32 id;
			if (bpf_map_lookup_elem(a->large_fd[f], &g, &id))
				continue; /* an empty slot */
			int fd = bpf_map_get_fd_by_id(id);
			struct bpf_map_info li = {};
			len = sizeof(li);
			if (fd < 0 || bpf_obj_get_info_by_fd(fd, &li, &len)) {
				int err = fail(errno, "ADOPT %s: the table in %s slot %u", a->id, large_name(f), g);
				if (fd >= 0)
					close(fd);
				return err;
			}
			a->large[f][g] = (struct nf_large){ .fd = fd, .cap = li.max_entries, .n = large_count(fd, f), .dirty = true };
		}
		/* Count the small hash's keys per generation (it is small: a walk of its keys). */
		char cur[32], last[32];
		const void *prev = NULL;
		while (bpf_map_get_next_key(a->table_fd[t], prev, cur) == 0) {
			a->small_n[f][key_gen(t, cur) & 1]++;
			memcpy(last, cur, table_key_size[t]);
			prev = last;
		}
	}
	return 0;
}

/* ---------------------------------------------------------------- idle: shrink lazily */

/* Whether the retired generation's large table is kept for the next fill: the active generation
 * uses one of the same size (a policy that alternates between similar large sizes). */
static bool keep_retired(const struct att *a, int fam)
{
	__u32 act = a->st->active_gen & 1;
	const struct nf_large *r = &a->large[fam][act ^ 1], *l = &a->large[fam][act];
	return uses_large(a, fam, act) && r->fd >= 0 && l->fd >= 0 && r->cap == l->cap;
}

bool large_idle_due(const struct att *a)
{
	__u32 act = a->st->active_gen & 1;
	for (int f = 0; f < FAM_COUNT; f++) {
		if ((a->large[f][act].fd >= 0 && !uses_large(a, f, act)) || exact_pregrow_due(a, f))
			return true;
		/* The retired slot, once no packet can use it (GRACE and STALE are generations.c's). */
		const struct nf_large *r = &a->large[f][act ^ 1];
		if (a->gens.retired == RETIRED_EMPTY && r->fd >= 0 && (!keep_retired(a, f) || r->dirty))
			return true;
	}
	return false;
}

int large_idle_work(struct att *a)
{
	__u32 act = a->st->active_gen & 1;
	int err = 0;
	for (int f = 0; f < FAM_COUNT && !err; f++) {
		if (a->large[f][act].fd >= 0 && !uses_large(a, f, act))
			err = large_drop(a, f, act);
		if (!err && exact_pregrow_due(a, f))
			err = exact_pregrow(a, f);
		if (!err && a->gens.retired == RETIRED_EMPTY && a->large[f][act ^ 1].fd >= 0)
			err = keep_retired(a, f) ? large_clear(a, f, act ^ 1) : large_drop(a, f, act ^ 1);
	}
	return err;
}
