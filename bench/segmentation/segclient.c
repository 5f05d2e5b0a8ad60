// SPDX-License-Identifier: Apache-2.0
/*
 * segclient: the traffic side of bench/segmentation. One process plays both ends on 127.0.0.1 so
 * a round trip is measured without scheduler wake-ups between two processes (on loopback the
 * receive path runs in the sender's context, so wall time per round trip ~ CPU per round trip):
 *
 *   1. as root, in the caller's cgroup: the server socket (UDP bound to 127.0.0.1:PORT, or a TCP
 *      listener). It stays outside the bench cgroup and owned by uid 0, like a local service.
 *   2. joins --cgroup (writes its pid to cgroup.procs), then drops to --uid/--gid with no
 *      supplementary groups (what `setpriv --reuid=N --regid=N --clear-groups` does);
 *   3. every client socket is created after that: owned by the test user, in the bench cgroup.
 *
 * Modes (results as JSON lines on stdout, one per round):
 *   udp-rtt  one connected UDP socket, COUNT request/response round trips per round
 *   udp-new  a fresh UDP socket per round trip (a new flow: conntrack NEW, the whole rule walk)
 *   tcp-new  connect + 1-byte request + 1-byte response + close (RST) per iteration
 *   stream   until stdin closes (or --max-ms): every --interval-us one round trip on a persistent
 *            socket and one on a fresh socket, each waiting at most 100 ms; counts what was lost
 * Every loop is bounded (--max-ms, default 120 s). Never prints anything but JSON on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int port = 0, count = 1000, rounds = 1, interval_us = 1000;
static long max_ms = 120000;
static const char *cgroup = NULL, *mode = NULL;
static long uid = -1, gid = -1;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

static void die(const char *what)
{
	fprintf(stderr, "segclient: %s: %s\n", what, strerror(errno));
	exit(2);
}

static struct sockaddr_in server_addr(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static void set_timeout(int fd, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
		die("SO_RCVTIMEO");
}

/* Step 2: into the bench cgroup, then the test user (no way back). */
static void become_client(void)
{
	if (cgroup) {
		char path[4096], pid[32];
		snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
		int fd = open(path, O_WRONLY);
		if (fd < 0)
			die("open cgroup.procs");
		int n = snprintf(pid, sizeof(pid), "%d", getpid());
		if (write(fd, pid, (size_t)n) != n)
			die("join cgroup");
		close(fd);
	}
	if (gid >= 0) {
		if (setgroups(0, NULL) < 0 || setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0)
			die("setresgid");
	}
	if (uid >= 0 && setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
		die("setresuid");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(int round, uint64_t *s, int n, int failed, uint64_t cpu, uint64_t wall)
{
	uint64_t sum = 0;
	for (int i = 0; i < n; i++)
		sum += s[i];
	qsort(s, (size_t)n, sizeof(*s), cmp_u64);
	uint64_t p50 = n ? s[(n * 50 + 99) / 100 - 1] : 0, p99 = n ? s[(n * 99 + 99) / 100 - 1] : 0;
	printf("{\"mode\":\"%s\",\"round\":%d,\"ok\":%d,\"failed\":%d,\"p50_ns\":%llu,\"p99_ns\":%llu,"
	       "\"mean_ns\":%llu,\"cpu_ns_per_op\":%llu,\"wall_ns_per_op\":%llu}\n",
	       mode, round, n, failed, (unsigned long long)p50, (unsigned long long)p99,
	       (unsigned long long)(n ? sum / (uint64_t)n : 0), (unsigned long long)(n ? cpu / (uint64_t)n : 0),
	       (unsigned long long)(n ? wall / (uint64_t)n : 0));
	fflush(stdout);
}

/* One UDP request/response on `c` (connected to the server): 1 = answered, 0 = lost/timed out. */
static int udp_round_trip(int c, int srv, uint32_t seq)
{
	char buf[64];
	struct sockaddr_in from;
	socklen_t fl;
	/* stale requests of earlier lost round trips never answer this one */
	while (recv(srv, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	if (send(c, &seq, sizeof(seq), 0) != sizeof(seq))
		return 0;
	for (;;) {
		fl = sizeof(from);
		ssize_t n = recvfrom(srv, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return 0; /* the request never arrived (dropped on the way out) */
		if (n == sizeof(seq) && memcmp(buf, &seq, sizeof(seq)) == 0)
			break;
	}
	if (sendto(srv, &seq, sizeof(seq), 0, (struct sockaddr *)&from, fl) != sizeof(seq))
		return 0;
	for (;;) {
		uint32_t got;
		ssize_t n = recv(c, &got, sizeof(got), 0);
		if (n < 0)
			return 0;
		if (n == sizeof(got) && got == seq)
			return 1;
	}
}

static int udp_client(int timeout_ms)
{
	struct sockaddr_in a = server_addr();
	int c = socket(AF_INET, SOCK_DGRAM, 0);
	if (c < 0)
		die("socket");
	set_timeout(c, timeout_ms);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("connect");
	return c;
}

/* One TCP connect + request + response + close: 1 = done, 0 = failed. */
static int tcp_once(int lst, uint32_t seq)
{
	struct sockaddr_in a = server_addr();
	struct linger lg = { .l_onoff = 1, .l_linger = 0 }; /* close with RST: no TIME_WAIT pile-up */
	int ok = 0, s = -1, c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0)
		die("socket");
	set_timeout(c, 1000);
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		goto out;
	s = accept(lst, NULL, NULL);
	if (s < 0)
		goto out;
	set_timeout(s, 1000);
	uint32_t got;
	if (send(c, &seq, sizeof(seq), 0) != sizeof(seq) || recv(s, &got, sizeof(got), MSG_WAITALL) != sizeof(got) ||
	    send(s, &got, sizeof(got), 0) != sizeof(got) || recv(c, &got, sizeof(got), MSG_WAITALL) != sizeof(got))
		goto out;
	ok = got == seq;
out:
	if (s >= 0)
		close(s);
	close(c);
	return ok;
}

static int stdin_closed(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	if (poll(&p, 1, 0) <= 0)
		return 0;
	char b[64];
	return read(0, b, sizeof(b)) <= 0;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--port") && v)
			port = atoi(v), i++;
		else if (!strcmp(argv[i], "--count") && v)
			count = atoi(v), i++;
		else if (!strcmp(argv[i], "--rounds") && v)
			rounds = atoi(v), i++;
		else if (!strcmp(argv[i], "--interval-us") && v)
			interval_us = atoi(v), i++;
		else if (!strcmp(argv[i], "--max-ms") && v)
			max_ms = atol(v), i++;
		else if (!strcmp(argv[i], "--cgroup") && v)
			cgroup = v, i++;
		else if (!strcmp(argv[i], "--uid") && v)
			uid = atol(v), i++;
		else if (!strcmp(argv[i], "--gid") && v)
			gid = atol(v), i++;
		else if (!mode && argv[i][0] != '-')
			mode = argv[i];
		else {
			fprintf(stderr, "segclient: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	int tcp = mode && !strcmp(mode, "tcp-new");
	if (!mode || port <= 0 || port > 65535 || count < 1 || count > 1000000 || rounds < 1 || rounds > 1000 ||
	    (strcmp(mode, "udp-rtt") && strcmp(mode, "udp-new") && strcmp(mode, "stream") && !tcp)) {
		fprintf(stderr, "usage: segclient udp-rtt|udp-new|tcp-new|stream --port P [--count K] [--rounds R] "
				"[--cgroup DIR] [--uid N] [--gid N] [--interval-us U] [--max-ms M]\n");
		return 2;
	}
	/* 1. the server end, before anything else */
	struct sockaddr_in a = server_addr();
	int one = 1, srv = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	if (srv < 0)
		die("server socket");
	setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(srv, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("bind");
	if (tcp && listen(srv, 64) < 0)
		die("listen");
	if (!tcp)
		set_timeout(srv, 100);
	/* 2. the client side */
	become_client();
	uint64_t deadline = now_ns() + (uint64_t)max_ms * 1000000ull;
	uint32_t seq = 0;

	if (!strcmp(mode, "stream")) {
		int c = udp_client(100);
		long sent[2] = { 0, 0 }, lost[2] = { 0, 0 };
		uint64_t next = now_ns();
		while (now_ns() < deadline && !stdin_closed()) {
			sent[0]++;
			lost[0] += !udp_round_trip(c, srv, ++seq);
			int f = udp_client(100);
			sent[1]++;
			lost[1] += !udp_round_trip(f, srv, ++seq);
			close(f);
			next += (uint64_t)interval_us * 1000ull;
			uint64_t t = now_ns();
			if (next > t)
				usleep((useconds_t)((next - t) / 1000));
			else
				next = t;
		}
		printf("{\"mode\":\"stream\",\"persistent\":{\"sent\":%ld,\"lost\":%ld},\"fresh\":{\"sent\":%ld,\"lost\":%ld}}\n",
		       sent[0], lost[0], sent[1], lost[1]);
		return 0;
	}

	uint64_t *s = calloc((size_t)count, sizeof(*s));
	if (!s)
		die("calloc");
	int c = strcmp(mode, "udp-rtt") ? -1 : udp_client(100);
	for (int r = 0; r < rounds && now_ns() < deadline; r++) {
		int n = 0, failed = 0;
		uint64_t cpu0 = cpu_ns(), w0 = now_ns();
		for (int i = 0; i < count && now_ns() < deadline; i++) {
			uint64_t t0 = now_ns();
			int ok;
			if (tcp) {
				ok = tcp_once(srv, ++seq);
			} else if (c >= 0) {
				ok = udp_round_trip(c, srv, ++seq);
			} else {
				int f = udp_client(100);
				ok = udp_round_trip(f, srv, ++seq);
				close(f);
			}
			uint64_t t1 = now_ns();
			if (ok)
				s[n++] = t1 - t0;
			else
				failed++;
		}
		report(r, s, n, failed, cpu_ns() - cpu0, now_ns() - w0);
	}
	free(s);
	return 0;
}
