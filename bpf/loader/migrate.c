// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * migrate.c — MIGRATE_BEGIN, MIGRATE_FINISH, MIGRATE_ABORT: re-creating an attachment whose pins
 * were written with another layout (an upgrade that changed NF_LAYOUT_VERSION) without a moment
 * in which its workload is unfiltered.
 *
 *   BEGIN   <pin_root>/<id> → <pin_root>/_migrating-<id> (rename within bpffs). Only for pins that
 *           ADOPT refuses with EPROTO (layout, magic or map shape): adoptable pins are not moved.
 *           The old program stays attached and enforcing; <id> is free for a fresh LOAD.
 *   (the daemon: LOAD, REPLACE, LINK — the new program runs beside the old one: TCX and cgroup
 *    links run every attached program, a packet must pass both; a new clsact filter gets a
 *    priority of its own in front of the old one, and ours return TC_ACT_UNSPEC to go on)
 *   FINISH  detaches the old program (its pinned link, or its clsact filter if it still runs the
 *           old program) and removes the old pins.
 *   ABORT   renames _migrating-<id> back to <id> (only while <id> is free again).
 *
 * An old nf_state is read with bpf_map_lookup_elem (no mmap: its size may differ) and only through
 * its stable prefix (NF_STATE_STABLE_PREFIX): how it was made and where it is attached.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "loader.h"

_Static_assert(offsetof(struct nf_state, tc_priority) + 4 == NF_STATE_STABLE_PREFIX, "nf_state's stable prefix moved");

static void aside_path(char *out, size_t cap, const char *id, const char *name)
{
	if (name)
		snprintf(out, cap, "%s/_migrating-%s/%s", g.pin_root, id, name);
	else
		snprintf(out, cap, "%s/_migrating-%s", g.pin_root, id);
}

/* The old attachment's state prefix and program id, from its pins at <id> or, `aside`, _migrating-<id>. */
static void read_old(const char *id, bool aside, struct nf_migrate_reply *out, struct nf_state *st)
{
	char p[512];
	memset(out, 0, sizeof(*out));
	memset(st, 0, sizeof(*st));
	if (aside)
		aside_path(p, sizeof(p), id, "state");
	else
		pin_path(p, sizeof(p), id, "state");
	int fd = bpf_obj_get(p);
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == BPF_MAP_TYPE_ARRAY &&
	    info.key_size == 4 && info.value_size >= NF_STATE_STABLE_PREFIX && info.value_size <= 65536) {
		void *buf = calloc(1, info.value_size);
		__u32 key = 0;
		if (buf && bpf_map_lookup_elem(fd, &key, buf) == 0)
			memcpy(st, buf, NF_STATE_STABLE_PREFIX);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	out->layout = st->layout;
	out->magic = st->magic;
	out->method = st->method;
	out->kind = st->kind;
	out->direction = st->direction;
	out->ifindex = st->ifindex;
	out->tc_priority = st->tc_priority;
	if (aside)
		aside_path(p, sizeof(p), id, "prog");
	else
		pin_path(p, sizeof(p), id, "prog");
	fd = bpf_obj_get(p);
	if (fd >= 0) {
		out->prog_id = prog_id_of(fd);
		close(fd);
	}
}

int op_migrate_begin(const void *req, size_t len, void *reply, size_t *reply_len)
{
	char id[NF_ID_LEN], dir[512], aside[512];
	int err = id_request(req, len, "MIGRATE_BEGIN", id);
	if (err)
		return err;
	if (find_att(id))
		return fail(EALREADY, "MIGRATE_BEGIN %s: adopted already, nothing to migrate", id);
	snprintf(dir, sizeof(dir), "%s/%s", g.pin_root, id);
	aside_path(aside, sizeof(aside), id, NULL);
	if (access(aside, F_OK) == 0)
		return fail(EEXIST, "MIGRATE_BEGIN %s: %s exists (an earlier migration did not finish)", id, aside);
	struct att *a;
	err = find_or_adopt(id, &a);
	if (err == 0)
		return fail(EALREADY, "MIGRATE_BEGIN %s: the pins are of this layout (adopted), nothing to migrate", id);
	if (err != -EPROTO)
		return err; /* no pins, unreadable pins: not a layout question (message from ADOPT) */
	struct nf_state st;
	read_old(id, false, reply, &st);
	if (rename(dir, aside))
		return fail(errno, "MIGRATE_BEGIN %s: moving %s aside to %s", id, dir, aside);
	*reply_len = sizeof(struct nf_migrate_reply);
	return 0;
}

/* Detaches the old clsact filter if it is still there and still runs the old program. */
static int detach_old_clsact(const char *id, const struct nf_state *st, __u32 prog_id, bool *detached)
{
	if (!prog_id || !st->ifindex || !st->tc_handle)
		return 0;
	struct bpf_tc_hook hook = { .sz = sizeof(hook), .ifindex = (int)st->ifindex,
				    .attach_point = st->direction == NF_DIR_EGRESS ? BPF_TC_EGRESS : BPF_TC_INGRESS };
	LIBBPF_OPTS(bpf_tc_opts, q, .handle = st->tc_handle, .priority = st->tc_priority);
	if (bpf_tc_query(&hook, &q) || q.prog_id != prog_id)
		return 0; /* gone already (interface removed, filter deleted): nothing runs it */
	LIBBPF_OPTS(bpf_tc_opts, d, .handle = st->tc_handle, .priority = st->tc_priority);
	int err = bpf_tc_detach(&hook, &d);
	if (err)
		return fail(-err, "MIGRATE_FINISH %s: detaching the old clsact filter (ifindex %u, priority %u)", id, st->ifindex,
			    st->tc_priority);
	*detached = true;
	return 0;
}

/* Removes every pin in the aside directory, then the directory. Not an error when it fails: the old
 * program is detached by then (a leftover directory is finished again by the daemon's next start). */
static void remove_aside(const char *id)
{
	char dir[512], p[768];
	aside_path(dir, sizeof(dir), id, NULL);
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "netfence-loader: MIGRATE_FINISH %s: opening %s: %s\n", id, dir, strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	if (rmdir(dir))
		fprintf(stderr, "netfence-loader: MIGRATE_FINISH %s: removing %s: %s\n", id, dir, strerror(errno));
}

int op_migrate_finish(const void *req, size_t len, void *reply, size_t *reply_len)
{
	char id[NF_ID_LEN], p[512];
	int err = id_request(req, len, "MIGRATE_FINISH", id);
	if (err)
		return err;
	struct att *a = find_att(id);
	if (!a || a->st->method == NF_METHOD_NONE || !is_attached(a, NULL))
		return fail(ENOENT, "MIGRATE_FINISH %s: the new attachment is not attached (the old one stays)", id);
	aside_path(p, sizeof(p), id, NULL);
	if (access(p, F_OK))
		return fail(errno, "MIGRATE_FINISH %s: no old pins at %s", id, p);
	struct nf_migrate_reply *out = reply;
	struct nf_state st;
	read_old(id, true, out, &st);
	bool detached = false;
	aside_path(p, sizeof(p), id, "link");
	int link = bpf_obj_get(p);
	if (link >= 0) {
		/* makes the link defunct now, even if someone else holds an fd of it */
		if (bpf_link_detach(link) == 0)
			detached = true;
		else if (errno != ENOLINK && errno != EINVAL) /* already defunct: fine */
			err = fail(errno, "MIGRATE_FINISH %s: detaching the old link", id);
		close(link);
	} else if (st.method == NF_METHOD_CLSACT) {
		err = detach_old_clsact(id, &st, out->prog_id, &detached);
	}
	if (err)
		return err;
	/* Layout 6 on: a cgroup attachment's second link (cgroup/sock_create). Only an owner stamp:
	 * nothing is let through when it goes, so a failure is not an error. */
	aside_path(p, sizeof(p), id, "link_sock");
	link = bpf_obj_get(p);
	if (link >= 0) {
		bpf_link_detach(link);
		close(link);
	}
	out->detached = detached;
	*reply_len = sizeof(*out);
	remove_aside(id);
	return 0;
}

int op_migrate_abort(const void *req, size_t len)
{
	char id[NF_ID_LEN], dir[512], aside[512];
	int err = id_request(req, len, "MIGRATE_ABORT", id);
	if (err)
		return err;
	snprintf(dir, sizeof(dir), "%s/%s", g.pin_root, id);
	aside_path(aside, sizeof(aside), id, NULL);
	if (access(aside, F_OK))
		return fail(ENOENT, "MIGRATE_ABORT %s: no old pins at %s", id, aside);
	if (access(dir, F_OK) == 0)
		return fail(EEXIST, "MIGRATE_ABORT %s: %s exists again (detach the new attachment first)", id, dir);
	if (rename(aside, dir))
		return fail(errno, "MIGRATE_ABORT %s: renaming %s back", id, aside);
	return 0;
}
