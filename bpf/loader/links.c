// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * links.c — where an attachment's program runs: the attach methods (a TCX link where the kernel
 * has TCX, a clsact filter otherwise or when asked, a cgroup link for cgroups), the TCX probe,
 * detach, the check that a pinned filter is really still attached (ADOPT, DUMP, RELINK), and the
 * requests LINK and RELINK. A link is pinned at <pin_root>/<id>/link; a clsact filter has no pin,
 * nf_state records its handle and priority instead. A cgroup attachment has a second link, its
 * cgroup/sock_create program's (the socket owner stamp, issue 15), pinned at <pin_root>/<id>/link_sock.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

#include "loader.h"

/* TCX attach types: libbpf 1.1's uapi headers predate TCX (Linux 6.6), so define them here. */
#define NF_BPF_TCX_INGRESS 46
#define NF_BPF_TCX_EGRESS 47

/* TCX is probed from the kernel's own BTF (is BPF_TCX_INGRESS a known attach type?), not from
 * the version number, and without attaching anything anywhere. */
bool probe_tcx(void)
{
	struct btf *btf = btf__load_vmlinux_btf();
	if (!btf)
		return false;
	bool found = false;
	__s32 id = btf__find_by_name_kind(btf, "bpf_attach_type", BTF_KIND_ENUM);
	if (id > 0) {
		const struct btf_type *t = btf__type_by_id(btf, id);
		const struct btf_enum *e = btf_enum(t);
		for (int i = 0; i < btf_vlen(t); i++)
			if (strcmp(btf__name_by_offset(btf, e[i].name_off), "BPF_TCX_INGRESS") == 0)
				found = true;
	}
	btf__free(btf);
	return found;
}

__u32 prog_id_of(int fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	return bpf_obj_get_info_by_fd(fd, &info, &len) ? 0 : info.id;
}

static void tc_hook_for(const struct att *a, struct bpf_tc_hook *hook)
{
	memset(hook, 0, sizeof(*hook));
	hook->sz = sizeof(*hook);
	hook->ifindex = (int)a->st->ifindex;
	hook->attach_point = a->st->direction == NF_DIR_EGRESS ? BPF_TC_EGRESS : BPF_TC_INGRESS;
}

/* Whether the clsact filter nf_state records is still there, running our program. */
static bool clsact_is_ours(const struct att *a)
{
	struct bpf_tc_hook hook;
	tc_hook_for(a, &hook);
	LIBBPF_OPTS(bpf_tc_opts, q, .handle = a->st->tc_handle, .priority = a->st->tc_priority);
	__u32 prog_id = prog_id_of(a->prog_fd);
	return prog_id && bpf_tc_query(&hook, &q) == 0 && q.prog_id == prog_id;
}

/* Pins a freshly created link at `p`, or detaches it again. */
static int pin_link(const char *id, int fd, const char *p, int *link_fd)
{
	if (bpf_obj_pin(fd, p)) {
		int err = errno;
		bpf_link_detach(fd);
		close(fd);
		return fail(err, "LINK %s: pinning %s", id, p);
	}
	*link_fd = fd;
	return 0;
}

static int link_tc(struct att *a, const struct nf_link_req *r, const char *pin, __u32 *method)
{
	const char *id = a->id;
	if (r->ifindex == 0)
		return fail(EINVAL, "LINK %s: no interface index", id);
	a->st->ifindex = r->ifindex;
	int tcx_err = 0;
	if (r->method_pref != NF_METHOD_CLSACT && (g.features & NF_FEAT_TCX || r->method_pref == NF_METHOD_TCX)) {
		int type = a->st->direction == NF_DIR_EGRESS ? NF_BPF_TCX_EGRESS : NF_BPF_TCX_INGRESS;
		int fd = bpf_link_create(a->prog_fd, (int)r->ifindex, (enum bpf_attach_type)type, NULL);
		if (fd >= 0) {
			*method = NF_METHOD_TCX;
			return pin_link(id, fd, pin, &a->link_fd);
		}
		tcx_err = errno;
		if (r->method_pref == NF_METHOD_TCX)
			return fail(tcx_err, "LINK %s: TCX attach to ifindex %u", id, r->ifindex);
	}
	struct bpf_tc_hook hook;
	tc_hook_for(a, &hook);
	int err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST)
		return fail(-err, "LINK %s: creating clsact on ifindex %u%s", id, r->ifindex, tcx_err ? " (TCX failed too)" : "");
	LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = a->prog_fd);
	err = bpf_tc_attach(&hook, &o);
	if (err)
		return fail(-err, "LINK %s: clsact attach to ifindex %u", id, r->ifindex);
	a->st->tc_handle = o.handle;
	a->st->tc_priority = o.priority;
	*method = NF_METHOD_CLSACT;
	return 0;
}

/* The cgroup/sock_create link (its own pin), made first: sockets created from then on are stamped
 * before the skb program sees their first packet. A link still attached is kept. */
static int link_sock(struct att *a, int cgfd, const char *cg)
{
	if (a->sock_prog_fd < 0)
		return fail(ENOENT, "LINK %s: no cgroup/sock_create program", a->id);
	if (a->link_sock_fd >= 0) {
		struct bpf_link_info info;
		memset(&info, 0, sizeof(info));
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(a->link_sock_fd, &info, &len) == 0 && info.prog_id == prog_id_of(a->sock_prog_fd) &&
		    info.cgroup.cgroup_id != 0)
			return 0;
		bpf_link_detach(a->link_sock_fd);
		close_fd(&a->link_sock_fd);
	}
	char p[512];
	pin_path(p, sizeof(p), a->id, pin_names[PIN_LINK_SOCK]);
	if (unlink(p) && errno != ENOENT)
		return fail(errno, "LINK %s: removing the stale %s", a->id, p);
	int fd = bpf_link_create(a->sock_prog_fd, cgfd, BPF_CGROUP_INET_SOCK_CREATE, NULL);
	if (fd < 0)
		return fail(errno, "LINK %s: cgroup/sock_create attach to %s", a->id, cg);
	return pin_link(a->id, fd, p, &a->link_sock_fd);
}

static int link_cgroup(struct att *a, const struct nf_link_req *r, const char *pin, __u32 *method)
{
	char cg[4097];
	snprintf(cg, sizeof(cg), "%.*s", (int)sizeof(r->cgroup_path), r->cgroup_path);
	int cgfd = open(cg, O_RDONLY | O_DIRECTORY);
	if (cgfd < 0)
		return fail(errno, "LINK %s: opening cgroup %s", a->id, cg);
	int err = link_sock(a, cgfd, cg);
	if (err) {
		close(cgfd);
		return err;
	}
	int fd = bpf_link_create(a->prog_fd, cgfd, BPF_CGROUP_INET_EGRESS, NULL);
	err = errno;
	close(cgfd);
	if (fd < 0) {
		detach_sock(a);
		return fail(err, "LINK %s: cgroup attach to %s", a->id, cg);
	}
	*method = NF_METHOD_CGROUP_LINK;
	return pin_link(a->id, fd, pin, &a->link_fd);
}

/* The attachment a LINK or RELINK request names (this loader must know it: `known` says how). */
static int link_request(const void *req, size_t len, const char *op, const char *known, struct att **a)
{
	if (len < sizeof(struct nf_link_req))
		return fail(0, "%s: short request", op);
	char id[NF_ID_LEN];
	id_of(id, ((const struct nf_link_req *)req)->id);
	*a = find_att(id);
	return *a ? 0 : fail(ENOENT, "%s %s: not %s", op, id, known);
}

static void link_reply(const struct att *a, __u32 method, void *reply, size_t *reply_len)
{
	struct nf_link_reply *out = reply;
	out->method = method;
	out->prog_id = prog_id_of(a->prog_fd);
	*reply_len = sizeof(*out);
}

int op_link(const void *req, size_t len, void *reply, size_t *reply_len)
{
	const struct nf_link_req *r = req;
	struct att *a;
	int err = link_request(req, len, "LINK", "loaded", &a);
	if (err)
		return err;
	const char *id = a->id;
	if (a->st->method != NF_METHOD_NONE)
		return fail(EALREADY, "LINK %s: already attached", id);
	char p[512];
	pin_path(p, sizeof(p), id, "link");
	__u32 method = NF_METHOD_NONE;
	err = a->st->kind == NF_KIND_TC ? link_tc(a, r, p, &method) : link_cgroup(a, r, p, &method);
	if (err)
		return err;
	__atomic_store_n(&a->st->method, (__u8)method, __ATOMIC_RELEASE);
	link_reply(a, method, reply, reply_len);
	return 0;
}

/* Detaches a cgroup attachment's cgroup/sock_create link (its pin is removed with the others). */
void detach_sock(struct att *a)
{
	if (a->link_sock_fd >= 0) {
		bpf_link_detach(a->link_sock_fd);
		close_fd(&a->link_sock_fd);
	}
}

/* Detaches whatever the state says was attached. A vanished interface or cgroup is not an error. */
void detach(struct att *a)
{
	detach_sock(a);
	if (a->link_fd >= 0) {
		bpf_link_detach(a->link_fd);
		close_fd(&a->link_fd);
	}
	/* only remove a clsact filter that is still ours (the handle could have been reused) */
	if (a->st && a->st->method == NF_METHOD_CLSACT && clsact_is_ours(a)) {
		struct bpf_tc_hook hook;
		tc_hook_for(a, &hook);
		LIBBPF_OPTS(bpf_tc_opts, d, .handle = a->st->tc_handle, .priority = a->st->tc_priority);
		bpf_tc_detach(&hook, &d);
	}
}

/*
 * A pinned link can be defunct (its interface or cgroup went away, or someone ran `bpftool link
 * detach`), and a clsact filter can have been deleted (`tc filter del`) or replaced.
 */
bool is_attached(struct att *a, __u64 *cgroup_id)
{
	if (a->st->method == NF_METHOD_CLSACT)
		return clsact_is_ours(a);
	if (a->link_fd < 0)
		return false;
	struct bpf_link_info info;
	memset(&info, 0, sizeof(info));
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(a->link_fd, &info, &len) || info.prog_id != prog_id_of(a->prog_fd))
		return false;
	if (info.type == BPF_LINK_TYPE_CGROUP) {
		if (cgroup_id)
			*cgroup_id = info.cgroup.cgroup_id;
		return info.cgroup.cgroup_id != 0; /* 0 once the link is detached */
	}
	/* TCX links (BPF_LINK_TYPE_TCX, newer than these headers) report {ifindex, attach_type} at the
	 * start of the union, laid out like netns's {netns_ino, attach_type}; ifindex is 0 once the
	 * link is detached or its device is gone. */
	return info.netns.netns_ino != 0;
}

/* Re-attaches an adopted attachment's pinned program where the request says (a re-created
 * interface has a new ifindex), after forgetting whatever attachment it had: a defunct or
 * unpinned link, or a clsact filter someone deleted. A filter still attached there is left as is. */
int op_relink(const void *req, size_t len, void *reply, size_t *reply_len)
{
	const struct nf_link_req *r = req;
	struct att *a;
	int err = link_request(req, len, "RELINK", "adopted", &a);
	if (err)
		return err;
	const char *id = a->id;
	if (a->st->method != NF_METHOD_NONE && is_attached(a, NULL) &&
	    (a->st->kind != NF_KIND_TC || a->st->ifindex == r->ifindex)) {
		if (a->st->kind == NF_KIND_CGROUP) { /* the owner-stamp link too (kept when still attached) */
			char cg[4097];
			snprintf(cg, sizeof(cg), "%.*s", (int)sizeof(r->cgroup_path), r->cgroup_path);
			int cgfd = open(cg, O_RDONLY | O_DIRECTORY);
			if (cgfd < 0)
				return fail(errno, "RELINK %s: opening cgroup %s", id, cg);
			err = link_sock(a, cgfd, cg);
			close(cgfd);
			if (err)
				return err;
		}
		link_reply(a, a->st->method, reply, reply_len);
		return 0;
	}
	detach(a); /* removes only what is still ours */
	char p[512];
	pin_path(p, sizeof(p), id, "link");
	if (unlink(p) && errno != ENOENT)
		return fail(errno, "RELINK %s: removing the stale %s", id, p);
	__atomic_store_n(&a->st->method, (__u8)NF_METHOD_NONE, __ATOMIC_RELEASE);
	return op_link(req, len, reply, reply_len);
}
