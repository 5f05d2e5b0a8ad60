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
 *   generations.c  the generation/spill state machine of an attachment (struct nf_gens)
 *   tables.c       policy keys and entries, the exact→LPM spill, REPLACE, UPSERT/DELETE, SET_MODE
 *   dump.c         DUMP: what a pinned attachment is and enforces
 *   events.c       the shared ring buffer (EVENTS frames) and COUNTERS
 *   host.c         host-wide maps and the protected sets (PROTECTED)
 *   portguard.c    the DNS port guard (PORT_GUARD, PORT_UNGUARD)
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

enum { T_V4_EXACT, T_V4_LPM, T_V6_EXACT, T_V6_LPM, T_COUNT };
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

/* The generation/spill state of one attachment; changed only by the gens_* transitions. */
struct nf_gens {
	enum nf_retired retired;
	bool active_used; /* the active generation may hold keys (false only on a fresh LOAD's first) */
	bool spilled[2];  /* [v4, v6]: an exact entry of the family was ever stored in the LPM trie */
};

/* ---------------------------------------------------------------- attachments (registry.c) */

struct att {
	bool used;
	char id[NF_ID_LEN];
	int state_fd, counters_fd, prog_fd, link_fd;
	int table_fd[T_COUNT];
	struct nf_state *st; /* mmap of the state map */
	struct nf_gens gens;
};

/* ---------------------------------------------------------------- process-wide state */

struct loader_globals {
	char pin_root[256];
	char bpf_dir[256];
	bool hello;
	__u32 features;
	int events_fd, throttle_fd, prot_fd[2], pdeny_fd[2];
	__u32 protected_n; /* entries in the host-wide protected(-allow) set, mirrored into every nf_state */
	__u32 pdeny_n;     /* entries in the host-wide protected-deny set, likewise */
	struct ring_buffer *rb;
	struct att *atts;
	size_t n_atts;
	char errmsg[1024];
	char liblog[2048]; /* tail of libbpf's log for the current request */
	size_t liblog_len;
};
extern struct loader_globals g;

/* ---------------------------------------------------------------- main.c */

/* Records the request's error message (with strerror(err) appended) and returns -err (-EINVAL if 0). */
int fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int send_frame(__u32 seq, __u16 op, __s32 status, const void *payload, size_t len);
__s64 clock_ns(clockid_t c);
void close_fd(int *fd);

/* ---------------------------------------------------------------- registry.c */

enum { PIN_COUNT = 8 }; /* pin_names: the maps (as table_names for the tables), "prog", then "link" */
extern const char *const pin_names[PIN_COUNT];
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
void gens_spilled(struct nf_gens *s, bool v6);
int gens_prepare_fill(struct att *a);
void gens_fill_failed(struct nf_gens *s);
void gens_flipped(struct nf_gens *s);
/* Idle work: whether a retired generation waits to be emptied; empty one (main loop, stdin idle). */
bool gens_idle_due(void);
void gens_idle_work(void);

/* ---------------------------------------------------------------- tables.c */

int op_replace(const void *req, size_t len);
int op_entries(const void *req, size_t len, bool del);
int op_set_mode(const void *req, size_t len);

/* ---------------------------------------------------------------- dump.c */

int op_dump(const void *req, size_t len, void **reply, size_t *reply_len);

/* ---------------------------------------------------------------- events.c */

int events_open(void);
void pump_events(void);
int op_counters(const void *req, size_t len, void **reply, size_t *reply_len);

/* ---------------------------------------------------------------- host.c */

/* Opens the pinned host-wide map <pin_root>/_host/<name>, or creates and pins it. */
int host_map(const char *name, enum bpf_map_type type, __u32 ks, __u32 vs, __u32 max, __u32 flags);
void host_pin_path(char *out, size_t cap, const char *name);
int host_maps_open(void);
int op_protected(const void *req, size_t len);

/* ---------------------------------------------------------------- portguard.c */

int op_port_guard(const void *req, size_t len, void *reply, size_t *reply_len);
int op_port_unguard(void);

#endif
