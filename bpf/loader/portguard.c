// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * portguard.c — the DNS port guard: cgroup bind4/bind6 programs (bpf/netfence_bindguard.bpf.c,
 * through its skeleton) that keep every process of a cgroup but the daemon's user off the
 * daemon's DNS port range. Pinned under <pin_root>/_host/:
 *   portguard_cfg (settings), portguard_bind4, portguard_bind6 (the cgroup links)
 * so the guard holds while the daemon and this loader are down. PORT_GUARD installs or updates
 * it, PORT_UNGUARD removes it.
 */
#define _GNU_SOURCE /* name_to_handle_at */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "loader.h"
#include "netfence_bindguard.skel.h"

static const char *const pg_link_names[2] = { "portguard_bind4", "portguard_bind6" };

/* The cgroup id of a cgroup v2 directory (its kernfs id, as bpf_link_info reports it). */
static int cgroup_id_of(const char *path, __u64 *id)
{
	struct {
		struct file_handle fh;
		__u64 id;
	} h = { .fh = { .handle_bytes = sizeof(__u64) } };
	int mount_id;
	if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0))
		return -errno;
	memcpy(id, h.fh.f_handle, sizeof(*id));
	return 0;
}

/* Opens the pinned link `name` if it is a cgroup link on cgroup `cg_id`; -ENOENT if absent, -ESTALE
 * if it is attached elsewhere (or its cgroup is gone). */
static int open_guard_link(const char *name, __u64 cg_id, int *fd)
{
	char p[512];
	host_pin_path(p, sizeof(p), name);
	*fd = bpf_obj_get(p);
	if (*fd < 0)
		return errno == ENOENT ? -ENOENT : fail(errno, "PORT_GUARD: opening %s", p);
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(*fd, &info, &len) == 0 && info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cg_id)
		return 0;
	return -ESTALE;
}

/* Puts program `prog` (attach type `type`) on the cgroup through the pinned link `name`: the
 * link already there is updated in place (never a moment without a guard; *updated = true), a
 * link on another cgroup is replaced. */
static int guard_link(const char *name, struct bpf_program *prog, enum bpf_attach_type type, int cgfd, __u64 cg_id,
		      const char *cg, bool *updated)
{
	int prog_fd = bpf_program__fd(prog), fd, err = open_guard_link(name, cg_id, &fd);
	char p[512];
	if (err == 0) {
		err = bpf_link_update(fd, prog_fd, NULL) ? fail(errno, "PORT_GUARD: updating %s", name) : 0;
		*updated |= err == 0;
	} else if (err == -ENOENT || err == -ESTALE) {
		host_pin_path(p, sizeof(p), name);
		if (fd >= 0) { /* attached to another cgroup: replace it */
			bpf_link_detach(fd);
			close_fd(&fd);
			unlink(p);
		}
		fd = bpf_link_create(prog_fd, cgfd, type, NULL);
		if (fd < 0)
			return fail(errno, "PORT_GUARD: attaching %s to %s", bpf_program__name(prog), cg);
		err = 0;
		if (bpf_obj_pin(fd, p)) {
			err = fail(errno, "PORT_GUARD: pinning %s", p);
			bpf_link_detach(fd);
		}
	}
	close_fd(&fd);
	return err;
}

/* Loads the guard's programs with the pinned settings map, then links both. */
static int install(struct netfence_bindguard *s, int cfg_fd, int cgfd, __u64 cg_id, const char *cg, const char *path,
		   struct nf_port_guard_reply *out)
{
	if (bpf_map__reuse_fd(s->maps.nf_pg_cfg, cfg_fd))
		return fail(errno ? errno : EINVAL, "PORT_GUARD: sharing nf_pg_cfg");
	tls.liblog_len = 0;
	tls.liblog[0] = 0;
	if (netfence_bindguard__load(s))
		return fail(errno, "PORT_GUARD: bpf_object__load (%s) — %.400s", path, tls.liblog);
	bool updated = false;
	int err = guard_link(pg_link_names[0], s->progs.netfence_bind4, BPF_CGROUP_INET4_BIND, cgfd, cg_id, cg, &updated);
	if (!err)
		err = guard_link(pg_link_names[1], s->progs.netfence_bind6, BPF_CGROUP_INET6_BIND, cgfd, cg_id, cg, &updated);
	if (err)
		return err;
	out->prog_id4 = prog_id_of(bpf_program__fd(s->progs.netfence_bind4));
	out->prog_id6 = prog_id_of(bpf_program__fd(s->progs.netfence_bind6));
	out->cgroup_id = cg_id;
	out->updated = updated;
	return 0;
}

/*
 * Installs the DNS port guard on a cgroup, or updates it in place: the settings are written to
 * the pinned config map first; pinned links already on the same cgroup get the freshly loaded
 * programs through bpf_link_update; links on another cgroup are replaced.
 */
int op_port_guard(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_port_guard_req))
		return fail(0, "PORT_GUARD: short request");
	const struct nf_port_guard_req *r = req;
	if (r->port_min == 0 || r->port_min > r->port_max)
		return fail(EINVAL, "PORT_GUARD: invalid port range %u-%u", r->port_min, r->port_max);
	char cg[4097], path[512];
	snprintf(cg, sizeof(cg), "%.*s", (int)sizeof(r->cgroup_path), r->cgroup_path);
	int cgfd = open(cg, O_RDONLY | O_DIRECTORY);
	if (cgfd < 0)
		return fail(errno, "PORT_GUARD: opening cgroup %s", cg);
	__u64 cg_id = 0;
	int err = cgroup_id_of(cg, &cg_id);
	if (err) {
		close(cgfd);
		return fail(-err, "PORT_GUARD: cgroup id of %s", cg);
	}
	snprintf(path, sizeof(path), "%s/netfence_bindguard.bpf.o", g.bpf_dir);
	void *data = NULL;
	size_t size;
	struct netfence_bindguard *s = NULL;
	int cfg_fd = -1;
	err = read_object_file("PORT_GUARD", path, &data, &size);
	if (!err) {
		tls.liblog_len = 0;
		tls.liblog[0] = 0;
		if ((err = OPEN_SKELETON(netfence_bindguard, data, size, &s)))
			err = fail(-err, "PORT_GUARD: opening %s — %.400s", path, tls.liblog);
	}
	if (!err && (cfg_fd = host_map("portguard_cfg", BPF_MAP_TYPE_ARRAY, 4, sizeof(struct nf_port_guard_cfg), 1, 0)) < 0)
		err = cfg_fd;
	struct nf_port_guard_cfg cfg = { .uid = r->uid, .port_min = r->port_min, .port_max = r->port_max };
	__u32 zero = 0;
	if (!err && bpf_map_update_elem(cfg_fd, &zero, &cfg, BPF_ANY))
		err = fail(errno, "PORT_GUARD: writing the settings");
	struct nf_port_guard_reply *out = reply;
	memset(out, 0, sizeof(*out));
	if (!err)
		err = install(s, cfg_fd, cgfd, cg_id, cg, path, out);
	if (!err)
		*reply_len = sizeof(*out);
	close_fd(&cfg_fd);
	close(cgfd);
	netfence_bindguard__destroy(s);
	free(data);
	return err;
}

int op_port_unguard(void)
{
	char p[512];
	for (int i = 0; i < 2; i++) {
		host_pin_path(p, sizeof(p), pg_link_names[i]);
		int fd = bpf_obj_get(p);
		if (fd >= 0) {
			bpf_link_detach(fd);
			close(fd);
		}
		unlink(p);
	}
	host_pin_path(p, sizeof(p), "portguard_cfg");
	unlink(p);
	return 0;
}
