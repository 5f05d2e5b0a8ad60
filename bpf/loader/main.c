// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * netfence-loader — the long-lived helper the daemon runs as a child process.
 *
 * It speaks the framed protocol of include/netfence.h on stdin/stdout and does what it is told:
 * load + pin the BPF objects, attach (TCX link, clsact or cgroup link), batched map updates,
 * atomic policy replace, counters, protected set, and it streams the shared ring buffer of
 * packet events. It holds no policy. Everything it creates is pinned under
 *   <pin_root>/<id>/{state,counters,v4_exact,v4_lpm,v6_exact,v6_lpm,v4_large,v6_large,prog,link}
 *   <pin_root>/_host/{events,throttle_owner,flows,protected_v4,protected_v6,pdeny_v4,pdeny_v6}
 *   <pin_root>/_host/{portguard_cfg,portguard_bind4,portguard_bind6}   (the DNS port guard, when installed)
 * so the kernel keeps enforcing when this process (or the daemon) dies, and a fresh loader can
 * re-adopt everything from the pins alone (nf_state records how each attachment was made).
 *
 * main.c owns the process: the frames on stdin/stdout, HELLO, dispatch of the other requests to
 * the file that owns their concept (loader.h lists them), NOTIFY, and the loop that waits for
 * requests and ring-buffer events and empties retired generations while idle.
 *
 * Requests are handled one at a time in arrival order; the daemon serialises its kernel
 * mutations anyway. libbpf logs go to stderr, which the daemon forwards to its log.
 */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "loader.h"

struct loader_globals g = { .events_fd = -1, .throttle_fd = -1, .flows_fd = -1, .prot_fd = { -1, -1 }, .pdeny_fd = { -1, -1 } };
__thread struct loader_tls tls;

/* ---------------------------------------------------------------- small helpers */

int fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tls.errmsg, sizeof(tls.errmsg), fmt, ap);
	va_end(ap);
	if (err && n >= 0 && (size_t)n < sizeof(tls.errmsg))
		snprintf(tls.errmsg + n, sizeof(tls.errmsg) - n, ": %s", strerror(err));
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
		if (len >= sizeof(tls.liblog))
			len = sizeof(tls.liblog) - 1;
		if (tls.liblog_len + len >= sizeof(tls.liblog)) { /* keep the tail */
			size_t drop = tls.liblog_len + len - sizeof(tls.liblog) + 1;
			memmove(tls.liblog, tls.liblog + drop, tls.liblog_len - drop);
			tls.liblog_len -= drop;
		}
		memcpy(tls.liblog + tls.liblog_len, line, len);
		tls.liblog_len += len;
		tls.liblog[tls.liblog_len] = 0;
	}
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

__s64 clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (__s64)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---------------------------------------------------------------- frames */

/* Reads (out = false) or writes all `len` bytes: 1 when done, 0 at end of file, -errno. */
static int transfer(int fd, void *buf, size_t len, bool out)
{
	char *p = buf;
	while (len) {
		ssize_t n = out ? write(fd, p, len) : read(fd, p, len);
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

int send_frame(__u32 seq, __u16 op, __s32 status, const void *payload, size_t len)
{
	struct nf_frame_hdr h = { .len = (__u32)(sizeof(h) + len), .seq = seq, .op = op, .status = status };
	int rc = transfer(STDOUT_FILENO, &h, sizeof(h), true);
	if (rc > 0 && len)
		rc = transfer(STDOUT_FILENO, (void *)payload, len, true);
	return rc > 0 ? 0 : rc == 0 ? -EIO : rc;
}

/* ---------------------------------------------------------------- HELLO, NOTIFY */

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
	if (mkdir(g.pin_root, 0700) && errno != EEXIST)
		return fail(errno, "creating %s (is bpffs mounted at /sys/fs/bpf?)", g.pin_root);
	int err = host_maps_open();
	if (!err)
		err = events_open();
	if (err)
		return err;
	g.features = probe_tcx() ? NF_FEAT_TCX : 0;
	g.hello = true;
	pool_start();
	struct nf_hello_reply *out = reply;
	memset(out, 0, sizeof(*out));
	out->version = NF_PROTOCOL_VERSION;
	out->layout = NF_LAYOUT_VERSION;
	out->features = g.features;
	*reply_len = sizeof(*out);
	return 0;
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

/* ---------------------------------------------------------------- dispatch and the main loop */

static void handle(const struct nf_frame_hdr *h, void *payload, size_t len)
{
	union { /* the fixed-size replies */
		struct nf_adopt_reply adopt;
		struct nf_tables_reply tables;
		struct nf_lookup_reply lookup;
	} small;
	void *reply = &small;
	void *heap = NULL;
	size_t reply_len = 0;
	int err;
	tls.errmsg[0] = 0;
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
		case NF_OP_TABLES: err = op_tables(payload, len, reply, &reply_len); break;
		case NF_OP_LOOKUP: err = op_lookup(payload, len, reply, &reply_len); break;
		case NF_OP_HITS: err = op_hits(payload, len, &heap, &reply_len); reply = heap; break;
		case NF_OP_HITS_CLEAR: err = op_hits_clear(payload, len); break;
		case NF_OP_MIGRATE_BEGIN: err = op_migrate_begin(payload, len, reply, &reply_len); break;
		case NF_OP_MIGRATE_FINISH: err = op_migrate_finish(payload, len, reply, &reply_len); break;
		case NF_OP_MIGRATE_ABORT: err = op_migrate_abort(payload, len); break;
		case NF_OP_VERIFY: err = op_verify(payload, len, &heap, &reply_len); reply = heap; break;
		case NF_OP_RESTORE: err = op_restore(payload, len, reply, &reply_len); break;
		default: err = fail(EOPNOTSUPP, "unknown op %u", h->op);
		}
	}
	if (err)
		send_frame(h->seq, h->op, err < 0 ? err : -err, tls.errmsg, strlen(tls.errmsg));
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
		struct pollfd pfd[3] = { { .fd = STDIN_FILENO, .events = POLLIN }, { .fd = -1, .events = POLLIN },
					 { .fd = grace_fd(), .events = POLLIN } };
		if (g.rb)
			pfd[1].fd = ring_buffer__epoll_fd(g.rb);
		/* Idle work: empty retired generations once their grace period has passed (grace.c's
		 * thread wakes this poll through pfd[2]), one attachment per turn so a request is never
		 * kept waiting for more than one (generations.c). */
		int timeout = 1000;
		if (gens_idle_due()) {
			struct pollfd in = { .fd = STDIN_FILENO, .events = POLLIN };
			if (poll(&in, 1, 0) == 0) /* nothing waiting: do it now */
				gens_idle_work();
			timeout = 0;
		}
		int n = poll(pfd, 3, timeout);
		if (n < 0 && errno != EINTR)
			return 1;
		if (pfd[0].revents & POLLNVAL)
			return 4; /* stdin is not open: nobody can talk to us any more */
		if (pfd[1].revents & POLLIN)
			pump_events();
		if (pfd[2].revents & POLLIN)
			grace_drain();
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		struct nf_frame_hdr h;
		int rc = transfer(STDIN_FILENO, &h, sizeof(h), false);
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
		if (len && transfer(STDIN_FILENO, payload, len, false) <= 0)
			return 0;
		handle(&h, payload, len);
		pump_events();
	}
}
