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

#include "bench_common.h"

static volatile uint64_t sink;

static void consume(const uint8_t *p, size_t len)
{
	uint64_t s = 0;
	size_t i;

	for (i = 0; i < len; i += 512)
		s += p[i];
	sink += s;
}

int main(int argc, char **argv)
{
	struct bench_target t = { .ops = 20000 };
	uint64_t done = 0, i;
	uint8_t *buf = malloc(SEQ_CHUNK);
	int rc;
	double t0, t1, map_seconds = -1;

	if (argc < 4 || !buf) {
		fprintf(stderr, "usage: read_bench ntfsd-pread|ntfsd-mmap SOCKET PATH seq|rand [OPS]\n"
				"       read_bench file-pread FILE seq|rand [OPS]\n");
		return 2;
	}
	rc = bench_open(&t, argc, argv, O_RDONLY);
	if (rc)
		return rc;
	if (t.size < BLOCK)
		return 2;
	t0 = now();
	if (!strcmp(t.pattern, "seq")) {
		if (!strcmp(t.mode, "ntfsd-mmap")) {
			uint8_t *m = ntfsc_mmap(t.f, 0, t.size, PROT_READ);

			if (m == MAP_FAILED)
				return die("ntfsc_mmap");
			consume(m, t.size);
			ntfsc_munmap(t.f, m, t.size);
			done = t.size;
		} else {
			for (done = 0; done < t.size;) {
				ssize_t n = t.f ? ntfsc_pread(t.f, buf, SEQ_CHUNK, (off_t)done)
					      : pread(t.fd, buf, SEQ_CHUNK, (off_t)done);

				if (n <= 0)
					return die("read");
				consume(buf, (size_t)n);
				done += (uint64_t)n;
			}
		}
	} else {
		uint8_t *m = NULL;

		if (!strcmp(t.mode, "ntfsd-mmap")) {
			m = ntfsc_mmap(t.f, 0, t.size, PROT_READ);
			if (m == MAP_FAILED)
				return die("ntfsc_mmap");
			map_seconds = now() - t0;
			t0 = now();  /* the accesses are timed on their own */
		}
		for (i = 0; i < t.ops; i++) {
			uint64_t off = next_offset(t.size);

			if (m) {
				consume(m + off, BLOCK);
			} else {
				ssize_t n = t.f ? ntfsc_pread(t.f, buf, BLOCK, (off_t)off)
					      : pread(t.fd, buf, BLOCK, (off_t)off);

				if (n != BLOCK)
					return die("read");
				consume(buf, BLOCK);
			}
			done += BLOCK;
		}
		if (m)
			ntfsc_munmap(t.f, m, t.size);
	}
	t1 = now();
	if (map_seconds >= 0)
		printf("%.1f %.3f\n", (double)done / (t1 - t0) / 1e6, map_seconds);
	else
		printf("%.1f\n", (double)done / (t1 - t0) / 1e6);
	bench_close(&t);
	free(buf);
	return 0;
}
