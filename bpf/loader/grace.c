// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * grace.c — RCU grace periods off the request loop.
 *
 * A retired generation's keys may be deleted only once no packet can still look them up: a packet
 * that read active_gen just before the flip may, until every BPF program run that started before
 * the flip has finished. Programs run inside RCU read-side sections, and
 * membarrier(MEMBARRIER_CMD_GLOBAL) is synchronize_rcu(): it returns once that is so. It blocks its
 * caller for one grace period (0.1 ms on an idle 2-vCPU VM, ≈ 10 ms under load), so the waits run
 * on a thread of their own; the request loop never blocks on one unless a REPLACE needs its own
 * retired generation before the thread has passed it (grace_wait).
 *
 * Epochs: every retirement (a flip, an adoption) takes the next epoch (grace_retire, request loop
 * only). A grace period that starts after the retirement of epoch e passes every epoch <= e. The
 * thread takes the highest epoch asked for, waits, then publishes it as `passed`; the main loop
 * polls grace_fd() (an eventfd the thread writes after each wait) to resume its idle work.
 * Without the thread (pthread_create failed) every wait is synchronous, as before this file.
 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <linux/membarrier.h>

#include "loader.h"

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake;
	__u64 retired;   /* request loop only: the last epoch handed out */
	__u64 requested; /* under mu: the highest epoch a wait was asked for */
	__u64 passed;    /* under mu: every epoch <= passed is past a grace period */
	int efd;         /* the thread's completions, for the main loop's poll; -1 without the thread */
	bool tried;
} gp = { .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .efd = -1 };

/* Blocks until every BPF program run that started before now has finished. Without membarrier
 * (nohz_full kernels refuse the command) a wait far longer than any program run. */
static void wait_for_running_programs(void)
{
	if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
		struct timespec ts = { 0, 100 * 1000000l };
		nanosleep(&ts, NULL);
	}
}

static void publish(__u64 epoch)
{
	pthread_mutex_lock(&gp.mu);
	if (epoch > gp.passed)
		gp.passed = epoch;
	pthread_mutex_unlock(&gp.mu);
}

static void *grace_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&gp.mu);
	for (;;) {
		if (gp.requested <= gp.passed) {
			pthread_cond_wait(&gp.wake, &gp.mu);
			continue;
		}
		/* Every epoch <= target was retired (the flip stored) before it was requested, and
		 * so before this wait starts: one wait passes them all. */
		__u64 target = gp.requested;
		pthread_mutex_unlock(&gp.mu);
		wait_for_running_programs();
		publish(target);
		__u64 one = 1;
		if (write(gp.efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow in practice; the main loop also checks each turn */
		}
		pthread_mutex_lock(&gp.mu);
	}
	return NULL;
}

/* Starts the thread on first use; false if it cannot run (then waits are synchronous). */
static bool thread_running(void)
{
	if (!gp.tried) {
		gp.tried = true;
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		pthread_t t;
		if (fd >= 0 && pthread_create(&t, NULL, grace_thread, NULL) == 0) {
			pthread_detach(t);
			gp.efd = fd;
		} else {
			fprintf(stderr, "netfence-loader: no grace-period thread; retired generations wait synchronously\n");
			if (fd >= 0)
				close(fd);
		}
	}
	return gp.efd >= 0;
}

__u64 grace_retire(void)
{
	__u64 epoch = ++gp.retired;
	if (thread_running()) {
		pthread_mutex_lock(&gp.mu);
		gp.requested = epoch;
		pthread_cond_signal(&gp.wake);
		pthread_mutex_unlock(&gp.mu);
	}
	return epoch;
}

bool grace_passed(__u64 epoch)
{
	pthread_mutex_lock(&gp.mu);
	bool passed = epoch <= gp.passed;
	pthread_mutex_unlock(&gp.mu);
	return passed;
}

bool grace_async(void)
{
	return thread_running();
}

void grace_wait(__u64 epoch)
{
	if (grace_passed(epoch))
		return;
	/* This wait starts after every retirement so far: it passes all of them. */
	__u64 upto = gp.retired;
	wait_for_running_programs();
	publish(upto);
}

int grace_fd(void)
{
	return gp.efd;
}

void grace_drain(void)
{
	__u64 n;
	if (gp.efd >= 0 && read(gp.efd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing to drain */
	}
}
