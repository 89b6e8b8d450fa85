/*
 * write_bench — one write measurement (data written, then synced), printed
 * as MB/s on stdout.
 *
 *   write_bench ntfsd-pwrite SOCKET PATH seq|rand [OPS]
 *   write_bench ntfsd-mmap   SOCKET PATH seq
 *   write_bench file-pwrite  FILE        rand [OPS]
 *
 * seq overwrites the whole (already allocated) file front to back in 1 MiB
 * pieces — through ntfsc_pwrite, or through one ntfsc_mmap(PROT_WRITE)
 * mapping with ntfsc_set_dirty after each piece — then ntfsc_fsync; rand
 * overwrites OPS (default 100000) 4 KiB blocks at page-aligned offsets from
 * a fixed pseudo-random sequence, then syncs.  The clock covers the writes
 * and the sync.  scripts/bench write runs it beside ntfs-3g's FUSE driver.
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

static int die(const char *what)
{
	perror(what);
	return 1;
}

int main(int argc, char **argv)
{
	const char *mode, *pattern;
	uint64_t size, done = 0, ops = 100000, i;
	uint8_t *buf = malloc(SEQ_CHUNK);
	ntfsc *c = NULL;
	ntfsc_file *f = NULL;
	int fd = -1;
	double t0, t1;

	if (argc < 4 || !buf) {
		fprintf(stderr, "usage: write_bench ntfsd-pwrite|ntfsd-mmap SOCKET PATH seq|rand [OPS]\n"
				"       write_bench file-pwrite FILE rand [OPS]\n");
		return 2;
	}
	for (i = 0; i < SEQ_CHUNK; i++)
		buf[i] = (uint8_t)(i * 31 + 7);
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
		f = ntfsc_open(c, argv[3], O_RDWR);
		if (!f || ntfsc_fstat(f, &st))
			return die(argv[3]);
		size = st.size;
	} else {
		pattern = argv[3];
		if (argc > 4)
			ops = strtoull(argv[4], NULL, 10);
		fd = open(argv[2], O_RDWR);
		if (fd < 0)
			return die(argv[2]);
		size = (uint64_t)lseek(fd, 0, SEEK_END);
	}
	if (size < SEQ_CHUNK)
		return 2;
	t0 = now();
	if (!strcmp(pattern, "seq") && !strcmp(mode, "ntfsd-mmap")) {
		uint8_t *m = ntfsc_mmap(f, 0, size, PROT_READ | PROT_WRITE);

		if (m == MAP_FAILED)
			return die("ntfsc_mmap");
		for (done = 0; done < size; done += SEQ_CHUNK) {
			uint64_t n = size - done < SEQ_CHUNK ? size - done : SEQ_CHUNK;

			memcpy(m + done, buf, n);
			if (ntfsc_set_dirty(f, m + done, n))
				return die("ntfsc_set_dirty");
		}
		done = size;
		if (ntfsc_fsync(f))
			return die("ntfsc_fsync");
		ntfsc_munmap(f, m, size);
	} else if (!strcmp(pattern, "seq")) {
		for (done = 0; done < size;) {
			size_t n = size - done < SEQ_CHUNK ? (size_t)(size - done) : SEQ_CHUNK;

			if (ntfsc_pwrite(f, buf, n, (off_t)done) != (ssize_t)n)
				return die("ntfsc_pwrite");
			done += n;
		}
		if (ntfsc_fsync(f))
			return die("ntfsc_fsync");
	} else {
		for (i = 0; i < ops; i++) {
			uint64_t off = next_offset(size);
			ssize_t n = f ? ntfsc_pwrite(f, buf + (i % 256) * 16, BLOCK, (off_t)off)
				      : pwrite(fd, buf + (i % 256) * 16, BLOCK, (off_t)off);

			if (n != BLOCK)
				return die("write");
			done += BLOCK;
		}
		if (f ? ntfsc_fsync(f) : fsync(fd))
			return die("sync");
	}
	t1 = now();
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
