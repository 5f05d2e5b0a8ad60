// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * prog-run — the per-packet benchmark's kernel helper (bench/datapath/run.ts drives it).
 *
 *   prog-run load <obj.bpf.o> <prog-pin-path> [<entries-file>]
 *       Loads a baseline object (noop.bpf.o, single_lpm.bpf.o, hash_lpm*.bpf.o), fills its maps
 *       (/32 and /128 into "exact_v4" / "exact_v6" where the object has them, everything else
 *       into the LPM tries "lpm_v4" / "lpm_v6") from <entries-file> (bench.h: a __u32 count, then struct bench_file_entry[];
 *       written by entries-file.ts) and pins the
 *       program; the maps live as long as the pinned program. Prints {"entries":N}.
 *
 *   prog-run run <repeat> <rounds> <pkt-name>=<hex> ... -- <prog-name>=<pinned-prog> ...
 *       BPF_PROG_TEST_RUN with `repeat` iterations of every packet on every program, `rounds`
 *       times, interleaved (round-robin over programs and packets) so drift hits all alike.
 *       Prints one JSON object: {"results":[{"prog":..,"pkt":..,"retval":..,"ns":[..]}]}
 *       where ns[i] is the kernel's average run time per packet of round i (integer ns, as the
 *       kernel reports it) and wall[i] the syscall's wall-clock time divided by `repeat`
 *       (fractional ns; includes the one-off skb set-up, < 0.01 ns at repeat 1e6).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "bench.h"
#include "prog-run.h"

#define MAX_ITEMS 32

int die(const char *what, int err)
{
	fprintf(stderr, "prog-run: %s: %s\n", what, strerror(err));
	return 1;
}

static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = n > 0 ? (size_t)n : 0;
	return buf;
}

/* Reads an entries file; returns the records (inside *buf, to be freed) or NULL. */
const struct bench_file_entry *read_entries(const char *path, void **buf, __u32 *count)
{
	size_t len;
	*buf = read_file(path, &len);
	if (!*buf || len < 4)
		return NULL;
	memcpy(count, *buf, 4);
	if ((len - 4) / sizeof(struct bench_file_entry) < *count)
		return NULL;
	return (const struct bench_file_entry *)((const char *)*buf + 4);
}

static int fill_lpm(struct bpf_object *obj, const char *entries_path, unsigned *written)
{
	void *buf;
	__u32 count;
	const struct bench_file_entry *es = read_entries(entries_path, &buf, &count);
	if (!es)
		return die(entries_path, buf ? EINVAL : errno);
	int fd4 = bpf_object__find_map_fd_by_name(obj, "lpm_v4");
	int fd6 = bpf_object__find_map_fd_by_name(obj, "lpm_v6");
	if (fd4 < 0 || fd6 < 0)
		return die("object has no lpm_v4/lpm_v6 maps", ENOENT);
	/* Objects with exact-match hashes (hash_lpm*.bpf.o) take /32 and /128 entries there. */
	int xfd4 = bpf_object__find_map_fd_by_name(obj, "exact_v4");
	int xfd6 = bpf_object__find_map_fd_by_name(obj, "exact_v6");
	for (__u32 i = 0; i < count; i++) {
		const struct bench_file_entry *e = &es[i];
		struct bench_entry v = { .rule_id = e->rule_id, .flags = e->flags, .prefixlen = e->prefixlen };
		int err;
		if (e->family == 4 && e->prefixlen == 32 && xfd4 >= 0) {
			err = bpf_map_update_elem(xfd4, e->addr, &v, BPF_ANY);
		} else if (e->family == 6 && e->prefixlen == 128 && xfd6 >= 0) {
			err = bpf_map_update_elem(xfd6, e->addr, &v, BPF_ANY);
		} else if (e->family == 4) {
			struct bench_lpm_v4_key k = { .prefixlen = e->prefixlen };
			memcpy(k.addr, e->addr, 4);
			err = bpf_map_update_elem(fd4, &k, &v, BPF_ANY);
		} else {
			struct bench_lpm_v6_key k = { .prefixlen = e->prefixlen };
			memcpy(k.addr, e->addr, 16);
			err = bpf_map_update_elem(fd6, &k, &v, BPF_ANY);
		}
		if (err)
			return die("filling the LPM trie", errno);
	}
	*written = count;
	free(buf);
	return 0;
}

static int cmd_load(int argc, char **argv)
{
	if (argc < 2)
		return die("usage: load <obj> <pin> [entries]", EINVAL);
	struct bpf_object *obj = bpf_object__open_file(argv[0], NULL);
	if (!obj)
		return die(argv[0], errno);
	if (bpf_object__load(obj))
		return die("loading the object", errno);
	struct bpf_program *prog = bpf_object__next_program(obj, NULL);
	if (!prog)
		return die("object has no program", ENOENT);
	unsigned written = 0;
	if (argc > 2 && fill_lpm(obj, argv[2], &written))
		return 1;
	if (bpf_obj_pin(bpf_program__fd(prog), argv[1]))
		return die(argv[1], errno);
	printf("{\"entries\":%u}\n", written);
	bpf_object__close(obj);
	return 0;
}

struct pkt {
	const char *name;
	unsigned char data[256];
	size_t len;
};
struct prog {
	const char *name;
	int fd;
};

static int parse_hex(const char *hex, unsigned char *out, size_t cap, size_t *len)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	*len = n / 2;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	if (argc < 4)
		return die("usage: run <repeat> <rounds> pkt=hex... -- prog=pin...", EINVAL);
	unsigned repeat = (unsigned)strtoul(argv[0], NULL, 10);
	unsigned rounds = (unsigned)strtoul(argv[1], NULL, 10);
	if (!repeat || !rounds || rounds > MAX_ROUNDS)
		return die("bad repeat/rounds", EINVAL);
	static struct pkt pkts[MAX_ITEMS];
	static struct prog progs[MAX_ITEMS];
	unsigned npkts = 0, nprogs = 0;
	int i = 2;
	for (; i < argc && strcmp(argv[i], "--"); i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq || npkts == MAX_ITEMS)
			return die("bad packet argument", EINVAL);
		*eq = 0;
		pkts[npkts].name = argv[i];
		if (parse_hex(eq + 1, pkts[npkts].data, sizeof(pkts[npkts].data), &pkts[npkts].len))
			return die("bad packet hex", EINVAL);
		npkts++;
	}
	for (i++; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq || nprogs == MAX_ITEMS)
			return die("bad program argument", EINVAL);
		*eq = 0;
		progs[nprogs].name = argv[i];
		progs[nprogs].fd = bpf_obj_get(eq + 1);
		if (progs[nprogs].fd < 0)
			return die(eq + 1, errno);
		nprogs++;
	}
	if (!npkts || !nprogs)
		return die("need packets and programs", EINVAL);
	static __u32 ns[MAX_ITEMS][MAX_ITEMS][MAX_ROUNDS];
	static double wall[MAX_ITEMS][MAX_ITEMS][MAX_ROUNDS];
	static __u32 retval[MAX_ITEMS][MAX_ITEMS];
	for (unsigned r = 0; r < rounds; r++)
		for (unsigned k = 0; k < npkts; k++)
			for (unsigned p = 0; p < nprogs; p++) {
				LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkts[k].data, .data_size_in = (__u32)pkts[k].len,
					    .repeat = repeat);
				struct timespec t0, t1;
				clock_gettime(CLOCK_MONOTONIC, &t0);
				if (bpf_prog_test_run_opts(progs[p].fd, &o))
					return die("BPF_PROG_TEST_RUN", errno);
				clock_gettime(CLOCK_MONOTONIC, &t1);
				wall[p][k][r] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / repeat;
				ns[p][k][r] = o.duration;
				retval[p][k] = o.retval;
			}
	printf("{\"results\":[");
	for (unsigned p = 0; p < nprogs; p++)
		for (unsigned k = 0; k < npkts; k++) {
			printf("%s{\"prog\":\"%s\",\"pkt\":\"%s\",\"retval\":%d,\"ns\":[", p || k ? "," : "", progs[p].name,
			       pkts[k].name, (int)retval[p][k]);
			for (unsigned r = 0; r < rounds; r++)
				printf("%s%u", r ? "," : "", ns[p][k][r]);
			printf("],\"wall\":[");
			for (unsigned r = 0; r < rounds; r++)
				printf("%s%.3f", r ? "," : "", wall[p][k][r]);
			printf("]}");
		}
	printf("]}\n");
	return 0;
}

int main(int argc, char **argv)
{
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	if (argc >= 2 && !strcmp(argv[1], "load"))
		return cmd_load(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "run"))
		return cmd_run(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "mim-cost"))
		return cmd_mim_cost(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "replace-cost"))
		return cmd_replace_cost(argc - 2, argv + 2);
	fprintf(stderr, "usage: prog-run load <obj> <pin> [entries] | run <repeat> <rounds> pkt=hex... -- prog=pin... | mim-cost <reps> | replace-cost <entries> <reps>\n");
	return 2;
}
