// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * inspect.c — TABLES: where an attachment's active generation keeps its entries, per family,
 * counted by walking its maps (a diagnostic; the tests use it to show that no /32 or /128 is
 * answered by an LPM trie, and which table — small hash or large — holds them).
 */
#include <string.h>
#include <bpf/bpf.h>

#include "loader.h"

/* Counts the keys of table t (of generation gen; a large table's: all) and, for an LPM trie,
 * those with a full-length prefix. */
static __u32 count_keys(int fd, int t, __u32 gen, bool large, __u32 *hosts)
{
	__u32 n = 0;
	char cur[32], last[32];
	const void *prev = NULL;
	while (fd >= 0 && bpf_map_get_next_key(fd, prev, cur) == 0) {
		if (large || key_gen(t, cur) == gen) {
			n++;
			if (hosts) {
				__u32 plen;
				memcpy(&plen, cur, 4);
				*hosts += plen == 8u + (t == T_V6_LPM ? 128 : 32);
			}
		}
		memcpy(last, cur, sizeof(cur));
		prev = last;
	}
	return n;
}

int op_tables(const void *req, size_t len, void *reply, size_t *reply_len)
{
	struct att *a;
	int err = adopted_request(req, len, "TABLES", &a);
	if (err)
		return err;
	__u32 gen = a->st->active_gen & 1;
	struct nf_tables_reply *out = reply;
	memset(out, 0, sizeof(*out));
	for (int f = 0; f < FAM_COUNT; f++) {
		struct nf_tables_family *r = &out->fam[f];
		int te = f == FAM_V6 ? T_V6_EXACT : T_V4_EXACT, tl = f == FAM_V6 ? T_V6_LPM : T_V4_LPM;
		const struct nf_large *l = &a->large[f][gen];
		r->small_cap = a->small_cap[f];
		r->small_n = count_keys(a->table_fd[te], te, gen, false, NULL);
		r->large_cap = l->fd >= 0 ? l->cap : 0;
		r->large_n = count_keys(l->fd, te, gen, true, NULL);
		r->uses_large = uses_large(a, f, gen);
		r->lpm_n = count_keys(a->table_fd[tl], tl, gen, false, &r->lpm_host_n);
		r->other_large_cap = a->large[f][gen ^ 1].fd >= 0 ? a->large[f][gen ^ 1].cap : 0;
	}
	out->scope_n = count_keys(a->table_fd[T_SCOPE], T_SCOPE, gen, false, NULL);
	*reply_len = sizeof(*out);
	return 0;
}
