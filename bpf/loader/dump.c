// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * dump.c — DUMP: what a pinned attachment is and enforces, read back from the kernel alone (its
 * nf_state settings, whether it is really attached, and the live entries of its active
 * generation: its small exact hash's keys or its large tables, its LPM keys, and its scope table
 * with the expired scope entries too), so the daemon can re-register an attachment its state store
 * lost with the rules it enforces, scoped ones included.
 */
#include <string.h>
#include <bpf/bpf.h>

#include "loader.h"

struct entries {
	struct nf_wire_entry *es;
	__u32 n, cap;
};

enum { T_V4_LARGE = T_COUNT, T_V6_LARGE }; /* a large table's keys: the address alone */

/*
 * The wire entry of a stored key and value; false for an expired address entry (left out: the
 * kernel steps over it). Expired scope entries are sent, with their past deadline: the kernel's
 * scope lookup takes the longest block and an expired one answers "no match" for its whole block,
 * hiding any shorter live block, so the daemon must see it to rebuild the rules exactly (or refuse
 * to: daemon/src/datapath/scope-decode.ts).
 */
static bool wire_entry_of(int t, const void *key, const struct nf_entry *v, __s64 now_real_ns, __s64 now_mono_ns,
			  struct nf_wire_entry *e)
{
	if (t != T_SCOPE && v->expires_ns && (__s64)v->expires_ns <= now_mono_ns)
		return false;
	memset(e, 0, sizeof(*e));
	e->family = t == T_SCOPE ? NF_WIRE_SCOPE : (t == T_V4_EXACT || t == T_V4_LPM || t == T_V4_LARGE) ? 4 : 6;
	e->flags = v->flags;
	e->scope = v->scope;
	e->rule_id = v->rule_id;
	if (v->expires_ns) { /* CLOCK_MONOTONIC deadline → wall clock ms, rounded up (never 0: 0 means none) */
		__s64 ms = (now_real_ns + ((__s64)v->expires_ns - now_mono_ns) + 999999) / 1000000;
		e->expires_ms = ms > 0 ? (__u64)ms : 1;
	}
	switch (t) {
	case T_V4_EXACT:
		e->prefixlen = 32;
		memcpy(e->addr, ((const struct nf_exact_v4_key *)key)->addr, 4);
		break;
	case T_V6_EXACT:
		e->prefixlen = 128;
		memcpy(e->addr, ((const struct nf_exact_v6_key *)key)->addr, 16);
		break;
	case T_V4_LARGE:
		e->prefixlen = 32;
		memcpy(e->addr, key, 4);
		break;
	case T_V6_LARGE:
		e->prefixlen = 128;
		memcpy(e->addr, key, 16);
		break;
	case T_V4_LPM:
		e->prefixlen = (__u8)(((const struct nf_lpm_v4_key *)key)->prefixlen - 8);
		memcpy(e->addr, ((const struct nf_lpm_v4_key *)key)->addr, 4);
		break;
	case T_V6_LPM:
		e->prefixlen = (__u8)(((const struct nf_lpm_v6_key *)key)->prefixlen - 8);
		memcpy(e->addr, ((const struct nf_lpm_v6_key *)key)->addr, 16);
		break;
	default: /* T_SCOPE: the key bytes after the generation (nf_wire_entry, NF_WIRE_SCOPE) */
		e->prefixlen = (__u8)(((const struct nf_scope_key *)key)->prefixlen - 8);
		memcpy(e->addr, (const __u8 *)key + 5, 10);
	}
	return true;
}

/* Appends the live entries of generation `gen` in table t (a large table: all of them). */
static int collect(int fd, int t, __u32 gen, struct entries *out)
{
	__s64 now_real = clock_ns(CLOCK_REALTIME), now_mono = clock_ns(CLOCK_MONOTONIC);
	char cur[32], last[32];
	const void *prev = NULL;
	while (bpf_map_get_next_key(fd, prev, cur) == 0) {
		struct nf_entry v;
		if (out->n == out->cap) {
			__u32 c = out->cap ? out->cap * 2 : 256;
			struct nf_wire_entry *m = realloc(out->es, (size_t)c * sizeof(*m));
			if (!m)
				return fail(ENOMEM, "DUMP");
			out->es = m;
			out->cap = c;
		}
		bool mine = t >= T_COUNT || key_gen(t, cur) == gen;
		if (mine && bpf_map_lookup_elem(fd, cur, &v) == 0 &&
		    wire_entry_of(t, cur, &v, now_real, now_mono, &out->es[out->n]))
			out->n++;
		memcpy(last, cur, sizeof(cur));
		prev = last;
	}
	return 0;
}

/* Adopts the pins first when this loader has not yet. */
int op_dump(const void *req, size_t len, void **reply, size_t *reply_len)
{
	struct att *a;
	int err = adopted_request(req, len, "DUMP", &a);
	if (err)
		return err;
	struct nf_dump_reply h;
	memset(&h, 0, sizeof(h));
	__u32 gen = a->st->active_gen & 1;
	h.slot = a->st->slot;
	h.ifindex = a->st->ifindex;
	h.mode = a->st->gen[gen].mode;
	h.flags = a->st->gen[gen].flags & (NF_SETTING_AUDIT | NF_SETTING_KEEP);
	h.prog_id = prog_id_of(a->prog_fd);
	h.attached = is_attached(a, &h.cgroup_id);
	h.dns_port = a->st->dns_port;
	h.kind = a->st->kind;
	h.method = a->st->method;
	h.direction = a->st->direction;
	struct entries es = { 0 };
	for (int t = 0; t < T_COUNT && !err; t++) {
		int f = t == T_V6_EXACT ? FAM_V6 : FAM_V4;
		if (is_exact(t) && uses_large(a, f, gen))
			err = collect(a->large[f][gen].fd, f == FAM_V6 ? T_V6_LARGE : T_V4_LARGE, gen, &es);
		else
			err = collect(a->table_fd[t], t, gen, &es);
	}
	char *out = err ? NULL : malloc(sizeof(h) + (size_t)es.n * sizeof(*es.es));
	if (!err && !out)
		err = fail(ENOMEM, "DUMP");
	if (!err) {
		h.count = es.n;
		memcpy(out, &h, sizeof(h));
		if (es.n)
			memcpy(out + sizeof(h), es.es, (size_t)es.n * sizeof(*es.es));
		*reply = out;
		*reply_len = sizeof(h) + (size_t)es.n * sizeof(*es.es);
	}
	free(es.es);
	return err;
}
