/*
 * dirty.c — see dirty.h.
 */
#include "dirty.h"

#include <time.h>

#include "page.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool set_page_dirty(struct dirty_bitmap *b, uint64_t index, uint32_t mask)
{
	struct shm_page *p = &b->pages[index];
	uint32_t old;

	atomic_fetch_or_explicit(&p->buf_dirty, mask, memory_order_release);
	old = page_set_bits(p, PG_dirty);
	if (old & PG_dirty)
		return false;
	atomic_store_explicit(&p->first_dirtied_ns, now_ns(), memory_order_relaxed);
	dirty_bitmap_set(b, index);
	atomic_fetch_add_explicit(b->nr_dirty, 1, memory_order_acq_rel);
	return true;
}

uint32_t clear_page_dirty_for_io(struct dirty_bitmap *b, uint64_t index)
{
	struct shm_page *p = &b->pages[index];
	uint32_t old = page_clear_bits(p, PG_dirty);
	uint32_t bufs = atomic_exchange_explicit(&p->buf_dirty, 0, memory_order_acq_rel);

	/* the bit goes whatever the flags said: a bit without PG_dirty (which
	 * only a client writing the bitmap itself leaves) must not stay set,
	 * or the daemon would count the page dirty for ever */
	dirty_bitmap_clear(b, index);
	if (old & PG_dirty) {
		atomic_store_explicit(&p->first_dirtied_ns, 0, memory_order_relaxed);
		atomic_fetch_sub_explicit(b->nr_dirty, 1, memory_order_acq_rel);
	}
	return bufs;
}
