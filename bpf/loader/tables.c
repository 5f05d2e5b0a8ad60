// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tables.c — an attachment's policy tables: keys and values from wire entries, batched writes and
 * deletes, and the requests that change policy: REPLACE (atomic, through the inactive generation;
 * generations.c says when that generation may be refilled), UPSERT, DELETE, SET_MODE. Where the
 * exact /32 and /128 entries go (small hash or a large table that grows) is exact.c's.
 */
#include <string.h>
#include <bpf/bpf.h>

#include "loader.h"

const char *const table_names[T_COUNT] = { "v4_exact", "v4_lpm", "v6_exact", "v6_lpm", "scope" };
const __u32 table_key_size[T_COUNT] = {
	sizeof(struct nf_exact_v4_key), sizeof(struct nf_lpm_v4_key),
	sizeof(struct nf_exact_v6_key), sizeof(struct nf_lpm_v6_key), sizeof(struct nf_scope_key),
};
const __u32 table_type[T_COUNT] = {
	BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_LPM_TRIE,
};

bool is_exact(int t)
{
	return t == T_V4_EXACT || t == T_V6_EXACT;
}

/* Layouts in netfence.h: exact keys start with a __u32 generation, LPM keys (the scope table's too)
 * have it at byte 4. */
__u32 key_gen(int t, const void *key)
{
	if (is_exact(t)) {
		__u32 gen;
		memcpy(&gen, key, 4);
		return gen;
	}
	return ((const __u8 *)key)[4];
}

/* ---------------------------------------------------------------- keys and values */

static int table_of(const struct nf_wire_entry *e)
{
	if (e->family == NF_WIRE_SCOPE)
		return T_SCOPE;
	if (e->family == 4)
		return e->prefixlen == 32 ? T_V4_EXACT : T_V4_LPM;
	return e->prefixlen == 128 ? T_V6_EXACT : T_V6_LPM;
}

/* The key bits of a scope entry after the generation byte: kind, scope, principal (56), then
 * protocol (8) and up to 16 port bits. */
#define SCOPE_BITS_MIN 56
#define SCOPE_BITS_MAX 80

static int check_entry(const struct nf_wire_entry *e, __u32 i)
{
	if (e->family == NF_WIRE_SCOPE) {
		if (e->prefixlen < SCOPE_BITS_MIN || e->prefixlen > SCOPE_BITS_MAX ||
		    (e->prefixlen > SCOPE_BITS_MIN && e->prefixlen < SCOPE_BITS_MIN + 8))
			return fail(EINVAL, "entry %u: scope key length %u (56, or 64..80)", i, e->prefixlen);
		if (e->addr[0] > NF_SCOPE_KIND_GID)
			return fail(EINVAL, "entry %u: scope kind %u", i, e->addr[0]);
		return 0;
	}
	if (e->family != 4 && e->family != 6)
		return fail(EINVAL, "entry %u: family %u", i, e->family);
	if (e->prefixlen > (e->family == 4 ? 32 : 128))
		return fail(EINVAL, "entry %u: prefix length %u", i, e->prefixlen);
	return 0;
}

/* The key of an address in `table` for generation `gen` (an LPM prefix counts the generation byte). */
static void make_key(int table, const __u8 *addr, __u8 prefixlen, __u32 gen, void *key)
{
	switch (table) {
	case T_V4_EXACT: {
		struct nf_exact_v4_key k = { .gen = gen };
		memcpy(k.addr, addr, 4);
		memcpy(key, &k, sizeof(k));
		break;
	}
	case T_V6_EXACT: {
		struct nf_exact_v6_key k = { .gen = gen };
		memcpy(k.addr, addr, 16);
		memcpy(key, &k, sizeof(k));
		break;
	}
	case T_V4_LPM: {
		struct nf_lpm_v4_key k = { .prefixlen = 8u + prefixlen, .gen = (__u8)gen };
		memcpy(k.addr, addr, 4);
		memcpy(key, &k, sizeof(k));
		break;
	}
	case T_V6_LPM: {
		struct nf_lpm_v6_key k = { .prefixlen = 8u + prefixlen, .gen = (__u8)gen };
		memcpy(k.addr, addr, 16);
		memcpy(key, &k, sizeof(k));
		break;
	}
	default: { /* T_SCOPE: addr[0..9] are the key bytes after the generation; bits past the prefix are 0 */
		struct nf_scope_key k;
		memset(&k, 0, sizeof(k));
		k.prefixlen = 8u + prefixlen;
		k.gen = (__u8)gen;
		__u8 *after = (__u8 *)&k + 5;
		memcpy(after, addr, 10);
		for (unsigned bit = prefixlen; bit < 88; bit++)
			after[bit / 8] &= (__u8)~(0x80 >> (bit % 8));
		memcpy(key, &k, sizeof(k));
	}
	}
}

/* Converts a wall-clock deadline to the kernel's CLOCK_MONOTONIC; returns false if it already passed. */
static bool make_value(const struct nf_wire_entry *e, struct nf_entry *v, __s64 now_real_ns, __s64 now_mono_ns)
{
	memset(v, 0, sizeof(*v));
	v->flags = e->flags;
	v->rule_id = e->rule_id;
	if (e->family == NF_WIRE_SCOPE) { /* only ALLOW/DENY mean something in a scope entry */
		v->flags &= NF_ENTRY_ALLOW | NF_ENTRY_DENY;
	} else {
		v->prefixlen = e->prefixlen;
		v->scope = e->scope;
		if (!e->scope) /* kinds without a scope set would only cost lookups */
			v->flags &= NF_ENTRY_ALLOW | NF_ENTRY_DENY;
	}
	if (e->expires_ms) {
		__s64 left = (__s64)e->expires_ms * 1000000ll - now_real_ns;
		if (left <= 0)
			return false;
		v->expires_ns = (__u64)(now_mono_ns + left);
	}
	return true;
}

/* Splits entries by table, keyed for generation `gen`; entries already expired go to `x` (to be deleted). */
static int build_batches(const struct nf_wire_entry *es, __u32 count, __u32 gen, struct batch b[T_COUNT], struct batch x[T_COUNT])
{
	for (int t = 0; t < T_COUNT; t++) {
		b[t].keys = calloc(count ? count : 1, table_key_size[t]);
		b[t].vals = calloc(count ? count : 1, sizeof(struct nf_entry));
		x[t].keys = calloc(count ? count : 1, table_key_size[t]);
		x[t].vals = NULL;
		b[t].n = x[t].n = 0;
		if (!b[t].keys || !b[t].vals || !x[t].keys)
			return fail(ENOMEM, "allocating %u entries", count);
	}
	__s64 now_real = clock_ns(CLOCK_REALTIME), now_mono = clock_ns(CLOCK_MONOTONIC);
	for (__u32 i = 0; i < count; i++) {
		int err = check_entry(&es[i], i);
		if (err)
			return err;
		int t = table_of(&es[i]);
		struct nf_entry v;
		struct batch *to = make_value(&es[i], &v, now_real, now_mono) ? &b[t] : &x[t];
		make_key(t, es[i].addr, es[i].prefixlen, gen, (char *)to->keys + (size_t)to->n * table_key_size[t]);
		if (to->vals)
			to->vals[to->n] = v;
		to->n++;
	}
	return 0;
}

static void free_batches(struct batch b[T_COUNT], struct batch x[T_COUNT])
{
	for (int t = 0; t < T_COUNT; t++) {
		free(b[t].keys);
		free(b[t].vals);
		free(x[t].keys);
	}
}

/* ---------------------------------------------------------------- writes, deletes */

static __u32 max_entries_of(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	return bpf_obj_get_info_by_fd(fd, &info, &len) ? 0 : info.max_entries;
}

int write_batch(int fd, int t, const struct batch *b)
{
	if (!b->n)
		return 0;
	__u32 n = b->n;
	if (bpf_map_update_batch(fd, b->keys, b->vals, &n, NULL) == 0)
		return 0;
	int err = errno;
	if (err == E2BIG)
		return fail(err, "%s holds at most %u entries", table_names[t], max_entries_of(fd));
	if (err != EINVAL && err != ENOTSUPP && err != EOPNOTSUPP && err != ENOTSUP)
		return fail(err, "writing %u %s entries", b->n, table_names[t]);
	for (__u32 i = 0; i < b->n; i++)
		if (bpf_map_update_elem(fd, (char *)b->keys + (size_t)i * table_key_size[t], &b->vals[i], BPF_ANY))
			return fail(errno, "writing %s entry %u", table_names[t], i); /* E2BIG: table full */
	return 0;
}

int delete_keys(int fd, int t, const void *keys, __u32 n)
{
	for (__u32 i = 0; i < n; i++)
		if (bpf_map_delete_elem(fd, (const char *)keys + (size_t)i * table_key_size[t]) && errno != ENOENT)
			return fail(errno, "deleting %s entry %u", table_names[t], i);
	return 0;
}

static int fam_of(int t)
{
	return t == T_V6_EXACT || t == T_V6_LPM ? FAM_V6 : FAM_V4;
}

static int write_table(struct att *a, int t, const struct batch *b)
{
	return is_exact(t) ? exact_upsert(a, fam_of(t), b) : write_batch(a->table_fd[t], t, b);
}

static int delete_table(struct att *a, int t, const struct batch *b)
{
	return is_exact(t) ? exact_delete(a, fam_of(t), b) : delete_keys(a->table_fd[t], t, b->keys, b->n);
}

/* ---------------------------------------------------------------- requests */

/* The settings bits the daemon sets (the others are the loader's). */
#define DAEMON_SETTINGS (NF_SETTING_AUDIT | NF_SETTING_KEEP)

void store_settings(struct att *a, __u32 gen, __u32 mode, __u32 flags)
{
	struct nf_gen_settings set = { .mode = mode, .flags = flags };
	__u64 packed;
	memcpy(&packed, &set, sizeof(packed));
	__atomic_store_n((__u64 *)&a->st->gen[gen], packed, __ATOMIC_RELEASE);
}

int op_replace(const void *req, size_t len)
{
	if (len < sizeof(struct nf_policy_req))
		return fail(0, "REPLACE: short request");
	const struct nf_policy_req *r = req;
	if ((len - sizeof(*r)) / sizeof(struct nf_wire_entry) < r->count)
		return fail(EINVAL, "REPLACE: %u entries announced, %zu bytes sent", r->count, len - sizeof(*r));
	if (r->mode > NF_MODE_BLOCK_ALL)
		return fail(EINVAL, "REPLACE: unknown mode %u", r->mode);
	struct att *a = att_for(r->id, "REPLACE");
	if (!a)
		return -ENOENT;
	__u32 next = (a->st->active_gen & 1) ^ 1;
	struct batch b[T_COUNT], x[T_COUNT];
	__u32 want[FAM_COUNT] = { 0, 0 };
	int new_fd[FAM_COUNT] = { -1, -1 };
	int err = build_batches((const void *)(r + 1), r->count, next, b, x);
	/* The new policy is written under the inactive generation, after its old keys are gone;
	 * exact entries the small hash cannot take go to a large table of the right size. */
	if (!err) {
		exact_plan(a, b, want);
		err = gens_prepare_fill(a, want);
	}
	if (!err) {
		err = exact_fill(a, next, b, want, new_fd);
		for (int t = 0; t < T_COUNT && !err; t++)
			if (!is_exact(t))
				err = write_batch(a->table_fd[t], t, &b[t]);
		if (!err) /* a new large table goes into its slot last: the one RCU wait, only when growing */
			err = exact_install(a, next, want, new_fd, b);
		if (err) {
			gens_fill_failed(&a->gens); /* never visible to packets; deleted before reuse */
		} else {
			/* Nothing was visible to packets until here: the generation's settings, then the
			 * one store that flips it. The retired generation is cleared later, off this path. */
			__u32 bits = (want[FAM_V4] ? NF_SETTING_V4_LARGE : 0) | (want[FAM_V6] ? NF_SETTING_V6_LARGE : 0);
			store_settings(a, next, r->mode, (r->flags & DAEMON_SETTINGS) | bits);
			__atomic_store_n(&a->st->active_gen, next, __ATOMIC_RELEASE);
			gens_flipped(&a->gens);
		}
	}
	for (int f = 0; f < FAM_COUNT; f++)
		close_fd(&new_fd[f]);
	free_batches(b, x);
	return err;
}

int op_entries(const void *req, size_t len, bool del)
{
	const char *op = del ? "DELETE" : "UPSERT";
	if (len < sizeof(struct nf_entries_req))
		return fail(0, "%s: short request", op);
	const struct nf_entries_req *r = req;
	if ((len - sizeof(*r)) / sizeof(struct nf_wire_entry) < r->count)
		return fail(EINVAL, "%s: %u entries announced, %zu bytes sent", op, r->count, len - sizeof(*r));
	struct att *a = att_for(r->id, op);
	if (!a)
		return -ENOENT;
	struct batch b[T_COUNT], x[T_COUNT];
	int err = build_batches((const void *)(r + 1), r->count, a->st->active_gen & 1, b, x);
	if (!del)
		gens_active_written(&a->gens);
	/* Into the active generation: an UPSERT writes the scope entries before the address entries
	 * that name them, a DELETE removes them after (T_SCOPE is the last table). */
	for (int i = 0; i < T_COUNT && !err; i++) {
		int t = del ? i : (i + T_SCOPE) % T_COUNT;
		/* DELETE removes both; UPSERT writes the live ones and makes sure expired ones are gone. */
		err = del ? delete_table(a, t, &b[t]) : write_table(a, t, &b[t]);
		if (!err)
			err = delete_table(a, t, &x[t]);
	}
	free_batches(b, x);
	return err;
}

int op_set_mode(const void *req, size_t len)
{
	if (len < sizeof(struct nf_mode_req))
		return fail(0, "SET_MODE: short request");
	const struct nf_mode_req *r = req;
	if (r->mode > NF_MODE_BLOCK_ALL)
		return fail(EINVAL, "SET_MODE: unknown mode %u", r->mode);
	struct att *a = att_for(r->id, "SET_MODE");
	if (!a)
		return -ENOENT;
	__u32 gen = a->st->active_gen & 1;
	store_settings(a, gen, r->mode, (r->flags & DAEMON_SETTINGS) | large_bits(a, gen));
	return 0;
}
