// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * event-gen — the event benchmark's packet source (bench/events/run.ts drives it).
 *
 *   event-gen <prog-pin> <calls> <repeat> <flows> <rate> <src-ipv4> <dst-base-ipv4>
 *
 * Runs a pinned TC program on crafted Ethernet + IPv4 + UDP frames with BPF_PROG_TEST_RUN:
 * `calls` syscalls of `repeat` identical runs each. Call i sends to dst-base + (i % flows), so
 * flows = calls gives a distinct flow (a new event) per call, flows = 1 one repeated flow (folded
 * by the throttle), flows = 2 two alternating ones (each a throttle-map hit). `rate` > 0 paces the
 * calls to that many per second (0 = as fast as possible). Bounded: stops after 60 s whatever.
 * Prints {"calls":N,"runs":N,"wall_ns":N,"prog_ns":N,"retval_pass":N}: prog_ns is the sum of the
 * kernel-reported run times (duration × repeat), retval_pass the calls whose verdict was not a drop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static __u64 now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ull + (__u64)ts.tv_nsec;
}

static __u16 ip_checksum(const __u8 *h, int len)
{
	__u32 sum = 0;
	for (int i = 0; i < len; i += 2)
		sum += (__u32)(h[i] << 8 | h[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: event-gen <prog-pin> <calls> <repeat> <flows> <rate> <src-ipv4> <dst-base-ipv4>\n");
		return 2;
	}
	unsigned long calls = strtoul(argv[2], NULL, 10), repeat = strtoul(argv[3], NULL, 10), flows = strtoul(argv[4], NULL, 10);
	double rate = strtod(argv[5], NULL);
	struct in_addr src, base;
	if (!calls || !repeat || !flows || inet_pton(AF_INET, argv[6], &src) != 1 || inet_pton(AF_INET, argv[7], &base) != 1) {
		fprintf(stderr, "event-gen: bad arguments\n");
		return 2;
	}
	int fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		fprintf(stderr, "event-gen: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* Ethernet (14) + IPv4 (20) + UDP (8) + 16 bytes of payload */
	__u8 pkt[58] = { 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x02, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01, 0x08, 0x00 };
	__u8 *ip = pkt + 14, *udp = ip + 20;
	ip[0] = 0x45;
	ip[3] = 44; /* total length 20 + 8 + 16 */
	ip[6] = 0x40; /* DF */
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, &src, 4);
	udp[0] = 40000 >> 8, udp[1] = 40000 & 0xff; /* source port */
	udp[2] = 7000 >> 8, udp[3] = 7000 & 0xff;   /* destination port */
	udp[5] = 24;                                /* UDP length */
	__u32 base_h = ntohl(base.s_addr);
	__u8 out[128];
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt), .data_out = out,
		    .data_size_out = sizeof(out), .repeat = (int)repeat);
	__u64 t0 = now_ns(), prog_ns = 0, pass = 0;
	unsigned long i;
	for (i = 0; i < calls; i++) {
		__u32 dst = htonl(base_h + (__u32)(i % flows));
		memcpy(ip + 16, &dst, 4);
		ip[10] = ip[11] = 0;
		__u16 c = ip_checksum(ip, 20);
		ip[10] = c >> 8, ip[11] = c & 0xff;
		opts.data_size_out = sizeof(out);
		if (bpf_prog_test_run_opts(fd, &opts)) {
			fprintf(stderr, "event-gen: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
			return 1;
		}
		prog_ns += (__u64)opts.duration * repeat;
		if (opts.retval != 2 /* TC_ACT_SHOT */)
			pass++;
		if ((i & 255) == 255) {
			__u64 el = now_ns() - t0;
			if (el > 60ull * 1000000000ull)
				break;
			if (rate > 0) {
				__u64 due = (__u64)((double)(i + 1) / rate * 1e9);
				if (due > el) {
					struct timespec ts = { .tv_sec = (time_t)((due - el) / 1000000000ull), .tv_nsec = (long)((due - el) % 1000000000ull) };
					nanosleep(&ts, NULL);
				}
			}
		}
	}
	printf("{\"calls\":%lu,\"runs\":%llu,\"wall_ns\":%llu,\"prog_ns\":%llu,\"retval_pass\":%llu}\n", i,
	       (unsigned long long)i * repeat, (unsigned long long)(now_ns() - t0), (unsigned long long)prog_ns, (unsigned long long)pass);
	return 0;
}
