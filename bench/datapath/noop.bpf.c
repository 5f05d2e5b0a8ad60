// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Baseline (a) of the per-packet benchmark: a TC program that does nothing. Its
 * BPF_PROG_TEST_RUN time is the fixed cost of running any TC program (skb set-up by the test
 * harness, the call, the timer); the other programs are reported as "ns over no-op".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int noop(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC, like netfence_tc's pass verdict */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
