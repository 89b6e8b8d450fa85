/*
 * reclaim.c — keeping the cache within its limit.
 *
 * Invariants: a page is dropped only when it is uptodate, clean, not under
 * writeback, unpinned, and its lock could be taken; it is dropped under
 * that lock by clearing PG_uptodate and the buffer bits, bumping its
 * generation (so a client copying from it notices and faults it in again)
 * and only then punching the hole.  The order is a clock: each fault sets a
 * page's referenced bit, the hand clears it once before the page can go, so
 * recently used pages stay.
 */
#include "cache_int.h"

#include <fcntl.h>

#include "log.h"
#include "page.h"

static bool over_target(struct cache *c, uint64_t target)
{
	return atomic_load(&c->header->counters.cached_pages) > target;
}

static bool try_drop_page(struct cache_inode *ci, uint64_t index)
{
	struct cache *c = ci->cache;
	struct shm_page *p = cache_page(ci, index);
	const uint32_t busy = PG_locked | PG_dirty;

	/* writeback and pins from the daemon's own state: a client cannot
	 * make a page unreclaimable by writing its flags */
	if ((page_flags(p) & busy) || cache_page_pinned(ci, index) ||
	    cache_page_writeback(ci, index))
		return false;
	if (!cache_trylock_page(ci, index))
		return false;
	if (!page_test(p, PG_uptodate) || page_test(p, PG_dirty) ||
	    cache_page_writeback(ci, index) || cache_page_pinned(ci, index) ||
	    atomic_load(&p->buf_dirty)) {
		cache_unlock_page(ci, index);
		return false;
	}
	page_clear_bits(p, PG_uptodate | PG_write_ready);
	atomic_store(&p->buf_uptodate, 0);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (fallocate(ci->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(index << NTFSD_PAGE_SHIFT), NTFSD_PAGE_SIZE) < 0)
		log_warning("reclaim: cannot punch page %llu of MFT record %llu: %m",
			    (unsigned long long)index, (unsigned long long)ci->mft_no);
	cache_unaccount_page(ci, index);
	atomic_fetch_add(&c->header->counters.pages_reclaimed, 1);
	cache_unlock_page(ci, index);
	return true;
}

/* Sweep one inode from *page; returns true once the cache is within target. */
static bool sweep_inode(struct cache_inode *ci, uint64_t *page, uint64_t target)
{
	cache_assert_held(&ci->cache->reclaim_lock);
	cache_assert_held(&ci->cache->lock);
	for (; *page < cache_used_pages(ci); (*page)++) {
		uint64_t i = *page;

		if (!page_test(cache_page(ci, i), PG_uptodate))
			continue;
		if (atomic_exchange_explicit(&cache_page_priv(ci, i)->referenced, 0, memory_order_relaxed))
			continue;
		if (try_drop_page(ci, i) && !over_target(ci->cache, target)) {
			(*page)++;
			return true;
		}
	}
	return false;
}

static void reclaim_to(struct cache *c, uint64_t target)
{
	struct cache_inode *ci;
	unsigned sweeps = 0, n = 0;

	if (!over_target(c, target))
		return;
	cache_mutex_lock(&c->reclaim_lock);
	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci; ci = ci->next)
		n++;
	/* start at the inode the hand was on, else at the head */
	for (ci = c->inodes; ci && ci->mft_no != c->hand_mft; ci = ci->next)
		;
	if (!ci) {
		ci = c->inodes;
		c->hand_page = 0;
	}
	/* two full turns: the first may only clear referenced bits */
	for (; ci && over_target(c, target) && sweeps <= 2 * n; sweeps++) {
		struct cache_inode *next;
		bool done = sweep_inode(ci, &c->hand_page, target);

		next = ci->next ? ci->next : c->inodes;
		if (!ci->refs && !atomic_load(&ci->cached_pages) &&
		    !cache_has_dirty(ci) && !cache_inode_meta_dirty(ci) && !ci->trim_pending) {
			/* an unused inode whose last page went: forget it (not
			 * while it has room to give back: only this inode
			 * knows, cache.c keeps it for the flusher too) */
			if (next == ci)
				next = NULL;
			cache_inode_release(ci);
			if (done) {
				ci = next;
				c->hand_page = 0;
				break;
			}
		} else if (done) {
			break;
		}
		ci = next;
		c->hand_page = 0;
	}
	if (ci)
		c->hand_mft = ci->mft_no;
	cache_mutex_unlock(&c->lock);
	cache_mutex_unlock(&c->reclaim_lock);
}

void cache_reserve_page(struct cache *c)
{
	_Atomic uint64_t *cached = &c->header->counters.cached_pages;
	unsigned tries = 0;

	for (;;) {
		uint64_t cur = atomic_load(cached);

		if (cur < c->limit_pages || tries > 2) {
			if (atomic_compare_exchange_weak(cached, &cur, cur + 1))
				return;
			continue;
		}
		reclaim_to(c, c->limit_pages - 1);
		tries++;
	}
}
