/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * loader.h — what the files of netfence-loader share; internal, not a contract (the contract with
 * the daemon and the BPF programs is include/netfence.h).
 *
 *   main.c         the framed protocol on stdin/stdout, HELLO, dispatch, NOTIFY, the idle loop
 *   registry.c     the attachments this process knows, ids, pin paths
 *   objects.c      opening/loading the objects (skeletons), pinning, LOAD, ADOPT, UNLOAD
 *   links.c        attach methods (TCX link, clsact, cgroup link), detach, the attached check,
 *                  LINK, RELINK, the TCX probe
 *   generations.c  the generation state machine of an attachment (struct nf_gens), idle clearing
 *   grace.c        RCU grace periods on a thread of their own (epochs), so the request loop never waits
 *   tables.c       policy keys and entries, batches, REPLACE, UPSERT/DELETE, SET_MODE
 *   exact.c        the exact /32 /128 entries: small hash or large table per generation, growth
 *   large.c        the large tables' inner hashes: create, install, copy, clear, drop, adopt
 *   inspect.c      TABLES: where the active generation's entries are (counted from the maps)
 *   pool.c         spare loaded instances (a worker thread), so LOAD skips the verifier
 *   dump.c         DUMP: what a pinned attachment is and enforces
 *   lookup.c       LOOKUP: one destination looked up in the maps as the data path does (explain)
 *   events.c       the shared ring buffer (EVENTS frames) and COUNTERS
 *   host.c         host-wide maps and the protected sets (PROTECTED)
 *   hits.c         the per-rule hit counters (HITS, HITS_CLEAR)
 *   portguard.c    the DNS port guard (PORT_GUARD, PORT_UNGUARD)
 *   migrate.c      MIGRATE_BEGIN/FINISH/ABORT: re-creating pins of another layout beside the old ones
 *   tamper.c       VERIFY, RESTORE: tamper detection (attach point, pins, nf_state, content checksum)
 */
#ifndef NETFENCE_LOADER_H
#define NETFENCE_LOADER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <linux/bpf.h>
#include <bpf/libbpf.h>

#include "netfence.h"

#define ENOTSUPP 524 /* kernel-internal "operation not supported", seen by userspace as 524 */

/* ---------------------------------------------------------------- the four policy tables */

/* T_SCOPE: the scope table nf_scope (issue 15): an LPM trie with the generation at byte 4 like the
 * address tries, filled by wire entries of family NF_WIRE_SCOPE. */
enum { T_V4_EXACT, T_V4_LPM, T_V6_EXACT, T_V6_LPM, T_SCOPE, T_COUNT };
enum { FAM_V4, FAM_V6, FAM_COUNT };
extern const char *const table_names[T_COUNT]; /* also their pin names */
extern const __u32 table_key_size[T_COUNT];
extern const __u32 table_type[T_COUNT];
bool is_exact(int t);
__u32 key_gen(int t, const void *key); /* the generation a stored key belongs to */

/* ---------------------------------------------------------------- generations (generations.c) */

/* What the inactive generation of an attachment (the one the last flip retired) may hold. */
enum nf_retired {
	RETIRED_EMPTY,        /* no key: REPLACE may fill it at once */
	RETIRED_GRACE,        /* may hold keys a packet that read active_gen before the flip still looks up */
	RETIRED_STALE,        /* may hold keys, none in use any more: to be cleared */
	RETIRED_CLEAR_FAILED, /* like STALE, but its last clear failed: only the next REPLACE retries */
};

/* The generation state of one attachment; changed only by the gens_* transitions. */
struct nf_gens {
	enum nf_retired retired;
	bool active_used; /* the active generation may hold keys (false only on a fresh LOAD's first) */
	__u64 grace_epoch; /* GRACE: the retirement's epoch (grace.c) */
};

/* A large exact table: the inner hash installed in slot `gen` of a family's ARRAY_OF_MAPS. */
struct nf_large {
	int fd;     /* -1: the slot is empty */
	__u32 cap;  /* its max_entries */
	__u32 n;    /* keys it holds (an upper bound) */
	bool dirty; /* may hold keys: cleared before it is filled again */
};

/* Entries bound for one table: keys (table_key_size each) and values. */
struct batch {
	void *keys;
	struct nf_entry *vals;
	__u32 n;
};

/* ---------------------------------------------------------------- attachments (registry.c) */

struct att {
	bool used;
	char id[NF_ID_LEN];
	int state_fd, counters_fd, prog_fd, link_fd;
	int hits_fd; /* nf_hits (hits.c) */
	int sk_fd;   /* nf_sk: per-socket owner and keep stamp (issue 15) */
	int sock_prog_fd, link_sock_fd; /* cgroup: the cgroup/sock_create program and its link; -1 for tc */
	int table_fd[T_COUNT];
	int large_fd[FAM_COUNT];                 /* the ARRAY_OF_MAPS nf_v4_large, nf_v6_large */
	struct nf_large large[FAM_COUNT][NF_GENERATIONS];
	__u32 small_cap[FAM_COUNT];              /* max_entries of the small exact hashes */
	__u32 small_n[FAM_COUNT][NF_GENERATIONS]; /* keys of a generation in the small hash (upper bound) */
	bool large_idle_failed; /* the idle loop's last large-table work failed: wait for a REPLACE */
	struct nf_state *st; /* mmap of the state map */
	struct nf_gens gens;
	struct nf_state fixed;    /* tamper.c: nf_state's fixed fields as loaded or adopted */
	__u32 obj_id[15];         /* tamper.c: our objects' ids, by pin (PIN_COUNT, below); 0 = not read yet */
};

/* ---------------------------------------------------------------- process-wide state */

struct loader_globals {
	char pin_root[256];
	char bpf_dir[256];
	bool hello;
	__u32 features;
	int events_fd, throttle_fd, flows_fd, prot_fd[2], pdeny_fd[2];
	__u32 protected_n; /* entries in the host-wide protected(-allow) set, mirrored into every nf_state */
	__u32 pdeny_n;     /* entries in the host-wide protected-deny set, likewise */
	struct ring_buffer *rb;
	struct att *atts;
	size_t n_atts;
};
extern struct loader_globals g;

/* Per thread (the main loop and the pool's worker): the current request's error message and the
 * tail of libbpf's log. */
struct loader_tls {
	char errmsg[1024];
	char liblog[2048];
	size_t liblog_len;
};
extern __thread struct loader_tls tls;

/* ---------------------------------------------------------------- main.c */

/* Records the request's error message (with strerror(err) appended) and returns -err (-EINVAL if 0). */
int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int send_frame(__u32 seq, __u16 op, __s32 status, const void *payload, size_t len);
__s64 clock_ns(clockid_t c);
void close_fd(int *fd);

/* ---------------------------------------------------------------- registry.c */

/* pin_names: state, counters, the address tables (as table_names), v4_large, v6_large, "prog", "link", "hits",
 * then (layout 6) "scope" (table T_SCOPE), "sk", "prog_sock", "link_sock" (the last two: cgroup attachments) */
enum { PIN_COUNT = 15, PIN_V4_LARGE = 6, PIN_PROG = 8, PIN_LINK = 9, PIN_HITS = 10, PIN_SCOPE = 11, PIN_SK = 12,
       PIN_PROG_SOCK = 13, PIN_LINK_SOCK = 14 };
extern const char *const pin_names[PIN_COUNT];
_Static_assert(sizeof(((struct att *)0)->obj_id) / sizeof(__u32) == PIN_COUNT, "att.obj_id holds one id per pin");
bool valid_id(const char *id);
/* Copies a request's fixed-size id field into a NUL-terminated string. */
void id_of(char out[NF_ID_LEN], const char *raw);
/* Checks a request that is one attachment id (nf_id_req) and copies the id out. */
int id_request(const void *req, size_t len, const char *op, char id[NF_ID_LEN]);
void pin_path(char *out, size_t cap, const char *id, const char *name);
void unpin_all(const char *id);
struct att *find_att(const char *id);
/* The attachment a request names, or NULL with the error recorded ("<op> <id>: not loaded or adopted"). */
struct att *att_for(const char *raw_id, const char *op);
struct att *new_att(const char *id);
/* Unmaps and closes what `a` holds; the slot is free again. */
void free_att(struct att *a);

/* ---------------------------------------------------------------- objects.c */

/* The attachment `id` as this loader knows it, adopted from its pins first if it does not yet. */
int find_or_adopt(const char *id, struct att **out);
/* id_request, then find_or_adopt (ADOPT, DUMP). */
int adopted_request(const void *req, size_t len, const char *op, struct att **out);
/* Reads an object file for a skeleton to be opened over (OPEN_SKELETON); free() it after use.
 * `what` prefixes the error message ("LOAD <id>", "PORT_GUARD"). */
int read_object_file(const char *what, const char *path, void **data, size_t *size);
/* Opens the object of `kind` from bpf_dir, sizes its small exact hashes to `cap`, loads it into `a`
 * (fds only: no pins, no nf_state). Thread-safe (the pool's worker calls it). */
int load_object(const char *id, __u8 kind, __u32 cap, struct att *a);
int op_load(const void *req, size_t len);
int op_adopt(const void *req, size_t len, void *reply, size_t *reply_len);
int op_unload(const void *req, size_t len);

/*
 * Opens skeleton T (from bpftool gen skeleton, built from bpf/prebuilt) over the bytes of the
 * object file that HELLO's bpf_dir names, not over the copy compiled into this binary, so the
 * daemon's choice of objects holds as it always did; a file without the maps and programs the
 * skeleton names is refused when opened. `*out` owns nothing of `data`: free it after T__destroy.
 */
#define OPEN_SKELETON(T, data, size, out)                                                  \
	({                                                                                 \
		int _err = -ENOMEM;                                                        \
		struct T *_s = calloc(1, sizeof(*_s));                                     \
		if (_s && (_err = T##__create_skeleton(_s)) == 0) {                        \
			_s->skeleton->data = (data);                                       \
			_s->skeleton->data_sz = (size);                                    \
			_err = bpf_object__open_skeleton(_s->skeleton, NULL);              \
		}                                                                          \
		if (_err) {                                                                \
			T##__destroy(_s);                                                  \
			_s = NULL;                                                         \
		}                                                                          \
		*(out) = _s;                                                               \
		_err;                                                                      \
	})

/* ---------------------------------------------------------------- links.c */

bool probe_tcx(void);
__u32 prog_id_of(int fd);
void detach(struct att *a);
void detach_sock(struct att *a);
/* Whether the filter is really attached where nf_state says; `cgroup_id` (optional) receives a
 * cgroup link's cgroup. */
bool is_attached(struct att *a, __u64 *cgroup_id);
int op_link(const void *req, size_t len, void *reply, size_t *reply_len);
int op_relink(const void *req, size_t len, void *reply, size_t *reply_len);

/* ---------------------------------------------------------------- generations.c */

/* The transitions (table in generations.c). */
void gens_loaded(struct nf_gens *s);
void gens_adopted(struct nf_gens *s);
void gens_active_written(struct nf_gens *s);
/* Empties the retired generation before REPLACE fills it; want[f] = the large capacity the fill
 * will need for family f (0: the small hash), so a large table that fits is cleared for reuse. */
int gens_prepare_fill(struct att *a, const __u32 want[FAM_COUNT]);
void gens_fill_failed(struct nf_gens *s);
void gens_flipped(struct nf_gens *s);
/* Idle work: whether a retired generation waits to be emptied; empty one (main loop, stdin idle). */
bool gens_idle_due(void);
void gens_idle_work(void);

/* ---------------------------------------------------------------- grace.c */

/* A retirement (flip, adoption) happened: its epoch, and a grace period is asked for at once. */
__u64 grace_retire(void);
/* Whether the generation retired at `epoch` is past a grace period. */
bool grace_passed(__u64 epoch);
/* Blocks until it is (a synchronous wait when the thread has not passed it yet). */
void grace_wait(__u64 epoch);
/* Whether grace periods pass on the thread (false: the idle loop waits itself). */
bool grace_async(void);
/* The eventfd the thread signals after each grace period (-1 without the thread); drained by grace_drain. */
int grace_fd(void);
void grace_drain(void);

/* ---------------------------------------------------------------- tables.c */

/* bpf_map_update_batch where the kernel has it for this map type, element by element otherwise;
 * -E2BIG when the table is full. */
int write_batch(int fd, int t, const struct batch *b);
/* Deletes keys one by one (a missing key is fine). */
int delete_keys(int fd, int t, const void *keys, __u32 n);
/* Packs a generation's settings for the one 64-bit store packets see. */
void store_settings(struct att *a, __u32 gen, __u32 mode, __u32 flags);
int op_replace(const void *req, size_t len);
int op_entries(const void *req, size_t len, bool del);
int op_set_mode(const void *req, size_t len);

/* ---------------------------------------------------------------- exact.c */

bool uses_large(const struct att *a, int fam, __u32 gen);
/* The large capacity REPLACE needs for each family's exact batch into `gen` (0: the small hash fits). */
void exact_plan(const struct att *a, const struct batch b[T_COUNT], __u32 want[FAM_COUNT]);
/* REPLACE: fills the inactive generation's exact entries where exact_plan said; a large table
 * created for it comes back in new_fd[f] (installed by exact_install, after the other writes). */
int exact_fill(struct att *a, __u32 gen, const struct batch b[T_COUNT], const __u32 want[FAM_COUNT], int new_fd[FAM_COUNT]);
int exact_install(struct att *a, __u32 gen, const __u32 want[FAM_COUNT], int new_fd[FAM_COUNT], const struct batch b[T_COUNT]);
/* UPSERT into the active generation, growing its table (small → large, large → larger) when full. */
int exact_upsert(struct att *a, int fam, const struct batch *b);
int exact_delete(struct att *a, int fam, const struct batch *b);
/* Idle: the active generation's table is ≥ 3/4 full: grow it now, off the request path. */
bool exact_pregrow_due(const struct att *a, int fam);
int exact_pregrow(struct att *a, int fam);
/* The loader-owned settings bits (NF_SETTING_*_LARGE) of a generation. */
__u32 large_bits(const struct att *a, __u32 gen);

/* ---------------------------------------------------------------- large.c */

__u32 large_cap_for(__u32 n);
/* Whether a large table of capacity `cap` is reused for a fill that wants `want` (not smaller, not
 * more than 4 times bigger). */
bool large_fits(__u32 cap, __u32 want);
int large_create(int fam, __u32 cap);
/* Installs `fd` into slot `gen` (waits for an RCU grace period: the kernel's map-in-map update);
 * the table it replaces is closed. On error `fd` is closed and the slot is unchanged. */
int large_install(struct att *a, int fam, __u32 gen, int fd, __u32 cap, __u32 n);
int large_drop(struct att *a, int fam, __u32 gen);
int large_clear(struct att *a, int fam, __u32 gen);
/* Copies every entry of a large table (src_large) or the generation's keys of the small hash into dst. */
int large_copy(struct att *a, int fam, __u32 gen, bool src_large, int dst, __u32 *copied);
/* Keys in a large table, counted with batched reads. */
__u32 large_count(int fd, int fam);
/* Keys of the batch not yet in large table `fd` (exactly for small batches, else an upper bound). */
__u32 large_fresh(int fd, int fam, const struct batch *b);
/* Writes a batch of small-hash-format keys into a large table (keys without the generation). */
int large_write(int fd, int fam, const struct batch *b);
int large_delete(int fd, int fam, const struct batch *b);
/* After LOAD: no large tables. After ADOPT: reads the slots and counts the small hash. */
void large_loaded(struct att *a, __u32 small_cap);
int large_adopted(struct att *a);
/* Idle work of the large tables: drop what no generation uses, clear what is kept. */
bool large_idle_due(const struct att *a);
int large_idle_work(struct att *a);

/* ---------------------------------------------------------------- pool.c */

/* Starts the worker that keeps one spare instance per kind (after HELLO). */
void pool_start(void);
/* Moves a spare of `kind` into `a` when one is ready and `cap` is the default; false otherwise. */
bool pool_take(__u8 kind, __u32 cap, struct att *a);

/* ---------------------------------------------------------------- inspect.c */

int op_tables(const void *req, size_t len, void *reply, size_t *reply_len);

/* ---------------------------------------------------------------- dump.c */

int op_dump(const void *req, size_t len, void **reply, size_t *reply_len);

/* ---------------------------------------------------------------- lookup.c */

int op_lookup(const void *req, size_t len, void *reply, size_t *reply_len);

/* ---------------------------------------------------------------- events.c */

int events_open(void);
void pump_events(void);
int op_counters(const void *req, size_t len, void **reply, size_t *reply_len);

/* ---------------------------------------------------------------- hits.c */

int op_hits(const void *req, size_t len, void **reply, size_t *reply_len);
int op_hits_clear(const void *req, size_t len);

/* ---------------------------------------------------------------- host.c */

/* Opens the pinned host-wide map <pin_root>/_host/<name>, or creates and pins it. */
int host_map(const char *name, enum bpf_map_type type, __u32 ks, __u32 vs, __u32 max, __u32 flags);
void host_pin_path(char *out, size_t cap, const char *name);
int host_maps_open(void);
int op_protected(const void *req, size_t len);

/* ---------------------------------------------------------------- portguard.c */

int op_port_guard(const void *req, size_t len, void *reply, size_t *reply_len);
int op_port_unguard(void);

/* ---------------------------------------------------------------- migrate.c */

int op_migrate_begin(const void *req, size_t len, void *reply, size_t *reply_len);
int op_migrate_finish(const void *req, size_t len, void *reply, size_t *reply_len);
int op_migrate_abort(const void *req, size_t len);

/* ---------------------------------------------------------------- tamper.c */

/* Records what an attachment is as loaded or adopted (nf_state's fixed fields), for VERIFY. */
void tamper_note(struct att *a);
int op_verify(const void *req, size_t len, void **reply, size_t *reply_len);
int op_restore(const void *req, size_t len, void *reply, size_t *reply_len);

#endif
