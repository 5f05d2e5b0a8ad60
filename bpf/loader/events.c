// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * events.c — what the programs report: the shared ring buffer of packet events (host-wide map
 * <pin_root>/_host/events), forwarded unsolicited as EVENTS frames in batches of at most 4096
 * with wall-clock timestamps, and the per-CPU counters of each attachment (COUNTERS).
 */
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "loader.h"

#define EVENTS_PER_FRAME 4096

/* the batch being assembled by the ring buffer callback */
static struct {
	struct nf_event *buf;
	size_t count, cap;
	__s64 mono_to_real_ns;
} ev;

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (size < sizeof(struct nf_event))
		return 0;
	if (ev.count == ev.cap) {
		size_t cap = ev.cap ? ev.cap * 2 : 256;
		struct nf_event *n = realloc(ev.buf, cap * sizeof(*n));
		if (!n)
			return 0;
		ev.buf = n;
		ev.cap = cap;
	}
	struct nf_event *e = &ev.buf[ev.count++];
	memcpy(e, data, sizeof(*e));
	e->ts_ns = (__u64)((__s64)e->ts_ns + ev.mono_to_real_ns); /* now wall-clock ns */
	return ev.count >= EVENTS_PER_FRAME ? 1 : 0;               /* stop: flush a batch */
}

int events_open(void)
{
	g.rb = ring_buffer__new(g.events_fd, on_event, NULL, NULL);
	return g.rb ? 0 : fail(errno, "opening the event ring buffer");
}

void pump_events(void)
{
	if (!g.rb)
		return;
	ev.mono_to_real_ns = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
	for (int round = 0; round < 16; round++) {
		ev.count = 0;
		int n = ring_buffer__consume(g.rb);
		if (ev.count)
			send_frame(0, NF_OP_EVENTS, 0, ev.buf, ev.count * sizeof(struct nf_event));
		if (n <= 0 || ev.count < EVENTS_PER_FRAME)
			break;
	}
}

/* Sums each attachment's per-CPU counters: NF_CNT_MAX __u64 per id, in request order. */
int op_counters(const void *req, size_t len, void **reply, size_t *reply_len)
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
	int err = out && percpu ? 0 : fail(ENOMEM, "COUNTERS");
	for (__u32 i = 0; i < count && !err; i++) {
		struct att *a = att_for((const char *)req + 4 + (size_t)i * NF_ID_LEN, "COUNTERS");
		if (!a) {
			err = -ENOENT;
			break;
		}
		for (__u32 c = 0; c < NF_CNT_MAX; c++) {
			if (bpf_map_lookup_elem(a->counters_fd, &c, percpu))
				continue;
			for (int cpu = 0; cpu < ncpu; cpu++)
				out[(size_t)i * NF_CNT_MAX + c] += percpu[cpu];
		}
	}
	free(percpu);
	if (err) {
		free(out);
		return err;
	}
	*reply = out;
	*reply_len = (size_t)count * NF_CNT_MAX * sizeof(__u64);
	return 0;
}
