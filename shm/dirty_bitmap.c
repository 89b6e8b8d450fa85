/*
 * dirty_bitmap.c — two-level dirty bitmap operations.
 *
 * Invariants: see dirty_bitmap.h.  Setting orders level 2 before level 1.
 * Clearing touches level 2 only: dropping a level-1 bit while another
 * process scans could hide a page set meanwhile, so stale level-1 bits are
 * dropped only by dirty_bitmap_trim(), called by the one scanner that must
 * not miss pages (the daemon's writeback of the inode), between scans.
 */
#include "dirty_bitmap.h"

#include <assert.h>

void dirty_bitmap_init(struct dirty_bitmap *b, void *base, const struct shm_file_header *layout)
{
	uint8_t *p = base;

	b->l1 = (_Atomic uint64_t *)(p + layout->l1_offset);
	b->l2 = (_Atomic uint64_t *)(p + layout->l2_offset);
	b->pages = (struct shm_page *)(p + layout->pages_offset);
	b->nr_dirty = &((struct shm_file_header *)p)->nr_dirty;
	b->nr_pages = layout->nr_pages;
	/* the view covers nr_pages: the bitmaps may be laid out for more
	 * (growth), but scans stop at the pages the segment holds now */
	b->l2_words = (layout->nr_pages + 63) / 64;
	b->l1_words = (b->l2_words + 63) / 64;
}

bool dirty_bitmap_set(struct dirty_bitmap *b, uint64_t page)
{
	uint64_t w = page / 64, bit = 1ull << (page % 64), old;

	assert(page < b->nr_pages);
	old = atomic_fetch_or_explicit(&b->l2[w], bit, memory_order_acq_rel);
	atomic_fetch_or_explicit(&b->l1[w / 64], 1ull << (w % 64), memory_order_acq_rel);
	return !(old & bit);
}

bool dirty_bitmap_clear(struct dirty_bitmap *b, uint64_t page)
{
	uint64_t w = page / 64, bit = 1ull << (page % 64), old;

	assert(page < b->nr_pages);
	old = atomic_fetch_and_explicit(&b->l2[w], ~bit, memory_order_acq_rel);
	return old & bit;
}

void dirty_bitmap_trim(struct dirty_bitmap *b)
{
	uint64_t w;

	for (w = 0; w < b->l2_words; w++) {
		_Atomic uint64_t *l1 = &b->l1[w / 64];
		uint64_t bit = 1ull << (w % 64);

		if (!(atomic_load_explicit(l1, memory_order_acquire) & bit)) {
			/* a level-2 word with bits but no level-1 bit was not
			 * set by dirty_bitmap_set(): a client wrote it; flag
			 * it, so the scanner meets (and cleans) those pages */
			if (atomic_load_explicit(&b->l2[w], memory_order_acquire))
				atomic_fetch_or_explicit(l1, bit, memory_order_acq_rel);
			continue;
		}
		if (atomic_load_explicit(&b->l2[w], memory_order_acquire))
			continue;
		atomic_fetch_and_explicit(l1, ~bit, memory_order_acq_rel);
		/* a set that raced in has set level 2 first: put level 1 back */
		if (atomic_load_explicit(&b->l2[w], memory_order_seq_cst))
			atomic_fetch_or_explicit(l1, bit, memory_order_acq_rel);
	}
}

bool dirty_bitmap_test(const struct dirty_bitmap *b, uint64_t page)
{
	if (page >= b->nr_pages)
		return false;
	return atomic_load_explicit(&b->l2[page / 64], memory_order_acquire) &
	       (1ull << (page % 64));
}

uint64_t dirty_bitmap_next(const struct dirty_bitmap *b, uint64_t from)
{
	uint64_t w = from / 64;

	while (w < b->l2_words) {
		uint64_t l1 = atomic_load_explicit(&b->l1[w / 64], memory_order_acquire);

		l1 &= ~0ull << (w % 64);
		if (!l1) {
			w = (w / 64 + 1) * 64;
			continue;
		}
		w = (w / 64) * 64 + (uint64_t)__builtin_ctzll(l1);
		if (w >= b->l2_words)
			break;
		{
			uint64_t bits = atomic_load_explicit(&b->l2[w], memory_order_acquire);

			if (w == from / 64)
				bits &= ~0ull << (from % 64);
			if (bits) {
				uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(bits);

				return page < b->nr_pages ? page : UINT64_MAX;
			}
		}
		w++;
	}
	return UINT64_MAX;
}

uint64_t dirty_bitmap_count(const struct dirty_bitmap *b, uint64_t limit)
{
	uint64_t w, n = 0, words;

	if (limit > b->nr_pages)
		limit = b->nr_pages;
	words = (limit + 63) / 64;
	for (w = 0; w < words; w++) {
		uint64_t l1 = atomic_load_explicit(&b->l1[w / 64], memory_order_relaxed), bits;

		/* only words flagged in level 1: what a scan visits */
		if (!l1) {
			w |= 63;        /* the whole span of this level-1 word */
			continue;
		}
		if (!(l1 & (1ull << (w % 64))))
			continue;
		bits = atomic_load_explicit(&b->l2[w], memory_order_relaxed);

		if (w == words - 1 && limit % 64)
			bits &= (1ull << (limit % 64)) - 1;
		n += (uint64_t)__builtin_popcountll(bits);
	}
	return n;
}
