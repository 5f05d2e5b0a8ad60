// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* prog-run.h — what prog-run.c (load, run, main) and replace-cost.c (the replace diagnostics) share. */
#ifndef PROG_RUN_H
#define PROG_RUN_H
#include <linux/types.h>
#include "bench.h"

#define MAX_ROUNDS 64

/* Prints "prog-run: what: strerror(err)" and returns 1 (the exit status). */
int die(const char *what, int err);
/* Reads an entries file; returns the records (inside *buf, to be freed) or NULL. */
const struct bench_file_entry *read_entries(const char *path, void **buf, __u32 *count);

int cmd_mim_cost(int argc, char **argv);
int cmd_replace_cost(int argc, char **argv);
#endif
