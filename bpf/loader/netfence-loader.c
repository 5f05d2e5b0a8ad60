// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * netfence-loader — the long-lived helper the daemon runs as a child process.
 *
 * It speaks the framed protocol of include/netfence.h on stdin/stdout and does what it is told:
 * load + pin the BPF objects, attach (TCX link, clsact or cgroup link), batched map updates,
 * atomic policy replace, counters, protected set, and it streams the shared ring buffer of
 * packet events. It holds no policy. Everything it creates is pinned under
 *   <pin_root>/<id>/{state,counters,v4_exact,v4_lpm,v6_exact,v6_lpm,prog,link}
 *   <pin_root>/_host/{events,throttle,protected_v4,protected_v6,pdeny_v4,pdeny_v6}
 *   <pin_root>/_host/{portguard_cfg,portguard_bind4,portguard_bind6}   (the DNS port guard, when installed)
 * so the kernel keeps enforcing when this process (or the daemon) dies, and a fresh loader can
 * re-adopt everything from the pins alone (nf_state records how each attachment was made).
 *
 * Requests are handled one at a time in arrival order; the daemon serialises its kernel
 * mutations anyway. libbpf logs go to stderr, which the daemon forwards to its log.
 */
#define _GNU_SOURCE /* name_to_handle_at */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "netfence.h"

/* TCX attach types: libbpf 1.1's uapi headers predate TCX (Linux 6.6), so define them here. */
#define NF_BPF_TCX_INGRESS 46
#define NF_BPF_TCX_EGRESS 47
#define ENOTSUPP 524 /* kernel-internal "operation not supported", seen by userspace as 524 */

enum { T_V4_EXACT, T_V4_LPM, T_V6_EXACT, T_V6_LPM, T_COUNT };
static const char *const table_names[T_COUNT] = { "v4_exact", "v4_lpm", "v6_exact", "v6_lpm" };
static const char *const table_map_names[T_COUNT] = { "nf_v4_exact", "nf_v4_lpm", "nf_v6_exact", "nf_v6_lpm" };
static const __u32 table_key_size[T_COUNT] = {
	sizeof(struct nf_exact_v4_key), sizeof(struct nf_lpm_v4_key),
	sizeof(struct nf_exact_v6_key), sizeof(struct nf_lpm_v6_key),
};
static const __u32 table_type[T_COUNT] = {
	BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE,
};

struct att {
	bool used;
	char id[NF_ID_LEN];
	int state_fd, counters_fd, prog_fd, link_fd;
	int table_fd[T_COUNT];
	struct nf_state *st; /* mmap of the state map */
	/* Keys of the inactive generation may still exist (an older policy, or a failed fill) and
	 * must be deleted before it is refilled; `gp_done` says a grace period has passed since the
	 * flip that retired it, so no packet can still be looking them up. */
	bool stale_dirty, gp_done, clear_failed;
	/* Whether a generation may hold keys: a fresh attachment's first flip retires an empty
	 * generation, which needs neither a grace period nor a clear (no wait before LINK). */
	bool gen_used[NF_GENERATIONS];
	/* Set once an exact entry of the family has been stored in the LPM trie (hash full); until
	 * then deleting an exact entry needs no LPM delete. */
	bool spilled[2];
};

static struct {
	char pin_root[256];
	char bpf_dir[256];
	bool hello;
	__u32 features;
	int events_fd, throttle_fd, prot_fd[2], pdeny_fd[2];
	__u32 protected_n; /* entries in the host-wide protected(-allow) set, mirrored into every nf_state */
	__u32 pdeny_n;     /* entries in the host-wide protected-deny set, likewise */
	struct ring_buffer *rb;
	struct att *atts;
	size_t n_atts;
	/* event batch being assembled by the ring buffer callback */
	struct nf_event *evbuf;
	size_t ev_count, ev_cap;
	__s64 mono_to_real_ns;
	char errmsg[1024];
	char liblog[2048]; /* tail of libbpf's log for the current request */
	size_t liblog_len;
} g = { .events_fd = -1, .throttle_fd = -1, .prot_fd = { -1, -1 }, .pdeny_fd = { -1, -1 } };

/* ---------------------------------------------------------------- small helpers */

static int fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(g.errmsg, sizeof(g.errmsg), fmt, ap);
	va_end(ap);
	if (err && n >= 0 && (size_t)n < sizeof(g.errmsg))
		snprintf(g.errmsg + n, sizeof(g.errmsg) - n, ": %s", strerror(err));
	return -(err ? err : EINVAL);
}

static int libbpf_print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[512];
	va_list copy;
	va_copy(copy, args);
	int n = vsnprintf(line, sizeof(line), fmt, copy);
	va_end(copy);
	if (n > 0) {
		size_t len = strlen(line);
		if (len >= sizeof(g.liblog))
			len = sizeof(g.liblog) - 1;
		if (g.liblog_len + len >= sizeof(g.liblog)) { /* keep the tail */
			size_t drop = g.liblog_len + len - sizeof(g.liblog) + 1;
			memmove(g.liblog, g.liblog + drop, g.liblog_len - drop);
			g.liblog_len -= drop;
		}
		memcpy(g.liblog + g.liblog_len, line, len);
		g.liblog_len += len;
		g.liblog[g.liblog_len] = 0;
	}
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static __s64 clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (__s64)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static bool valid_id(const char *id)
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

static void pin_path(char *out, size_t cap, const char *id, const char *name)
{
	snprintf(out, cap, "%s/%s/%s", g.pin_root, id, name);
}

static struct att *find_att(const char *id)
{
	for (size_t i = 0; i < g.n_atts; i++)
		if (g.atts[i].used && strncmp(g.atts[i].id, id, NF_ID_LEN) == 0)
			return &g.atts[i];
	return NULL;
}

static struct att *new_att(const char *id)
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
	a->state_fd = a->counters_fd = a->prog_fd = a->link_fd = -1;
	for (int t = 0; t < T_COUNT; t++)
		a->table_fd[t] = -1;
	return a;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void free_att(struct att *a)
{
	if (a->st)
		munmap(a->st, sizeof(struct nf_state));
	close_fd(&a->state_fd);
	close_fd(&a->counters_fd);
	close_fd(&a->prog_fd);
	close_fd(&a->link_fd);
	for (int t = 0; t < T_COUNT; t++)
		close_fd(&a->table_fd[t]);
	memset(a, 0, sizeof(*a));
}

static const char *const pin_names[] = { "state", "counters", "v4_exact", "v4_lpm", "v6_exact", "v6_lpm", "prog", "link" };

static void unpin_all(const char *id)
{
	char p[512];
	for (size_t i = 0; i < sizeof(pin_names) / sizeof(pin_names[0]); i++) {
		pin_path(p, sizeof(p), id, pin_names[i]);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/%s", g.pin_root, id);
	rmdir(p);
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

static __u32 max_entries_of(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	return bpf_obj_get_info_by_fd(fd, &info, &len) ? 0 : info.max_entries;
}

static bool is_exact(int t)
{
	return t == T_V4_EXACT || t == T_V6_EXACT;
}

/* The generation a stored key belongs to (layouts in netfence.h). */
static __u32 key_gen(int t, const void *key)
{
	if (is_exact(t)) {
		__u32 gen;
		memcpy(&gen, key, 4);
		return gen;
	}
	return ((const __u8 *)key)[4];
}

/* Deletes every key of generation `gen` from table t: keys listed first (cursor iteration),
 * then deleted (in one batch where the kernel can). */
static int clear_generation(int fd, int t, __u32 gen)
{
	size_t ks = table_key_size[t], cap = 1024, cnt = 0;
	char *keys = malloc(cap * ks), cur[32], last[32];
	if (!keys)
		return fail(ENOMEM, "clearing %s", table_names[t]);
	const void *prev = NULL;
	while (bpf_map_get_next_key(fd, prev, cur) == 0) {
		if (key_gen(t, cur) == gen) {
			if (cnt == cap) {
				char *k = realloc(keys, cap * 2 * ks);
				if (!k) {
					free(keys);
					return fail(ENOMEM, "clearing %s", table_names[t]);
				}
				keys = k;
				cap *= 2;
			}
			memcpy(keys + cnt++ * ks, cur, ks);
		}
		memcpy(last, cur, ks); /* the cursor must not alias the output buffer */
		prev = last;
	}
	int err = 0;
	__u32 done = (__u32)cnt;
	if (cnt && !(is_exact(t) && bpf_map_delete_batch(fd, keys, &done, NULL) == 0)) {
		for (size_t i = 0; i < cnt; i++)
			if (bpf_map_delete_elem(fd, keys + i * ks) && errno != ENOENT) {
				err = fail(errno, "clearing %s", table_names[t]);
				break;
			}
	}
	free(keys);
	return err;
}

/*
 * Waits until every BPF program run that started before now has finished. Programs run inside
 * RCU read-side sections, and membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu(). Without it
 * (nohz_full kernels refuse the command) fall back to a wait far longer than any program run.
 */
static void wait_for_running_programs(void)
{
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
		struct timespec ts = { 0, 100 * 1000000l };
		nanosleep(&ts, NULL);
	}
}

/* Deletes the inactive generation's keys once no packet can still be using them (a packet that
 * read the old active_gen just before a flip may look them up until a grace period passed). */
static int clear_stale_generation(struct att *a)
{
	if (!a->stale_dirty)
		return 0;
	if (!a->gp_done) {
		wait_for_running_programs();
		a->gp_done = true;
	}
	__u32 gen = (a->st->active_gen & 1) ^ 1;
	for (int t = 0; t < T_COUNT; t++) {
		int err = clear_generation(a->table_fd[t], t, gen);
		if (err) {
			a->clear_failed = true;
			return err;
		}
	}
	a->gen_used[gen] = false;
	a->stale_dirty = false;
	a->clear_failed = false;
	return 0;
}

/* ---------------------------------------------------------------- output frames */

static int write_all(const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(STDOUT_FILENO, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_frame(__u32 seq, __u16 op, __s32 status, const void *payload, size_t len)
{
	struct nf_frame_hdr h = { .len = (__u32)(sizeof(h) + len), .seq = seq, .op = op, .status = status };
	int err = write_all(&h, sizeof(h));
	if (!err && len)
		err = write_all(payload, len);
	return err;
}

/* ---------------------------------------------------------------- events */

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (size < sizeof(struct nf_event))
		return 0;
	if (g.ev_count == g.ev_cap) {
		size_t cap = g.ev_cap ? g.ev_cap * 2 : 256;
		struct nf_event *n = realloc(g.evbuf, cap * sizeof(*n));
		if (!n)
			return 0;
		g.evbuf = n;
		g.ev_cap = cap;
	}
	struct nf_event *ev = &g.evbuf[g.ev_count++];
	memcpy(ev, data, sizeof(*ev));
	ev->ts_ns = (__u64)((__s64)ev->ts_ns + g.mono_to_real_ns); /* now wall-clock ns */
	return g.ev_count >= 4096 ? 1 : 0;                           /* stop: flush a batch */
}

static void pump_events(void)
{
	if (!g.rb)
		return;
	g.mono_to_real_ns = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
	for (int round = 0; round < 16; round++) {
		g.ev_count = 0;
		int n = ring_buffer__consume(g.rb);
		if (g.ev_count)
			send_frame(0, NF_OP_EVENTS, 0, g.evbuf, g.ev_count * sizeof(struct nf_event));
		if (n <= 0 || g.ev_count < 4096)
			break;
	}
}

/* ---------------------------------------------------------------- host-wide maps */

/* Opens a pinned host-wide map, or creates and pins it. An existing pin with another layout is
 * reported, never silently replaced. */
static int host_map(const char *name, enum bpf_map_type type, __u32 ks, __u32 vs, __u32 max, __u32 flags)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/_host/%s", g.pin_root, name);
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

/* TCX is probed from the kernel's own BTF (is BPF_TCX_INGRESS a known attach type?), not from
 * the version number, and without attaching anything anywhere. */
static bool probe_tcx(void)
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

static int op_hello(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_hello_req))
		return fail(0, "HELLO: short request");
	const struct nf_hello_req *r = req;
	if (r->version != NF_PROTOCOL_VERSION)
		return fail(EPROTO, "HELLO: daemon speaks protocol %u, loader speaks %u", r->version, NF_PROTOCOL_VERSION);
	if (g.hello)
		return fail(EALREADY, "HELLO: already initialised");
	snprintf(g.pin_root, sizeof(g.pin_root), "%.*s", (int)sizeof(r->pin_root), r->pin_root);
	snprintf(g.bpf_dir, sizeof(g.bpf_dir), "%.*s", (int)sizeof(r->bpf_dir), r->bpf_dir);
	char p[512];
	if (mkdir(g.pin_root, 0700) && errno != EEXIST)
		return fail(errno, "creating %s (is bpffs mounted at /sys/fs/bpf?)", g.pin_root);
	snprintf(p, sizeof(p), "%s/_host", g.pin_root);
	if (mkdir(p, 0700) && errno != EEXIST)
		return fail(errno, "creating %s", p);
	if ((g.events_fd = host_map("events", BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 20, 0)) < 0)
		return g.events_fd;
	if ((g.throttle_fd = host_map("throttle", BPF_MAP_TYPE_LRU_HASH, sizeof(struct nf_throttle_key),
				      sizeof(struct nf_throttle_val), 16384, 0)) < 0)
		return g.throttle_fd;
	if ((g.prot_fd[0] = host_map("protected_v4", BPF_MAP_TYPE_LPM_TRIE, sizeof(struct nf_prot_v4_key),
				     sizeof(struct nf_protected), 4096, BPF_F_NO_PREALLOC)) < 0)
		return g.prot_fd[0];
	if ((g.prot_fd[1] = host_map("protected_v6", BPF_MAP_TYPE_LPM_TRIE, sizeof(struct nf_prot_v6_key),
				     sizeof(struct nf_protected), 4096, BPF_F_NO_PREALLOC)) < 0)
		return g.prot_fd[1];
	if ((g.pdeny_fd[0] = host_map("pdeny_v4", BPF_MAP_TYPE_LPM_TRIE, sizeof(struct nf_prot_v4_key),
				      sizeof(struct nf_protected), 4096, BPF_F_NO_PREALLOC)) < 0)
		return g.pdeny_fd[0];
	if ((g.pdeny_fd[1] = host_map("pdeny_v6", BPF_MAP_TYPE_LPM_TRIE, sizeof(struct nf_prot_v6_key),
				      sizeof(struct nf_protected), 4096, BPF_F_NO_PREALLOC)) < 0)
		return g.pdeny_fd[1];
	g.protected_n = count_keys(g.prot_fd[0]) + count_keys(g.prot_fd[1]);
	g.pdeny_n = count_keys(g.pdeny_fd[0]) + count_keys(g.pdeny_fd[1]);
	g.rb = ring_buffer__new(g.events_fd, on_event, NULL, NULL);
	if (!g.rb)
		return fail(errno, "opening the event ring buffer");
	g.features = probe_tcx() ? NF_FEAT_TCX : 0;
	g.hello = true;
	struct nf_hello_reply *out = reply;
	memset(out, 0, sizeof(*out));
	out->version = NF_PROTOCOL_VERSION;
	out->layout = NF_LAYOUT_VERSION;
	out->features = g.features;
	*reply_len = sizeof(*out);
	return 0;
}

/* ---------------------------------------------------------------- load / link / unload */

static struct nf_state *map_state(int fd)
{
	void *p = mmap(NULL, sizeof(struct nf_state), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	return p == MAP_FAILED ? NULL : p;
}

static int op_load(const void *req, size_t len)
{
	if (len < sizeof(struct nf_load_req))
		return fail(0, "LOAD: short request");
	const struct nf_load_req *r = req;
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, r->id);
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

	char path[512];
	snprintf(path, sizeof(path), "%s/%s", g.bpf_dir,
		 r->kind == NF_KIND_TC ? "netfence_tc.bpf.o" : "netfence_cgroup.bpf.o");
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return fail(errno, "LOAD %s: opening %s", id, path);
	int err = 0;
	struct att *a = NULL;
	static const char *const shared[] = { "nf_events",	 "nf_throttle", "nf_protected_v4",
					      "nf_protected_v6", "nf_pdeny_v4", "nf_pdeny_v6" };
	int shared_fd[] = { g.events_fd, g.throttle_fd, g.prot_fd[0], g.prot_fd[1], g.pdeny_fd[0], g.pdeny_fd[1] };
	__u32 cap = r->exact_cap ? r->exact_cap : NF_EXACT_CAP_DEFAULT;
	if (cap > NF_EXACT_CAP_MAX)
		cap = NF_EXACT_CAP_MAX;
	if (bpf_map__set_max_entries(bpf_object__find_map_by_name(obj, "nf_v4_exact"), cap) ||
	    bpf_map__set_max_entries(bpf_object__find_map_by_name(obj, "nf_v6_exact"), cap)) {
		err = fail(errno ? errno : EINVAL, "LOAD %s: sizing the exact tables to %u", id, cap);
		goto out;
	}
	for (int i = 0; i < 6; i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(obj, shared[i]);
		if (!m || bpf_map__reuse_fd(m, shared_fd[i])) {
			err = fail(errno ? errno : ENOENT, "LOAD %s: sharing %s", id, shared[i]);
			goto out;
		}
	}
	g.liblog_len = 0;
	g.liblog[0] = 0;
	if (bpf_object__load(obj)) {
		err = fail(errno, "LOAD %s: bpf_object__load (%s) — %.400s", id, path, g.liblog);
		goto out;
	}
	a = new_att(id);
	if (!a) {
		err = fail(ENOMEM, "LOAD %s", id);
		goto out;
	}
	struct bpf_program *prog = bpf_object__next_program(obj, NULL);
	a->prog_fd = dup(bpf_program__fd(prog));
	a->state_fd = dup(bpf_object__find_map_fd_by_name(obj, "nf_state"));
	a->counters_fd = dup(bpf_object__find_map_fd_by_name(obj, "nf_counters"));
	for (int t = 0; t < T_COUNT; t++)
		a->table_fd[t] = dup(bpf_object__find_map_fd_by_name(obj, table_map_names[t]));
	if (!(a->st = map_state(a->state_fd))) {
		err = fail(errno, "LOAD %s: mmap of the state map", id);
		goto out;
	}
	memset(a->st, 0, sizeof(*a->st));
	a->st->layout = NF_LAYOUT_VERSION;
	a->st->slot = r->slot;
	a->st->kind = r->kind;
	a->st->direction = r->direction;
	a->st->dns_port = r->dns_port;
	memcpy(a->st->dns_ip4, r->dns_ip4, 4);
	memcpy(a->st->dns_ip6, r->dns_ip6, 16);
	a->st->dns_port_min = r->dns_port_min;
	a->st->dns_port_max = r->dns_port_max;
	a->st->guards = r->guards;
	memcpy(a->st->mac, r->mac, 6);
	a->st->n_ip4 = r->n_ip4;
	a->st->n_ip6 = r->n_ip6;
	memcpy(a->st->ip4, r->ip4, sizeof(a->st->ip4));
	memcpy(a->st->ip6, r->ip6, sizeof(a->st->ip6));
	snprintf(a->st->id, sizeof(a->st->id), "%s", id);
	a->st->gen[0].mode = NF_MODE_BLOCK_ALL; /* until the daemon's REPLACE: fail closed */
	a->st->gen[1].mode = NF_MODE_BLOCK_ALL;
	a->st->protected_n = g.protected_n;
	a->st->pdeny_n = g.pdeny_n;
	__atomic_store_n(&a->st->magic, NF_STATE_MAGIC, __ATOMIC_RELEASE);

	if (mkdir(dir, 0700)) {
		err = fail(errno, "LOAD %s: creating %s", id, dir);
		goto out;
	}
	char p[512];
	int pins[] = { a->state_fd, a->counters_fd, a->table_fd[0], a->table_fd[1], a->table_fd[2], a->table_fd[3], a->prog_fd };
	for (int i = 0; i < 7; i++) {
		pin_path(p, sizeof(p), id, pin_names[i]);
		if (bpf_obj_pin(pins[i], p)) {
			err = fail(errno, "LOAD %s: pinning %s", id, p);
			unpin_all(id);
			goto out;
		}
	}
out:
	if (err && a)
		free_att(a);
	bpf_object__close(obj);
	return err;
}

static int tc_hook_for(struct att *a, struct bpf_tc_hook *hook)
{
	memset(hook, 0, sizeof(*hook));
	hook->sz = sizeof(*hook);
	hook->ifindex = (int)a->st->ifindex;
	hook->attach_point = a->st->direction == NF_DIR_EGRESS ? BPF_TC_EGRESS : BPF_TC_INGRESS;
	return 0;
}

static __u32 prog_id_of(int fd)
{
	struct bpf_prog_info info = {};
	__u32 len = sizeof(info);
	return bpf_obj_get_info_by_fd(fd, &info, &len) ? 0 : info.id;
}

static int op_link(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_link_req))
		return fail(0, "LINK: short request");
	const struct nf_link_req *r = req;
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, r->id);
	struct att *a = find_att(id);
	if (!a)
		return fail(ENOENT, "LINK %s: not loaded", id);
	if (a->st->method != NF_METHOD_NONE)
		return fail(EALREADY, "LINK %s: already attached", id);
	char p[512];
	pin_path(p, sizeof(p), id, "link");
	__u32 method = NF_METHOD_NONE;
	if (a->st->kind == NF_KIND_TC) {
		if (r->ifindex == 0)
			return fail(EINVAL, "LINK %s: no interface index", id);
		a->st->ifindex = r->ifindex;
		int tcx_err = 0;
		if (r->method_pref != NF_METHOD_CLSACT && (g.features & NF_FEAT_TCX || r->method_pref == NF_METHOD_TCX)) {
			int type = a->st->direction == NF_DIR_EGRESS ? NF_BPF_TCX_EGRESS : NF_BPF_TCX_INGRESS;
			int fd = bpf_link_create(a->prog_fd, (int)r->ifindex, (enum bpf_attach_type)type, NULL);
			if (fd >= 0) {
				if (bpf_obj_pin(fd, p)) {
					int err = errno;
					bpf_link_detach(fd);
					close(fd);
					return fail(err, "LINK %s: pinning %s", id, p);
				}
				a->link_fd = fd;
				method = NF_METHOD_TCX;
			} else {
				tcx_err = errno;
				if (r->method_pref == NF_METHOD_TCX)
					return fail(tcx_err, "LINK %s: TCX attach to ifindex %u", id, r->ifindex);
			}
		}
		if (method == NF_METHOD_NONE) {
			struct bpf_tc_hook hook;
			tc_hook_for(a, &hook);
			int err = bpf_tc_hook_create(&hook);
			if (err && err != -EEXIST)
				return fail(-err, "LINK %s: creating clsact on ifindex %u%s", id, r->ifindex,
					    tcx_err ? " (TCX failed too)" : "");
			LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = a->prog_fd);
			err = bpf_tc_attach(&hook, &o);
			if (err)
				return fail(-err, "LINK %s: clsact attach to ifindex %u", id, r->ifindex);
			a->st->tc_handle = o.handle;
			a->st->tc_priority = o.priority;
			method = NF_METHOD_CLSACT;
		}
	} else {
		char cg[4097];
		snprintf(cg, sizeof(cg), "%.*s", (int)sizeof(r->cgroup_path), r->cgroup_path);
		int cgfd = open(cg, O_RDONLY | O_DIRECTORY);
		if (cgfd < 0)
			return fail(errno, "LINK %s: opening cgroup %s", id, cg);
		int fd = bpf_link_create(a->prog_fd, cgfd, BPF_CGROUP_INET_EGRESS, NULL);
		int err = errno;
		close(cgfd);
		if (fd < 0)
			return fail(err, "LINK %s: cgroup attach to %s", id, cg);
		if (bpf_obj_pin(fd, p)) {
			err = errno;
			bpf_link_detach(fd);
			close(fd);
			return fail(err, "LINK %s: pinning %s", id, p);
		}
		a->link_fd = fd;
		method = NF_METHOD_CGROUP_LINK;
	}
	__atomic_store_n(&a->st->method, (__u8)method, __ATOMIC_RELEASE);
	struct nf_link_reply *out = reply;
	out->method = method;
	out->prog_id = prog_id_of(a->prog_fd);
	*reply_len = sizeof(*out);
	return 0;
}

/* Detaches whatever the state says was attached. A vanished interface or cgroup is not an error. */
static void detach(struct att *a)
{
	if (a->link_fd >= 0) {
		bpf_link_detach(a->link_fd);
		close_fd(&a->link_fd);
	}
	if (a->st && a->st->method == NF_METHOD_CLSACT) {
		struct bpf_tc_hook hook;
		tc_hook_for(a, &hook);
		LIBBPF_OPTS(bpf_tc_opts, q, .handle = a->st->tc_handle, .priority = a->st->tc_priority);
		/* only remove the filter if it is still ours (the handle could have been reused) */
		if (bpf_tc_query(&hook, &q) == 0 && q.prog_id == prog_id_of(a->prog_fd)) {
			LIBBPF_OPTS(bpf_tc_opts, d, .handle = a->st->tc_handle, .priority = a->st->tc_priority);
			bpf_tc_detach(&hook, &d);
		}
	}
}

static int adopt(const char *id, struct att **out);

static int op_unload(const void *req, size_t len)
{
	if (len < sizeof(struct nf_id_req))
		return fail(0, "UNLOAD: short request");
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, ((const struct nf_id_req *)req)->id);
	if (!valid_id(id))
		return fail(EINVAL, "UNLOAD: invalid attachment id \"%s\"", id);
	struct att *a = find_att(id);
	if (!a) {
		int err = adopt(id, &a);
		if (err == -ENOENT)
			return fail(ENOENT, "UNLOAD %s: no such attachment", id);
		if (err) { /* unreadable pins: still remove them so nothing is orphaned */
			unpin_all(id);
			return 0;
		}
	}
	detach(a);
	unpin_all(id);
	free_att(a);
	return 0;
}

/* ---------------------------------------------------------------- adopt */

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
	for (int t = 0; t < T_COUNT && !err; t++)
		err = open_pinned_map(id, table_names[t], table_type[t], sizeof(struct nf_entry), &a->table_fd[t]);
	if (!err) {
		pin_path(p, sizeof(p), id, "prog");
		a->prog_fd = bpf_obj_get(p);
		if (a->prog_fd < 0)
			err = fail(errno, "ADOPT %s: opening %s", id, p);
	}
	if (!err) {
		pin_path(p, sizeof(p), id, "link");
		a->link_fd = bpf_obj_get(p); /* absent for clsact */
	}
	if (err) {
		free_att(a);
		return err;
	}
	/* What the inactive generation holds is unknown: empty it before its next use. */
	a->stale_dirty = true;
	a->gp_done = false;
	a->st->protected_n = g.protected_n;
	a->st->pdeny_n = g.pdeny_n;
	a->spilled[0] = a->spilled[1] = true; /* unknown after a restart: stay conservative */
	a->gen_used[0] = a->gen_used[1] = true;
	*out = a;
	return 0;
}

/*
 * Whether the filter is really attached where nf_state says, running our program: a pinned link
 * can be defunct (its interface or cgroup went away, or someone ran `bpftool link detach`), and a
 * clsact filter can have been deleted (`tc filter del`) or replaced. `cgroup_id` (optional)
 * receives the cgroup a cgroup link is attached to.
 */
static bool is_attached(struct att *a, __u64 *cgroup_id)
{
	__u32 prog_id = prog_id_of(a->prog_fd);
	if (a->st->method == NF_METHOD_CLSACT) {
		struct bpf_tc_hook hook;
		tc_hook_for(a, &hook);
		LIBBPF_OPTS(bpf_tc_opts, q, .handle = a->st->tc_handle, .priority = a->st->tc_priority);
		return prog_id && bpf_tc_query(&hook, &q) == 0 && q.prog_id == prog_id;
	}
	if (a->link_fd < 0)
		return false;
	struct bpf_link_info info;
	memset(&info, 0, sizeof(info));
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(a->link_fd, &info, &len) || info.prog_id != prog_id)
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

static int op_adopt(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_id_req))
		return fail(0, "ADOPT: short request");
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, ((const struct nf_id_req *)req)->id);
	if (!valid_id(id))
		return fail(EINVAL, "ADOPT: invalid attachment id \"%s\"", id);
	struct att *a = find_att(id);
	if (!a) {
		int err = adopt(id, &a);
		if (err)
			return err;
	}
	struct nf_adopt_reply *out = reply;
	memset(out, 0, sizeof(*out));
	memcpy(&out->state, a->st, sizeof(out->state));
	out->prog_id = prog_id_of(a->prog_fd);
	out->attached = is_attached(a, NULL);
	*reply_len = sizeof(*out);
	return 0;
}

/* ---------------------------------------------------------------- policy entries */

struct batch {
	void *keys;
	struct nf_entry *vals;
	__u32 n;
};

static int table_of(const struct nf_wire_entry *e)
{
	if (e->family == 4)
		return e->prefixlen == 32 ? T_V4_EXACT : T_V4_LPM;
	return e->prefixlen == 128 ? T_V6_EXACT : T_V6_LPM;
}

static int check_entry(const struct nf_wire_entry *e, __u32 i)
{
	if (e->family != 4 && e->family != 6)
		return fail(EINVAL, "entry %u: family %u", i, e->family);
	if (e->prefixlen > (e->family == 4 ? 32 : 128))
		return fail(EINVAL, "entry %u: prefix length %u", i, e->prefixlen);
	return 0;
}

static void make_key(int table, const struct nf_wire_entry *e, __u32 gen, void *key)
{
	switch (table) {
	case T_V4_EXACT: {
		struct nf_exact_v4_key k = { .gen = gen };
		memcpy(k.addr, e->addr, 4);
		memcpy(key, &k, sizeof(k));
		break;
	}
	case T_V6_EXACT: {
		struct nf_exact_v6_key k = { .gen = gen };
		memcpy(k.addr, e->addr, 16);
		memcpy(key, &k, sizeof(k));
		break;
	}
	case T_V4_LPM: {
		struct nf_lpm_v4_key k = { .prefixlen = 8u + e->prefixlen, .gen = (__u8)gen };
		memcpy(k.addr, e->addr, 4);
		memcpy(key, &k, sizeof(k));
		break;
	}
	default: {
		struct nf_lpm_v6_key k = { .prefixlen = 8u + e->prefixlen, .gen = (__u8)gen };
		memcpy(k.addr, e->addr, 16);
		memcpy(key, &k, sizeof(k));
	}
	}
}

/* Converts a wall-clock deadline to the kernel's CLOCK_MONOTONIC; returns false if it already passed. */
static bool make_value(const struct nf_wire_entry *e, struct nf_entry *v, __s64 now_real_ns, __s64 now_mono_ns)
{
	memset(v, 0, sizeof(*v));
	v->flags = e->flags;
	v->prefixlen = e->prefixlen;
	v->rule_id = e->rule_id;
	if (e->expires_ms) {
		__s64 left = (__s64)e->expires_ms * 1000000ll - now_real_ns;
		if (left <= 0)
			return false;
		v->expires_ns = (__u64)(now_mono_ns + left);
	}
	return true;
}

/* Splits entries by table, keyed for generation `gen`; entries already expired go to `x` (to be deleted). */
static int build_batches(const struct nf_wire_entry *es, __u32 count, __u32 gen, struct batch b[T_COUNT], struct batch x[T_COUNT])
{
	for (int t = 0; t < T_COUNT; t++) {
		b[t].keys = calloc(count ? count : 1, table_key_size[t]);
		b[t].vals = calloc(count ? count : 1, sizeof(struct nf_entry));
		x[t].keys = calloc(count ? count : 1, table_key_size[t]);
		x[t].vals = NULL;
		b[t].n = x[t].n = 0;
		if (!b[t].keys || !b[t].vals || !x[t].keys)
			return fail(ENOMEM, "allocating %u entries", count);
	}
	__s64 now_real = clock_ns(CLOCK_REALTIME), now_mono = clock_ns(CLOCK_MONOTONIC);
	for (__u32 i = 0; i < count; i++) {
		int err = check_entry(&es[i], i);
		if (err)
			return err;
		int t = table_of(&es[i]);
		struct nf_entry v;
		if (make_value(&es[i], &v, now_real, now_mono)) {
			make_key(t, &es[i], gen, (char *)b[t].keys + (size_t)b[t].n * table_key_size[t]);
			b[t].vals[b[t].n++] = v;
		} else {
			make_key(t, &es[i], gen, (char *)x[t].keys + (size_t)x[t].n * table_key_size[t]);
			x[t].n++;
		}
	}
	return 0;
}

static void free_batches(struct batch b[T_COUNT], struct batch x[T_COUNT])
{
	for (int t = 0; t < T_COUNT; t++) {
		free(b[t].keys);
		free(b[t].vals);
		free(x[t].keys);
	}
}

/* bpf_map_update_batch where the kernel has it for this map type, element by element otherwise. */
static int write_batch(int fd, int t, const struct batch *b)
{
	if (!b->n)
		return 0;
	__u32 n = b->n;
	if (bpf_map_update_batch(fd, b->keys, b->vals, &n, NULL) == 0)
		return 0;
	int err = errno;
	if (err == E2BIG)
		return fail(err, "%s holds at most %u entries", table_names[t], max_entries_of(fd));
	if (err != EINVAL && err != ENOTSUPP && err != EOPNOTSUPP && err != ENOTSUP)
		return fail(err, "writing %u %s entries", b->n, table_names[t]);
	for (__u32 i = 0; i < b->n; i++)
		if (bpf_map_update_elem(fd, (char *)b->keys + (size_t)i * table_key_size[t], &b->vals[i], BPF_ANY))
			return fail(errno, "writing %s entry %u", table_names[t], i); /* E2BIG: table full */
	return 0;
}

static int delete_keys(int fd, int t, const void *keys, __u32 n)
{
	for (__u32 i = 0; i < n; i++)
		if (bpf_map_delete_elem(fd, (const char *)keys + (size_t)i * table_key_size[t]) && errno != ENOENT)
			return fail(errno, "deleting %s entry %u", table_names[t], i);
	return 0;
}

static struct att *att_for(const char *raw_id, const char *op)
{
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, raw_id);
	struct att *a = find_att(id);
	if (!a)
		fail(ENOENT, "%s %s: not loaded or adopted", op, id);
	return a;
}

/* The LPM key (prefix /32 or /128) standing in for an exact key that did not fit its hash. */
static void spill_key(int t, const void *exact_key, void *lpm_key)
{
	__u32 gen;
	memcpy(&gen, exact_key, 4);
	if (t == T_V4_EXACT) {
		struct nf_lpm_v4_key k = { .prefixlen = 8 + 32, .gen = (__u8)gen };
		memcpy(k.addr, (const char *)exact_key + 4, 4);
		memcpy(lpm_key, &k, sizeof(k));
	} else {
		struct nf_lpm_v6_key k = { .prefixlen = 8 + 128, .gen = (__u8)gen };
		memcpy(k.addr, (const char *)exact_key + 4, 16);
		memcpy(lpm_key, &k, sizeof(k));
	}
}

/* Writes exact entries; when the hash is full, the rest are updated in place if present and
 * otherwise stored in the family's LPM trie as /32 (/128): same verdict, slower lookup. */
static int write_exact(struct att *a, int t, const struct batch *b)
{
	int err = write_batch(a->table_fd[t], t, b);
	if (err != -E2BIG)
		return err;
	int lpm = t == T_V4_EXACT ? T_V4_LPM : T_V6_LPM;
	char lk[32];
	for (__u32 i = 0; i < b->n; i++) {
		const char *k = (const char *)b->keys + (size_t)i * table_key_size[t];
		if (bpf_map_update_elem(a->table_fd[t], k, &b->vals[i], BPF_EXIST) == 0)
			continue;
		if (errno != ENOENT)
			return fail(errno, "writing %s entry %u", table_names[t], i);
		spill_key(t, k, lk);
		a->spilled[t == T_V6_EXACT] = true;
		if (bpf_map_update_elem(a->table_fd[lpm], lk, &b->vals[i], BPF_ANY))
			return fail(errno, "%s is full and %s cannot take entry %u", table_names[t], table_names[lpm], i);
	}
	return 0;
}

/* Deletes exact keys from the hash and any /32 (/128) stand-in of theirs from the LPM trie. */
static int delete_exact(struct att *a, int t, const void *keys, __u32 n)
{
	int err = delete_keys(a->table_fd[t], t, keys, n);
	if (!a->spilled[t == T_V6_EXACT])
		return err;
	int lpm = t == T_V4_EXACT ? T_V4_LPM : T_V6_LPM;
	char lk[32];
	for (__u32 i = 0; i < n && !err; i++) {
		spill_key(t, (const char *)keys + (size_t)i * table_key_size[t], lk);
		if (bpf_map_delete_elem(a->table_fd[lpm], lk) && errno != ENOENT)
			err = fail(errno, "deleting %s entry %u", table_names[lpm], i);
	}
	return err;
}

static int op_replace(const void *req, size_t len)
{
	if (len < sizeof(struct nf_policy_req))
		return fail(0, "REPLACE: short request");
	const struct nf_policy_req *r = req;
	if ((len - sizeof(*r)) / sizeof(struct nf_wire_entry) < r->count)
		return fail(EINVAL, "REPLACE: %u entries announced, %zu bytes sent", r->count, len - sizeof(*r));
	if (r->mode > NF_MODE_BLOCK_ALL)
		return fail(EINVAL, "REPLACE: unknown mode %u", r->mode);
	struct att *a = att_for(r->id, "REPLACE");
	if (!a)
		return -ENOENT;
	__u32 next = (a->st->active_gen & 1) ^ 1;
	const struct nf_wire_entry *es = (const void *)(r + 1);
	struct batch b[T_COUNT], x[T_COUNT];
	int err = build_batches(es, r->count, next, b, x);
	/* The new policy is written under the inactive generation, after its old keys are gone. */
	if (!err)
		err = clear_stale_generation(a);
	a->gen_used[next] = true;
	for (int t = 0; t < T_COUNT && !err; t++)
		err = is_exact(t) ? write_exact(a, t, &b[t]) : write_batch(a->table_fd[t], t, &b[t]);
	if (err) {
		/* Never visible to packets; its keys are deleted before the generation is reused. */
		a->stale_dirty = true;
		a->gp_done = true;
	} else {
		/* Nothing was visible to packets until here: the generation's settings, then the one
		 * store that flips it. The retired generation is cleared later, off this path. */
		struct nf_gen_settings set = { .mode = r->mode, .flags = r->flags };
		__u64 packed;
		memcpy(&packed, &set, sizeof(packed));
		__atomic_store_n((__u64 *)&a->st->gen[next], packed, __ATOMIC_RELEASE);
		__atomic_store_n(&a->st->active_gen, next, __ATOMIC_RELEASE);
		a->stale_dirty = a->gen_used[next ^ 1];
		a->gp_done = false;
	}
	free_batches(b, x);
	return err;
}

static int op_entries(const void *req, size_t len, bool del)
{
	const char *op = del ? "DELETE" : "UPSERT";
	if (len < sizeof(struct nf_entries_req))
		return fail(0, "%s: short request", op);
	const struct nf_entries_req *r = req;
	if ((len - sizeof(*r)) / sizeof(struct nf_wire_entry) < r->count)
		return fail(EINVAL, "%s: %u entries announced, %zu bytes sent", op, r->count, len - sizeof(*r));
	struct att *a = att_for(r->id, op);
	if (!a)
		return -ENOENT;
	const struct nf_wire_entry *es = (const void *)(r + 1);
	struct batch b[T_COUNT], x[T_COUNT];
	int err = build_batches(es, r->count, a->st->active_gen & 1, b, x);
	if (!del)
		a->gen_used[a->st->active_gen & 1] = true;
	for (int t = 0; t < T_COUNT && !err; t++) {
		int fd = a->table_fd[t];
		if (del) {
			err = is_exact(t) ? delete_exact(a, t, b[t].keys, b[t].n) : delete_keys(fd, t, b[t].keys, b[t].n);
			if (!err)
				err = is_exact(t) ? delete_exact(a, t, x[t].keys, x[t].n) : delete_keys(fd, t, x[t].keys, x[t].n);
		} else {
			err = is_exact(t) ? write_exact(a, t, &b[t]) : write_batch(fd, t, &b[t]);
			if (!err) /* already expired: make sure it is gone */
				err = is_exact(t) ? delete_exact(a, t, x[t].keys, x[t].n) : delete_keys(fd, t, x[t].keys, x[t].n);
		}
	}
	free_batches(b, x);
	return err;
}

static int op_set_mode(const void *req, size_t len)
{
	if (len < sizeof(struct nf_mode_req))
		return fail(0, "SET_MODE: short request");
	const struct nf_mode_req *r = req;
	if (r->mode > NF_MODE_BLOCK_ALL)
		return fail(EINVAL, "SET_MODE: unknown mode %u", r->mode);
	struct att *a = att_for(r->id, "SET_MODE");
	if (!a)
		return -ENOENT;
	struct nf_gen_settings s = { .mode = r->mode, .flags = r->flags };
	__u64 packed;
	memcpy(&packed, &s, sizeof(packed));
	__atomic_store_n((__u64 *)&a->st->gen[a->st->active_gen & 1], packed, __ATOMIC_RELEASE);
	return 0;
}

static int op_counters(const void *req, size_t len, void **reply, size_t *reply_len)
{
	if (len < 4)
		return fail(0, "COUNTERS: short request");
	__u32 count;
	memcpy(&count, req, 4);
	if ((len - 4) / NF_ID_LEN < count)
		return fail(EINVAL, "COUNTERS: %u ids announced, %zu bytes sent", count, len - 4);
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return fail(-ncpu, "COUNTERS: possible CPUs");
	__u64 *out = calloc((size_t)count * NF_CNT_MAX + 1, sizeof(__u64));
	__u64 *percpu = calloc((size_t)ncpu, sizeof(__u64));
	if (!out || !percpu) {
		free(out);
		free(percpu);
		return fail(ENOMEM, "COUNTERS");
	}
	for (__u32 i = 0; i < count; i++) {
		struct att *a = att_for((const char *)req + 4 + (size_t)i * NF_ID_LEN, "COUNTERS");
		if (!a) {
			free(out);
			free(percpu);
			return -ENOENT;
		}
		for (__u32 c = 0; c < NF_CNT_MAX; c++) {
			if (bpf_map_lookup_elem(a->counters_fd, &c, percpu))
				continue;
			for (int cpu = 0; cpu < ncpu; cpu++)
				out[(size_t)i * NF_CNT_MAX + c] += percpu[cpu];
		}
	}
	free(percpu);
	*reply = out;
	*reply_len = (size_t)count * NF_CNT_MAX * sizeof(__u64);
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

/* Replaces one host-wide set (fds[2]: v4, v6) with the entries of `es` whose NF_PROT_DENY flag is
 * `deny`: new entries are written before stale ones are removed, so a destination in the set
 * before and after is never out of it in between. Returns the set's new size, or -errno. */
static int replace_protected_set(int fds[2], const struct nf_wire_protected *es, __u32 count, bool deny)
{
	__u32 n = 0;
	for (__u32 i = 0; i < count; i++) {
		if (((es[i].flags & NF_PROT_DENY) != 0) != deny)
			continue;
		struct nf_prot_v6_key k = { .prefixlen = es[i].prefixlen };
		memcpy(k.addr, es[i].addr, es[i].family == 4 ? 4 : 16);
		struct nf_protected v = { .port = es[i].port, .proto = es[i].proto };
		if (bpf_map_update_elem(fds[es[i].family == 6], &k, &v, BPF_ANY))
			return fail(errno, "PROTECTED: writing %s entry %u", deny ? "deny" : "allow", i);
		n++;
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
	return (int)(count_keys(fds[0]) + count_keys(fds[1]));
}

/* Replaces both host-wide sets: protected (pass in every mode) and protected-deny (dropped in
 * every mode), selected per entry by NF_PROT_DENY. */
static int op_protected(const void *req, size_t len)
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
		if (es[i].flags & ~NF_PROT_DENY)
			return fail(EINVAL, "PROTECTED: entry %u has unknown flags %#x", i, es[i].flags);
	}
	int n = replace_protected_set(g.prot_fd, es, count, false);
	if (n < 0)
		return n;
	int deny_n = replace_protected_set(g.pdeny_fd, es, count, true);
	if (deny_n < 0) { /* partly written: count what is there, so no entry is skipped */
		set_protected_n((__u32)n, count_keys(g.pdeny_fd[0]) + count_keys(g.pdeny_fd[1]));
		return deny_n;
	}
	set_protected_n((__u32)n, (__u32)deny_n);
	return 0;
}

/* ---------------------------------------------------------------- DNS port guard */

static const char *const pg_link_names[2] = { "portguard_bind4", "portguard_bind6" };

static void host_pin_path(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/_host/%s", g.pin_root, name);
}

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

static void remove_guard_links(void)
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
}

/*
 * Installs the DNS port guard on a cgroup, or updates it in place: the settings are written to
 * the pinned config map first; pinned links already on the same cgroup get the freshly loaded
 * programs through bpf_link_update (never a moment without a guard); links on another cgroup are
 * replaced. Everything is pinned, so the guard holds while the daemon and this loader are down.
 */
static int op_port_guard(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_port_guard_req))
		return fail(0, "PORT_GUARD: short request");
	const struct nf_port_guard_req *r = req;
	if (r->port_min == 0 || r->port_min > r->port_max)
		return fail(EINVAL, "PORT_GUARD: invalid port range %u-%u", r->port_min, r->port_max);
	char cg[4097];
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
	char path[512], p[512];
	snprintf(path, sizeof(path), "%s/netfence_bindguard.bpf.o", g.bpf_dir);
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		err = fail(errno, "PORT_GUARD: opening %s", path);
		close(cgfd);
		return err;
	}
	int cfg_fd = host_map("portguard_cfg", BPF_MAP_TYPE_ARRAY, 4, sizeof(struct nf_port_guard_cfg), 1, 0);
	int link_fd[2] = { -1, -1 };
	bool updated = false;
	if (cfg_fd < 0) {
		err = cfg_fd;
		goto out;
	}
	struct nf_port_guard_cfg cfg = { .uid = r->uid, .port_min = r->port_min, .port_max = r->port_max };
	__u32 zero = 0;
	if (bpf_map_update_elem(cfg_fd, &zero, &cfg, BPF_ANY)) {
		err = fail(errno, "PORT_GUARD: writing the settings");
		goto out;
	}
	if (bpf_map__reuse_fd(bpf_object__find_map_by_name(obj, "nf_pg_cfg"), cfg_fd)) {
		err = fail(errno ? errno : EINVAL, "PORT_GUARD: sharing nf_pg_cfg");
		goto out;
	}
	g.liblog_len = 0;
	g.liblog[0] = 0;
	if (bpf_object__load(obj)) {
		err = fail(errno, "PORT_GUARD: bpf_object__load (%s) — %.400s", path, g.liblog);
		goto out;
	}
	static const char *const progs[2] = { "netfence_bind4", "netfence_bind6" };
	static const enum bpf_attach_type types[2] = { BPF_CGROUP_INET4_BIND, BPF_CGROUP_INET6_BIND };
	struct nf_port_guard_reply *out = reply;
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 2; i++) {
		int prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, progs[i]));
		int e = open_guard_link(pg_link_names[i], cg_id, &link_fd[i]);
		if (e == 0) {
			if (bpf_link_update(link_fd[i], prog_fd, NULL)) {
				err = fail(errno, "PORT_GUARD: updating %s", pg_link_names[i]);
				goto out;
			}
			updated = true;
		} else {
			if (e != -ENOENT && e != -ESTALE) {
				err = e;
				goto out;
			}
			host_pin_path(p, sizeof(p), pg_link_names[i]);
			if (link_fd[i] >= 0) { /* attached to another cgroup: replace it */
				bpf_link_detach(link_fd[i]);
				close_fd(&link_fd[i]);
				unlink(p);
			}
			link_fd[i] = bpf_link_create(prog_fd, cgfd, types[i], NULL);
			if (link_fd[i] < 0) {
				err = fail(errno, "PORT_GUARD: attaching %s to %s", progs[i], cg);
				goto out;
			}
			if (bpf_obj_pin(link_fd[i], p)) {
				err = fail(errno, "PORT_GUARD: pinning %s", p);
				bpf_link_detach(link_fd[i]);
				goto out;
			}
		}
		if (i == 0)
			out->prog_id4 = prog_id_of(prog_fd);
		else
			out->prog_id6 = prog_id_of(prog_fd);
	}
	out->cgroup_id = cg_id;
	out->updated = updated;
	*reply_len = sizeof(*out);
out:
	close_fd(&link_fd[0]);
	close_fd(&link_fd[1]);
	if (cfg_fd >= 0)
		close(cfg_fd);
	close(cgfd);
	bpf_object__close(obj);
	return err;
}

static int op_port_unguard(void)
{
	char p[512];
	remove_guard_links();
	host_pin_path(p, sizeof(p), "portguard_cfg");
	unlink(p);
	return 0;
}

/* ---------------------------------------------------------------- operations (issue 11) */

/* Re-attaches an adopted attachment's pinned program where the request says (a re-created
 * interface has a new ifindex), after forgetting whatever attachment it had: a defunct or
 * unpinned link, or a clsact filter someone deleted. A filter still attached there is left as is. */
static int op_relink(const void *req, size_t len, void *reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_link_req))
		return fail(0, "RELINK: short request");
	const struct nf_link_req *r = req;
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, r->id);
	struct att *a = find_att(id);
	if (!a)
		return fail(ENOENT, "RELINK %s: not adopted", id);
	if (a->st->method != NF_METHOD_NONE && is_attached(a, NULL) &&
	    (a->st->kind != NF_KIND_TC || a->st->ifindex == r->ifindex)) {
		struct nf_link_reply *out = reply;
		out->method = a->st->method;
		out->prog_id = prog_id_of(a->prog_fd);
		*reply_len = sizeof(*out);
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

/* Appends one map entry of the active generation to the dump (expired entries are left out). */
static int dump_entry(struct nf_wire_entry **es, __u32 *n, __u32 *cap, int t, const void *key,
		      const struct nf_entry *v, __s64 now_real_ns, __s64 now_mono_ns)
{
	if (v->expires_ns && (__s64)v->expires_ns <= now_mono_ns)
		return 0;
	if (*n == *cap) {
		__u32 c = *cap ? *cap * 2 : 256;
		struct nf_wire_entry *m = realloc(*es, (size_t)c * sizeof(*m));
		if (!m)
			return fail(ENOMEM, "DUMP");
		*es = m;
		*cap = c;
	}
	struct nf_wire_entry *e = &(*es)[(*n)++];
	memset(e, 0, sizeof(*e));
	e->family = (t == T_V4_EXACT || t == T_V4_LPM) ? 4 : 6;
	e->flags = v->flags;
	e->rule_id = v->rule_id;
	if (v->expires_ns) /* CLOCK_MONOTONIC deadline → wall clock ms, rounded up */
		e->expires_ms = (__u64)((now_real_ns + ((__s64)v->expires_ns - now_mono_ns) + 999999) / 1000000);
	switch (t) {
	case T_V4_EXACT:
		e->prefixlen = 32;
		memcpy(e->addr, ((const struct nf_exact_v4_key *)key)->addr, 4);
		break;
	case T_V6_EXACT:
		e->prefixlen = 128;
		memcpy(e->addr, ((const struct nf_exact_v6_key *)key)->addr, 16);
		break;
	case T_V4_LPM:
		e->prefixlen = (__u8)(((const struct nf_lpm_v4_key *)key)->prefixlen - 8);
		memcpy(e->addr, ((const struct nf_lpm_v4_key *)key)->addr, 4);
		break;
	default:
		e->prefixlen = (__u8)(((const struct nf_lpm_v6_key *)key)->prefixlen - 8);
		memcpy(e->addr, ((const struct nf_lpm_v6_key *)key)->addr, 16);
	}
	return 0;
}

/* What a pinned attachment is and enforces: its settings and the active generation's entries.
 * Adopts the pins first when this loader has not yet. */
static int op_dump(const void *req, size_t len, void **reply, size_t *reply_len)
{
	if (len < sizeof(struct nf_id_req))
		return fail(0, "DUMP: short request");
	char id[NF_ID_LEN];
	snprintf(id, sizeof(id), "%.*s", NF_ID_LEN - 1, ((const struct nf_id_req *)req)->id);
	if (!valid_id(id))
		return fail(EINVAL, "DUMP: invalid attachment id \"%s\"", id);
	struct att *a = find_att(id);
	if (!a) {
		int err = adopt(id, &a);
		if (err)
			return err;
	}
	struct nf_dump_reply h;
	memset(&h, 0, sizeof(h));
	__u32 gen = a->st->active_gen & 1;
	h.slot = a->st->slot;
	h.ifindex = a->st->ifindex;
	h.mode = a->st->gen[gen].mode;
	h.flags = a->st->gen[gen].flags;
	h.prog_id = prog_id_of(a->prog_fd);
	h.attached = is_attached(a, &h.cgroup_id);
	h.dns_port = a->st->dns_port;
	h.kind = a->st->kind;
	h.method = a->st->method;
	h.direction = a->st->direction;
	struct nf_wire_entry *es = NULL;
	__u32 n = 0, cap = 0;
	__s64 now_real = clock_ns(CLOCK_REALTIME), now_mono = clock_ns(CLOCK_MONOTONIC);
	int err = 0;
	for (int t = 0; t < T_COUNT && !err; t++) {
		char cur[32], last[32];
		const void *prev = NULL;
		while (!err && bpf_map_get_next_key(a->table_fd[t], prev, cur) == 0) {
			struct nf_entry v;
			if (key_gen(t, cur) == gen && bpf_map_lookup_elem(a->table_fd[t], cur, &v) == 0)
				err = dump_entry(&es, &n, &cap, t, cur, &v, now_real, now_mono);
			memcpy(last, cur, table_key_size[t]);
			prev = last;
		}
	}
	char *out = err ? NULL : malloc(sizeof(h) + (size_t)n * sizeof(*es));
	if (!err && !out)
		err = fail(ENOMEM, "DUMP");
	if (!err) {
		h.count = n;
		memcpy(out, &h, sizeof(h));
		if (n)
			memcpy(out + sizeof(h), es, (size_t)n * sizeof(*es));
		*reply = out;
		*reply_len = sizeof(h) + (size_t)n * sizeof(*es);
	}
	free(es);
	return err;
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, which the daemon passes in
 * (Node cannot send unix datagrams). The service needs NotifyAccess=all: this process sends it. */
static int op_notify(const void *req, size_t len)
{
	if (len < sizeof(struct nf_notify_req))
		return fail(0, "NOTIFY: short request");
	const struct nf_notify_req *r = req;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strnlen(r->socket, sizeof(r->socket));
	if (n == 0 || n >= sizeof(sa.sun_path) || (r->socket[0] != '/' && r->socket[0] != '@'))
		return fail(EINVAL, "NOTIFY: \"%.*s\" is not a socket path or @abstract name", (int)n, r->socket);
	memcpy(sa.sun_path, r->socket, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace: no terminating NUL counted */
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (r->socket[0] == '/'));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(errno, "NOTIFY: socket");
	size_t mlen = strnlen(r->message, sizeof(r->message));
	ssize_t w = sendto(fd, r->message, mlen, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int err = w < 0 ? fail(errno, "NOTIFY: sending to %.*s", (int)n, r->socket) : 0;
	close(fd);
	return err;
}

/* ---------------------------------------------------------------- main loop */

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n == 0)
			return 0;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 1;
}

static void handle(const struct nf_frame_hdr *h, void *payload, size_t len)
{
	char small[sizeof(struct nf_adopt_reply)];
	void *reply = small;
	void *heap = NULL;
	size_t reply_len = 0;
	int err;
	g.errmsg[0] = 0;
	if (!g.hello && h->op != NF_OP_HELLO) {
		err = fail(EPROTO, "the first request must be HELLO");
	} else {
		switch (h->op) {
		case NF_OP_HELLO: err = op_hello(payload, len, reply, &reply_len); break;
		case NF_OP_LOAD: err = op_load(payload, len); break;
		case NF_OP_LINK: err = op_link(payload, len, reply, &reply_len); break;
		case NF_OP_UNLOAD: err = op_unload(payload, len); break;
		case NF_OP_ADOPT: err = op_adopt(payload, len, reply, &reply_len); break;
		case NF_OP_REPLACE: err = op_replace(payload, len); break;
		case NF_OP_UPSERT: err = op_entries(payload, len, false); break;
		case NF_OP_DELETE: err = op_entries(payload, len, true); break;
		case NF_OP_SET_MODE: err = op_set_mode(payload, len); break;
		case NF_OP_COUNTERS: err = op_counters(payload, len, &heap, &reply_len); reply = heap; break;
		case NF_OP_PROTECTED: err = op_protected(payload, len); break;
		case NF_OP_PORT_GUARD: err = op_port_guard(payload, len, reply, &reply_len); break;
		case NF_OP_PORT_UNGUARD: err = op_port_unguard(); break;
		case NF_OP_NOTIFY: err = op_notify(payload, len); break;
		case NF_OP_RELINK: err = op_relink(payload, len, reply, &reply_len); break;
		case NF_OP_DUMP: err = op_dump(payload, len, &heap, &reply_len); reply = heap; break;
		default: err = fail(EOPNOTSUPP, "unknown op %u", h->op);
		}
	}
	if (err)
		send_frame(h->seq, h->op, err < 0 ? err : -err, g.errmsg, strlen(g.errmsg));
	else
		send_frame(h->seq, h->op, 0, reply, reply_len);
	free(heap);
}

int main(void)
{
	/* The daemon ends this process by closing stdin (or SIGKILL). A SIGTERM/SIGINT sent to the
	 * whole process group or unit (systemctl stop, Ctrl-C) must not kill it under the daemon,
	 * which may still need it while it stops (e.g. to send STOPPING=1). */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	libbpf_set_print(libbpf_print_fn);
	setvbuf(stderr, NULL, _IOLBF, 0);
	void *payload = NULL;
	size_t cap = 0;
	for (;;) {
		struct pollfd pfd[2] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = -1, .events = POLLIN } };
		if (g.rb)
			pfd[1].fd = ring_buffer__epoll_fd(g.rb);
		/* Idle work: empty retired generations, one attachment per turn so a request is never
		 * kept waiting for more than one. A single grace period covers every attachment that is
		 * waiting for one (after a restart, that is all of them). */
		int timeout = 1000;
		struct att *next_clear = NULL;
		bool need_gp = false;
		for (size_t i = 0; i < g.n_atts; i++) {
			struct att *a = &g.atts[i];
			if (a->used && a->stale_dirty && !a->clear_failed) {
				if (!next_clear)
					next_clear = a;
				need_gp |= !a->gp_done;
			}
		}
		if (next_clear) {
			struct pollfd in = { .fd = STDIN_FILENO, .events = POLLIN };
			if (poll(&in, 1, 0) == 0) { /* nothing waiting: do it now */
				if (need_gp) {
					wait_for_running_programs();
					for (size_t i = 0; i < g.n_atts; i++)
						if (g.atts[i].used && g.atts[i].stale_dirty)
							g.atts[i].gp_done = true;
				}
				if (clear_stale_generation(next_clear))
					fprintf(stderr, "netfence-loader: %s: %s\n", next_clear->id, g.errmsg);
			}
			timeout = 0;
		}
		int n = poll(pfd, 2, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (pfd[1].revents & POLLIN)
			pump_events();
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		struct nf_frame_hdr h;
		int rc = read_full(STDIN_FILENO, &h, sizeof(h));
		if (rc <= 0)
			return 0; /* daemon went away: exit; pins keep enforcing */
		if (h.len < sizeof(h) || h.len > NF_MAX_FRAME) {
			fprintf(stderr, "netfence-loader: bad frame length %u, exiting\n", h.len);
			return 2;
		}
		size_t len = h.len - sizeof(h);
		if (len > cap) {
			void *p = realloc(payload, len);
			if (!p)
				return 3;
			payload = p;
			cap = len;
		}
		if (len && read_full(STDIN_FILENO, payload, len) <= 0)
			return 0;
		handle(&h, payload, len);
		pump_events();
	}
}
