/*
 * bench_common.c — see bench_common.h.
 */
#include "bench_common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

uint64_t next_offset(uint64_t size)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (rng % (size / BLOCK)) * BLOCK;
}

int die(const char *what)
{
	perror(what);
	return 1;
}

int bench_open(struct bench_target *t, int argc, char **argv, int flags)
{
	t->mode = argv[1];
	t->c = NULL;
	t->f = NULL;
	t->fd = -1;
	if (!strncmp(t->mode, "ntfsd-", 6)) {
		struct ntfsc_stat st;

		if (argc < 5)
			return 2;
		t->pattern = argv[4];
		if (argc > 5)
			t->ops = strtoull(argv[5], NULL, 10);
		t->c = ntfsc_connect(argv[2]);
		if (!t->c)
			return die("ntfsc_connect");
		t->f = ntfsc_open(t->c, argv[3], flags);
		if (!t->f || ntfsc_fstat(t->f, &st))
			return die(argv[3]);
		t->size = st.size;
	} else {
		t->pattern = argv[3];
		if (argc > 4)
			t->ops = strtoull(argv[4], NULL, 10);
		t->fd = open(argv[2], flags);
		if (t->fd < 0)
			return die(argv[2]);
		t->size = (uint64_t)lseek(t->fd, 0, SEEK_END);
	}
	return 0;
}

void bench_close(struct bench_target *t)
{
	if (t->f)
		ntfsc_close(t->f);
	if (t->c)
		ntfsc_disconnect(t->c);
	if (t->fd >= 0)
		close(t->fd);
}
