/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * netfence.h — THE kernel <-> userspace contract of Netfence.
 *
 * Included by the BPF programs (bpf/netfence_{tc,cgroup}.bpf.c), by the loader child (bpf/loader/), and mirrored
 * field by field in TypeScript by daemon/src/datapath/wire-format.ts.
 * Any change here MUST be matched there; test/unit/datapath/wire-format.test.ts checks the
 * sizes and offsets the TypeScript side assumes, and NF_LAYOUT_VERSION guards pinned state:
 * a loader refuses to adopt pins written with another layout version.
 *
 * Byte order: addresses are always network byte order (as on the wire); ports in events are
 * host byte order; every other integer is host byte order (x86-64/arm64: little endian).
 */
#ifndef NETFENCE_H
#define NETFENCE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define NF_LAYOUT_VERSION 7 /* 5: the per-rule hit counters nf_hits (issue 14); 6: scopes, owner, keep (issue 15);
                             * 7: the event throttle key carries the owner uid (host pin "throttle_owner") */
#define NF_STATE_MAGIC 0x4e464e31u /* "NFN1" */

/* ---------------------------------------------------------------- policy */

/* Must match FilterMode in daemon/src/datapath/filter.ts (via wire-format.ts). */
enum nf_mode {
	NF_MODE_DISABLED = 0,
	NF_MODE_ALLOWLIST = 1,
	NF_MODE_DENYLIST = 2,
	NF_MODE_BLOCK_ALL = 3,
};

/* nf_gen_settings.flags */
#define NF_SETTING_AUDIT (1u << 0) /* evaluate and report, never drop */
/* Set by the loader only (the daemon's flags never carry them): the generation's IPv4 (IPv6) exact
 * entries are in its large table (nf_v4_large / nf_v6_large slot `gen`), not in the small hash. */
#define NF_SETTING_V4_LARGE (1u << 1)
#define NF_SETTING_V6_LARGE (1u << 2)
#define NF_SETTING_LARGE(v6) ((v6) ? NF_SETTING_V6_LARGE : NF_SETTING_V4_LARGE)
/* Keep (issue 15): TCP connections established before a policy change keep working (see "keep" below). */
#define NF_SETTING_KEEP (1u << 3)

/* nf_entry.flags: both may be set for one prefix; deny wins at equal prefix length. */
#define NF_ENTRY_ALLOW (1u << 0)
#define NF_ENTRY_DENY (1u << 1)
/* The entry's scope set (nf_entry.scope) has rules for any owner / for uids / for gids: the kinds
 * nf_scope_match looks up (issue 15). */
#define NF_ENTRY_SCOPE_ANY (1u << 2)
#define NF_ENTRY_SCOPE_UID (1u << 3)
#define NF_ENTRY_SCOPE_GID (1u << 4)
#define NF_ENTRY_SCOPE_KINDS (NF_ENTRY_SCOPE_ANY | NF_ENTRY_SCOPE_UID | NF_ENTRY_SCOPE_GID)

/*
 * Value of every policy entry (exact hash and LPM trie alike). 16 bytes.
 * expires_ns: CLOCK_MONOTONIC deadline (bpf_ktime_get_ns), 0 = never. The kernel treats an
 * expired entry as absent, so a TTL holds even while the daemon is down; the daemon deletes
 * expired entries later (garbage collection only).
 * rule_id: the daemon's id of the rule that decides a packet matching this entry (for an entry with
 * both flags, the deny rule; for a DNS-learned address, the domain rule that allowed it): the index of
 * the rule's hit counter in nf_hits (see "rule hit counts" below). Designed to grow: later also a
 * port/protocol rule table.
 */
struct nf_entry {
	__u64 expires_ns;
	__u32 rule_id;
	__u8 flags;
	__u8 prefixlen; /* the entry's own prefix length (lets the LPM walk skip expired entries) */
	__u16 scope;    /* 0: the prefix has no scoped rule; else its scope-set id in this generation (nf_scope) */
};

/*
 * Scoped rules (issue 15): rules limited to protocols, destination ports and socket owners. An
 * address entry whose prefix carries scoped rules names its scope set (nf_entry.scope, with the
 * NF_ENTRY_SCOPE_* kinds present); the set's answers live in the per-attachment LPM trie nf_scope
 * (pinned "scope", value struct nf_entry: flags ALLOW/DENY, rule_id, expires_ns; its prefixlen is the
 * address prefix length of the entry it belongs to). Within one (gen, scope, kind, principal) the
 * daemon writes disjoint, flattened blocks, so one LPM lookup gives the complete answer of that kind.
 * prefixlen = 64 + (protocol given ? 8 + port bits (0..16) : 0); a packet without ports looks up port 0.
 */
#define NF_SCOPE_KIND_ANY 0 /* principal 0 */
#define NF_SCOPE_KIND_UID 1
#define NF_SCOPE_KIND_GID 2
#define NF_SCOPE_CAP 65536
struct nf_scope_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 kind;       /* NF_SCOPE_KIND_* */
	__u16 scope;     /* host byte order (always matched whole) */
	__u32 principal; /* uid or gid, host byte order (always matched whole); 0 for ANY */
	__u8 proto;      /* IPPROTO_* */
	__u8 port[2];    /* destination port, NETWORK byte order (ranges: aligned blocks) */
	__u8 _pad;       /* 0, never inside a prefix */
};
#define NF_OWNER_UNKNOWN 0xffffffffu /* uid/gid not known (TC programs; sockets created before attach) */

/*
 * Per-socket storage nf_sk (BPF_MAP_TYPE_SK_STORAGE, per attachment, pinned "sk"; cgroup programs
 * only): the owner stamped by the cgroup/sock_create program when the socket is created (the creating
 * task's uid and gid), and the keep stamp: the destination (slot, family, address, port) an allowed TCP
 * packet of this socket was last sent to while keep was on. A socket created before the attach has no
 * storage: its gid is unknown (its uid still comes from bpf_get_socket_uid).
 */
struct nf_sk {
	__u32 uid;
	__u32 gid;
	__u32 kept_slot;
	__u16 kept_dport;  /* host byte order */
	__u8 kept_family;  /* 4 or 6 */
	__u8 kept;         /* 1: the stamp below is set */
	__u8 kept_daddr[16];
	__u32 flags;       /* NF_SK_* */
};
/* Set by sock_create for a socket created in a network namespace other than the host's (the initial
 * one): management "from" entries (the host's sshd replies) never apply to it — a workload with its
 * own namespace (and CAP_NET_ADMIN there) can make its own sockets look like replies (TCP_REPAIR, a
 * spoofed SYN into its own stack). Storage made elsewhere (sockets from before the attach) has 0. */
#define NF_SK_OTHER_NS (1u << 0)

/*
 * Keep (NF_SETTING_KEEP): a TCP packet of a connection seen allowed passes even when the policy now
 * blocks its destination (after the guards, the protected sets and disabled/block-all; block-all still
 * severs). cgroup: the socket's nf_sk stamp; TC: the host-wide nf_flows LRU holds the flow (slot,
 * 5-tuple), seen allowed within NF_KEEP_IDLE_NS. Kept packets refresh the stamp.
 */
#define NF_KEEP_IDLE_NS (2ull * 3600 * 1000 * 1000 * 1000)

/*
 * Double buffering by key: every policy key carries the generation (0 or 1) it belongs to, so
 * both generations live in the same four maps. An atomic replace writes the new policy under
 * the inactive generation, writes that generation's settings, then flips `active_gen` with one
 * aligned 32-bit store; a packet reads active_gen once and looks up only its generation's keys,
 * so it sees the old or the new policy whole, never a mix. The retired generation's keys are
 * deleted after an RCU grace period. (No map-in-map: every map-in-map slot write from user
 * space waits for a grace period, which would put milliseconds on every attach and replace.)
 *
 * Exact-match keys: /32 and /128 entries (DNS-learned addresses, single hosts) live in a hash,
 * which costs a few ns per packet instead of an LPM trie walk. Two places, chosen per generation
 * and family by the loader (NF_SETTING_V4_LARGE / _V6_LARGE in the generation's settings):
 *   - the small hash nf_v4_exact / nf_v6_exact, keyed by generation + address, sized when the
 *     attachment is loaded (nf_load_req.exact_cap; a hash allocates its buckets up front): where a
 *     small policy lives, so the attach path never waits for an RCU grace period;
 *   - the large tables: an ARRAY_OF_MAPS nf_v4_large / nf_v6_large with one slot per generation,
 *     each slot an inner hash keyed by the address alone (nf_large_v4_key), created by the loader
 *     at the size the generation needs and installed whole. A policy (REPLACE) or a batch of
 *     DNS-learned addresses (UPSERT) that does not fit the small hash moves to one; installing a
 *     slot waits for one RCU grace period, paid only when a table grows. Nothing spills into the
 *     LPM tries: every /32 and /128 is answered by a hash.
 */
struct nf_exact_v4_key {
	__u32 gen;
	__u8 addr[4];
};
struct nf_exact_v6_key {
	__u32 gen;
	__u8 addr[16];
};
/* Keys of the large tables' inner hashes: the address alone (the slot is the generation). */
struct nf_large_v4_key {
	__u8 addr[4];
};
struct nf_large_v6_key {
	__u8 addr[16];
};
/* LPM keys: prefixlen first, as the LPM trie requires; it counts the generation byte too
 * (prefixlen = 8 + the rule's prefix length), so a lookup only matches its own generation. */
struct nf_lpm_v4_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 addr[4];
};
struct nf_lpm_v6_key {
	__u32 prefixlen;
	__u8 gen;
	__u8 addr[16];
};
/* Keys of the host-wide protected tries, allow and deny alike (no generations). */
struct nf_prot_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};
struct nf_prot_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Operator-protected destinations (host-wide, shared by all attachments): the value of the
 * protected-allow tries (pass in every mode) and of the protected-deny tries (dropped in every mode). */
struct nf_protected {
	__u16 port;  /* destination port, host byte order; 0 = any (NF_PROT_FROM_PORT: the source port) */
	__u8 proto;  /* IPPROTO_*; 0 = any */
	__u8 flags;  /* NF_PROT_FROM_PORT */
};
/* nf_protected.flags: `port` is the SOURCE port; the entry matches only TCP packets of a SOCK_STREAM
 * socket bound to that port (replies of the host's sshd). cgroup programs only: the TC program ignores
 * such entries (a workload crafts any source port). */
#define NF_PROT_FROM_PORT (1u << 0)
/* With NF_PROT_FROM_PORT: the same prefix also has the ordinary entry (TCP/UDP... to `port`): the loader
 * merges a "to" and a "from" entry of one prefix and port into one value (the trie holds one per prefix). */
#define NF_PROT_ALSO_TO (1u << 1)

#define NF_GENERATIONS 2
#define NF_MAX_ENTRIES 262144 /* per LPM trie (allow and deny share a table): >= 10^5 each */
#define NF_EXACT_CAP_DEFAULT 4096 /* exact-hash entries when the loader is not told otherwise */
#define NF_EXACT_CAP_MAX 524288
#define NF_LARGE_CAP_MIN 1024       /* entries of the smallest large inner hash */
#define NF_LARGE_CAP_MAX 4194304    /* of the largest (64 MiB of buckets) */

struct nf_gen_settings {
	__u32 mode;  /* enum nf_mode */
	__u32 flags; /* NF_SETTING_* */
};

/* Attachment kinds and attach methods recorded in nf_state (self-describing pins). */
enum nf_kind {
	NF_KIND_TC = 1,
	NF_KIND_CGROUP = 2,
};
enum nf_method {
	NF_METHOD_NONE = 0,
	NF_METHOD_TCX = 1,
	NF_METHOD_CLSACT = 2,
	NF_METHOD_CGROUP_LINK = 3,
};
enum nf_direction {
	NF_DIR_INGRESS = 0, /* host-side veth/tap ingress = packets the workload sends */
	NF_DIR_EGRESS = 1,
};

#define NF_ID_LEN 64

/*
 * Guards: what an attachment lets through besides its policy, and the anti-spoofing checks it
 * makes (nf_state.guards, set at LOAD). Must match GUARD in daemon/src/datapath/wire-format.ts.
 * The default (0) is the narrow always-allowed set; see nf_decide() in policy.h for the order.
 */
#define NF_GUARD_OPEN_LOOPBACK (1u << 0)   /* 127/8, ::1: decided by the mode like any destination */
#define NF_GUARD_OPEN_LINK_LOCAL (1u << 1) /* 169.254/16, fe80::/10: likewise */
#define NF_GUARD_DHCP (1u << 2)            /* udp 68 -> 255.255.255.255:67 always passes */
#define NF_GUARD_DHCPV6 (1u << 3)          /* udp 546 -> [ff02::1:2]:547 always passes */
#define NF_GUARD_MLD (1u << 4)             /* ICMPv6 130-132, 143, hop limit 1, to ff02::/16 always pass */
#define NF_GUARD_ROUTER (1u << 5)          /* router advertisements (134) and redirects (137) get the ND rule */
#define NF_GUARD_ALLOW_NON_IP (1u << 6)    /* L2: frames that are neither IPv4, IPv6 nor ARP pass */
#define NF_GUARD_L3_DEVICE (1u << 7)       /* TC on an L3 device (tun, wireguard): data starts at the IP header */
#define NF_GUARD_MAC (1u << 8)             /* nf_state.mac is the workload's MAC: other source MACs are dropped */
#define NF_GUARD_ALLOWED_FLOWS (1u << 9)   /* report the first allowed packet of each flow (report.h nf_flow) */
#define NF_MAX_WORKLOAD_ADDRS 8            /* per family */

/*
 * Per-attachment scalar state: one-entry ARRAY map "nf_state", BPF_F_MMAPABLE, pinned.
 * The program reads it with an inlined array lookup; the loader writes fields through mmap with
 * single aligned stores. It also records how the attachment was made, so a fresh loader can
 * re-adopt and detach it from the pins alone. 320 bytes.
 */
struct nf_state {
	__u32 magic;      /* NF_STATE_MAGIC */
	__u32 layout;     /* NF_LAYOUT_VERSION */
	__u32 active_gen; /* 0 or 1 */
	__u32 slot;       /* attachment slot, carried in events */
	struct nf_gen_settings gen[NF_GENERATIONS];
	__u8 dns_ip4[4];  /* the attachment's DNS server (always allowed); 0 = none */
	__u8 dns_ip6[16];
	__u16 dns_port;   /* host byte order; 0 = none. The whole DNS port range: dns_port_min/max below */
	__u8 kind;        /* enum nf_kind */
	__u8 method;      /* enum nf_method */
	__u8 direction;   /* enum nf_direction */
	__u8 _pad0[3];
	__u32 ifindex;
	__u32 tc_handle;  /* clsact only */
	__u32 tc_priority;
	char id[NF_ID_LEN];
	__u32 protected_n; /* entries in the host-wide protected(-allow) set (0: skip its lookup) */
	__u32 pdeny_n;     /* entries in the host-wide protected-deny set (0: skip its lookup) */
	__u32 guards;      /* NF_GUARD_* */
	/* The daemon's whole DNS port range (host byte order; 0 = none): on the DNS address, a port of
	 * this range other than dns_port is another tenant's DNS server, dropped in every mode. */
	__u16 dns_port_min;
	__u16 dns_port_max;
	__u8 mac[6];       /* the workload's MAC (NF_GUARD_MAC) */
	__u8 n_ip4;        /* workload addresses named (ARP and neighbour-advertisement anti-spoofing) */
	__u8 n_ip6;
	__u8 ip4[NF_MAX_WORKLOAD_ADDRS][4];
	__u8 ip6[NF_MAX_WORKLOAD_ADDRS][16];
};

/*
 * The prefix of nf_state that every layout keeps at the same offsets (magic … tc_priority, 72
 * bytes): how an attachment was made and where it is attached. A new layout adds or changes fields
 * after it only, so a loader can still detach pins of an older layout (MIGRATE, netfence-protocol.h).
 */
#define NF_STATE_STABLE_PREFIX 72

/* Per-CPU counters: PERCPU_ARRAY "nf_counters" indexed by these. */
enum nf_counter {
	NF_CNT_ALLOWED = 0,
	NF_CNT_BLOCKED = 1,
	NF_CNT_AUDITED = 2,
	NF_CNT_EVENTS_LOST = 3, /* ring buffer full */
	NF_CNT_MAX = 4,
};

/* ---------------------------------------------------------------- rule hit counts (issue 14) */

/*
 * Per-rule hit counters: PERCPU_ARRAY "nf_hits" (per attachment, pinned as "hits"), NF_HITS_CAP
 * entries, indexed by the rule id of the decision: the matching entry's rule_id when an entry
 * decided, a reserved id below otherwise. The last index is the overflow bucket: a rule id that does
 * not fit counts there (the daemon gives every rule beyond the cap that id and reports them as
 * sharing it). Memory: NF_HITS_CAP * 24 bytes per CPU per attachment (192 KiB).
 * Must match RULE_ID / HITS_CAP in daemon/src/datapath/wire-format.ts.
 */
struct nf_hit {
	__u64 packets;
	__u64 last_ns;      /* CLOCK_MONOTONIC_COARSE ns of the first hit in the jiffy of the last hit; 0 = never */
	__u64 last_jiffies; /* the jiffy of that hit: the clock is read once per jiffy, not per packet */
};
enum nf_rule_reserved {
	NF_RULE_NONE = 0,            /* an entry written without a rule id */
	NF_RULE_DEFAULT_DENY = 1,    /* allowlist: nothing matched */
	NF_RULE_DEFAULT_ALLOW = 2,   /* denylist: nothing matched */
	NF_RULE_BLOCK_ALL = 3,       /* mode block-all */
	NF_RULE_DISABLED = 4,        /* mode disabled */
	NF_RULE_PROTECTED = 5,       /* the host-wide protected(-allow) set */
	NF_RULE_PROTECTED_DENY = 6,  /* the host-wide protected-deny set */
	NF_RULE_ALWAYS_ALLOWED = 7,  /* own DNS server, ND, DHCP/DHCPv6/MLD where enabled, allowed non-IP/ARP */
	NF_RULE_GUARD = 8,           /* malformed, spoofed, non-IP, another tenant's DNS, RA guard */
	NF_RULE_LOCAL_CLOSED = 9,    /* loopback / link-local destination without an explicit allow */
	NF_RULE_KEPT = 10,           /* a packet of a kept connection (NF_SETTING_KEEP) */
	NF_RULE_POLICY_DEPTH = 11,   /* the LPM walk ran out of hops (scoped misses, expired entries): fail closed */
	NF_RULE_FIRST = 16,          /* the daemon's policy rules start here */
};
#define NF_HITS_CAP 8192
#define NF_HITS_OVERFLOW (NF_HITS_CAP - 1)

/* ---------------------------------------------------------------- events */

#include "netfence-events.h"

/* ---------------------------------------------------------------- loader protocol */

#include "netfence-protocol.h"

#endif /* NETFENCE_H */
