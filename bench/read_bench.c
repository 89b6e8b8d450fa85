/*
 * read_bench — one read measurement, printed as MB/s on stdout.
 *
 *   read_bench ntfsd-pread SOCKET PATH seq|rand [OPS]
 *   read_bench ntfsd-mmap  SOCKET PATH seq|rand [OPS]
 *   read_bench file-pread  FILE        seq|rand [OPS]
 *
 * seq reads the whole file front to back in 1 MiB requests (ntfsd-mmap maps
 * the whole file once, which faults it in, and reads it through the
 * mapping); rand reads OPS (default 20000) 4 KiB blocks at page-aligned
 * offsets from a fixed pseudo-random sequence (ntfsd-mmap maps the whole
 * file once, which pins and faults it all in, and then reads the blocks from
 * the mapping: it prints the access rate and, second, the seconds the
 * mapping took, so neither hides in the other).  The same offsets are used on every path, so the
 * numbers compare like with like.  scripts/bench runs it on both sides.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ntfsc.h"

#define SEQ_CHUNK (1u << 20)
#define BLOCK 4096u

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_offset(uint64_t size)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (rng % (size / BLOCK)) * BLOCK;
}

static volatile uint64_t sink;

static void consume(const uint8_t *p, size_t len)
{
	uint64_t s = 0;
	size_t i;

	for (i = 0; i < len; i += 512)
		s += p[i];
	sink += s;
}

static int die(const char *what)
{
	perror(what);
	return 1;
}

int main(int argc, char **argv)
{
	const char *mode, *pattern;
	uint64_t size, done = 0, ops = 20000, i;
	uint8_t *buf = malloc(SEQ_CHUNK);
	ntfsc *c = NULL;
	ntfsc_file *f = NULL;
	int fd = -1;
	double t0, t1, map_seconds = -1;

	if (argc < 4 || !buf) {
		fprintf(stderr, "usage: read_bench ntfsd-pread|ntfsd-mmap SOCKET PATH seq|rand [OPS]\n"
				"       read_bench file-pread FILE seq|rand [OPS]\n");
		return 2;
	}
	mode = argv[1];
	if (!strncmp(mode, "ntfsd-", 6)) {
		struct ntfsc_stat st;

		if (argc < 5)
			return 2;
		pattern = argv[4];
		if (argc > 5)
			ops = strtoull(argv[5], NULL, 10);
		c = ntfsc_connect(argv[2]);
		if (!c)
			return die("ntfsc_connect");
		f = ntfsc_open(c, argv[3], O_RDONLY);
		if (!f || ntfsc_fstat(f, &st))
			return die(argv[3]);
		size = st.size;
	} else {
		pattern = argv[3];
		if (argc > 4)
			ops = strtoull(argv[4], NULL, 10);
		fd = open(argv[2], O_RDONLY);
		if (fd < 0)
			return die(argv[2]);
		size = (uint64_t)lseek(fd, 0, SEEK_END);
	}
	if (size < BLOCK)
		return 2;
	t0 = now();
	if (!strcmp(pattern, "seq")) {
		if (!strcmp(mode, "ntfsd-mmap")) {
			uint8_t *m = ntfsc_mmap(f, 0, size, PROT_READ);

			if (m == MAP_FAILED)
				return die("ntfsc_mmap");
			consume(m, size);
			ntfsc_munmap(f, m, size);
			done = size;
		} else {
			for (done = 0; done < size;) {
				ssize_t n = f ? ntfsc_pread(f, buf, SEQ_CHUNK, (off_t)done)
					      : pread(fd, buf, SEQ_CHUNK, (off_t)done);

				if (n <= 0)
					return die("read");
				consume(buf, (size_t)n);
				done += (uint64_t)n;
			}
		}
	} else {
		uint8_t *m = NULL;

		if (!strcmp(mode, "ntfsd-mmap")) {
			m = ntfsc_mmap(f, 0, size, PROT_READ);
			if (m == MAP_FAILED)
				return die("ntfsc_mmap");
			map_seconds = now() - t0;
			t0 = now();  /* the accesses are timed on their own */
		}
		for (i = 0; i < ops; i++) {
			uint64_t off = next_offset(size);

			if (m) {
				consume(m + off, BLOCK);
			} else {
				ssize_t n = f ? ntfsc_pread(f, buf, BLOCK, (off_t)off)
					      : pread(fd, buf, BLOCK, (off_t)off);

				if (n != BLOCK)
					return die("read");
				consume(buf, BLOCK);
			}
			done += BLOCK;
		}
		if (m)
			ntfsc_munmap(f, m, size);
	}
	t1 = now();
	if (map_seconds >= 0)
		printf("%.1f %.3f\n", (double)done / (t1 - t0) / 1e6, map_seconds);
	else
		printf("%.1f\n", (double)done / (t1 - t0) / 1e6);
	if (f)
		ntfsc_close(f);
	if (c)
		ntfsc_disconnect(c);
	if (fd >= 0)
		close(fd);
	free(buf);
	return 0;
}
