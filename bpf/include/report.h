/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * report.h — per-CPU counters, blocked/audited packet events (throttled in the kernel) and allowed-flow events.
 * Included by policy.h after the maps and packet.h.
 */
#ifndef NETFENCE_REPORT_H
#define NETFENCE_REPORT_H

struct nf_match {
	__u8 flags;
	__u8 prefixlen;
	__u8 addr[16];
	__u32 rule_id; /* the matching entry's rule_id */
};

static __always_inline void nf_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&nf_counters, &idx);
	if (c)
		*c += 1; /* per-CPU value: no atomics needed */
}

/* One hit of rule `rule` (netfence.h "rule hit counts"): per-CPU, so a plain add; an id beyond
 * the array counts in the overflow bucket. The last-hit time costs a helper call, so it is taken
 * once per jiffy per rule and CPU: bpf_jiffies64() is inlined by the verifier (a load) on 64-bit
 * JITs, and the coarse clock it gates has a jiffy's resolution anyway. (Measured: a clock call per
 * packet cost +12-18 ns; docs/benchmarks.md.) */
static __always_inline void nf_hit(__u32 rule)
{
	if (rule >= NF_HITS_CAP)
		rule = NF_HITS_OVERFLOW;
	struct nf_hit *h = bpf_map_lookup_elem(&nf_hits, &rule);
	if (h) {
		h->packets += 1;
		__u64 j = bpf_jiffies64();
		if (h->last_jiffies != j) {
			h->last_jiffies = j;
			h->last_ns = bpf_ktime_get_coarse_ns();
		}
	}
}

/* Writes one event to the shared ring buffer (a full buffer counts as lost). */
static __always_inline void nf_emit(const struct nf_state *st, const struct nf_pkt *p, __u32 vr, const struct nf_match *m,
				   __u64 suppressed, __u64 now, __u16 sport, __u16 dport, __u8 proto, const __u8 *saddr,
				   const __u8 *daddr)
{
	struct nf_event *ev = bpf_ringbuf_reserve(&nf_events, sizeof(*ev), 0);
	if (!ev) {
		nf_count(NF_CNT_EVENTS_LOST);
		return;
	}
	ev->ts_ns = now;
	ev->suppressed = suppressed;
	ev->slot = st->slot;
	ev->sport = sport;
	ev->dport = dport;
	ev->family = p->family;
	ev->proto = proto;
	ev->verdict = vr >> 8;
	ev->reason = vr & 0xff;
	ev->direction = 1;
	ev->rule_prefixlen = m ? m->prefixlen : NF_NO_RULE;
	ev->_pad[0] = ev->_pad[1] = 0;
	__builtin_memcpy(ev->saddr, saddr, 16);
	__builtin_memcpy(ev->daddr, daddr, 16);
	if (m)
		__builtin_memcpy(ev->rule_addr, m->addr, 16);
	else
		__builtin_memset(ev->rule_addr, 0, 16);
	ev->uid = p->owner_done ? p->uid : NF_OWNER_UNKNOWN;
	ev->gid = p->owner_done ? p->gid : NF_OWNER_UNKNOWN;
	bpf_ringbuf_submit(ev, 0);
}

/*
 * One event per (slot, owner, source, destination, port, protocol, reason) per 10 s: a flood of
 * drops to the same destination is first folded per CPU in nf_recent (before the dearer L4 reads
 * and throttle lookup), then in the shared LRU throttle. L2 frames (family 0) carry MACs and the
 * ethertype instead (netfence.h). The owner (cgroup programs: the socket's uid) is read first, so
 * that neither fold mixes two users' attempts: each gets its own event and `suppressed` count.
 * A global function: only dropped and audited packets get here.
 */
#define NF_VR(verdict, reason) (((__u32)(verdict) << 8) | (reason)) /* a BPF function takes at most 5 arguments */

__noinline int nf_report(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st, __u32 vr,
			 const struct nf_match *m)
{
	__u8 reason = vr & 0xff;
	if (!p || !st)
		return 0;
#ifdef NF_NO_EVENTS
	/* bench/events builds the program once more with this defined: the same program without its
	 * event path (fold, throttle, ring buffer), to measure what that path costs per packet. */
	/* Read the arguments, so that the compiler still passes them (the verifier wants the context
	 * in r1 of a global function) and the callers still build them: only the event path is gone. */
	volatile __u32 keep = skb->len + (m ? m->prefixlen : 0) + (vr >> 8) + reason;
	(void)keep;
	return 0;
#endif
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 folded = 0;
	if (p->family)
		nf_owner(skb, p); /* TC: constants; cgroup: read once per packet (the scoped lookup may have) */
	__u32 uid = p->owner_done ? p->uid : NF_OWNER_UNKNOWN; /* the event's uid (nf_emit) */
	struct nf_recent *r = bpf_map_lookup_elem(&nf_recent, &zero);
	if (r) {
		const __u64 *a = (const __u64 *)r->daddr, *b = (const __u64 *)p->daddr.v6;
		if (now - r->ts_ns < NF_RECENT_NS && r->reason == reason && r->proto == p->proto && r->family == p->family &&
		    r->uid == uid && a[0] == b[0] && a[1] == b[1]) {
			r->folded++;
			return 0;
		}
		folded = r->folded;
		r->folded = 0;
		r->ts_ns = now;
		r->reason = reason;
		r->proto = p->proto;
		r->family = p->family;
		r->uid = uid;
		__builtin_memcpy(r->daddr, p->daddr.v6, 16);
	}
	struct nf_throttle_key tk = {};
	__u8 proto = 0;
	__u16 sport = 0, dport = p->dport;
	if (p->family) {
		nf_l4(skb, p);
		proto = p->l4_proto;
		sport = p->sport;
		dport = p->dport;
	}
	tk.slot = st->slot;
	tk.dport = dport;
	tk.proto = proto;
	tk.reason = reason;
	tk.uid = uid;
	if (p->family == 4) {
		bpf_skb_load_bytes(skb, p->l3_off + 12, tk.saddr, 4);
		__builtin_memcpy(tk.daddr, &p->daddr.v4, 4);
	} else if (p->family == 6) {
		bpf_skb_load_bytes(skb, p->l3_off + 8, tk.saddr, 16);
		__builtin_memcpy(tk.daddr, p->daddr.v6, 16);
	} else if (!(st->guards & NF_GUARD_L3_DEVICE)) { /* an L2 frame: its MACs (an L3 device has none) */
		bpf_skb_load_bytes(skb, 6, tk.saddr, 6);
		__builtin_memcpy(tk.daddr, p->daddr.mac, 6);
	}
	__u64 suppressed = 0;
	if (r) {
		/* The packets folded on this CPU belong to the flow that started the fold, not to this
		 * one: add them to that flow's throttle record, so its next event carries them. Carried
		 * by this event instead only when that record was evicted (never lost). */
		if (folded) {
			struct nf_throttle_val *pv = bpf_map_lookup_elem(&nf_throttle, &r->tk);
			if (pv)
				__sync_fetch_and_add(&pv->suppressed, folded);
			else
				suppressed = folded;
		}
		r->tk = tk;
	}
	struct nf_throttle_val *tv = bpf_map_lookup_elem(&nf_throttle, &tk);
	if (tv) {
		if (now - tv->last_ns < NF_EVENT_THROTTLE_NS) {
			__sync_fetch_and_add(&tv->suppressed, 1 + suppressed);
			return 0;
		}
		suppressed += tv->suppressed;
		tv->suppressed = 0;
		tv->last_ns = now;
	} else {
		struct nf_throttle_val nv = { .last_ns = now, .suppressed = 0 };
		bpf_map_update_elem(&nf_throttle, &tk, &nv, BPF_ANY);
	}
	nf_emit(st, p, vr, m, suppressed, now, sport, dport, proto, tk.saddr, tk.daddr);
	return 0;
}

/* A drop by a guard (malformed, spoofed, non-IP, other tenant's DNS, RA guard, protected-deny):
 * enforced in every mode and also in audit mode, which only concerns the policy. */
static __always_inline int nf_guard_drop(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st, __u8 reason)
{
	nf_count(NF_CNT_BLOCKED);
	nf_hit(reason == NF_REASON_PROTECTED_DENY ? NF_RULE_PROTECTED_DENY : NF_RULE_GUARD);
	nf_report(skb, p, st, NF_VR(NF_VERDICT_BLOCKED, reason), 0);
	return 0;
}

/* The flow of an IP packet (slot, family, L4 protocol, addresses and ports): nf_flows' key. */
static __always_inline void nf_flows_key_of(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st,
					    struct nf_flows_key *k)
{
	nf_l4(skb, p);
	k->slot = st->slot;
	k->family = p->family;
	k->proto = p->l4_proto;
	k->sport = p->sport;
	k->dport = p->dport;
	if (p->family == 4) {
		bpf_skb_load_bytes(skb, p->l3_off + 12, k->saddr, 4);
		__builtin_memcpy(k->daddr, &p->daddr.v4, 4);
	} else {
		bpf_skb_load_bytes(skb, p->l3_off + 8, k->saddr, 16);
		__builtin_memcpy(k->daddr, p->daddr.v6, 16);
	}
}

/*
 * An allowed packet of an attachment with allowed-flow events (netfence.h "allowed-flow events"):
 * reported when its flow was not seen within NF_FLOW_WINDOW_NS. No fold or throttle: the flow table
 * is the rate limit (one event per flow per window); the ring buffer bounds the rest, and a full
 * buffer is counted as lost like any event. A global function: only such attachments get here.
 */
__noinline int nf_flow(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st, __u32 vr,
		       const struct nf_match *m)
{
	if (!p || !st)
		return 0;
	struct nf_flows_key k __attribute__((aligned(8))) = {}; /* compared as 8-byte words below */
	nf_flows_key_of(skb, p, st, &k);
	/* The coarse clock (a plain read) is precise enough for a window of seconds. */
	__u64 now = bpf_ktime_get_coarse_ns();
	__u32 zero = 0;
	struct nf_flow_recent *r = bpf_map_lookup_elem(&nf_flow_recent, &zero);
	if (r) {
		const __u64 *a = (const __u64 *)&r->key, *b = (const __u64 *)&k;
		if (now - r->ts_ns < NF_FLOW_REFRESH_NS && a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] &&
		    a[4] == b[4] && ((const __u32 *)a)[10] == ((const __u32 *)b)[10])
			return 0; /* this CPU checked this flow in the table less than a second ago */
		r->key = k;
		r->ts_ns = now;
	}
	__u64 *seen = bpf_map_lookup_elem(&nf_flows, &k);
	if (seen) {
		__u64 last = *seen;
		if (now - last < NF_FLOW_WINDOW_NS) {
			if (now - last >= NF_FLOW_REFRESH_NS)
				*seen = now; /* still active: the window restarts */
			return 0;
		}
		*seen = now;
	} else {
		bpf_map_update_elem(&nf_flows, &k, &now, BPF_ANY);
	}
	nf_owner(skb, p);
	nf_emit(st, p, vr, m, 0, bpf_ktime_get_ns(), k.sport, k.dport, k.proto, k.saddr, k.daddr);
	return 0;
}

/* A pass decided by rule `rule`, for an IP packet: reported as an allowed flow when the attachment
 * asks (one flags test otherwise). */
static __always_inline int nf_pass_flow(struct __sk_buff *skb, struct nf_pkt *p, const struct nf_state *st, __u32 rule,
					__u8 reason, const struct nf_match *m)
{
	nf_count(NF_CNT_ALLOWED);
	nf_hit(rule);
	if (st->guards & NF_GUARD_ALLOWED_FLOWS)
		nf_flow(skb, p, st, NF_VR(NF_VERDICT_ALLOWED, reason), m);
	return 1;
}

/* A pass decided by rule `rule` (an entry's rule id or a reserved one). */
static __always_inline int nf_pass(__u32 rule)
{
	nf_count(NF_CNT_ALLOWED);
	nf_hit(rule);
	return 1;
}

#endif /* NETFENCE_REPORT_H */
