// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lookup.c — LOOKUP (explain, issue 14): one destination looked up in an attachment's kernel maps
 * the way the data path looks it up (policy.h nf_lookup_v4/v6 and nf_protected_match), so the
 * daemon explains the verdict from what the kernel holds, not from its own idea of the policy.
 * It returns the facts; the order of decisions (guards, protected sets, mode, deny/allow, local
 * ranges) is applied by the daemon (daemon/src/explain/verdict.ts mirrors nf_decide step by step).
 * Read-only: no counter, no event, no map is written.
 */
#include <string.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "loader.h"

/* NF_LPM_EXPIRED_HOPS in policy.h (kept in step by hand: a BPF-side define, not in the contract). */
#define LOOKUP_EXPIRED_HOPS 4

static bool live(const struct nf_entry *v, __s64 now_mono)
{
	return v->expires_ns == 0 || (__s64)v->expires_ns > now_mono;
}

static void take(struct nf_lookup_reply *r, const struct nf_entry *v, __u8 table, __s64 now_real, __s64 now_mono)
{
	r->table = table;
	r->flags = v->flags;
	r->rule_id = v->rule_id;
	if (v->expires_ns) /* CLOCK_MONOTONIC deadline → wall clock ms, rounded up (as DUMP) */
		r->expires_ms = (__u64)((now_real + ((__s64)v->expires_ns - now_mono) + 999999) / 1000000);
}

/* The generation's exact entry (nf_exact_v4/v6): its large table when the settings say so, read
 * through the ARRAY_OF_MAPS slot the program reads, else the small hash. 1 = found (into v). */
static int exact_lookup(struct att *a, int fam, __u32 gen, __u32 sflags, const __u8 *addr, struct nf_entry *v, __u8 *table)
{
	size_t alen = fam == FAM_V6 ? 16 : 4;
	if (sflags & NF_SETTING_LARGE(fam == FAM_V6)) {
		__u32 inner_id = 0;
		if (bpf_map_lookup_elem(a->large_fd[fam], &gen, &inner_id) != 0 || inner_id == 0)
			return 0; /* the program's lookup of an empty slot: no table, no entry */
		int fd = bpf_map_get_fd_by_id(inner_id);
		if (fd < 0)
			return fail(errno, "LOOKUP %s: large table %u", a->id, inner_id);
		int found = bpf_map_lookup_elem(fd, addr, v) == 0;
		close(fd);
		*table = NF_LOOKUP_LARGE;
		return found;
	}
	struct nf_exact_v6_key k; /* the v4 key is a prefix of the same layout: gen, then the address */
	memset(&k, 0, sizeof(k));
	k.gen = gen;
	memcpy(k.addr, addr, alen);
	*table = NF_LOOKUP_SMALL;
	return bpf_map_lookup_elem(a->table_fd[fam == FAM_V6 ? T_V6_EXACT : T_V4_EXACT], &k, v) == 0;
}

/* What the packet of the request is (nf_lookup_req's layout-6 tail; an older request: unknown). */
struct pkt {
	__u8 proto;
	__u16 port;
	__u32 uid, gid;
};

/* segment.h nf_scope_match: the scope set's answer for the packet, one LPM lookup per kind present. */
static __u8 scope_match(struct att *a, __u32 gen, const struct nf_entry *v, const struct pkt *q, __s64 now_mono, __u32 *rule)
{
	struct nf_scope_key k;
	memset(&k, 0, sizeof(k));
	k.prefixlen = 64 + 8 + 16;
	k.gen = (__u8)gen;
	k.scope = v->scope;
	k.proto = q->proto;
	__u16 port = (q->proto == 6 || q->proto == 17 || q->proto == 132) ? htons(q->port) : 0;
	memcpy(k.port, &port, 2);
	__u8 flags = 0;
	for (int kind = NF_SCOPE_KIND_ANY; kind <= NF_SCOPE_KIND_GID; kind++) {
		if (!(v->flags & (NF_ENTRY_SCOPE_ANY << kind)))
			continue;
		__u32 who = kind == NF_SCOPE_KIND_ANY ? 0 : kind == NF_SCOPE_KIND_UID ? q->uid : q->gid;
		if (kind == NF_SCOPE_KIND_UID && who == NF_OWNER_UNKNOWN)
			continue; /* as nf_scope_match: an unknown gid looks up NF_OWNER_UNKNOWN */
		k.kind = (__u8)kind;
		k.principal = who;
		struct nf_entry e;
		if (bpf_map_lookup_elem(a->table_fd[T_SCOPE], &k, &e) != 0 || !live(&e, now_mono))
			continue;
		__u8 f = e.flags & (NF_ENTRY_ALLOW | NF_ENTRY_DENY);
		if ((f & NF_ENTRY_DENY) ? !(flags & NF_ENTRY_DENY) : (f && !flags))
			*rule = e.rule_id;
		flags |= f;
	}
	return flags;
}

/* policy.h nf_entry_match: a live entry's unscoped flags plus its scope set's answer; 0 = no match. */
static bool entry_match(struct att *a, __u32 gen, struct nf_entry *v, const struct pkt *q, __s64 now_mono, struct nf_lookup_reply *r)
{
	__u8 flags = v->flags & (NF_ENTRY_ALLOW | NF_ENTRY_DENY);
	if (v->scope) {
		__u32 srule = 0;
		__u8 sf = scope_match(a, gen, v, q, now_mono, &srule);
		if (sf && !(flags & NF_ENTRY_DENY) && ((sf & NF_ENTRY_DENY) || !flags))
			v->rule_id = srule;
		if (!(flags | sf)) {
			r->scoped_skipped++;
			return false;
		}
		r->scope = v->scope;
		r->scope_flags = sf;
		r->scope_rule_id = srule;
		flags |= sf;
	}
	v->flags = (v->flags & ~(NF_ENTRY_ALLOW | NF_ENTRY_DENY)) | flags;
	return flags != 0;
}

/* nf_lookup_v4/v6: the exact entry if it is live and matches, else the LPM walk that steps over up to
 * LOOKUP_EXPIRED_HOPS expired or non-matching prefixes to a shorter one (then: depth, fail closed). */
static int policy_lookup(struct att *a, int fam, __u32 gen, __u32 sflags, const __u8 *addr, const struct pkt *q,
			 struct nf_lookup_reply *r)
{
	__s64 now_real = clock_ns(CLOCK_REALTIME), now_mono = clock_ns(CLOCK_MONOTONIC);
	size_t alen = fam == FAM_V6 ? 16 : 4;
	struct nf_entry v;
	__u8 table = NF_LOOKUP_NONE;
	int found = exact_lookup(a, fam, gen, sflags, addr, &v, &table);
	if (found < 0)
		return found;
	if (found && live(&v, now_mono) && entry_match(a, gen, &v, q, now_mono, r)) {
		take(r, &v, table, now_real, now_mono);
		r->prefixlen = (__u8)(alen * 8);
		memcpy(r->addr, addr, alen);
		return 0;
	}
	r->expired_skipped += found && !live(&v, now_mono) ? 1 : 0;
	struct nf_lpm_v6_key lk; /* v4 key: prefixlen, gen, 4 address bytes — same head */
	memset(&lk, 0, sizeof(lk));
	lk.prefixlen = 8 + (__u32)alen * 8;
	lk.gen = (__u8)gen;
	memcpy(lk.addr, addr, alen);
	int fd = a->table_fd[fam == FAM_V6 ? T_V6_LPM : T_V4_LPM];
	for (int i = 0; i < LOOKUP_EXPIRED_HOPS; i++) {
		if (bpf_map_lookup_elem(fd, &lk, &v) != 0)
			return 0;
		bool alive = live(&v, now_mono);
		if (alive && entry_match(a, gen, &v, q, now_mono, r)) {
			take(r, &v, NF_LOOKUP_LPM, now_real, now_mono);
			r->prefixlen = v.prefixlen;
			for (size_t b = 0; b < alen; b++) { /* the entry's prefix: the address masked */
				int bits = (int)v.prefixlen - (int)b * 8;
				r->addr[b] = bits >= 8 ? addr[b] : bits <= 0 ? 0 : (__u8)(addr[b] & (0xff << (8 - bits)));
			}
			return 0;
		}
		if (!alive)
			r->expired_skipped++;
		if (v.prefixlen == 0)
			return 0;
		lk.prefixlen = 8 + v.prefixlen - 1u;
	}
	r->depth = 1;
	return 0;
}

/* A protected trie's longest match (what nf_protected_match reads) and, by walking its keys (at most
 * a few thousand), that match's prefix length. */
static void prot_lookup(const int fds[2], int fam, const __u8 *addr, struct nf_lookup_prot *out)
{
	size_t alen = fam == FAM_V6 ? 16 : 4;
	int fd = fds[fam == FAM_V6 ? 1 : 0];
	struct nf_prot_v6_key k, cur, last; /* v4 keys: the same head */
	struct nf_protected v;
	memset(&k, 0, sizeof(k));
	k.prefixlen = (__u32)alen * 8;
	memcpy(k.addr, addr, alen);
	if (fd < 0 || bpf_map_lookup_elem(fd, &k, &v) != 0)
		return;
	out->found = 1;
	out->proto = v.proto;
	out->port = v.port;
	const void *prev = NULL;
	while (bpf_map_get_next_key(fd, prev, &cur) == 0) {
		bool covers = true;
		for (__u32 bit = 0; bit < cur.prefixlen && covers; bit++)
			covers = ((cur.addr[bit / 8] ^ addr[bit / 8]) & (0x80 >> (bit % 8))) == 0;
		if (covers && cur.prefixlen >= out->prefixlen)
			out->prefixlen = (__u8)cur.prefixlen;
		memcpy(&last, &cur, sizeof(cur));
		prev = &last;
	}
}

int op_lookup(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < offsetof(struct nf_lookup_req, proto))
		return fail(EINVAL, "LOOKUP: short request");
	const struct nf_lookup_req *q = req;
	if (q->family != 4 && q->family != 6)
		return fail(EINVAL, "LOOKUP: family %u", q->family);
	struct att *a;
	int err = adopted_request(req, len, "LOOKUP", &a);
	if (err)
		return err;
	struct nf_lookup_reply *r = reply;
	memset(r, 0, sizeof(*r));
	memcpy(&r->state, a->st, sizeof(r->state)); /* one snapshot of what packets read */
	int fam = q->family == 6 ? FAM_V6 : FAM_V4;
	__u32 gen = r->state.active_gen & 1;
	struct pkt p = { .uid = NF_OWNER_UNKNOWN, .gid = NF_OWNER_UNKNOWN };
	if (len >= sizeof(struct nf_lookup_req)) {
		p.proto = q->proto;
		p.port = q->port;
		p.uid = q->uid;
		p.gid = q->gid;
	}
	err = policy_lookup(a, fam, gen, r->state.gen[gen].flags, q->addr, &p, r);
	if (err)
		return err;
	prot_lookup(g.prot_fd, fam, q->addr, &r->prot);
	prot_lookup(g.pdeny_fd, fam, q->addr, &r->pdeny);
	*reply_len = sizeof(*r);
	return 0;
}
