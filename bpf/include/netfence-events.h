/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * netfence-events.h — the events part of the kernel <-> userspace contract (netfence.h includes it;
 * nothing else should): verdicts and reasons, the ring-buffer event, the throttle and the
 * allowed-flow keys. The same rules as netfence.h: mirrored field by field in
 * daemon/src/datapath/wire-format.ts and wire-decode.ts, checked by test/unit/datapath/wire-format.test.ts,
 * guarded by NF_LAYOUT_VERSION.
 */
#ifndef NETFENCE_EVENTS_H
#define NETFENCE_EVENTS_H
/* ---------------------------------------------------------------- events */

enum nf_verdict {
	NF_VERDICT_ALLOWED = 1,
	NF_VERDICT_BLOCKED = 2,
	NF_VERDICT_AUDIT = 3,
};

/* Why a packet was decided; must match REASONS in daemon/src/datapath/reasons.ts (re-exported by wire-format.ts). */
enum nf_reason {
	NF_REASON_NONE = 0,
	NF_REASON_MODE_BLOCK_ALL = 1,
	NF_REASON_NOT_IN_ALLOWLIST = 2,
	NF_REASON_DENY_CIDR = 3,
	NF_REASON_ALLOW_CIDR = 4,
	NF_REASON_MODE_DISABLED = 5,
	NF_REASON_DENYLIST_DEFAULT = 6,
	NF_REASON_ALWAYS_ALLOWED = 7,
	NF_REASON_PROTECTED = 8,
	NF_REASON_MALFORMED = 9,        /* truncated header, > 2 VLAN tags, bad ARP, IPv4-mapped IPv6 destination,
	                                 * an IPv6 extension header chain longer than 4 */
	NF_REASON_SPOOFED = 10,         /* source MAC, ARP sender or neighbour-advertisement target not the workload's */
	NF_REASON_NON_IP = 11,          /* L2 frame that is neither IPv4, IPv6 nor ARP */
	NF_REASON_OTHER_TENANT_DNS = 12, /* another attachment's DNS server (DNS address, port in the range) */
	NF_REASON_ROUTER_MESSAGE = 13,  /* ICMPv6 router advertisement or redirect (RA guard) */
	NF_REASON_PROTECTED_DENY = 14,  /* the host-wide protected-deny set */
	NF_REASON_LOCAL_CLOSED = 15,    /* loopback / link-local destination without an explicit allow */
	NF_REASON_POLICY_DEPTH = 16,    /* more than NF_LPM_EXPIRED_HOPS non-matching prefixes: fail closed */
	NF_REASON_KEPT = 17,            /* a packet of a connection kept across a policy change */
};

/*
 * One blocked/audited packet or allowed flow, on the shared ring buffer "nf_events". 88 bytes.
 * family 0 = an L2 frame decided before any IP parsing (spoofed source MAC, ARP, non-IP): saddr and
 * daddr hold the source and destination MAC (6 bytes), dport the ethertype, proto 0, sport 0.
 */
struct nf_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns(); the loader converts to wall-clock ns */
	__u64 suppressed; /* identical events folded into this one (throttling) */
	__u32 slot;
	__u16 sport;      /* host byte order */
	__u16 dport;
	__u8 family;      /* 4 or 6; 0 = L2 frame (see above) */
	__u8 proto;
	__u8 verdict;     /* enum nf_verdict */
	__u8 reason;      /* enum nf_reason */
	__u8 direction;   /* 1 = sent by the workload (the only direction filtered today) */
	__u8 rule_prefixlen; /* 255 = no rule */
	__u8 _pad[2];
	__u8 saddr[16];   /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u8 rule_addr[16];
	__u32 uid;        /* the socket owner (cgroup programs); NF_OWNER_UNKNOWN when unknown */
	__u32 gid;
};

/* Throttle: identical events (same slot, owner, src, dst, dport, proto, reason) within
 * NF_EVENT_THROTTLE_NS are folded into one. Kept in a shared LRU hash, so stale entries are
 * evicted under pressure; the daemon ignores entries older than a minute.
 * Layout 7: the key carries the socket owner's uid (the event's uid: NF_OWNER_UNKNOWN for TC
 * programs and unknown sockets), so that one user's blocked attempts are never folded into another
 * user's event: each owner gets its own event and its own `suppressed` count. 44 bytes, 4-aligned,
 * no holes. The shape changed, so the host-wide map is pinned under a new name (NF_THROTTLE_PIN;
 * the loader's host.c drops the older "throttle" pin, which the programs of older layouts still
 * hold until they are migrated). */
#define NF_EVENT_THROTTLE_NS (10ull * 1000 * 1000 * 1000)
#define NF_THROTTLE_PIN "throttle_owner"
struct nf_throttle_key {
	__u32 slot;
	__u16 dport;
	__u8 proto;
	__u8 reason;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 uid;        /* the socket owner, as in nf_event.uid */
};
struct nf_throttle_val {
	__u64 last_ns;
	__u64 suppressed;
};

/*
 * Allowed-flow events (NF_GUARD_ALLOWED_FLOWS, issue 14): an allowed packet is reported only when
 * its flow (slot, family, L4 protocol, source and destination address and port; ICMP: the type in
 * dport) was not seen for NF_FLOW_WINDOW_NS. Shared LRU hash "nf_flows" (host-wide, pinned as
 * _host/flows like the throttle), value: the CLOCK_MONOTONIC_COARSE ns the flow was last seen, refreshed
 * at most once per NF_FLOW_REFRESH_NS so that a busy flow does not write the entry on every packet.
 * 60 s: a connection that sends at least once a minute (every keepalive-style heartbeat does) is
 * reported once for its whole life, while a destination contacted again after a pause shows up
 * again during an audit roll-out; it is also the staleness bound the daemon already uses for the
 * throttle. An evicted entry (more live flows than the map holds) only costs one more event.
 */
#define NF_FLOW_WINDOW_NS (60ull * 1000 * 1000 * 1000)
#define NF_FLOW_REFRESH_NS (1000ull * 1000 * 1000)
#define NF_FLOWS_CAP 65536
struct nf_flows_key {
	__u32 slot;
	__u16 sport; /* host byte order */
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 _pad[2];
	__u8 saddr[16];
	__u8 daddr[16];
};

#endif /* NETFENCE_EVENTS_H */
