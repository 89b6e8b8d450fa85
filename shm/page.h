/*
 * page.h — page flags, page locks and waiting on page bits, shared between
 * processes.
 *
 * Invariants:
 *  - PG_locked is taken only by lock_page()/trylock_page() and released
 *    only by unlock_page() (or broken by unlock_page_if_owner() for a dead
 *    holder); the holder's pid lives in the same word (PG_OWNER_MASK), set
 *    and cleared by the same atomic operation as PG_locked.
 *  - Sleepers set PG_waiters before sleeping on the flags word (a
 *    non-private futex); whoever clears PG_locked or PG_writeback and sees
 *    PG_waiters clears it and wakes every sleeper, who re-arm it if they
 *    must sleep again.  So an uncontended unlock makes no system call and
 *    no wakeup is lost.
 *  - Buffer bitmaps are definitive once PG_buffers is set: a page is never
 *    clean while a bit of buf_dirty is set.
 */
#ifndef NTFSD_SHM_PAGE_H
#define NTFSD_SHM_PAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "shm_layout.h"

static inline uint32_t page_flags(const struct shm_page *p)
{
	return atomic_load_explicit(&((struct shm_page *)p)->flags, memory_order_acquire);
}

/* pid holding the page lock (0: unlocked) */
static inline uint32_t page_lock_owner_of(uint32_t flags)
{
	return (flags & PG_locked) ? flags >> PG_OWNER_SHIFT : 0;
}

static inline uint32_t page_lock_owner(const struct shm_page *p)
{
	return page_lock_owner_of(page_flags(p));
}

static inline bool page_test(const struct shm_page *p, uint32_t bit)
{
	return page_flags(p) & bit;
}

/* Set or clear flag bits (not PG_locked/PG_waiters); returns the old flags. */
static inline uint32_t page_set_bits(struct shm_page *p, uint32_t bits)
{
	return atomic_fetch_or_explicit(&p->flags, bits, memory_order_acq_rel);
}

static inline uint32_t page_clear_bits(struct shm_page *p, uint32_t bits)
{
	return atomic_fetch_and_explicit(&p->flags, ~bits, memory_order_acq_rel);
}

bool trylock_page(struct shm_page *p, uint32_t owner);
void lock_page(struct shm_page *p, uint32_t owner);
/* Wait at most timeout_ms (< 0: forever); false on timeout. */
bool lock_page_timeout(struct shm_page *p, uint32_t owner, int timeout_ms);
void unlock_page(struct shm_page *p);
/* Release a lock whose holder died: only if lock_owner is still `owner`. */
bool unlock_page_if_owner(struct shm_page *p, uint32_t owner);

/* Sleep until none of `bits` is set (e.g. PG_writeback, PG_locked). */
void wait_on_page_bits(struct shm_page *p, uint32_t bits);
/* Clear `bits` and wake sleepers (end_page_writeback is this with PG_writeback). */
void clear_page_bits_wake(struct shm_page *p, uint32_t bits);

static inline void wait_on_page_writeback(struct shm_page *p)
{
	wait_on_page_bits(p, PG_writeback);
}

static inline void end_page_writeback(struct shm_page *p)
{
	clear_page_bits_wake(p, PG_writeback);
}

/* Buffer bits.  nbuf = buffers per page. */
static inline uint32_t page_all_buffers(uint32_t nbuf)
{
	return nbuf >= 32 ? 0xffffffffu : (1u << nbuf) - 1;
}

static inline void set_buffers_uptodate(struct shm_page *p, uint32_t mask)
{
	atomic_fetch_or_explicit(&p->buf_uptodate, mask, memory_order_release);
}

/* Page pins (the daemon's): a pinned page is never reclaimed. */
static inline void page_pin(struct shm_page *p)
{
	atomic_fetch_add_explicit(&p->pincount, 1, memory_order_acq_rel);
}

static inline void page_unpin(struct shm_page *p)
{
	atomic_fetch_sub_explicit(&p->pincount, 1, memory_order_acq_rel);
}

#endif
