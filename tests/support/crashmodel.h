/*
 * crashmodel.h — what a file may hold after its daemon was killed: a byte
 * model of one file for the crash tests, and the rules ntfscat's view of
 * it is held to once a restarted daemon has written everything back.
 *
 * The model keeps, per file:
 *   - the durable state: the last state a returned fsync/sync covered (or
 *     that the test read back from the volume itself);
 *   - the current state: the durable one with every operation applied that
 *     returned successfully since;
 *   - the operations since the durable state (writes as (offset, length,
 *     pattern seed), see pattern.h; truncations as the new size), the last
 *     one possibly not returned (in flight when the daemon died, or failed
 *     because it died).
 *
 * Rules (cm_check):
 *   - keeper (the daemon's segments survived the crash): the file must be
 *     the current state exactly, except that the bytes an in-flight
 *     operation touches may be before-or-after (or zero), and the size may
 *     be the size before or after it;
 *   - no keeper (a power cut): a byte no operation since the durable state
 *     touched must be its durable value; a touched byte may be durable,
 *     any value written there since, or zero; nothing else (stale cluster
 *     contents above all).  The size must be one the file had since the
 *     durable state (durable, or after any of the operations).
 *
 * Invariants: sizes never pass cap; bytes of base and cur past their size
 * are zero; an in-flight operation is always the last one.  Nothing here
 * touches cmocka: cm_check returns a description for the caller to fail
 * with.
 */
#ifndef NTFSD_TESTS_CRASHMODEL_H
#define NTFSD_TESTS_CRASHMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cm_kind { CM_WRITE, CM_TRUNCATE };

struct cm_op {
	enum cm_kind kind;
	bool returned;          /* false: in flight, or failed when the daemon died */
	uint32_t id;            /* the caller's number for it, for reports */
	uint64_t off, len;      /* CM_WRITE: the range */
	uint64_t seed;          /* CM_WRITE: pattern_byte(seed, offset); 0 = zeroes */
	uint64_t size_before, size_after;
	const char *what;       /* "pwrite", "mmap", "append", ... (static strings) */
};

struct cm_file {
	char path[128];
	uint64_t cap;
	uint8_t *base, *cur;    /* cap bytes each */
	uint64_t base_size, cur_size;
	struct cm_op *ops;
	size_t nops, ops_cap;
};

/* A model of path whose durable state is data[0, len) (len <= cap). */
int cm_init(struct cm_file *f, const char *path, uint64_t cap, const uint8_t *data, uint64_t len);
void cm_free(struct cm_file *f);

/* Record a write / truncation (returned or not).  An operation that
 * returned changes the current state. */
void cm_write(struct cm_file *f, uint32_t id, const char *what, uint64_t off, uint64_t len,
	      uint64_t seed, bool returned);
void cm_truncate(struct cm_file *f, uint32_t id, uint64_t size, bool returned);
/* A returned fsync / sync: the current state is durable. */
void cm_synced(struct cm_file *f);
/* Does the model have an operation that did not return? */
bool cm_in_flight(const struct cm_file *f);

/* Hold got[0, len) (what ntfscat read) to the rules; 0 if it passes, else
 * -1 with a description (file, byte, got, what was allowed, the ops that
 * wrote there) in why. */
int cm_check(const struct cm_file *f, const uint8_t *got, uint64_t len, bool keeper, char *why,
	     size_t whylen);
/* What the volume holds now is the durable state (after a check passed). */
void cm_accept(struct cm_file *f, const uint8_t *got, uint64_t len);

#endif
