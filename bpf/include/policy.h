/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h — the verdict shared by the TC and cgroup programs (with maps.h: the maps, packet.h: parsing,
 * report.h: counters and events, guards.h: the always-allowed set and anti-spoofing).
 * Layout of every value and key: netfence.h (the contract). Policy logic lives in these headers
 * and only here: the loader holds none, the daemon only computes which entries exist.
 */
#ifndef NETFENCE_POLICY_H
#define NETFENCE_POLICY_H

/*
 * The programs read only stable ABI: the __sk_buff context (rewritten by the verifier) and
 * on-the-wire Ethernet/VLAN/IPv4/IPv6 headers. None of that needs CO-RE relocation, and an object
 * with relocations makes libbpf parse the kernel's whole BTF on every load (≈ 20 ms per attach,
 * measured). So vmlinux.h types are used without preserve_access_index; a program that reads a
 * kernel-internal structure must use BPF_CORE_READ() (which relocates regardless of this define).
 */
#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "netfence.h"

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_ARP 0x0806
#define IPPROTO_ICMPV6_ 58

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};
#define NF_NO_RULE 255
/* How many LPM matches a lookup steps over (an expired prefix not yet garbage-collected, or a scoped
 * prefix none of whose rules matches the packet) before it gives up; giving up FAILS CLOSED
 * ("policy-depth"): a shorter prefix that would have decided is not known. */
#define NF_LPM_EXPIRED_HOPS 4
#define NF_MATCH_DEPTH 2 /* nf_lookup_v4/v6: the hops ran out */

#include "maps.h" /* every map the programs use: per attachment, then host-wide */

/*
 * The rare paths (reading L4 headers, events, the DNS/ICMPv6/ARP/protected checks) are GLOBAL
 * functions (non-static __noinline): the verifier checks each once, on its own, instead of once per
 * call site and per caller state (static subprograms and inlined copies multiplied its work ~4x and
 * put ~150 ms on every attach). They take the context, pointers to structs of scalars (which they
 * null-check, as the verifier requires) and scalars, and return a scalar.
 */
#include "packet.h"
#include "report.h"
#include "guards.h"

/* ---------------------------------------------------------------- lookups */

static __always_inline int nf_entry_live(const struct nf_entry *e)
{
	return e->expires_ns == 0 || e->expires_ns > bpf_ktime_get_ns();
}

#include "segment.h" /* scoped lookups, keep, the management "from" port */

/* The generation's exact entry for the address: in its large table when the settings say so. */
static __always_inline struct nf_entry *nf_exact_v4(__u32 gen, __u32 sflags, __u32 daddr)
{
	if (sflags & NF_SETTING_V4_LARGE) {
		void *t = bpf_map_lookup_elem(&nf_v4_large, &gen);
		return t ? bpf_map_lookup_elem(t, &daddr) : 0;
	}
	struct nf_exact_v4_key k = { .gen = gen };
	__builtin_memcpy(k.addr, &daddr, 4);
	return bpf_map_lookup_elem(&nf_v4_exact, &k);
}

static __always_inline struct nf_entry *nf_exact_v6(__u32 gen, __u32 sflags, const __u8 *daddr)
{
	if (sflags & NF_SETTING_V6_LARGE) {
		void *t = bpf_map_lookup_elem(&nf_v6_large, &gen);
		struct nf_large_v6_key lk;
		__builtin_memcpy(lk.addr, daddr, 16);
		return t ? bpf_map_lookup_elem(t, &lk) : 0;
	}
	struct nf_exact_v6_key k = { .gen = gen };
	__builtin_memcpy(k.addr, daddr, 16);
	return bpf_map_lookup_elem(&nf_v6_exact, &k);
}

/*
 * The verdict of a live entry for the packet (nf_entry.scope, netfence.h): its unscoped ALLOW/DENY,
 * plus the answer of its scope set (one LPM lookup per kind of owner it has). Equal prefix: deny wins.
 * 0 = no rule of this prefix matches the packet (the walk goes on to a shorter prefix). An entry without
 * a scope costs one test more than before.
 */
static __always_inline int nf_entry_match(struct __sk_buff *skb, struct nf_pkt *p, __u32 gen, const struct nf_entry *e,
					  struct nf_match *m)
{
	m->flags = e->flags & (NF_ENTRY_ALLOW | NF_ENTRY_DENY);
	m->rule_id = e->rule_id;
	if (e->scope) {
		struct nf_match sm = {};
		if (nf_scope_match(skb, p, (gen << 16) | e->scope, e->flags & NF_ENTRY_SCOPE_KINDS, &sm)) {
			if (!(m->flags & NF_ENTRY_DENY) && ((sm.flags & NF_ENTRY_DENY) || !m->flags))
				m->rule_id = sm.rule_id;
			m->flags |= sm.flags;
		}
	}
	return m->flags != 0;
}

/* 1 = matched (m), 0 = no entry matches, NF_MATCH_DEPTH = the walk ran out of hops (fail closed). */
static __always_inline int nf_lookup_v4(struct __sk_buff *skb, struct nf_pkt *p, __u32 gen, __u32 sflags, struct nf_match *m)
{
	__u32 daddr = p->daddr.v4;
	struct nf_entry *e = nf_exact_v4(gen, sflags, daddr);
	if (e && nf_entry_live(e) && nf_entry_match(skb, p, gen, e, m)) {
		m->prefixlen = 32;
		__builtin_memcpy(m->addr, &daddr, 4);
		return 1;
	}
	struct nf_lpm_v4_key lk = { .prefixlen = 8 + 32, .gen = (__u8)gen };
	__builtin_memcpy(lk.addr, &daddr, 4);
#pragma unroll
	for (int i = 0; i < NF_LPM_EXPIRED_HOPS; i++) {
		e = bpf_map_lookup_elem(&nf_v4_lpm, &lk);
		if (!e)
			return 0;
		if (nf_entry_live(e) && nf_entry_match(skb, p, gen, e, m)) {
			m->prefixlen = e->prefixlen;
			__builtin_memcpy(m->addr, &daddr, 4);
			return 1;
		}
		if (e->prefixlen == 0)
			return 0;
		lk.prefixlen = 8 + e->prefixlen - 1; /* look for a shorter prefix that matches */
	}
	return NF_MATCH_DEPTH;
}

static __always_inline int nf_lookup_v6(struct __sk_buff *skb, struct nf_pkt *p, __u32 gen, __u32 sflags, struct nf_match *m)
{
	const __u8 *daddr = p->daddr.v6;
	struct nf_entry *e = nf_exact_v6(gen, sflags, daddr);
	if (e && nf_entry_live(e) && nf_entry_match(skb, p, gen, e, m)) {
		m->prefixlen = 128;
		__builtin_memcpy(m->addr, daddr, 16);
		return 1;
	}
	struct nf_lpm_v6_key lk = { .prefixlen = 8 + 128, .gen = (__u8)gen };
	__builtin_memcpy(lk.addr, daddr, 16);
#pragma unroll
	for (int i = 0; i < NF_LPM_EXPIRED_HOPS; i++) {
		e = bpf_map_lookup_elem(&nf_v6_lpm, &lk);
		if (!e)
			return 0;
		if (nf_entry_live(e) && nf_entry_match(skb, p, gen, e, m)) {
			m->prefixlen = e->prefixlen;
			__builtin_memcpy(m->addr, daddr, 16);
			return 1;
		}
		if (e->prefixlen == 0)
			return 0;
		lk.prefixlen = 8 + e->prefixlen - 1;
	}
	return NF_MATCH_DEPTH;
}

/* A match in a host-wide protected trie pair (deny = 0: protected, 1: protected-deny), scoped to
 * its protocol and port. A global function. */
__noinline int nf_protected_match(struct __sk_buff *skb, struct nf_pkt *p, int deny)
{
	struct nf_protected *v;
	if (!p)
		return 0;
	if (p->family == 4) {
		struct nf_prot_v4_key k = { .prefixlen = 32 };
		__builtin_memcpy(k.addr, &p->daddr.v4, 4);
		v = bpf_map_lookup_elem(deny ? (void *)&nf_pdeny_v4 : (void *)&nf_protected_v4, &k);
	} else {
		struct nf_prot_v6_key k = { .prefixlen = 128 };
		__builtin_memcpy(k.addr, p->daddr.v6, 16);
		v = bpf_map_lookup_elem(deny ? (void *)&nf_pdeny_v6 : (void *)&nf_protected_v6, &k);
	}
	if (!v)
		return 0;
	if (v->flags & NF_PROT_FROM_PORT) { /* the allow set only (the loader refuses it in the deny set) */
		if (nf_from_port(skb, p, v->port))
			return 1;
		if (!(v->flags & NF_PROT_ALSO_TO))
			return 0;
	}
	if (v->port == 0 && v->proto == 0)
		return 1;
	nf_l4(skb, p);
	return (v->proto == 0 || v->proto == p->l4_proto) && (v->port == 0 || v->port == p->dport);
}

/* ---------------------------------------------------------------- the verdict */

/*
 * Returns 1 = pass, 0 = drop, for an IP packet (family 4 or 6) parsed by the program's front end
 * (the TC program's L2 front end, guards.h nf_l2(), has already dropped spoofed source MACs, bad
 * ARP and non-IP frames). The order, documented in docs/operator-guide.md:
 *   c. malformed (truncated header, IPv4-mapped IPv6 destination; in e: an IPv6 extension
 *      header chain longer than 4)                                      → drop, every mode
 *   d. another tenant's DNS server (DNS address, port in the range)     → drop, every mode
 *   e. always allowed: own DNS address+port, ND (133/135/136, hop limit 255, link-scope
 *      destination), DHCP/DHCPv6/MLD where enabled; RA/redirect        → drop, every mode (RA guard)
 *   f. the protected(-allow) set                                        → pass (lockout safety)
 *   g. the protected-deny set                                           → drop, every mode
 *   h. mode disabled → pass; block-all → drop
 *   i. policy lookup (exact /32,/128 hash — small or large, see netfence.h — then LPM; an entry whose
 *      scoped rules do not match the packet is stepped over like an expired one; more than
 *      NF_LPM_EXPIRED_HOPS steps → drop, "policy-depth"): deny → drop; allow → pass, except that
 *   j. loopback and link-local destinations are closed unless an allow entry inside their range
 *      matched or the attachment opens them                            → drop ("local-closed")
 *   k. denylist → pass; allowlist → drop
 * Keep (NF_SETTING_KEEP): a packet that i-k would drop passes when it belongs to a TCP connection seen
 * allowed (segment.h nf_kept: "kept-established"); block-all (h) still severs. Allowed TCP packets of
 * i and k stamp their connection.
 * Drops in c-g are guards: enforced in audit mode too. Audit applies to h-k.
 * daemon/src/explain/verdict.ts applies the same order to the maps read back (netfenced explain):
 * a change here changes it there.
 */
static __always_inline int nf_decide(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st)
{
	__u32 gen = st->active_gen & 1;
	struct nf_gen_settings s = st->gen[gen];
	struct nf_match m = { .prefixlen = NF_NO_RULE };
	__u8 reason = NF_REASON_MALFORMED;
	int matched = 0;

	if (p->malformed) /* (IPv4-mapped IPv6 destinations: in nf_special, which has the address loaded) */
		return nf_guard_drop(skb, p, st, NF_REASON_MALFORMED);
	int sp = nf_special(skb, p, st, &reason);
	if (sp == NF_SPECIAL_PASS)
		return nf_pass_flow(skb, p, st, NF_RULE_ALWAYS_ALLOWED, NF_REASON_ALWAYS_ALLOWED, 0);
	if (sp == NF_SPECIAL_DROP)
		return nf_guard_drop(skb, p, st, reason);
	if (st->protected_n && nf_protected_match(skb, p, 0))
		return nf_pass_flow(skb, p, st, NF_RULE_PROTECTED, NF_REASON_PROTECTED, 0);
	if (st->pdeny_n && nf_protected_match(skb, p, 1))
		return nf_guard_drop(skb, p, st, NF_REASON_PROTECTED_DENY);

	__u32 rule = NF_RULE_BLOCK_ALL;
	if (s.mode == NF_MODE_DISABLED)
		return nf_pass_flow(skb, p, st, NF_RULE_DISABLED, NF_REASON_MODE_DISABLED, 0);
	if (s.mode == NF_MODE_BLOCK_ALL) {
		reason = NF_REASON_MODE_BLOCK_ALL;
		goto block;
	}
	if (p->family == 4)
		matched = nf_lookup_v4(skb, p, gen, s.flags, &m);
	else
		matched = nf_lookup_v6(skb, p, gen, s.flags, &m);
	if (matched == NF_MATCH_DEPTH) {
		matched = 0;
		reason = NF_REASON_POLICY_DEPTH;
		rule = NF_RULE_POLICY_DEPTH;
		goto policy_block;
	}
	if (matched && (m.flags & NF_ENTRY_DENY)) { /* deny wins at equal prefix length */
		reason = NF_REASON_DENY_CIDR;
		rule = m.rule_id;
		goto policy_block;
	}
	__u8 local = nf_local_closed(p, st->guards);
	if (matched && (m.flags & NF_ENTRY_ALLOW) && m.prefixlen >= local) {
		nf_pass_flow(skb, p, st, m.rule_id, NF_REASON_ALLOW_CIDR, &m);
		if (s.flags & NF_SETTING_KEEP)
			nf_keep_stamp(skb, p, st);
		return 1;
	}
	matched = 0;
	if (local) {
		reason = NF_REASON_LOCAL_CLOSED;
		rule = NF_RULE_LOCAL_CLOSED;
		goto policy_block;
	}
	if (s.mode == NF_MODE_DENYLIST) {
		nf_pass_flow(skb, p, st, NF_RULE_DEFAULT_ALLOW, NF_REASON_DENYLIST_DEFAULT, 0);
		if (s.flags & NF_SETTING_KEEP)
			nf_keep_stamp(skb, p, st);
		return 1;
	}
	reason = NF_REASON_NOT_IN_ALLOWLIST;
	rule = NF_RULE_DEFAULT_DENY;
policy_block:
	/* Keep: only a packet the policy drops needs the check (block-all jumped past it). */
	if ((s.flags & NF_SETTING_KEEP) && nf_kept(skb, p, st))
		return nf_pass_flow(skb, p, st, NF_RULE_KEPT, NF_REASON_KEPT, 0);
block:
	nf_hit(rule); /* audited packets count against the rule that would have dropped them */
	if (s.flags & NF_SETTING_AUDIT) {
		nf_count(NF_CNT_AUDITED);
		nf_report(skb, p, st, NF_VR(NF_VERDICT_AUDIT, reason), matched ? &m : 0);
		return 1;
	}
	nf_count(NF_CNT_BLOCKED);
	nf_report(skb, p, st, NF_VR(NF_VERDICT_BLOCKED, reason), matched ? &m : 0);
	return 0;
}

/* The per-attachment state; always present (a one-entry array), written by the loader before attach. */
static __always_inline struct nf_state *nf_state_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&nf_state, &zero);
}

#endif /* NETFENCE_POLICY_H */
