/*
 * pattern.h — test data that can be recomputed from a few numbers: the
 * byte at file offset off of "version seed" of a file, so a model needs to
 * remember only (seed, range) of each write, never its bytes; and a seed
 * mixer to derive per-round, per-child seeds from the one a run prints.
 *
 * Invariants: pattern_byte() is a pure function of (seed, off); seed 0 is
 * all zeroes (a write of zeroes), every other seed is pseudo-random bytes
 * that differ from version to version almost everywhere.  mix_seed() never
 * returns 0 (it feeds xorshift generators).
 */
#ifndef NTFSD_TESTS_PATTERN_H
#define NTFSD_TESTS_PATTERN_H

#include <stddef.h>
#include <stdint.h>

uint8_t pattern_byte(uint64_t seed, uint64_t off);
/* buf[i] = pattern_byte(seed, off + i) */
void pattern_fill(uint8_t *buf, size_t len, uint64_t seed, uint64_t off);
/* A well-mixed non-zero seed from (seed, k). */
uint64_t mix_seed(uint64_t seed, uint64_t k);

#endif
