// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * host.c — the host-wide maps every attachment shares, pinned under <pin_root>/_host/:
 *   events (ring buffer), throttle_owner (event rate limit, NF_THROTTLE_PIN), flows (allowed flows already reported),
 *   protected_v4/v6 (destinations that pass in every mode), pdeny_v4/v6 (destinations dropped in every mode)
 * opened or created at HELLO and handed to each loaded object (objects.c), and the request that
 * replaces both protected sets (PROTECTED), whose sizes are mirrored into every nf_state.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <bpf/bpf.h>

#include "loader.h"

void host_pin_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/_host/%s", g.pin_root, name);
}

/* An existing pin with another layout is reported, never silently replaced. */
int host_map(const char *name, enum bpf_map_type type, __u32 ks, __u32 vs, __u32 max, __u32 flags)
{
	char p[512];
	host_pin_path(p, sizeof(p), name);
	int fd = bpf_obj_get(p);
	if (fd >= 0) {
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(fd, &info, &len) || info.type != (__u32)type || info.key_size != ks ||
		    info.value_size != vs) {
			close(fd);
			return fail(0, "pinned %s has an incompatible layout (type %u key %u value %u); remove %s", p,
				    info.type, info.key_size, info.value_size, p);
		}
		return fd;
	}
	LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = flags);
	fd = bpf_map_create(type, name, ks, vs, max, &o);
	if (fd < 0)
		return fail(errno, "creating host map %s", name);
	if (bpf_obj_pin(fd, p)) {
		int err = errno;
		close(fd);
		return fail(err, "pinning %s", p);
	}
	return fd;
}

static __u32 count_keys(int fd)
{
	struct nf_prot_v6_key cur, nxt;
	void *prev = NULL;
	__u32 n = 0;
	while (bpf_map_get_next_key(fd, prev, &nxt) == 0) {
		n++;
		cur = nxt;
		prev = &cur;
	}
	return n;
}

static __u32 set_size(const int fds[2])
{
	return count_keys(fds[0]) + count_keys(fds[1]);
}

/*
 * Layouts 1-6 pinned the throttle as "throttle", keyed without the owner; layout 7 pins its own map
 * under NF_THROTTLE_PIN. The older pin is only a rate-limit cache: programs of an older layout still
 * running hold the map itself (not the pin) and keep using it until they are migrated, after which
 * the kernel frees it. Removing the pin frees the name for an older loader started on these pins
 * (a downgrade), which then creates its own; never an error.
 */
static void drop_old_throttle_pin(void)
{
	char p[512];
	host_pin_path(p, sizeof(p), "throttle");
	if (unlink(p) == 0)
		fprintf(stderr, "netfence-loader: removed %s (the event throttle of layouts before 7; now %s)\n", p,
			NF_THROTTLE_PIN);
	else if (errno != ENOENT)
		fprintf(stderr, "netfence-loader: removing %s: %s\n", p, strerror(errno));
}

/* The layouts must match the maps the objects declare (include/policy.h): a mismatch fails LOAD. */
int host_maps_open(void)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/_host", g.pin_root);
	if (mkdir(p, 0700) && errno != EEXIST)
		return fail(errno, "creating %s", p);
	const __u32 lpm = BPF_MAP_TYPE_LPM_TRIE, v4 = sizeof(struct nf_prot_v4_key), v6 = sizeof(struct nf_prot_v6_key);
	const __u32 pv = sizeof(struct nf_protected), np = BPF_F_NO_PREALLOC;
	if ((g.events_fd = host_map("events", BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 20, 0)) < 0)
		return g.events_fd;
	if ((g.throttle_fd = host_map(NF_THROTTLE_PIN, BPF_MAP_TYPE_LRU_HASH, sizeof(struct nf_throttle_key),
				      sizeof(struct nf_throttle_val), 16384, 0)) < 0)
		return g.throttle_fd;
	drop_old_throttle_pin();
	if ((g.flows_fd = host_map("flows", BPF_MAP_TYPE_LRU_HASH, sizeof(struct nf_flows_key), sizeof(__u64), NF_FLOWS_CAP,
				   0)) < 0)
		return g.flows_fd;
	if ((g.prot_fd[0] = host_map("protected_v4", lpm, v4, pv, 4096, np)) < 0)
		return g.prot_fd[0];
	if ((g.prot_fd[1] = host_map("protected_v6", lpm, v6, pv, 4096, np)) < 0)
		return g.prot_fd[1];
	if ((g.pdeny_fd[0] = host_map("pdeny_v4", lpm, v4, pv, 4096, np)) < 0)
		return g.pdeny_fd[0];
	if ((g.pdeny_fd[1] = host_map("pdeny_v6", lpm, v6, pv, 4096, np)) < 0)
		return g.pdeny_fd[1];
	g.protected_n = set_size(g.prot_fd);
	g.pdeny_n = set_size(g.pdeny_fd);
	return 0;
}

/* Mirrors the protected sets' sizes into every attachment's state: programs skip a set's lookup
 * entirely while it is empty. */
static void set_protected_n(__u32 n, __u32 deny_n)
{
	g.protected_n = n;
	g.pdeny_n = deny_n;
	for (size_t i = 0; i < g.n_atts; i++)
		if (g.atts[i].used && g.atts[i].st) {
			__atomic_store_n(&g.atts[i].st->protected_n, n, __ATOMIC_RELEASE);
			__atomic_store_n(&g.atts[i].st->pdeny_n, deny_n, __ATOMIC_RELEASE);
		}
}

static bool same_prefix(const struct nf_wire_protected *x, const struct nf_wire_protected *y)
{
	return x->family == y->family && x->prefixlen == y->prefixlen && memcmp(x->addr, y->addr, x->family == 4 ? 4 : 16) == 0;
}

/* Replaces one host-wide set (fds[2]: v4, v6) with the entries of `es` whose NF_PROT_DENY flag is
 * `deny`: new entries are written before stale ones are removed, so a destination in the set
 * before and after is never out of it in between. Returns the set's new size, or -errno. */
static int replace_protected_set(int fds[2], const struct nf_wire_protected *es, __u32 count, bool deny)
{
	for (__u32 i = 0; i < count; i++) {
		if (((es[i].flags & NF_PROT_DENY) != 0) != deny)
			continue;
		struct nf_prot_v6_key k = { .prefixlen = es[i].prefixlen };
		memcpy(k.addr, es[i].addr, es[i].family == 4 ? 4 : 16);
		struct nf_protected v = { .port = es[i].port, .proto = es[i].proto };
		if (!deny) /* "from" and "to" entries of one prefix share its value (see NF_PROT_ALSO_TO) */
			for (__u32 j = 0; j < count; j++)
				if (!(es[j].flags & NF_PROT_DENY) && same_prefix(&es[i], &es[j])) {
					v.flags |= (es[j].flags & NF_PROT_FROM) ? NF_PROT_FROM_PORT : NF_PROT_ALSO_TO;
					if (!(es[j].flags & NF_PROT_FROM))
						v.proto = es[j].proto; /* the "to" entry's protocol (a "from" entry is TCP) */
				}
		if (v.flags == NF_PROT_ALSO_TO)
			v.flags = 0; /* an ordinary entry */
		if (bpf_map_update_elem(fds[es[i].family == 6], &k, &v, BPF_ANY))
			return fail(errno, "PROTECTED: writing %s entry %u", deny ? "deny" : "allow", i);
	}
	for (int f = 0; f < 2; f++) {
		struct nf_prot_v6_key cur, nxt;
		void *prev = NULL;
		unsigned alen = f ? 16 : 4;
		while (bpf_map_get_next_key(fds[f], prev, &nxt) == 0) {
			bool keep = false;
			for (__u32 i = 0; i < count && !keep; i++)
				keep = ((es[i].flags & NF_PROT_DENY) != 0) == deny && es[i].family == (f ? 6 : 4) &&
				       es[i].prefixlen == nxt.prefixlen && memcmp(es[i].addr, nxt.addr, alen) == 0;
			if (!keep) {
				bpf_map_delete_elem(fds[f], &nxt);
				prev = NULL; /* restart the walk: the deleted key cannot be a cursor */
				continue;
			}
			cur = nxt;
			prev = &cur;
		}
	}
	return (int)set_size(fds);
}

/* Replaces both host-wide sets: protected (pass in every mode) and protected-deny (dropped in
 * every mode), selected per entry by NF_PROT_DENY. */
int op_protected(const void *req, size_t len)
{
	if (len < 4)
		return fail(0, "PROTECTED: short request");
	__u32 count;
	memcpy(&count, req, 4);
	if ((len - 4) / sizeof(struct nf_wire_protected) < count)
		return fail(EINVAL, "PROTECTED: %u entries announced", count);
	const struct nf_wire_protected *es = (const void *)((const char *)req + 4);
	for (__u32 i = 0; i < count; i++) {
		if ((es[i].family != 4 && es[i].family != 6) || es[i].prefixlen > (es[i].family == 4 ? 32 : 128))
			return fail(EINVAL, "PROTECTED: entry %u is not a valid prefix", i);
		if (es[i].flags & ~(NF_PROT_DENY | NF_PROT_FROM))
			return fail(EINVAL, "PROTECTED: entry %u has unknown flags %#x", i, es[i].flags);
		if ((es[i].flags & NF_PROT_FROM) &&
		    ((es[i].flags & NF_PROT_DENY) || es[i].port == 0 || (es[i].proto && es[i].proto != IPPROTO_TCP)))
			return fail(EINVAL, "PROTECTED: entry %u: a \"from\" entry is a TCP source port of the allow set", i);
		/* One value per prefix: a "to" and a "from" entry of one prefix must name the same port. */
		for (__u32 j = 0; j < i; j++)
			if (!((es[i].flags | es[j].flags) & NF_PROT_DENY) && same_prefix(&es[i], &es[j]) &&
			    ((es[i].flags ^ es[j].flags) & NF_PROT_FROM) && es[i].port != es[j].port)
				return fail(EINVAL, "PROTECTED: entries %u and %u: one prefix, \"to\" and \"from\" ports differ", j, i);
	}
	int n = replace_protected_set(g.prot_fd, es, count, false);
	if (n < 0)
		return n;
	int deny_n = replace_protected_set(g.pdeny_fd, es, count, true);
	if (deny_n < 0) { /* partly written: count what is there, so no entry is skipped */
		set_protected_n((__u32)n, set_size(g.pdeny_fd));
		return deny_n;
	}
	set_protected_n((__u32)n, (__u32)deny_n);
	return 0;
}
