// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * objects.c — attachments' objects and pins:
 * LOAD opens the tc or cgroup object through its skeleton (bpf/build/netfence_{tc,cgroup}.skel.h, generated
 * from bpf/prebuilt), sizes the exact tables, shares the pinned host-wide maps, loads it and pins
 *   <pin_root>/<id>/{state,counters,v4_exact,v4_lpm,v6_exact,v6_lpm,v4_large,v6_large,prog,hits,scope,sk}
 *   and, cgroup attachments, prog_sock (the cgroup/sock_create program)   (link, link_sock: links.c)
 * ADOPT rebuilds an attachment from those pins alone (nf_state says how it was made), so a fresh
 * loader takes over what an earlier one left enforcing; UNLOAD detaches and removes the pins.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <bpf/bpf.h>

#include "loader.h"
#include "netfence_tc.skel.h"
#include "netfence_cgroup.skel.h"

static struct nf_state *map_state(int fd)
{
	void *p = mmap(NULL, sizeof(struct nf_state), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* ---------------------------------------------------------------- objects */

int read_object_file(const char *what, const char *path, void **data, size_t *size)
{
	*data = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb)) {
		int err = fail(errno, "%s: opening %s", what, path);
		if (fd >= 0)
			close(fd);
		return err;
	}
	*size = (size_t)sb.st_size;
	*data = malloc(*size ? *size : 1);
	ssize_t n = *data ? read(fd, *data, *size) : -1;
	int err = n == (ssize_t)*size ? 0 : fail(n < 0 ? errno : EIO, "%s: reading %s", what, path);
	close(fd);
	if (err) {
		free(*data);
		*data = NULL;
	}
	return err;
}

/* An attachment object's program and maps, from whichever skeleton (tc or cgroup) it was opened
 * with: both objects declare the same maps (include/policy.h). */
struct att_obj {
	struct bpf_object_skeleton *skel;
	struct bpf_program *prog, *sock_prog; /* sock_prog: cgroup only (NULL for tc) */
	struct bpf_map *state, *counters, *hits, *sk, *table[T_COUNT], *large[FAM_COUNT];
	struct bpf_map *shared[7]; /* the host-wide maps, in the order of shared_fd in load_att_obj */
};
#define ATT_OBJ(s, program, sock_program)                                                                            \
	((struct att_obj){                                                                                          \
		.skel = (s)->skeleton,                                                                              \
		.prog = (s)->progs.program,                                                                         \
		.sock_prog = sock_program,                                                                          \
		.state = (s)->maps.nf_state,                                                                        \
		.counters = (s)->maps.nf_counters,                                                                  \
		.hits = (s)->maps.nf_hits,                                                                          \
		.sk = (s)->maps.nf_sk,                                                                              \
		.table = { (s)->maps.nf_v4_exact, (s)->maps.nf_v4_lpm, (s)->maps.nf_v6_exact, (s)->maps.nf_v6_lpm,   \
			   (s)->maps.nf_scope },                                                                    \
		.large = { (s)->maps.nf_v4_large, (s)->maps.nf_v6_large },                                         \
		.shared = { (s)->maps.nf_events, (s)->maps.nf_throttle, (s)->maps.nf_flows, (s)->maps.nf_protected_v4,                \
			    (s)->maps.nf_protected_v6, (s)->maps.nf_pdeny_v4, (s)->maps.nf_pdeny_v6 },              \
	})

/* Sizes the exact tables, shares the host-wide maps, loads, and keeps the fds in `a`. */
static int load_att_obj(const char *id, const char *path, const struct att_obj *o, __u32 cap, struct att *a)
{
	int shared_fd[7] = { g.events_fd, g.throttle_fd, g.flows_fd, g.prot_fd[0], g.prot_fd[1], g.pdeny_fd[0], g.pdeny_fd[1] };
	if (bpf_map__set_max_entries(o->table[T_V4_EXACT], cap) || bpf_map__set_max_entries(o->table[T_V6_EXACT], cap))
		return fail(errno ? errno : EINVAL, "LOAD %s: sizing the exact tables to %u", id, cap);
	for (int i = 0; i < 7; i++)
		if (bpf_map__reuse_fd(o->shared[i], shared_fd[i]))
			return fail(errno ? errno : ENOENT, "LOAD %s: sharing %s", id, bpf_map__name(o->shared[i]));
	tls.liblog_len = 0;
	tls.liblog[0] = 0;
	if (bpf_object__load_skeleton(o->skel))
		return fail(errno, "LOAD %s: bpf_object__load (%s) — %.400s", id, path, tls.liblog);
	a->prog_fd = dup(bpf_program__fd(o->prog));
	a->state_fd = dup(bpf_map__fd(o->state));
	a->counters_fd = dup(bpf_map__fd(o->counters));
	a->hits_fd = dup(bpf_map__fd(o->hits));
	a->sk_fd = dup(bpf_map__fd(o->sk));
	a->sock_prog_fd = o->sock_prog ? dup(bpf_program__fd(o->sock_prog)) : -1;
	for (int t = 0; t < T_COUNT; t++)
		a->table_fd[t] = dup(bpf_map__fd(o->table[t]));
	for (int f = 0; f < FAM_COUNT; f++)
		a->large_fd[f] = dup(bpf_map__fd(o->large[f]));
	large_loaded(a, cap);
	return 0;
}

/* Opens the object of `kind` from bpf_dir through its skeleton and loads it into `a`. */
int load_object(const char *id, __u8 kind, __u32 cap, struct att *a)
{
	char what[NF_ID_LEN + 8], path[512];
	snprintf(what, sizeof(what), "LOAD %s", id);
	snprintf(path, sizeof(path), "%s/%s", g.bpf_dir, kind == NF_KIND_TC ? "netfence_tc.bpf.o" : "netfence_cgroup.bpf.o");
	void *data;
	size_t size;
	int err = read_object_file(what, path, &data, &size);
	if (err)
		return err;
	struct netfence_tc *tc = NULL;
	struct netfence_cgroup *cg = NULL;
	tls.liblog_len = 0;
	tls.liblog[0] = 0;
	err = kind == NF_KIND_TC ? OPEN_SKELETON(netfence_tc, data, size, &tc) : OPEN_SKELETON(netfence_cgroup, data, size, &cg);
	if (err)
		err = fail(-err, "%s: opening %s — %.400s", what, path, tls.liblog);
	else
		err = load_att_obj(id, path, tc ? &ATT_OBJ(tc, netfence_tc, NULL) : &ATT_OBJ(cg, netfence_cgroup, cg->progs.netfence_sock),
				   cap, a);
	netfence_tc__destroy(tc);
	netfence_cgroup__destroy(cg);
	free(data);
	return err;
}

/* Writes a fresh attachment's nf_state: its settings from LOAD, both generations BLOCK_ALL until
 * the daemon's first REPLACE (fail closed), the magic last. */
static void init_state(struct nf_state *st, const struct nf_load_req *r, const char *id)
{
	memset(st, 0, sizeof(*st));
	st->layout = NF_LAYOUT_VERSION;
	st->slot = r->slot;
	st->kind = r->kind;
	st->direction = r->direction;
	st->dns_port = r->dns_port;
	memcpy(st->dns_ip4, r->dns_ip4, 4);
	memcpy(st->dns_ip6, r->dns_ip6, 16);
	st->dns_port_min = r->dns_port_min;
	st->dns_port_max = r->dns_port_max;
	st->guards = r->guards;
	memcpy(st->mac, r->mac, 6);
	st->n_ip4 = r->n_ip4;
	st->n_ip6 = r->n_ip6;
	memcpy(st->ip4, r->ip4, sizeof(st->ip4));
	memcpy(st->ip6, r->ip6, sizeof(st->ip6));
	snprintf(st->id, sizeof(st->id), "%s", id);
	st->gen[0].mode = NF_MODE_BLOCK_ALL;
	st->gen[1].mode = NF_MODE_BLOCK_ALL;
	st->protected_n = g.protected_n;
	st->pdeny_n = g.pdeny_n;
	__atomic_store_n(&st->magic, NF_STATE_MAGIC, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------- LOAD, ADOPT, UNLOAD */

int op_load(const void *req, size_t len)
{
	if (len < sizeof(struct nf_load_req))
		return fail(0, "LOAD: short request");
	const struct nf_load_req *r = req;
	char id[NF_ID_LEN];
	id_of(id, r->id);
	if (!valid_id(id))
		return fail(EINVAL, "LOAD: invalid attachment id \"%s\"", id);
	if (r->kind != NF_KIND_TC && r->kind != NF_KIND_CGROUP)
		return fail(EINVAL, "LOAD %s: unknown kind %u", id, r->kind);
	if (r->n_ip4 > NF_MAX_WORKLOAD_ADDRS || r->n_ip6 > NF_MAX_WORKLOAD_ADDRS)
		return fail(EINVAL, "LOAD %s: %u/%u workload addresses (at most %u per family)", id, r->n_ip4, r->n_ip6,
			    NF_MAX_WORKLOAD_ADDRS);
	if (r->dns_port_min > r->dns_port_max)
		return fail(EINVAL, "LOAD %s: DNS port range %u-%u", id, r->dns_port_min, r->dns_port_max);
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/%s", g.pin_root, id);
	if (find_att(id) || access(dir, F_OK) == 0)
		return fail(EEXIST, "LOAD %s: already loaded (pins at %s)", id, dir);
	__u32 cap = r->exact_cap ? r->exact_cap : NF_EXACT_CAP_DEFAULT;
	if (cap > NF_EXACT_CAP_MAX)
		cap = NF_EXACT_CAP_MAX;
	struct att *a = new_att(id);
	if (!a)
		return fail(ENOMEM, "LOAD %s", id);
	/* A spare loaded and verified beforehand (pool.c), else a load now. */
	int err = pool_take(r->kind, cap, a) ? 0 : load_object(id, r->kind, cap, a);
	if (!err && !(a->st = map_state(a->state_fd)))
		err = fail(errno, "LOAD %s: mmap of the state map", id);
	if (!err) {
		init_state(a->st, r, id);
		tamper_note(a);
		gens_loaded(&a->gens);
		if (mkdir(dir, 0700))
			err = fail(errno, "LOAD %s: creating %s", id, dir);
	}
	/* By pin (pin_names); -1: not pinned here ("link", "link_sock": LINK; "prog_sock": tc has none). */
	int pins[PIN_COUNT] = { a->state_fd,     a->counters_fd, a->table_fd[0],       a->table_fd[1], a->table_fd[2],
				a->table_fd[3],  a->large_fd[0], a->large_fd[1],       a->prog_fd,     -1,
				a->hits_fd,      a->table_fd[T_SCOPE], a->sk_fd,       a->sock_prog_fd, -1 };
	for (int n = 0; n < PIN_COUNT && !err; n++) {
		char p[512];
		if (pins[n] < 0)
			continue;
		pin_path(p, sizeof(p), id, pin_names[n]);
		if (bpf_obj_pin(pins[n], p)) {
			err = fail(errno, "LOAD %s: pinning %s", id, p);
			unpin_all(id);
		}
	}
	if (err)
		free_att(a);
	return err;
}

static int open_pinned_map(const char *id, const char *name, __u32 type, __u32 vs, int *fd)
{
	char p[512];
	pin_path(p, sizeof(p), id, name);
	*fd = bpf_obj_get(p);
	if (*fd < 0)
		return fail(errno, "ADOPT %s: opening %s", id, p);
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(*fd, &info, &len) || info.type != type || (vs && info.value_size != vs))
		return fail(EPROTO, "ADOPT %s: %s has an incompatible layout (type %u, value size %u)", id, p, info.type,
			    info.value_size);
	return 0;
}

/* Rebuilds an attachment from its pins (written by this or an earlier loader). */
static int adopt(const char *id, struct att **out)
{
	char dir[512], p[512];
	snprintf(dir, sizeof(dir), "%s/%s", g.pin_root, id);
	if (access(dir, F_OK))
		return fail(ENOENT, "ADOPT %s: no pins at %s", id, dir);
	struct att *a = new_att(id);
	if (!a)
		return fail(ENOMEM, "ADOPT %s", id);
	int err = open_pinned_map(id, "state", BPF_MAP_TYPE_ARRAY, sizeof(struct nf_state), &a->state_fd);
	if (!err && !(a->st = map_state(a->state_fd)))
		err = fail(errno, "ADOPT %s: mmap of the state map", id);
	if (!err && (a->st->magic != NF_STATE_MAGIC || a->st->layout != NF_LAYOUT_VERSION))
		err = fail(EPROTO, "ADOPT %s: pinned state has layout %u (magic %#x), this loader writes layout %u", id,
			   a->st->layout, a->st->magic, NF_LAYOUT_VERSION);
	if (!err)
		err = open_pinned_map(id, "counters", BPF_MAP_TYPE_PERCPU_ARRAY, 8, &a->counters_fd);
	if (!err)
		err = open_pinned_map(id, pin_names[PIN_HITS], BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(struct nf_hit), &a->hits_fd);
	for (int t = 0; t < T_COUNT && !err; t++)
		err = open_pinned_map(id, table_names[t], table_type[t], sizeof(struct nf_entry), &a->table_fd[t]);
	if (!err)
		err = open_pinned_map(id, pin_names[PIN_SK], BPF_MAP_TYPE_SK_STORAGE, sizeof(struct nf_sk), &a->sk_fd);
	for (int f = 0; f < FAM_COUNT && !err; f++)
		err = open_pinned_map(id, pin_names[PIN_V4_LARGE + f], BPF_MAP_TYPE_ARRAY_OF_MAPS, sizeof(__u32), &a->large_fd[f]);
	if (!err)
		err = large_adopted(a);
	if (!err) {
		pin_path(p, sizeof(p), id, "prog");
		a->prog_fd = bpf_obj_get(p);
		if (a->prog_fd < 0)
			err = fail(errno, "ADOPT %s: opening %s", id, p);
	}
	if (!err && a->st->kind == NF_KIND_CGROUP) {
		pin_path(p, sizeof(p), id, pin_names[PIN_PROG_SOCK]);
		a->sock_prog_fd = bpf_obj_get(p);
		if (a->sock_prog_fd < 0)
			err = fail(errno, "ADOPT %s: opening %s", id, p);
	}
	if (!err) {
		pin_path(p, sizeof(p), id, "link");
		a->link_fd = bpf_obj_get(p); /* absent for clsact */
		pin_path(p, sizeof(p), id, pin_names[PIN_LINK_SOCK]);
		a->link_sock_fd = bpf_obj_get(p); /* cgroup only */
	}
	if (err) {
		free_att(a);
		return err;
	}
	gens_adopted(&a->gens); /* what the inactive generation holds is unknown: empty it before use */
	a->st->protected_n = g.protected_n;
	a->st->pdeny_n = g.pdeny_n;
	tamper_note(a); /* what it is now is what it was made: checked by VERIFY from here on */
	*out = a;
	return 0;
}

int find_or_adopt(const char *id, struct att **out)
{
	*out = find_att(id);
	return *out ? 0 : adopt(id, out);
}

int adopted_request(const void *req, size_t len, const char *op, struct att **out)
{
	char id[NF_ID_LEN];
	int err = id_request(req, len, op, id);
	return err ? err : find_or_adopt(id, out);
}

int op_unload(const void *req, size_t len)
{
	char id[NF_ID_LEN];
	int err = id_request(req, len, "UNLOAD", id);
	if (err)
		return err;
	struct att *a;
	err = find_or_adopt(id, &a);
	if (err == -ENOENT)
		return fail(ENOENT, "UNLOAD %s: no such attachment", id);
	if (err) { /* unreadable pins: still remove them so nothing is orphaned */
		unpin_all(id);
		return 0;
	}
	detach(a);
	unpin_all(id);
	free_att(a);
	return 0;
}

int op_adopt(const void *req, size_t len, void *reply, size_t *reply_len)
{
	struct att *a;
	int err = adopted_request(req, len, "ADOPT", &a);
	if (err)
		return err;
	struct nf_adopt_reply *out = reply;
	memset(out, 0, sizeof(*out));
	memcpy(&out->state, a->st, sizeof(out->state));
	out->prog_id = prog_id_of(a->prog_fd);
	out->attached = is_attached(a, NULL);
	*reply_len = sizeof(*out);
	return 0;
}
