/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * netfence-repair.h — the loader protocol's repair part: migrating pins written with another layout
 * (MIGRATE_*) and tamper detection and repair (VERIFY, RESTORE). Included by netfence-protocol.h
 * (nothing else should); the same rules as the rest of the contract: mirrored in
 * daemon/src/datapath/wire-format.ts and tamper-wire.ts, checked by test/unit/datapath/wire-format.test.ts.
 */
#ifndef NETFENCE_REPAIR_H
#define NETFENCE_REPAIR_H

#ifndef NETFENCE_PROTOCOL_H
#error "include netfence.h, not netfence-repair.h"
#endif

/*
 * Migration of pins written with another layout (lane M, issue 14): ops 50..52. A stored attachment
 * whose pins ADOPT refuses with EPROTO (another NF_LAYOUT_VERSION or magic, or maps of another
 * shape) is re-created beside its old self: MIGRATE_BEGIN moves <pin_root>/<id> aside to
 * <pin_root>/_migrating-<id> (a rename within bpffs: the old program stays attached and enforcing),
 * the daemon re-creates the attachment (LOAD, REPLACE, LINK: the new program runs beside the old
 * one, TCX/cgroup multi-attach or a clsact filter at a priority of its own), MIGRATE_FINISH detaches
 * the old program and removes the old pins; MIGRATE_ABORT renames them back (nothing changed).
 * An old layout is read only through the fields every layout keeps at the same place (nf_state up
 * to and including tc_priority: see NF_STATE_STABLE_PREFIX in netfence.h).
 */
#define NF_OP_MIGRATE_BEGIN 50  /* req: nf_id_req; reply: nf_migrate_reply */
#define NF_OP_MIGRATE_FINISH 51 /* req: nf_id_req; reply: nf_migrate_reply (what was detached) */
#define NF_OP_MIGRATE_ABORT 52  /* req: nf_id_req */

struct nf_migrate_reply {
	__u32 layout;      /* the old pins' nf_state.layout (0 if unreadable) */
	__u32 magic;       /* their nf_state.magic */
	__u32 prog_id;     /* the old program (0: its pin is gone) */
	__u32 ifindex;     /* tc: where it is attached */
	__u32 tc_priority; /* clsact: its filter's priority */
	__u8 method;       /* enum nf_method the old state records */
	__u8 kind;         /* enum nf_kind */
	__u8 direction;
	__u8 detached;     /* FINISH: 1 if an attached old filter or link was found and detached */
};


/*
 * Tamper detection (lane M, issue 14): ops 53..54. VERIFY checks attachments against what this
 * loader made (read-only; cheap enough for a 2 s period: a link's info or a clsact query, a compare
 * of nf_state in memory, and — when asked — the pins and a checksum of the active generation);
 * RESTORE re-pins what is missing or not ours and rewrites nf_state's fixed fields.
 */
#define NF_OP_VERIFY 53  /* req: __u32 count, __u32 _pad, nf_verify_item[count]; reply: nf_verify_result[count] */
#define NF_OP_RESTORE 54 /* req: nf_id_req; reply: nf_restore_reply */

#define NF_VERIFY_PINS (1u << 0)    /* nf_verify_item.checks: open every pin, compare object ids */
#define NF_VERIFY_CONTENT (1u << 1) /* checksum the active generation's entries */

struct nf_verify_item {
	char id[NF_ID_LEN];
	__u32 checks; /* NF_VERIFY_* (the attach point and nf_state are always checked) */
	__u32 _pad;
};

#define NF_TAMPER_DETACHED (1u << 0)      /* our filter is not attached any more (link defunct, clsact filter gone) */
#define NF_TAMPER_PROG_REPLACED (1u << 1) /* another program runs where ours was (link updated, clsact filter replaced) */
#define NF_TAMPER_PIN_REPLACED (1u << 2)  /* a pin names another map, program or link than ours */
#define NF_TAMPER_PIN_MISSING (1u << 3)   /* a pin is gone */
#define NF_TAMPER_STATE (1u << 4)         /* nf_state's fixed fields (DNS server, guards, addresses…) were rewritten */
#define NF_TAMPER_UNKNOWN (1u << 5)       /* not loaded or adopted, and its pins cannot be adopted */

/*
 * The content checksum: over the active generation's entries (expired ones included: their removal
 * is the daemon's garbage collection), each one's 24-byte record {family, prefixlen, flags,
 * has_expiry, addr[16] masked to the prefix, scope (u16 LE), 0, 0} hashed with FNV-1a 32 from two
 * offset bases, summed (mod 2^32) so the order does not matter. flags: an address entry's
 * ALLOW|DENY|SCOPE_ANY|SCOPE_UID|SCOPE_GID, a scope entry's ALLOW|DENY; scope: an address entry's
 * scope-set id (nf_entry.scope), 0 for a scope entry (its id is in its key bytes). Mirrored by
 * daemon/src/datapath/content-shadow.ts; the loader and the daemon of one build agree (the record
 * changed in session 21: scope id and kinds added), a VERIFY reply is never compared across builds.
 */
#define NF_SUM_BASIS_A 0x811c9dc5u
#define NF_SUM_BASIS_B 0x5bd1e995u
#define NF_SUM_RECORD 24

struct nf_verify_result {
	__u32 tamper;       /* NF_TAMPER_* */
	__u32 prog_id;      /* ours */
	__u32 seen_prog_id; /* what runs at our attach point instead (PROG_REPLACED), else 0 */
	__u32 mode;         /* the active generation's settings */
	__u32 flags;
	__u32 entries;      /* NF_VERIFY_CONTENT: entries of the active generation */
	__u32 sum_a;
	__u32 sum_b;
	__u32 bad_pins;     /* bit i: pin_names[i] missing or replaced (i < 10; 9 = link) */
	__u32 checked;      /* the NF_VERIFY_* checks done */
};

struct nf_restore_reply {
	__u32 repinned; /* bit i: pin_names[i] pinned again */
	__u32 state_fixed; /* 1: nf_state's fixed fields were rewritten */
};

#endif /* NETFENCE_REPAIR_H */
