// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tamper.c — VERIFY and RESTORE: is an attachment still what this loader made, and putting back
 * what someone else changed (issue 14: tamper detection of every kind).
 *
 * VERIFY, per attachment (read-only):
 *   - the attach point, always: the link's info (defunct → DETACHED; another program → PROG_REPLACED),
 *     or the clsact filter at the handle and priority nf_state records (gone → DETACHED; another
 *     program → PROG_REPLACED);
 *   - nf_state's fixed fields, always: compared in memory (it is mmapped) with the copy taken when
 *     the attachment was loaded or adopted (STATE);
 *   - NF_VERIFY_PINS: every pin opened, its object id compared with ours (MISSING, REPLACED);
 *   - NF_VERIFY_CONTENT: the active generation's mode, flags and an order-independent checksum of
 *     its entries (netfence-repair.h), which the daemon compares with what it wrote.
 * RESTORE: re-pins our objects where a pin is missing or names another object (the directory too),
 * and rewrites nf_state's fixed fields. Re-attaching is RELINK; rewriting the policy is REPLACE.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <bpf/bpf.h>

#include "loader.h"

/* ---------------------------------------------------------------- nf_state's fixed fields */

/* Copies the fields LOAD sets once and nothing changes later (not the generations, not the attach
 * point, not the host-wide counts). */
static void copy_fixed(struct nf_state *dst, const struct nf_state *src)
{
	dst->magic = src->magic;
	dst->layout = src->layout;
	dst->slot = src->slot;
	memcpy(dst->dns_ip4, src->dns_ip4, sizeof(dst->dns_ip4));
	memcpy(dst->dns_ip6, src->dns_ip6, sizeof(dst->dns_ip6));
	dst->dns_port = src->dns_port;
	dst->kind = src->kind;
	dst->direction = src->direction;
	memcpy(dst->id, src->id, sizeof(dst->id));
	dst->guards = src->guards;
	dst->dns_port_min = src->dns_port_min;
	dst->dns_port_max = src->dns_port_max;
	memcpy(dst->mac, src->mac, sizeof(dst->mac));
	dst->n_ip4 = src->n_ip4;
	dst->n_ip6 = src->n_ip6;
	memcpy(dst->ip4, src->ip4, sizeof(dst->ip4));
	memcpy(dst->ip6, src->ip6, sizeof(dst->ip6));
}

static bool fixed_equal(const struct nf_state *a, const struct nf_state *b)
{
	struct nf_state x, y;
	memset(&x, 0, sizeof(x));
	memset(&y, 0, sizeof(y));
	copy_fixed(&x, a);
	copy_fixed(&y, b);
	return memcmp(&x, &y, sizeof(x)) == 0;
}

void tamper_note(struct att *a)
{
	memset(&a->fixed, 0, sizeof(a->fixed));
	copy_fixed(&a->fixed, a->st);
	for (int i = 0; i < PIN_COUNT; i++)
		a->obj_id[i] = 0; /* read on first use */
}

/* ---------------------------------------------------------------- pins */

static __u32 obj_id_of(int fd)
{
	if (fd < 0)
		return 0;
	/* bpf_map_info, bpf_prog_info and bpf_link_info all start with {type, id}: read the id */
	struct bpf_link_info info;
	memset(&info, 0, sizeof(info));
	__u32 len = sizeof(info);
	return bpf_obj_get_info_by_fd(fd, &info, &len) ? 0 : info.id;
}

static int pin_fd(const struct att *a, int i)
{
	switch (i) {
	case 0: return a->state_fd;
	case 1: return a->counters_fd;
	case 6: case 7: return a->large_fd[i - 6];
	case PIN_PROG: return a->prog_fd;
	case PIN_LINK: return a->link_fd;
	case PIN_HITS: return a->hits_fd;
	case PIN_SCOPE: return a->table_fd[T_SCOPE];
	case PIN_SK: return a->sk_fd;
	case PIN_PROG_SOCK: return a->sock_prog_fd;
	case PIN_LINK_SOCK: return a->link_sock_fd;
	default: return a->table_fd[i - 2];
	}
}

static __u32 our_id(struct att *a, int i)
{
	if (i == PIN_LINK || i == PIN_LINK_SOCK)
		return obj_id_of(pin_fd(a, i)); /* RELINK makes a new link: not cached */
	if (!a->obj_id[i])
		a->obj_id[i] = obj_id_of(pin_fd(a, i));
	return a->obj_id[i];
}

/* Bit i set: pin i is missing or names another object than ours (pins we do not hold are skipped). */
static __u32 bad_pins(struct att *a)
{
	__u32 bad = 0;
	char p[512];
	for (int i = 0; i < PIN_COUNT; i++) {
		__u32 want = our_id(a, i);
		if (!want)
			continue; /* e.g. no link: clsact */
		pin_path(p, sizeof(p), a->id, pin_names[i]);
		int fd = bpf_obj_get(p);
		if (fd < 0 || obj_id_of(fd) != want)
			bad |= 1u << i;
		if (fd >= 0)
			close(fd);
	}
	return bad;
}

/* ---------------------------------------------------------------- the attach point */

static void check_attach_point(struct att *a, struct nf_verify_result *r)
{
	r->prog_id = our_id(a, PIN_PROG);
	if (a->st->method == NF_METHOD_CLSACT) {
		struct bpf_tc_hook hook = { .sz = sizeof(hook), .ifindex = (int)a->st->ifindex,
					    .attach_point = a->st->direction == NF_DIR_EGRESS ? BPF_TC_EGRESS : BPF_TC_INGRESS };
		LIBBPF_OPTS(bpf_tc_opts, q, .handle = a->st->tc_handle, .priority = a->st->tc_priority);
		if (bpf_tc_query(&hook, &q)) /* gone (also: replaced by a classic BPF classifier, which has no id) */
			r->tamper |= NF_TAMPER_DETACHED;
		else if (q.prog_id != r->prog_id) {
			r->tamper |= NF_TAMPER_PROG_REPLACED;
			r->seen_prog_id = q.prog_id;
		}
		return;
	}
	if (a->st->method == NF_METHOD_NONE || a->link_fd < 0) {
		r->tamper |= NF_TAMPER_DETACHED;
		return;
	}
	struct bpf_link_info info;
	memset(&info, 0, sizeof(info));
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(a->link_fd, &info, &len)) {
		r->tamper |= NF_TAMPER_DETACHED;
		return;
	}
	/* cgroup_id / TCX ifindex (at the union's start, as in links.c) is 0 once the link is detached */
	bool live = info.type == BPF_LINK_TYPE_CGROUP ? info.cgroup.cgroup_id != 0 : info.netns.netns_ino != 0;
	if (!live)
		r->tamper |= NF_TAMPER_DETACHED;
	else if (info.prog_id != r->prog_id) {
		r->tamper |= NF_TAMPER_PROG_REPLACED;
		r->seen_prog_id = info.prog_id;
	}
	if (a->st->kind != NF_KIND_CGROUP)
		return;
	/* The cgroup/sock_create link (owner stamps): detached or updated counts like the main link's
	 * (RELINK re-creates it). */
	memset(&info, 0, sizeof(info));
	len = sizeof(info);
	if (a->link_sock_fd < 0 || bpf_obj_get_info_by_fd(a->link_sock_fd, &info, &len) || info.cgroup.cgroup_id == 0)
		r->tamper |= NF_TAMPER_DETACHED;
	else if (info.prog_id != our_id(a, PIN_PROG_SOCK))
		r->tamper |= NF_TAMPER_PROG_REPLACED;
}

/* ---------------------------------------------------------------- the content checksum */

struct sums {
	__u32 a, b, n;
};

static __u32 fnv1a(__u32 h, const __u8 *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/*
 * One entry's record (netfence-protocol.h, "The content checksum"). An address entry's scope set
 * (nf_entry.scope) and the kinds of owner it looks up (NF_ENTRY_SCOPE_*) are part of it: an entry
 * pointed at another scope set, or made to skip a kind, drops its scoped denies without anything
 * else changing. A scope entry's id is in its key bytes; its flags mean ALLOW/DENY only.
 */
static void add_entry(struct sums *s, __u8 family, __u8 prefixlen, const __u8 *addr, const struct nf_entry *v)
{
	bool scope_entry = family == NF_WIRE_SCOPE;
	__u8 keep_flags = NF_ENTRY_ALLOW | NF_ENTRY_DENY | (scope_entry ? 0 : NF_ENTRY_SCOPE_KINDS);
	__u8 rec[NF_SUM_RECORD] = { family, prefixlen, (__u8)(v->flags & keep_flags), v->expires_ns != 0 };
	memcpy(rec + 4, addr, family == 4 ? 4 : scope_entry ? 10 : 16);
	for (int i = 0; i < 16; i++) { /* masked to the prefix, as the lookups see it */
		int keep = (int)prefixlen - i * 8;
		rec[4 + i] &= keep >= 8 ? 0xff : keep <= 0 ? 0 : (__u8)(0xff << (8 - keep));
	}
	if (!scope_entry) { /* little endian, as nf_wire_entry.scope */
		rec[20] = (__u8)(v->scope & 0xff);
		rec[21] = (__u8)(v->scope >> 8);
	}
	s->a += fnv1a(NF_SUM_BASIS_A, rec, sizeof(rec));
	s->b += fnv1a(NF_SUM_BASIS_B, rec, sizeof(rec));
	s->n++;
}

/* Walks a table key by key (get_next_key + lookup): the LPM tries have no batch lookup. */
static void sum_walk(struct sums *s, int fd, int t, __u32 gen, bool large)
{
	char cur[32], last[32];
	const void *prev = NULL;
	struct nf_entry v;
	bool v6 = t == T_V6_EXACT || t == T_V6_LPM;
	while (fd >= 0 && bpf_map_get_next_key(fd, prev, cur) == 0) {
		memcpy(last, cur, sizeof(cur));
		prev = last;
		if (!large && key_gen(t, cur) != gen)
			continue;
		if (bpf_map_lookup_elem(fd, cur, &v))
			continue; /* deleted meanwhile */
		const __u8 *addr;
		__u8 plen;
		if (large) {
			addr = (const __u8 *)cur;
			plen = v6 ? 128 : 32;
		} else if (is_exact(t)) {
			addr = (const __u8 *)cur + 4;
			plen = v6 ? 128 : 32;
		} else {
			__u32 kp;
			memcpy(&kp, cur, 4);
			addr = (const __u8 *)cur + 5;
			plen = (__u8)(kp - 8);
		}
		add_entry(s, t == T_SCOPE ? NF_WIRE_SCOPE : v6 ? 6 : 4, plen, addr, &v);
	}
}

static void sum_active(struct att *a, struct nf_verify_result *r)
{
	__u32 gen = a->st->active_gen & 1;
	struct sums s = { 0, 0, 0 };
	for (int f = 0; f < FAM_COUNT; f++) {
		int te = f == FAM_V6 ? T_V6_EXACT : T_V4_EXACT, tl = f == FAM_V6 ? T_V6_LPM : T_V4_LPM;
		if (uses_large(a, f, gen))
			sum_walk(&s, a->large[f][gen].fd, te, gen, true);
		else
			sum_walk(&s, a->table_fd[te], te, gen, false);
		sum_walk(&s, a->table_fd[tl], tl, gen, false);
	}
	sum_walk(&s, a->table_fd[T_SCOPE], T_SCOPE, gen, false); /* scope entries: family NF_WIRE_SCOPE, key bytes */
	r->sum_a = s.a;
	r->sum_b = s.b;
	r->entries = s.n;
}

/* ---------------------------------------------------------------- VERIFY, RESTORE */

int op_verify(const void *req, size_t len, void **reply, size_t *reply_len)
{
	if (len < 8)
		return fail(0, "VERIFY: short request");
	__u32 count;
	memcpy(&count, req, 4);
	if (count > 1u << 20 || len < 8 + (size_t)count * sizeof(struct nf_verify_item))
		return fail(EINVAL, "VERIFY: %u items in %zu bytes", count, len);
	struct nf_verify_result *out = calloc(count ? count : 1, sizeof(*out));
	if (!out)
		return fail(ENOMEM, "VERIFY");
	const struct nf_verify_item *items = (const void *)((const char *)req + 8);
	for (__u32 i = 0; i < count; i++) {
		char id[NF_ID_LEN];
		id_of(id, items[i].id);
		struct nf_verify_result *r = &out[i];
		struct att *a;
		if (!valid_id(id) || find_or_adopt(id, &a)) {
			r->tamper = NF_TAMPER_UNKNOWN;
			continue;
		}
		check_attach_point(a, r);
		if (!fixed_equal(a->st, &a->fixed))
			r->tamper |= NF_TAMPER_STATE;
		r->mode = a->st->gen[a->st->active_gen & 1].mode;
		r->flags = a->st->gen[a->st->active_gen & 1].flags;
		if (items[i].checks & NF_VERIFY_PINS) {
			r->bad_pins = bad_pins(a);
			if (r->bad_pins) {
				char p[512];
				for (int b = 0; b < PIN_COUNT; b++) {
					if (!(r->bad_pins & (1u << b)))
						continue;
					pin_path(p, sizeof(p), id, pin_names[b]);
					r->tamper |= access(p, F_OK) ? NF_TAMPER_PIN_MISSING : NF_TAMPER_PIN_REPLACED;
				}
			}
		}
		if (items[i].checks & NF_VERIFY_CONTENT)
			sum_active(a, r);
		r->checked = items[i].checks;
	}
	*reply = out;
	*reply_len = (size_t)count * sizeof(*out);
	return 0;
}

int op_restore(const void *req, size_t len, void *reply, size_t *reply_len)
{
	char id[NF_ID_LEN], p[512];
	int err = id_request(req, len, "RESTORE", id);
	if (err)
		return err;
	struct att *a = find_att(id);
	if (!a)
		return fail(ENOENT, "RESTORE %s: not loaded or adopted", id);
	struct nf_restore_reply *out = reply;
	memset(out, 0, sizeof(*out));
	snprintf(p, sizeof(p), "%s/%s", g.pin_root, id);
	if (mkdir(p, 0700) && errno != EEXIST)
		return fail(errno, "RESTORE %s: creating %s", id, p);
	__u32 bad = bad_pins(a);
	for (int i = 0; i < PIN_COUNT && !err; i++) {
		if (!(bad & (1u << i)))
			continue;
		pin_path(p, sizeof(p), id, pin_names[i]);
		if (unlink(p) && errno != ENOENT)
			err = fail(errno, "RESTORE %s: removing the foreign %s", id, p);
		else if (bpf_obj_pin(pin_fd(a, i), p))
			err = fail(errno, "RESTORE %s: pinning %s", id, p);
		else
			out->repinned |= 1u << i;
	}
	if (!fixed_equal(a->st, &a->fixed)) {
		copy_fixed(a->st, &a->fixed);
		out->state_fixed = 1;
	}
	*reply_len = sizeof(*out);
	return err;
}
