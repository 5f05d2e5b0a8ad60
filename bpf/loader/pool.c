// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * pool.c — loaded, verified attachment instances kept ready, so the verifier is off the attach
 * path. One spare per kind (tc, cgroup): its program loaded against its own fresh maps (state,
 * counters, small exact hashes of NF_EXACT_CAP_DEFAULT, LPM tries, empty large-table slots) and the
 * pinned host-wide maps, nothing pinned, nothing attached, nf_state all zero (no magic). LOAD takes
 * the spare of its kind when it asks for the default capacity (the one-entry SubscribedAck, any
 * small initial policy), writes nf_state and pins it as if it had loaded it; otherwise it loads as
 * before. A worker thread builds the spares (after HELLO, and again after each one is taken), so
 * a verification runs beside the requests instead of inside one; a LOAD that finds its kind's
 * spare half built waits for it rather than starting a second verification. The spares are never pinned:
 * if this process exits they are freed with it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* the worker: a spare was taken */
	pthread_cond_t done; /* LOAD: the spare being built is ready (or failed) */
	bool started;
	bool ready[2];       /* [tc, cgroup] */
	bool building[2];
	struct att spare[2];
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER };

static int index_of(__u8 kind)
{
	return kind == NF_KIND_CGROUP ? 1 : 0;
}

static void *worker(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&pool.mu);
	for (;;) {
		int want = !pool.ready[0] ? 0 : !pool.ready[1] ? 1 : -1;
		if (want < 0) {
			pthread_cond_wait(&pool.wake, &pool.mu);
			continue;
		}
		pool.building[want] = true;
		pthread_mutex_unlock(&pool.mu);
		struct att a;
		memset(&a, 0, sizeof(a));
		a.state_fd = a.counters_fd = a.prog_fd = a.link_fd = a.hits_fd = -1;
		a.sk_fd = a.sock_prog_fd = a.link_sock_fd = -1;
		for (int t = 0; t < T_COUNT; t++)
			a.table_fd[t] = -1;
		for (int f = 0; f < FAM_COUNT; f++) {
			a.large_fd[f] = -1;
			for (int gen = 0; gen < NF_GENERATIONS; gen++)
				a.large[f][gen].fd = -1; /* free_att on failure closes only what is open */
		}
		int err = load_object("_spare", want ? NF_KIND_CGROUP : NF_KIND_TC, NF_EXACT_CAP_DEFAULT, &a);
		pthread_mutex_lock(&pool.mu);
		pool.building[want] = false;
		pthread_cond_broadcast(&pool.done);
		if (err) { /* LOAD keeps working without spares; say why once and stop trying */
			fprintf(stderr, "netfence-loader: no spare instances: %s\n", tls.errmsg);
			free_att(&a);
			break;
		}
		pool.spare[want] = a;
		pool.ready[want] = true;
	}
	pthread_mutex_unlock(&pool.mu);
	return NULL;
}

void pool_start(void)
{
	pthread_t t;
	pthread_attr_t attr;
	const char *env = getenv("NETFENCE_LOADER_POOL"); /* "0": no spares (benchmarks' before/after) */
	if (pool.started || (env && strcmp(env, "0") == 0) || pthread_attr_init(&attr))
		return;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pool.started = pthread_create(&t, &attr, worker, NULL) == 0;
	pthread_attr_destroy(&attr);
}

bool pool_take(__u8 kind, __u32 cap, struct att *a)
{
	if (cap != NF_EXACT_CAP_DEFAULT)
		return false;
	int i = index_of(kind);
	pthread_mutex_lock(&pool.mu);
	/* A spare half built is ready sooner than a load started now (and two verifications at once
	 * would share the cores): wait for it. */
	while (!pool.ready[i] && pool.building[i])
		pthread_cond_wait(&pool.done, &pool.mu);
	bool ok = pool.ready[i];
	if (ok) {
		struct att *s = &pool.spare[i];
		a->state_fd = s->state_fd;
		a->counters_fd = s->counters_fd;
		a->hits_fd = s->hits_fd;
		a->prog_fd = s->prog_fd;
		a->sk_fd = s->sk_fd;
		a->sock_prog_fd = s->sock_prog_fd;
		memcpy(a->table_fd, s->table_fd, sizeof(a->table_fd));
		memcpy(a->large_fd, s->large_fd, sizeof(a->large_fd));
		large_loaded(a, NF_EXACT_CAP_DEFAULT);
		memset(s, 0, sizeof(*s));
		pool.ready[i] = false;
		pthread_cond_signal(&pool.wake);
	}
	pthread_mutex_unlock(&pool.mu);
	return ok;
}
