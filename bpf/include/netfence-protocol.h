/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * netfence-protocol.h — the framed protocol between the daemon and the loader child (requests,
 * replies, ops): the part of the contract the BPF programs do not use. Included by netfence.h
 * (so every includer sees one contract), kept in its own file because it is its own concept;
 * mirrored in daemon/src/datapath/wire-format.ts and checked by test/unit/datapath/wire-format.test.ts
 * like the rest of netfence.h.
 */
#ifndef NETFENCE_PROTOCOL_H
#define NETFENCE_PROTOCOL_H

#ifndef NETFENCE_H
#error "include netfence.h, not netfence-protocol.h"
#endif
/*
 * Framed protocol between the daemon (TypeScript) and the loader child over stdin/stdout.
 * Every frame: struct nf_frame_hdr followed by `len - sizeof(hdr)` payload bytes.
 * Requests carry a daemon-chosen seq; the reply echoes seq and op and carries status
 * (0 or -errno) and, on error, a UTF-8 message as payload. Unsolicited frames have seq 0:
 * NF_OP_EVENTS (payload: nf_event[]). The loader logs (libbpf included) to stderr.
 * The first request must be NF_OP_HELLO with NF_PROTOCOL_VERSION.
 */
#define NF_PROTOCOL_VERSION 2
#define NF_MAX_FRAME (64u * 1024 * 1024)

struct nf_frame_hdr {
	__u32 len;  /* whole frame including this header */
	__u32 seq;
	__u16 op;
	__u16 _pad;
	__s32 status;
};

enum nf_op {
	NF_OP_HELLO = 1,      /* req: nf_hello_req; reply: nf_hello_reply */
	NF_OP_LOAD = 2,       /* req: nf_load_req; creates + pins, not attached */
	NF_OP_LINK = 3,       /* req: nf_link_req; reply: nf_link_reply */
	NF_OP_UNLOAD = 4,     /* req: nf_id_req; detaches, unpins */
	NF_OP_ADOPT = 5,      /* req: nf_id_req; reply: nf_adopt_reply */
	NF_OP_REPLACE = 6,    /* req: nf_policy_req + nf_wire_entry[count] */
	NF_OP_UPSERT = 7,     /* req: nf_entries_req + nf_wire_entry[count] */
	NF_OP_DELETE = 8,     /* req: nf_entries_req + nf_wire_entry[count] (value ignored) */
	NF_OP_SET_MODE = 9,   /* req: nf_mode_req */
	NF_OP_COUNTERS = 10,  /* req: __u32 count + nf_id[count]; reply: __u64[count][NF_CNT_MAX] */
	NF_OP_PROTECTED = 11, /* req: __u32 count + nf_wire_protected[count] (replaces both sets) */
	NF_OP_PORT_GUARD = 20,   /* req: nf_port_guard_req; reply: nf_port_guard_reply (install or update) */
	NF_OP_PORT_UNGUARD = 21, /* no payload: detaches and unpins the port guard */
	NF_OP_EVENTS = 100,   /* unsolicited: nf_event[] */
};

struct nf_hello_req {
	__u32 version;
	__u32 _pad;
	char pin_root[256];
	char bpf_dir[256]; /* where netfence_tc.bpf.o / netfence_cgroup.bpf.o live */
};
struct nf_hello_reply {
	__u32 version;
	__u32 layout;
	__u32 features; /* NF_FEAT_* */
	__u32 _pad;
};
#define NF_FEAT_TCX (1u << 0) /* BPF_LINK_CREATE with BPF_TCX_* works on this kernel */

struct nf_id_req {
	char id[NF_ID_LEN];
};

struct nf_load_req {
	char id[NF_ID_LEN];
	__u32 slot;
	__u8 kind;      /* enum nf_kind */
	__u8 direction; /* enum nf_direction */
	__u16 dns_port;
	__u8 dns_ip4[4];
	__u8 dns_ip6[16];
	__u32 exact_cap; /* entries per exact hash (covering both generations); 0 = default */
	__u32 guards;    /* NF_GUARD_* */
	__u16 dns_port_min;
	__u16 dns_port_max;
	__u8 mac[6];
	__u8 n_ip4;
	__u8 n_ip6;
	__u8 ip4[NF_MAX_WORKLOAD_ADDRS][4];
	__u8 ip6[NF_MAX_WORKLOAD_ADDRS][16];
};

struct nf_link_req {
	char id[NF_ID_LEN];
	__u32 ifindex;      /* tc */
	__u8 method_pref;   /* 0 auto, NF_METHOD_TCX, NF_METHOD_CLSACT */
	__u8 _pad[3];
	char cgroup_path[4096];
};
struct nf_link_reply {
	__u32 method; /* enum nf_method */
	__u32 prog_id;
};

struct nf_adopt_reply {
	struct nf_state state;
	__u32 prog_id;
	__u32 attached; /* 1 if the filter is attached where nf_state says: its TCX or cgroup link is live
	                 * and runs prog_id, or the clsact filter at tc_handle/tc_priority runs prog_id */
};

/* One policy entry on the wire. 40 bytes.
 * family NF_WIRE_SCOPE: an entry of the scope table nf_scope (netfence.h): prefixlen = the key bits
 * after the generation byte (56..80), addr[0..9] = the key bytes after it (kind, scope, principal,
 * proto, port[2]); flags/rule_id/expires_ms as for an address entry; scope unused. */
#define NF_WIRE_SCOPE 2
struct nf_wire_entry {
	__u8 family;    /* 4 or 6, or NF_WIRE_SCOPE */
	__u8 prefixlen;
	__u8 flags;     /* NF_ENTRY_* */
	__u8 _pad;
	__u32 rule_id;
	__u64 expires_ms; /* wall clock (CLOCK_REALTIME) ms since epoch, 0 = never */
	__u8 addr[16];
	__u16 scope;    /* nf_entry.scope */
	__u8 _pad2[6];
};

struct nf_policy_req {
	char id[NF_ID_LEN];
	__u32 mode;
	__u32 flags;
	__u32 count;
	__u32 _pad;
};

struct nf_entries_req {
	char id[NF_ID_LEN];
	__u32 count;
	__u32 _pad;
};

struct nf_mode_req {
	char id[NF_ID_LEN];
	__u32 mode;
	__u32 flags;
};

#define NF_PROT_DENY (1u << 0) /* nf_wire_protected.flags: an entry of the protected-deny set */
#define NF_PROT_FROM (1u << 1) /* port is the source port (NF_PROT_FROM_PORT, netfence.h); allow set only */
struct nf_wire_protected {
	__u8 family;
	__u8 prefixlen;
	__u8 proto;
	__u8 flags;  /* NF_PROT_* (0: the protected-allow set) */
	__u16 port;
	__u16 _pad2;
	__u8 addr[16];
};

/* ---------------------------------------------------------------- DNS port guard */

/*
 * A cgroup/bind4 + cgroup/bind6 program pair (netfence_bindguard.bpf.o) that refuses bind() to a
 * port in [port_min, port_max] to every process whose uid is not `uid` (the daemon's), so nobody
 * else can squat a DNS port, also while the daemon restarts. Attached through two bpf_links
 * pinned at <pin_root>/_host/{portguard_bind4,portguard_bind6}; its settings live in the pinned
 * one-entry ARRAY <pin_root>/_host/portguard_cfg (value: struct nf_port_guard_cfg).
 */
struct nf_port_guard_cfg {
	__u32 uid;      /* init-namespace uid allowed to bind in the range */
	__u16 port_min; /* host byte order */
	__u16 port_max;
};

struct nf_port_guard_req {
	__u32 uid;
	__u16 port_min;
	__u16 port_max;
	char cgroup_path[4096]; /* the cgroup v2 directory to guard (its descendants are guarded too) */
};
struct nf_port_guard_reply {
	__u64 cgroup_id;
	__u32 prog_id4;
	__u32 prog_id6;
	__u32 updated; /* 1: pinned links on the same cgroup were found and updated in place */
	__u32 _pad;
};

/*
 * Operations (issue 11): readiness notification, re-attaching an adopted filter, and reading an
 * attachment's policy back from its maps. Numbered from 40 so that other additions to enum nf_op
 * cannot collide with them.
 */
#define NF_OP_NOTIFY 40 /* req: nf_notify_req; sends `message` as one datagram to the sd_notify socket */
#define NF_OP_RELINK 41 /* req: nf_link_req; reply: nf_link_reply. Re-attaches an adopted attachment's
                         * pinned program (its clsact filter was deleted, its link detached or unpinned,
                         * or its interface re-created); a filter still attached where asked is left as is */
#define NF_OP_DUMP 42   /* req: nf_id_req; reply: nf_dump_reply + nf_wire_entry[count] */
#define NF_OP_TABLES 43 /* req: nf_id_req; reply: nf_tables_reply (where the active generation's entries are) */

struct nf_notify_req {
	char socket[128];  /* $NOTIFY_SOCKET: a path, or "@name" for an abstract socket */
	char message[512]; /* e.g. "READY=1", "STOPPING=1" */
};

/* What a pinned attachment is and enforces, read from its pins (adoption of orphans). */
struct nf_dump_reply {
	__u64 cgroup_id; /* cgroup attachments: id (= inode) of the cgroup the link is attached to, 0 if none */
	__u32 slot;
	__u32 ifindex;
	__u32 mode;      /* active generation's enum nf_mode */
	__u32 flags;     /* active generation's NF_SETTING_* */
	__u32 prog_id;
	__u32 attached;  /* 1 if the filter is attached (as in nf_adopt_reply) */
	__u32 count;     /* entries of the active generation that follow (expired address entries left out; scope entries all) */
	__u16 dns_port;
	__u8 kind;       /* enum nf_kind */
	__u8 method;     /* enum nf_method */
	__u8 direction;  /* enum nf_direction */
	__u8 _pad[7];
};

/* Where an attachment's active generation keeps its entries, per family ([0] IPv4, [1] IPv6),
 * counted by walking the maps (diagnostics and tests: "no spill"). */
struct nf_tables_family {
	__u32 small_cap;   /* max_entries of the small exact hash (both generations share it) */
	__u32 small_n;     /* active-generation keys in the small hash */
	__u32 large_cap;   /* max_entries of the active generation's large inner hash; 0 = none installed */
	__u32 large_n;     /* keys in it */
	__u32 uses_large;  /* 1: packets of the active generation look up the large table */
	__u32 lpm_n;       /* active-generation keys in the LPM trie */
	__u32 lpm_host_n;  /* of which full-length (/32, /128): a host entry answered by the trie */
	__u32 other_large_cap; /* the inactive generation's large table, kept or not yet dropped; 0 = none */
};
struct nf_tables_reply {
	struct nf_tables_family fam[2];
	__u32 scope_n; /* active-generation keys in the scope table nf_scope (layout 6) */
	__u32 _pad;
};

/*
 * Explain (issue 14): look one destination up as the data path would, in the kernel maps
 * themselves (bpf/loader/lookup.c), so `netfenced explain` reports the kernel's answer rather than
 * a re-computation. Numbered from 60 (this feature's own range).
 */
#define NF_OP_LOOKUP 60 /* req: nf_lookup_req; reply: nf_lookup_reply */

struct nf_lookup_req {
	char id[NF_ID_LEN];
	__u8 family; /* 4 or 6 */
	__u8 _pad[3];
	__u8 addr[16]; /* network byte order; IPv4 in the first 4 bytes */
	/* Layout 6 (scoped entries; a request of the older 84 bytes means proto 0, port 0, owner unknown):
	 * the packet's L4 protocol, destination port (host order; 0 for protocols without ports) and owner. */
	__u8 proto;
	__u8 _pad2;
	__u16 port;
	__u32 uid; /* NF_OWNER_UNKNOWN: unknown (as the TC program sees every packet) */
	__u32 gid;
};

/* Where the policy match was found (nf_lookup_reply.table). */
#define NF_LOOKUP_NONE 0
#define NF_LOOKUP_SMALL 1 /* the small exact hash */
#define NF_LOOKUP_LARGE 2 /* the active generation's large table */
#define NF_LOOKUP_LPM 3   /* the LPM trie */

/* A host-wide protected trie's answer for the address (the longest prefix, as the program sees it). */
struct nf_lookup_prot {
	__u8 found;
	__u8 prefixlen; /* of the matching key (found by walking the trie's keys) */
	__u8 proto;     /* the value's scope: 0 = any */
	__u8 _pad;
	__u16 port;     /* 0 = any */
	__u16 _pad2;
};

struct nf_lookup_reply {
	struct nf_state state; /* as packets read it now (active generation, its mode and flags, guards, DNS) */
	__u64 expires_ms;      /* the matching entry's deadline, wall clock ms; 0 = never */
	__u32 rule_id;
	__u8 table;            /* NF_LOOKUP_*: NONE = no live entry */
	__u8 flags;            /* NF_ENTRY_* of the matching entry */
	__u8 prefixlen;        /* its prefix length */
	__u8 expired_skipped;  /* expired entries the lookup stepped over (exact or LPM), as the program does */
	__u8 addr[16];         /* the matching entry's prefix, network byte order */
	struct nf_lookup_prot prot;  /* protected(-allow) set */
	struct nf_lookup_prot pdeny; /* protected-deny set */
	/* Layout 6: the matching entry's scope set (0: none) and what it answered for the packet (the
	 * ALLOW/DENY above already include it); prefixes whose rules did not match were stepped over
	 * (counted in expired_skipped); depth = 1: the walk ran out of hops (the program drops: policy-depth). */
	__u16 scope;
	__u8 scope_flags;
	__u8 depth;
	__u32 scope_rule_id;
	__u32 scoped_skipped; /* scoped prefixes stepped over because none of their rules matched */
	__u32 _pad3;
};

/*
 * Rule hit counts (issue 14): numbered from 55 so other additions cannot collide.
 */
#define NF_OP_HITS 55       /* req: nf_hits_req; reply: nf_hits_reply + nf_wire_hit[count] (ids with packets) */
#define NF_OP_HITS_CLEAR 56 /* req: nf_hits_clear_req + __u32 rule_id[count]: zeroes those counters (recycled ids) */

struct nf_hits_req {
	char id[NF_ID_LEN];
	__u32 upto;  /* read ids [0, upto) and the overflow bucket (a per-CPU read costs per id and CPU); 0 = all */
	__u32 _pad;
};
struct nf_hits_reply {
	__u32 cap;   /* nf_hits max_entries: the overflow bucket is cap - 1 */
	__u32 count; /* nf_wire_hit entries that follow: ids with packets > 0, ascending */
};
struct nf_wire_hit {
	__u32 rule_id;
	__u32 _pad;
	__u64 packets;     /* summed over CPUs */
	__u64 last_hit_ms; /* wall clock (CLOCK_REALTIME) ms since epoch of the latest hit on any CPU; 0 = never */
};
struct nf_hits_clear_req {
	char id[NF_ID_LEN];
	__u32 count;
	__u32 _pad;
};

/* Migration of another layout's pins and tamper detection/repair: ops 50..54, in their own file. */
#include "netfence-repair.h"

#endif /* NETFENCE_PROTOCOL_H */
