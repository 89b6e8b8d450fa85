/*
 * bench_common.h — what read_bench and write_bench share: the clock, the
 * pseudo-random block offsets, and opening what is measured from the
 * command line (MODE SOCKET PATH PATTERN [OPS] for ntfsd-*, MODE FILE
 * PATTERN [OPS] otherwise).
 *
 * Invariants: the offset sequence is fixed (the same seed in every run and
 * every program), so the numbers of two paths compare like with like; a
 * bench_target holds either an ntfsd file (c and f) or a plain fd, never
 * both, and bench_close() releases whichever it is.
 */
#ifndef NTFSD_BENCH_COMMON_H
#define NTFSD_BENCH_COMMON_H

#include <stdint.h>

#include "ntfsc.h"

#define SEQ_CHUNK (1u << 20)
#define BLOCK 4096u

/* CLOCK_MONOTONIC in seconds. */
double now(void);
/* The next page-aligned offset of a BLOCK inside size bytes. */
uint64_t next_offset(uint64_t size);
/* perror(what); returns 1, the exit status. */
int die(const char *what);

struct bench_target {
	const char *mode;       /* argv[1] */
	const char *pattern;    /* seq or rand */
	uint64_t ops;           /* the caller's default, or the OPS argument */
	uint64_t size;          /* of the file */
	ntfsc *c;               /* ntfsd-*: the connection and the file */
	ntfsc_file *f;
	int fd;                 /* otherwise: the file, else -1 */
};

/* Open argv's target with open flags (O_RDONLY or O_RDWR); t->ops must
 * hold the default.  Returns 0, or the status to exit with (2: usage). */
int bench_open(struct bench_target *t, int argc, char **argv, int flags);
/* Close and disconnect what bench_open opened. */
void bench_close(struct bench_target *t);

#endif
