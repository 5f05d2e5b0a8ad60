// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * guest-client — drives the REAL netfence-loader over its framed stdio protocol
 * (bpf/include/netfence.h) and checks the data path with real packets. Runs unchanged inside the
 * qemu guests (6.1, 6.12) and on the host kernel; statically linked so it needs nothing from the
 * guest's initramfs but busybox `ping`.
 *
 * Topology, created beforehand by checks.sh (both namespaces are ours, nothing else is touched):
 *   netns HOST (--host-ns): veth0 = 10.0.0.1/24 + 10.0.0.254/24, fd00::1/64 + fd00::fe/64  <- the loader runs here
 *   netns WL   (--wl-ns):   veth1 = 10.0.0.2/24 + 10.0.0.3/24, fd00::2/64                 <- the "workload"
 * The TC program sits on veth0 ingress (= what the workload sends); the cgroup program on
 * --cgroup (processes in it, running in HOST, send to 10.0.0.2 / 10.0.0.3).
 *
 * Prints one line per check ("ok   ..." / "FAIL ...", plus "info ...") and finally
 *   PORTABILITY: PASS method=<tcx|clsact> kernel=<uname -r>   or   PORTABILITY: FAIL <reason>
 * Exit status 0 only on PASS.
 *
 * usage: guest-client --loader PATH --bpf-dir DIR --pin-root DIR --host-ns NSFILE --wl-ns NSFILE
 *                     --ifname IF --cgroup DIR [--method auto|tcx|clsact]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netfence.h"

#define ADDR_HOST "10.0.0.1"    /* veth0, HOST netns */
#define ADDR_HOST_2 "10.0.0.254" /* veth0, HOST netns */
#define ADDR6_HOST "fd00::1"    /* veth0, HOST netns */
#define ADDR6_HOST_2 "fd00::fe" /* veth0, HOST netns */
#define ADDR_WL "10.0.0.2"      /* veth1, WL netns */
#define ADDR_WL_2 "10.0.0.3"    /* veth1, WL netns */
#define TC_ID "port-tc"
#define CG_ID "port-cg"
#define REPLY_TIMEOUT_MS 120000 /* the verifier under TCG emulation can take a while */

static struct {
	const char *loader, *bpf_dir, *pin_root, *host_ns, *wl_ns, *ifname, *cgroup;
	__u8 method_pref;
} opt;

static int fails;
static char first_fail[256];
static pid_t loader_pid = -1;
static int to_loader = -1, from_loader = -1;
static __u32 next_seq = 1;
static unsigned events_seen;
static bool event_for[256]; /* blocked events seen, indexed by the last octet of 10.0.0.x */

/* ---------------------------------------------------------------- reporting */

static void check(bool cond, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("%s %s\n", cond ? "ok  " : "FAIL", msg);
	fflush(stdout);
	if (!cond && fails++ == 0)
		snprintf(first_fail, sizeof(first_fail), "%.250s", msg);
}

static void info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("info ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static const char *method_name(__u32 m)
{
	switch (m) {
	case NF_METHOD_TCX: return "tcx";
	case NF_METHOD_CLSACT: return "clsact";
	case NF_METHOD_CGROUP_LINK: return "cgroup_link";
	default: return "none";
	}
}

/* ---------------------------------------------------------------- loader process + protocol */

static int start_loader(void)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return -errno;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		dup2(in[0], STDIN_FILENO);
		dup2(out[1], STDOUT_FILENO);
		execl(opt.loader, opt.loader, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", opt.loader, strerror(errno));
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	to_loader = in[1];
	from_loader = out[0];
	loader_pid = pid;
	return 0;
}

static void stop_loader(int sig)
{
	if (loader_pid > 0) {
		if (sig)
			kill(loader_pid, sig);
		close(to_loader); /* without a signal: EOF on stdin makes the loader exit (pins stay) */
		int st;
		waitpid(loader_pid, &st, 0);
	} else if (to_loader >= 0) {
		close(to_loader);
	}
	if (from_loader >= 0)
		close(from_loader);
	loader_pid = -1;
	to_loader = from_loader = -1;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads exactly len bytes, waiting at most REPLY_TIMEOUT_MS for each chunk. */
static int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, REPLY_TIMEOUT_MS);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0 && errno == EINTR)
			continue;
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void on_events(const struct nf_event *ev, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		events_seen++;
		if (ev[i].family == 4 && ev[i].verdict == NF_VERDICT_BLOCKED && ev[i].daddr[0] == 10)
			event_for[ev[i].daddr[3]] = true;
	}
}

/*
 * Sends one request and waits for its reply; unsolicited frames (events, logs) are consumed on the
 * way. Returns the reply status (0 or -errno); on error `errmsg` holds the loader's message.
 * The reply payload (if any) is copied into `reply` (up to `cap` bytes), its length into *rlen.
 */
static int request(__u16 op, const void *payload, size_t len, void *reply, size_t cap, size_t *rlen, char *errmsg,
		   size_t errcap)
{
	struct nf_frame_hdr h = { .len = (__u32)(sizeof(h) + len), .seq = next_seq++, .op = op };
	if (errmsg && errcap)
		errmsg[0] = 0;
	if (rlen)
		*rlen = 0;
	int err = write_all(to_loader, &h, sizeof(h));
	if (!err && len)
		err = write_all(to_loader, payload, len);
	if (err) {
		snprintf(errmsg, errcap, "writing request op %u: loader gone", op);
		return err;
	}
	for (;;) {
		struct nf_frame_hdr r;
		err = read_all(from_loader, &r, sizeof(r));
		if (err) {
			snprintf(errmsg, errcap, "reading reply to op %u: %s", op, strerror(-err));
			return err;
		}
		if (r.len < sizeof(r) || r.len > NF_MAX_FRAME) {
			snprintf(errmsg, errcap, "bad frame length %u", r.len);
			return -EPROTO;
		}
		size_t plen = r.len - sizeof(r);
		char *p = malloc(plen ? plen : 1);
		if (!p)
			return -ENOMEM;
		err = plen ? read_all(from_loader, p, plen) : 0;
		if (err) {
			free(p);
			snprintf(errmsg, errcap, "reading payload of op %u: %s", r.op, strerror(-err));
			return err;
		}
		if (r.seq == 0) {
			if (r.op == NF_OP_EVENTS)
				on_events((const struct nf_event *)p, plen / sizeof(struct nf_event));
			free(p);
			continue;
		}
		if (r.seq != h.seq || r.op != op) {
			free(p);
			snprintf(errmsg, errcap, "reply seq %u op %u does not match request seq %u op %u", r.seq, r.op, h.seq, op);
			return -EPROTO;
		}
		if (r.status) {
			snprintf(errmsg, errcap, "%.*s", (int)(plen < errcap ? plen : errcap - 1), p);
		} else if (reply) {
			memcpy(reply, p, plen < cap ? plen : cap);
			if (rlen)
				*rlen = plen;
		}
		free(p);
		return r.status;
	}
}

/* ---------------------------------------------------------------- requests */

static int hello(__u32 *features)
{
	struct nf_hello_req q = { .version = NF_PROTOCOL_VERSION };
	snprintf(q.pin_root, sizeof(q.pin_root), "%s", opt.pin_root);
	snprintf(q.bpf_dir, sizeof(q.bpf_dir), "%s", opt.bpf_dir);
	struct nf_hello_reply r = { 0 };
	size_t n;
	char e[1024];
	int err = request(NF_OP_HELLO, &q, sizeof(q), &r, sizeof(r), &n, e, sizeof(e));
	check(!err && n == sizeof(r) && r.version == NF_PROTOCOL_VERSION && r.layout == NF_LAYOUT_VERSION,
	      "HELLO: protocol %u layout %u features %#x (tcx=%s) %s", r.version, r.layout, r.features,
	      r.features & NF_FEAT_TCX ? "yes" : "no", err ? e : "");
	*features = r.features;
	return err;
}

static int load(const char *id, __u8 kind)
{
	struct nf_load_req q = { .slot = kind, .kind = kind, .direction = NF_DIR_INGRESS };
	snprintf(q.id, sizeof(q.id), "%s", id);
	char e[1024];
	int err = request(NF_OP_LOAD, &q, sizeof(q), NULL, 0, NULL, e, sizeof(e));
	check(!err, "LOAD %s (%s program, verified by this kernel) %s", id,
	      kind == NF_KIND_TC ? "tc" : "cgroup_skb", err ? e : "");
	return err;
}

static int link_req(const char *id, __u32 ifindex, const char *cgroup, __u8 pref, struct nf_link_reply *r)
{
	static struct nf_link_req q; /* 4 KiB of cgroup path */
	memset(&q, 0, sizeof(q));
	snprintf(q.id, sizeof(q.id), "%s", id);
	q.ifindex = ifindex;
	q.method_pref = pref;
	if (cgroup)
		snprintf(q.cgroup_path, sizeof(q.cgroup_path), "%s", cgroup);
	memset(r, 0, sizeof(*r));
	size_t n;
	char e[1024];
	int err = request(NF_OP_LINK, &q, sizeof(q), r, sizeof(*r), &n, e, sizeof(e));
	check(!err && n == sizeof(*r) && r->prog_id > 0, "LINK %s -> method %s, prog id %u%s%s", id, method_name(r->method),
	      r->prog_id, err ? ": " : "", err ? e : "");
	return err;
}

static struct nf_wire_entry v4(const char *addr, __u8 plen, __u8 flags, __u32 rule)
{
	struct nf_wire_entry w = { .family = 4, .prefixlen = plen, .flags = flags, .rule_id = rule };
	inet_pton(AF_INET, addr, w.addr);
	return w;
}

static struct nf_wire_entry v6(const char *addr, __u8 plen, __u8 flags, __u32 rule)
{
	struct nf_wire_entry w = { .family = 6, .prefixlen = plen, .flags = flags, .rule_id = rule };
	inet_pton(AF_INET6, addr, w.addr);
	return w;
}

static int replace(const char *id, __u32 mode, const struct nf_wire_entry *es, __u32 count, const char *what)
{
	size_t len = sizeof(struct nf_policy_req) + count * sizeof(*es);
	char *buf = calloc(1, len);
	struct nf_policy_req *q = (struct nf_policy_req *)buf;
	snprintf(q->id, sizeof(q->id), "%s", id);
	q->mode = mode;
	q->count = count;
	memcpy(q + 1, es, count * sizeof(*es));
	char e[1024];
	int err = request(NF_OP_REPLACE, buf, len, NULL, 0, NULL, e, sizeof(e));
	free(buf);
	check(!err, "REPLACE %s (atomic generation flip): %s %s", id, what, err ? e : "");
	return err;
}

static int counters(const char *id, __u64 out[NF_CNT_MAX])
{
	struct {
		__u32 count;
		char id[NF_ID_LEN];
	} __attribute__((packed)) q = { .count = 1 };
	snprintf(q.id, sizeof(q.id), "%s", id);
	size_t n;
	char e[1024];
	memset(out, 0, NF_CNT_MAX * sizeof(__u64));
	int err = request(NF_OP_COUNTERS, &q, sizeof(q), out, NF_CNT_MAX * sizeof(__u64), &n, e, sizeof(e));
	if (err || n != NF_CNT_MAX * sizeof(__u64))
		check(false, "COUNTERS %s: %s", id, err ? e : "short reply");
	return err;
}

static int id_op(__u16 op, const char *id, void *reply, size_t cap, size_t *n, char *e, size_t ecap)
{
	struct nf_id_req q;
	memset(&q, 0, sizeof(q));
	snprintf(q.id, sizeof(q.id), "%s", id);
	return request(op, &q, sizeof(q), reply, cap, n, e, ecap);
}

/* ---------------------------------------------------------------- packets */

/* Runs `ping -c1 -W<w> dst` in netns `ns` (NULL = ours), optionally inside cgroup `cg`.
 * Returns true if a reply came back. */
static bool ping_once(const char *ns, const char *cg, const char *dst, int w)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		if (ns) {
			int fd = open(ns, O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNET))
				_exit(126);
		}
		if (cg) {
			char p[4200];
			snprintf(p, sizeof(p), "%s/cgroup.procs", cg);
			int fd = open(p, O_WRONLY | O_CLOEXEC);
			if (fd < 0 || dprintf(fd, "%d\n", getpid()) < 0)
				_exit(125);
			close(fd);
		}
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, STDOUT_FILENO);
		dup2(devnull, STDERR_FILENO);
		char ws[16];
		snprintf(ws, sizeof(ws), "%d", w);
		execlp("ping", "ping", "-c", "1", "-W", ws, dst, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) >= 125)
		check(false, "ping helper could not run (exit %d: netns, cgroup or ping binary)", WEXITSTATUS(st));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Expected to pass: a few tries with a generous timeout (TCG emulation is slow, ARP comes first). */
static bool ping_passes(const char *ns, const char *cg, const char *dst)
{
	for (int i = 0; i < 3; i++)
		if (ping_once(ns, cg, dst, 5))
			return true;
	return false;
}

/* Expected to be dropped: one try. The caller also checks the blocked counter went up, so a slow
 * reply can never pass for a drop. */
static bool ping_dropped(const char *ns, const char *cg, const char *dst)
{
	return !ping_once(ns, cg, dst, 1);
}

static __u64 blocked_of(const char *id)
{
	__u64 c[NF_CNT_MAX];
	counters(id, c);
	return c[NF_CNT_BLOCKED];
}

/* The workload (WL netns) sends to `allowed` and `blocked` through veth0's TC filter. */
static void tc_expect(const char *phase, const char *allowed, const char *blocked, bool loader_alive)
{
	__u64 before = loader_alive ? blocked_of(TC_ID) : 0;
	check(ping_passes(opt.wl_ns, NULL, allowed), "%s: ping %s from the workload netns passes", phase, allowed);
	check(ping_dropped(opt.wl_ns, NULL, blocked), "%s: ping %s from the workload netns is dropped", phase, blocked);
	if (loader_alive) {
		__u64 after = blocked_of(TC_ID);
		check(after > before, "%s: blocked counter %llu -> %llu", phase, (unsigned long long)before,
		      (unsigned long long)after);
	}
}

static bool pin_exists(const char *id, const char *name)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s/%s", opt.pin_root, id, name);
	return access(p, F_OK) == 0;
}

/* ---------------------------------------------------------------- the checks */

static __u32 run(void)
{
	struct utsname u;
	uname(&u);
	info("kernel %s; loader %s; objects %s; pins %s", u.release, opt.loader, opt.bpf_dir, opt.pin_root);
	check(access("/sys/kernel/btf/vmlinux", R_OK) == 0, "kernel BTF at /sys/kernel/btf/vmlinux");

	int fd = open(opt.host_ns, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET)) {
		check(false, "entering netns %s: %s", opt.host_ns, strerror(errno));
		return 0;
	}
	close(fd);
	unsigned ifindex = if_nametoindex(opt.ifname);
	check(ifindex > 0, "%s has ifindex %u in the host-side netns", opt.ifname, ifindex);
	check(ping_passes(opt.wl_ns, NULL, ADDR_HOST), "baseline: ping %s from the workload netns passes (no filter)",
	      ADDR_HOST);
	if (ifindex == 0 || start_loader())
		return 0;

	__u32 features = 0;
	if (hello(&features) || load(TC_ID, NF_KIND_TC))
		return 0;

	/* attach: the loader chooses TCX or clsact by probing, unless forced */
	struct nf_link_reply lr;
	if (link_req(TC_ID, ifindex, NULL, opt.method_pref, &lr))
		return 0;
	__u32 method = lr.method;
	__u32 expect = opt.method_pref ? opt.method_pref : (features & NF_FEAT_TCX) ? NF_METHOD_TCX : NF_METHOD_CLSACT;
	check(method == expect, "attach method %s matches the kernel probe (tcx feature %s, preference %s)",
	      method_name(method), features & NF_FEAT_TCX ? "present" : "absent",
	      opt.method_pref ? method_name(opt.method_pref) : "auto");

	/* fail closed until the first policy arrives */
	__u64 c0 = blocked_of(TC_ID);
	check(ping_dropped(opt.wl_ns, NULL, ADDR_HOST), "before any policy (block_all): ping %s dropped", ADDR_HOST);
	check(blocked_of(TC_ID) > c0, "before any policy: blocked counter went up");

	/* policy 1: allow 10.0.0.1 and fd00::1 only (exact-match tables; IPv6 neighbour discovery always passes) */
	struct nf_wire_entry p1[] = { v4(ADDR_HOST, 32, NF_ENTRY_ALLOW, 1), v6(ADDR6_HOST, 128, NF_ENTRY_ALLOW, 6) };
	if (replace(TC_ID, NF_MODE_ALLOWLIST, p1, 2, "allowlist {10.0.0.1/32, fd00::1/128}"))
		return method;
	tc_expect("policy 1", ADDR_HOST, ADDR_HOST_2, true);
	tc_expect("policy 1 (IPv6)", ADDR6_HOST, ADDR6_HOST_2, true);
	__u64 c[NF_CNT_MAX];
	counters(TC_ID, c);
	check(c[NF_CNT_ALLOWED] > 0 && c[NF_CNT_BLOCKED] >= 2, "COUNTERS %s: allowed=%llu blocked=%llu audited=%llu lost=%llu",
	      TC_ID, (unsigned long long)c[0], (unsigned long long)c[1], (unsigned long long)c[2],
	      (unsigned long long)c[3]);
	check(event_for[254], "ring buffer event for the blocked packet to %s received (%u events so far)", ADDR_HOST_2,
	      events_seen);

	/* policy 2, atomic replace: allow the /24 (LPM table) but deny 10.0.0.1 (exact) */
	struct nf_wire_entry p2[] = { v4("10.0.0.0", 24, NF_ENTRY_ALLOW, 2), v4(ADDR_HOST, 32, NF_ENTRY_DENY, 3),
				      v6("fd00::", 64, NF_ENTRY_ALLOW, 7), v6(ADDR6_HOST, 128, NF_ENTRY_DENY, 8) };
	if (replace(TC_ID, NF_MODE_ALLOWLIST, p2, 4, "allowlist {10.0.0.0/24, fd00::/64} minus deny {10.0.0.1/32, fd00::1/128}"))
		return method;
	tc_expect("policy 2", ADDR_HOST_2, ADDR_HOST, true);
	tc_expect("policy 2 (IPv6)", ADDR6_HOST_2, ADDR6_HOST, true);
	__u64 blocked_before_kill = blocked_of(TC_ID);

	/* the loader dies: the pins keep the program attached and the policy in force */
	stop_loader(SIGKILL);
	info("loader killed with SIGKILL");
	check(pin_exists(TC_ID, "prog") && pin_exists(TC_ID, "state") && pin_exists(TC_ID, "v4_exact"),
	      "pins of %s survive the loader (prog, state, maps)", TC_ID);
	if (method == NF_METHOD_TCX)
		check(pin_exists(TC_ID, "link"), "TCX link pinned at %s/%s/link", opt.pin_root, TC_ID);
	tc_expect("loader dead", ADDR_HOST_2, ADDR_HOST, false);

	/* a new loader re-adopts from the pins alone */
	if (start_loader() || hello(&features))
		return method;
	struct nf_adopt_reply ar;
	size_t n;
	char e[1024];
	memset(&ar, 0, sizeof(ar));
	int err = id_op(NF_OP_ADOPT, TC_ID, &ar, sizeof(ar), &n, e, sizeof(e));
	check(!err && n == sizeof(ar) && ar.attached == 1 && ar.state.method == method &&
		      ar.state.magic == NF_STATE_MAGIC && ar.state.ifindex == ifindex,
	      "ADOPT %s by a new loader: attached=%u method=%s ifindex=%u prog id %u %s", TC_ID, ar.attached,
	      method_name(ar.state.method), ar.state.ifindex, ar.prog_id, err ? e : "");
	if (err)
		return method;
	check(ar.prog_id == lr.prog_id, "adopted program is the one attached before (prog id %u)", lr.prog_id);
	__u64 blocked_after = blocked_of(TC_ID);
	check(blocked_after > blocked_before_kill, "COUNTERS after adopt: blocked %llu -> %llu (drops while the loader was dead)",
	      (unsigned long long)blocked_before_kill, (unsigned long long)blocked_after);
	struct nf_wire_entry p3[] = { v4(ADDR_HOST, 32, NF_ENTRY_ALLOW, 4) };
	if (replace(TC_ID, NF_MODE_ALLOWLIST, p3, 1, "allowlist {10.0.0.1/32}, by the adopting loader"))
		return method;
	tc_expect("policy 3 (adopted)", ADDR_HOST, ADDR_HOST_2, true);

	/* cgroup_skb egress on our cgroup */
	if (!load(CG_ID, NF_KIND_CGROUP))
		if (!link_req(CG_ID, 0, opt.cgroup, 0, &lr)) {
			check(lr.method == NF_METHOD_CGROUP_LINK, "cgroup attach method is a bpf_link (%s)",
			      method_name(lr.method));
			struct nf_wire_entry pc[] = { v4(ADDR_WL, 32, NF_ENTRY_ALLOW, 5) };
			if (!replace(CG_ID, NF_MODE_ALLOWLIST, pc, 1, "allowlist {10.0.0.2/32}")) {
				__u64 b0 = blocked_of(CG_ID);
				check(ping_passes(NULL, opt.cgroup, ADDR_WL), "cgroup: ping %s from inside the cgroup passes",
				      ADDR_WL);
				check(ping_dropped(NULL, opt.cgroup, ADDR_WL_2),
				      "cgroup: ping %s from inside the cgroup is dropped", ADDR_WL_2);
				check(ping_passes(NULL, NULL, ADDR_WL_2), "cgroup: ping %s from outside the cgroup passes",
				      ADDR_WL_2);
				counters(CG_ID, c);
				check(c[NF_CNT_BLOCKED] > b0 && c[NF_CNT_ALLOWED] > 0, "COUNTERS %s: allowed=%llu blocked=%llu",
				      CG_ID, (unsigned long long)c[0], (unsigned long long)c[1]);
			}
			err = id_op(NF_OP_UNLOAD, CG_ID, NULL, 0, NULL, e, sizeof(e));
			check(!err, "UNLOAD %s %s", CG_ID, err ? e : "");
			check(ping_passes(NULL, opt.cgroup, ADDR_WL_2), "after UNLOAD: ping %s from inside the cgroup passes",
			      ADDR_WL_2);
		}

	/* detach and unpin */
	err = id_op(NF_OP_UNLOAD, TC_ID, NULL, 0, NULL, e, sizeof(e));
	check(!err, "UNLOAD %s %s", TC_ID, err ? e : "");
	char dir[600];
	snprintf(dir, sizeof(dir), "%s/%s", opt.pin_root, TC_ID);
	check(access(dir, F_OK) != 0, "pins of %s removed", TC_ID);
	check(ping_passes(opt.wl_ns, NULL, ADDR_HOST_2), "after UNLOAD: ping %s from the workload netns passes",
	      ADDR_HOST_2);
	return method;
}

static void usage(void)
{
	fprintf(stderr, "usage: guest-client --loader PATH --bpf-dir DIR --pin-root DIR --host-ns NSFILE --wl-ns NSFILE "
			"--ifname IF --cgroup DIR [--method auto|tcx|clsact]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--loader")) opt.loader = v;
		else if (!strcmp(k, "--bpf-dir")) opt.bpf_dir = v;
		else if (!strcmp(k, "--pin-root")) opt.pin_root = v;
		else if (!strcmp(k, "--host-ns")) opt.host_ns = v;
		else if (!strcmp(k, "--wl-ns")) opt.wl_ns = v;
		else if (!strcmp(k, "--ifname")) opt.ifname = v;
		else if (!strcmp(k, "--cgroup")) opt.cgroup = v;
		else if (!strcmp(k, "--method")) {
			if (!strcmp(v, "tcx")) opt.method_pref = NF_METHOD_TCX;
			else if (!strcmp(v, "clsact")) opt.method_pref = NF_METHOD_CLSACT;
			else if (strcmp(v, "auto") && strcmp(v, "")) usage();
		} else usage();
	}
	if (!opt.loader || !opt.bpf_dir || !opt.pin_root || !opt.host_ns || !opt.wl_ns || !opt.ifname || !opt.cgroup)
		usage();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);

	__u32 method = run();
	stop_loader(loader_pid > 0 ? SIGTERM : 0);

	struct utsname u;
	uname(&u);
	if (!method && !fails)
		check(false, "no attach method was established");
	if (fails == 0)
		printf("PORTABILITY: PASS method=%s kernel=%s\n", method_name(method), u.release);
	else
		printf("PORTABILITY: FAIL %d check(s) failed, first: %s (method=%s kernel=%s)\n", fails, first_fail,
		       method_name(method), u.release);
	fflush(stdout);
	return fails ? 1 : 0;
}
