// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * DNS port guard: cgroup/bind4 and cgroup/bind6 programs that refuse bind() to a port of the
 * daemon's DNS range (nf_port_guard_cfg in the pinned one-entry array "nf_pg_cfg") to every process
 * whose uid is not the daemon's, so an unprivileged local user can neither squat the next free DNS
 * port nor take a tenant's port while the daemon restarts. The sender sees EPERM.
 * Only explicit bind() calls reach these hooks: keep the range outside net.ipv4.ip_local_port_range
 * so an automatic (ephemeral) bind can never land in it.
 */
#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netfence.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nf_port_guard_cfg);
} nf_pg_cfg SEC(".maps");

static __always_inline int nf_bind_allowed(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct nf_port_guard_cfg *cfg = bpf_map_lookup_elem(&nf_pg_cfg, &zero);
	if (!cfg || cfg->port_min == 0)
		return 1; /* not configured */
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if (port < cfg->port_min || port > cfg->port_max)
		return 1;
	return (__u32)bpf_get_current_uid_gid() == cfg->uid; /* low 32 bits: the uid (init namespace) */
}

SEC("cgroup/bind4")
int netfence_bind4(struct bpf_sock_addr *ctx)
{
	return nf_bind_allowed(ctx);
}

SEC("cgroup/bind6")
int netfence_bind6(struct bpf_sock_addr *ctx)
{
	return nf_bind_allowed(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
