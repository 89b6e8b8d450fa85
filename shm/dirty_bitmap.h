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
 *
 * The geometry (where the bitmaps and descriptors lie, how many pages) is
 * copied into struct dirty_bitmap once (one view per size of a segment
 * that grew; views of one segment share its bits), from a header the caller validated
 * in its own memory: a segment's header can be rewritten by any writer of
 * the file, so nothing here reads it again.
 */
#ifndef NTFSD_SHM_DIRTY_BITMAP_H
#define NTFSD_SHM_DIRTY_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "shm_layout.h"

struct dirty_bitmap {
	_Atomic uint64_t *l1;
	_Atomic uint64_t *l2;
	struct shm_page *pages;           /* the descriptors of the same segment */
	_Atomic uint64_t *nr_dirty;       /* the header's count (a hint for clients) */
	uint64_t nr_pages;
	uint64_t l1_words, l2_words;
};

/* Point b into the segment mapped at base, laid out as `layout` (a private,
 * validated copy of its header, never the mapped header itself). */
void dirty_bitmap_init(struct dirty_bitmap *b, void *base, const struct shm_file_header *layout);
/* Returns true if the bit was clear before. */
bool dirty_bitmap_set(struct dirty_bitmap *b, uint64_t page);
/* Returns true if the bit was set before. */
bool dirty_bitmap_clear(struct dirty_bitmap *b, uint64_t page);
bool dirty_bitmap_test(const struct dirty_bitmap *b, uint64_t page);
/* Drop level-1 bits of empty words, and set those missing over non-empty
 * ones (which only a client writing the bitmap directly can leave).  Only
 * for a single scanner, between its scans (the daemon's inode writeback,
 * under the inode's wb_lock). */
void dirty_bitmap_trim(struct dirty_bitmap *b);
/* First dirty page >= from, or UINT64_MAX. */
uint64_t dirty_bitmap_next(const struct dirty_bitmap *b, uint64_t from);
/* Pages below `limit` whose bit is set in a level-2 word flagged in level
 * 1 (what a scan visits): the count the daemon acts on, bounded by limit
 * whatever a client wrote into the segment. */
uint64_t dirty_bitmap_count(const struct dirty_bitmap *b, uint64_t limit);

#endif
