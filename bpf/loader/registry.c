// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * registry.c — the attachments this process knows (loaded or adopted; struct att in loader.h),
 * how a request names one (ids), and where its pins live: <pin_root>/<id>/<pin name>.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "loader.h"

bool valid_id(const char *id)
{
	size_t n = strnlen(id, NF_ID_LEN);
	if (n == 0 || n >= NF_ID_LEN || id[0] == '_' || id[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void id_of(char out[NF_ID_LEN], const char *raw)
{
	snprintf(out, NF_ID_LEN, "%.*s", NF_ID_LEN - 1, raw);
}

int id_request(const void *req, size_t len, const char *op, char id[NF_ID_LEN])
{
	if (len < sizeof(struct nf_id_req))
		return fail(0, "%s: short request", op);
	id_of(id, ((const struct nf_id_req *)req)->id);
	if (!valid_id(id))
		return fail(EINVAL, "%s: invalid attachment id \"%s\"", op, id);
	return 0;
}

void pin_path(char *out, size_t cap, const char *id, const char *name)
{
	snprintf(out, cap, "%s/%s/%s", g.pin_root, id, name);
}

struct att *find_att(const char *id)
{
	for (size_t i = 0; i < g.n_atts; i++)
		if (g.atts[i].used && strncmp(g.atts[i].id, id, NF_ID_LEN) == 0)
			return &g.atts[i];
	return NULL;
}

struct att *att_for(const char *raw_id, const char *op)
{
	char id[NF_ID_LEN];
	id_of(id, raw_id);
	struct att *a = find_att(id);
	if (!a)
		fail(ENOENT, "%s %s: not loaded or adopted", op, id);
	return a;
}

struct att *new_att(const char *id)
{
	struct att *a = NULL;
	for (size_t i = 0; i < g.n_atts; i++)
		if (!g.atts[i].used) {
			a = &g.atts[i];
			break;
		}
	if (!a) {
		struct att *n = realloc(g.atts, (g.n_atts + 16) * sizeof(*n));
		if (!n)
			return NULL;
		memset(n + g.n_atts, 0, 16 * sizeof(*n));
		g.atts = n;
		a = &g.atts[g.n_atts];
		g.n_atts += 16;
	}
	memset(a, 0, sizeof(*a));
	a->used = true;
	snprintf(a->id, sizeof(a->id), "%s", id);
	a->state_fd = a->counters_fd = a->prog_fd = a->link_fd = a->hits_fd = -1;
	a->sk_fd = a->sock_prog_fd = a->link_sock_fd = -1;
	for (int t = 0; t < T_COUNT; t++)
		a->table_fd[t] = -1;
	for (int f = 0; f < FAM_COUNT; f++) {
		a->large_fd[f] = -1;
		for (int gen = 0; gen < NF_GENERATIONS; gen++)
			a->large[f][gen].fd = -1;
	}
	return a;
}

void free_att(struct att *a)
{
	if (a->st)
		munmap(a->st, sizeof(struct nf_state));
	close_fd(&a->state_fd);
	close_fd(&a->counters_fd);
	close_fd(&a->hits_fd);
	close_fd(&a->prog_fd);
	close_fd(&a->link_fd);
	close_fd(&a->sk_fd);
	close_fd(&a->sock_prog_fd);
	close_fd(&a->link_sock_fd);
	for (int t = 0; t < T_COUNT; t++)
		close_fd(&a->table_fd[t]);
	for (int f = 0; f < FAM_COUNT; f++) {
		close_fd(&a->large_fd[f]);
		for (int gen = 0; gen < NF_GENERATIONS; gen++)
			close_fd(&a->large[f][gen].fd);
	}
	memset(a, 0, sizeof(*a));
}

const char *const pin_names[PIN_COUNT] = { "state",    "counters", "v4_exact", "v4_lpm", "v6_exact",
					   "v6_lpm",   "v4_large", "v6_large", "prog",   "link",
					   "hits",     "scope",    "sk",       "prog_sock", "link_sock" };

void unpin_all(const char *id)
{
	char p[512];
	for (size_t i = 0; i < sizeof(pin_names) / sizeof(pin_names[0]); i++) {
		pin_path(p, sizeof(p), id, pin_names[i]);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/%s", g.pin_root, id);
	rmdir(p);
}
