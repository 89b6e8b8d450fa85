/*
 * dirty_bitmap.h — the two-level dirty-page bitmap of a page-state segment.
 *
 * Invariants: level 2 has one bit per page; level 1 has one bit per level-2
 * word and is set whenever that word is non-zero (it may stay set for a
 * zero word until dirty_bitmap_trim(); it is never clear for a non-zero
 * one, not even for a moment).  So a scan that visits only
 * the level-2 words flagged in level 1 finds every dirty page.  All updates
 * are atomic; any process may set bits, and clearing is safe against a
 * concurrent set.
 */
#ifndef NTFSD_SHM_DIRTY_BITMAP_H
#define NTFSD_SHM_DIRTY_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "shm_layout.h"

struct dirty_bitmap {
	_Atomic uint64_t *l1;
	_Atomic uint64_t *l2;
	uint64_t nr_pages;
	uint64_t l1_words, l2_words;
};

void dirty_bitmap_init(struct dirty_bitmap *b, struct shm_file_header *h);
/* Returns true if the bit was clear before. */
bool dirty_bitmap_set(struct dirty_bitmap *b, uint64_t page);
/* Returns true if the bit was set before. */
bool dirty_bitmap_clear(struct dirty_bitmap *b, uint64_t page);
bool dirty_bitmap_test(const struct dirty_bitmap *b, uint64_t page);
/* Drop level-1 bits of empty words.  Only for a single scanner, between its
 * scans (the daemon's inode writeback, under the inode's wb_lock). */
void dirty_bitmap_trim(struct dirty_bitmap *b);
/* First dirty page >= from, or UINT64_MAX. */
uint64_t dirty_bitmap_next(const struct dirty_bitmap *b, uint64_t from);

#endif
