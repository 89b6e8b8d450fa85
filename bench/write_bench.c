/*
 * write_bench — one write measurement (data written, then synced), printed
 * as MB/s on stdout.
 *
 *   write_bench ntfsd-pwrite SOCKET PATH seq|rand [OPS]
 *   write_bench ntfsd-mmap   SOCKET PATH seq
 *   write_bench file-pwrite  FILE        rand [OPS]
 *   write_bench ntfsd-append SOCKET PATH MIB
 *   write_bench file-append  FILE        MIB
 *   write_bench pattern      MIB
 *
 * seq overwrites the whole (already allocated) file front to back in 1 MiB
 * pieces — through ntfsc_pwrite, or through one ntfsc_mmap(PROT_WRITE)
 * mapping with ntfsc_set_dirty after each piece — then ntfsc_fsync; rand
 * overwrites OPS (default 100000) 4 KiB blocks at page-aligned offsets from
 * a fixed pseudo-random sequence, then syncs.  The clock covers the writes
 * and the sync.  scripts/bench write runs it beside ntfs-3g's FUSE driver.
 *
 * append grows an empty file (size 0, or it fails) to MIB MiB by 1 MiB
 * writes at increasing offsets (ntfsc_pwrite, or pwrite(2) on FILE), then
 * syncs; the clock runs from the first write to the end of the sync.  It
 * prints MB/s, then the seconds spent in the writes and in the sync.  Every
 * 4 KiB block written starts with its own file offset (8 bytes, little
 * endian) so a block in the wrong place shows; pattern prints the bytes an
 * append of MIB MiB must leave in the file, for cmp.  A failed write says
 * where, with errno and, from ntfsd, the daemon's message.  scripts/bench
 * append runs it on ntfsd and on ntfs-3g's FUSE driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

static int usage(void)
{
	fprintf(stderr, "usage: write_bench ntfsd-pwrite|ntfsd-mmap SOCKET PATH seq|rand [OPS]\n"
			"       write_bench file-pwrite FILE rand [OPS]\n"
			"       write_bench ntfsd-append SOCKET PATH MIB\n"
			"       write_bench file-append FILE MIB\n"
			"       write_bench pattern MIB\n");
	return 2;
}

/* The bytes seq and rand write (the start of the append pattern). */
static void fill_chunk(uint8_t *p)
{
	uint32_t i;

	for (i = 0; i < SEQ_CHUNK; i++)
		p[i] = (uint8_t)(i * 31 + 7);
}

/* Turns a chunk filled by fill_chunk (and maybe stamped since) into the
 * append pattern's 1 MiB at file offset off: each 4 KiB block's first 8
 * bytes are its file offset, little endian. */
static void stamp_chunk(uint8_t *p, uint64_t off)
{
	uint32_t i, b;

	for (i = 0; i < SEQ_CHUNK; i += BLOCK)
		for (b = 0; b < 8; b++)
			p[i + b] = (uint8_t)((off + i) >> (8 * b));
}

static int print_pattern(uint64_t mib, uint8_t *buf)
{
	uint64_t k;

	fill_chunk(buf);
	for (k = 0; k < mib; k++) {
		stamp_chunk(buf, k * SEQ_CHUNK);
		if (fwrite(buf, 1, SEQ_CHUNK, stdout) != SEQ_CHUNK)
			return die("write_bench pattern: stdout");
	}
	return fflush(stdout) ? die("write_bench pattern: stdout") : 0;
}

/* Why an append failed: errno, and the daemon's word when it refused. */
static int append_fail(ntfsc *c, const char *call, uint64_t off, uint64_t mib)
{
	int err = errno;
	const char *msg = c ? ntfsc_last_error_message(c) : NULL;

	fprintf(stderr, "write_bench: APPEND FAILED: %s at offset %llu (MiB %llu of %llu): %s%s%s\n",
		call, (unsigned long long)off, (unsigned long long)(off / SEQ_CHUNK),
		(unsigned long long)mib, strerror(err), msg && *msg ? "; ntfsd: " : "",
		msg && *msg ? msg : "");
	return 1;
}

/* ntfsd-append SOCKET PATH MIB | file-append FILE MIB */
static int run_append(int argc, char **argv, uint8_t *buf)
{
	bool ntfsd = !strcmp(argv[1], "ntfsd-append");
	uint64_t mib, off, size, got;
	ntfsc *c = NULL;
	ntfsc_file *f = NULL;
	int fd = -1;
	double t0, t1, t2;

	if (argc != (ntfsd ? 5 : 4))
		return 2;
	mib = strtoull(argv[ntfsd ? 4 : 3], NULL, 10);
	if (!mib)
		return 2;
	size = mib * SEQ_CHUNK;
	if (ntfsd) {
		struct ntfsc_stat st;

		c = ntfsc_connect(argv[2]);
		if (!c)
			return die("ntfsc_connect");
		f = ntfsc_open(c, argv[3], O_RDWR);
		if (!f)
			return append_fail(c, "ntfsc_open", 0, mib);
		if (ntfsc_fstat(f, &st))
			return append_fail(c, "ntfsc_fstat", 0, mib);
		got = st.size;
	} else {
		struct stat st;

		fd = open(argv[2], O_WRONLY);
		if (fd < 0 || fstat(fd, &st))
			return die(argv[2]);
		got = (uint64_t)st.st_size;
	}
	if (got) {
		fprintf(stderr, "write_bench: %s is %llu bytes, not empty\n", argv[ntfsd ? 3 : 2],
			(unsigned long long)got);
		return 1;
	}
	fill_chunk(buf);
	t0 = now();
	for (off = 0; off < size; off += SEQ_CHUNK) {
		size_t done = 0;

		stamp_chunk(buf, off);
		while (done < SEQ_CHUNK) {
			ssize_t n = f ? ntfsc_pwrite(f, buf + done, SEQ_CHUNK - done, (off_t)(off + done))
				      : pwrite(fd, buf + done, SEQ_CHUNK - done, (off_t)(off + done));

			if (n <= 0) {
				if (!n)
					errno = EIO;
				return append_fail(c, f ? "ntfsc_pwrite" : "pwrite", off + done, mib);
			}
			done += (size_t)n;
		}
	}
	t1 = now();
	if (f ? ntfsc_fsync(f) : fsync(fd))
		return append_fail(c, f ? "ntfsc_fsync" : "fsync", size, mib);
	t2 = now();
	if (f) {
		struct ntfsc_stat st;

		if (ntfsc_fstat(f, &st))
			return append_fail(c, "ntfsc_fstat", size, mib);
		got = st.size;
	} else {
		struct stat st;

		if (fstat(fd, &st))
			return die(argv[2]);
		got = (uint64_t)st.st_size;
	}
	if (got != size) {
		fprintf(stderr, "write_bench: APPEND FAILED: the file is %llu bytes after the "
			"append, not %llu\n", (unsigned long long)got, (unsigned long long)size);
		return 1;
	}
	printf("%.1f %.3f %.3f\n", (double)size / (t2 - t0) / 1e6, t1 - t0, t2 - t1);
	if (f && ntfsc_close(f))
		return append_fail(c, "ntfsc_close", size, mib);
	if (c)
		ntfsc_disconnect(c);
	if (fd >= 0 && close(fd))
		return die("close");
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_target t = { .ops = 100000 };
	uint64_t done = 0, i;
	uint8_t *buf = malloc(SEQ_CHUNK);
	int rc;
	double t0, t1;

	if (!buf)
		return die("malloc");
	if (argc >= 2 && (!strcmp(argv[1], "ntfsd-append") || !strcmp(argv[1], "file-append") ||
			  !strcmp(argv[1], "pattern"))) {
		int rc = 2;

		if (strcmp(argv[1], "pattern"))
			rc = run_append(argc, argv, buf);
		else if (argc == 3 && strtoull(argv[2], NULL, 10))
			rc = print_pattern(strtoull(argv[2], NULL, 10), buf);
		free(buf);
		return rc == 2 ? usage() : rc;
	}
	if (argc < 4)
		return usage();
	fill_chunk(buf);
	rc = bench_open(&t, argc, argv, O_RDWR);
	if (rc)
		return rc;
	if (t.size < SEQ_CHUNK)
		return 2;
	t0 = now();
	if (!strcmp(t.pattern, "seq") && !strcmp(t.mode, "ntfsd-mmap")) {
		uint8_t *m = ntfsc_mmap(t.f, 0, t.size, PROT_READ | PROT_WRITE);

		if (m == MAP_FAILED)
			return die("ntfsc_mmap");
		for (done = 0; done < t.size; done += SEQ_CHUNK) {
			uint64_t n = t.size - done < SEQ_CHUNK ? t.size - done : SEQ_CHUNK;

			memcpy(m + done, buf, n);
			if (ntfsc_set_dirty(t.f, m + done, n))
				return die("ntfsc_set_dirty");
		}
		done = t.size;
		if (ntfsc_fsync(t.f))
			return die("ntfsc_fsync");
		ntfsc_munmap(t.f, m, t.size);
	} else if (!strcmp(t.pattern, "seq")) {
		for (done = 0; done < t.size;) {
			size_t n = t.size - done < SEQ_CHUNK ? (size_t)(t.size - done) : SEQ_CHUNK;

			if (ntfsc_pwrite(t.f, buf, n, (off_t)done) != (ssize_t)n)
				return die("ntfsc_pwrite");
			done += n;
		}
		if (ntfsc_fsync(t.f))
			return die("ntfsc_fsync");
	} else {
		for (i = 0; i < t.ops; i++) {
			uint64_t off = next_offset(t.size);
			ssize_t n = t.f ? ntfsc_pwrite(t.f, buf + (i % 256) * 16, BLOCK, (off_t)off)
				      : pwrite(t.fd, buf + (i % 256) * 16, BLOCK, (off_t)off);

			if (n != BLOCK)
				return die("write");
			done += BLOCK;
		}
		if (t.f ? ntfsc_fsync(t.f) : fsync(t.fd))
			return die("sync");
	}
	t1 = now();
	printf("%.1f\n", (double)done / (t1 - t0) / 1e6);
	bench_close(&t);
	free(buf);
	return 0;
}
