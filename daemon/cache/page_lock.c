/*
 * page_lock.c — see page_lock.h.
 *
 * Invariants: the private state word of a page is a futex of the daemon's
 * only; it is a shared (not FUTEX_PRIVATE_FLAG) one all the same, keyed by
 * the memfd page, because a segment that grew is mapped at more than one
 * address (cache.h: struct cache_geom) and a waiter on one must be woken
 * through another.  Whoever clears a bit and sees PP_WAITERS
 * wakes every sleeper, who re-arm it if they must sleep again (as the
 * shared flags word does, shm/page.c).  The shared lock is taken only by
 * the thread holding PP_LOCKED, and released before PP_LOCKED is.
 */
#include "page_lock.h"

#include <limits.h>
#include <stdlib.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "cache_int.h"
#include "holders.h"
#include "log.h"
#include "page.h"

/* How long one wait on a client's lock sleeps before the holder is judged
 * again (a holder that disconnects meanwhile is noticed this fast). */
#define HOLDER_POLL_MS 50

static void priv_wait(_Atomic uint32_t *w, uint32_t expected)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, expected, NULL, NULL, 0);
}

static void priv_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Sleep until none of bits is set in the private word. */
static void priv_wait_clear(_Atomic uint32_t *w, uint32_t bits)
{
	uint32_t s = atomic_load(w);

	while (s & bits) {
		if (!(s & PP_WAITERS)) {
			if (!atomic_compare_exchange_weak(w, &s, s | PP_WAITERS))
				continue;
			s |= PP_WAITERS;
		}
		priv_wait(w, s);
		s = atomic_load(w);
	}
}

static bool priv_trylock(_Atomic uint32_t *w)
{
	uint32_t s = atomic_load(w);

	do {
		if (s & PP_LOCKED)
			return false;
	} while (!atomic_compare_exchange_weak(w, &s, s | PP_LOCKED));
	return true;
}

static void priv_clear_wake(_Atomic uint32_t *w, uint32_t bits)
{
	uint32_t old = atomic_fetch_and(w, ~(bits | PP_WAITERS));

	if (old & PP_WAITERS)
		priv_wake(w);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Clear a shared lock word f the daemon judged not to be held: only if
 * the word is still f (a real holder may have come and gone since). */
static bool break_shared_lock(struct shm_page *p, uint32_t f)
{
	if (!atomic_compare_exchange_strong(&p->flags, &f,
					    f & ~(PG_locked | PG_waiters | PG_OWNER_MASK)))
		return false;
	atomic_store(&p->lock_owner, 0);
	if (f & PG_waiters)
		syscall(SYS_futex, (uint32_t *)&p->flags, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	return true;
}

static void warn_forged(struct cache_inode *ci, uint64_t index, const char *what);

/* Undo break_shared_lock(p, f) if nobody took the page since. */
static bool restore_shared_lock(struct shm_page *p, uint32_t f)
{
	uint32_t broken = f & ~(PG_locked | PG_waiters | PG_OWNER_MASK);

	if (!atomic_compare_exchange_strong(&p->flags, &broken, f & ~PG_waiters))
		return false;
	atomic_store(&p->lock_owner, page_lock_owner_of(f));
	return true;
}

bool cache_break_lock_of(struct cache_inode *ci, uint64_t index, uint32_t owner)
{
	struct shm_page *p = cache_page(ci, index);
	uint32_t f = page_flags(p);

	if (!(f & PG_locked) || page_lock_owner_of(f) != owner || owner == NTFSD_LOCK_OWNER_DAEMON)
		return false;
	if (!break_shared_lock(p, f))
		return false;
	warn_forged(ci, index, "a lock in the name of a writer that does not hold it (as it "
		    "says)");
	return true;
}

static void warn_forged(struct cache_inode *ci, uint64_t index, const char *what)
{
	if (atomic_exchange(&ci->warned_forged, true))
		return;
	log_warning("MFT record %llu, page %llu: %s: broken (a client wrote page state it "
		    "does not own; logged once per file)", (unsigned long long)ci->mft_no,
		    (unsigned long long)index, what);
}

/* With PP_LOCKED held: take the shared lock, judging whoever holds it. */
static void lock_shared(struct cache_inode *ci, uint64_t index)
{
	struct cache *c = ci->cache;
	struct shm_page *p = cache_page(ci, index);
	uint64_t since = 0;
	uint32_t held_by = 0;

	while (!trylock_page(p, NTFSD_LOCK_OWNER_DAEMON)) {
		uint32_t f = page_flags(p), owner = page_lock_owner_of(f);
		uint64_t limit, t;

		if (!(f & PG_locked))
			continue;
		if (owner == NTFSD_LOCK_OWNER_DAEMON || owner == 0) {
			/* no daemon thread holds it: we hold PP_LOCKED */
			if (break_shared_lock(p, f))
				warn_forged(ci, index, owner ? "a lock in the daemon's name"
							     : "a lock without an owner");
			continue;
		}
		if (!cache_holder_may_lock(c, owner, ci)) {
			if (break_shared_lock(p, f))
				warn_forged(ci, index, "a lock held by no writer of the file");
			continue;
		}
		if (!cache_holder_claims(c, owner, ci, index)) {
			/* a writer's id, but its lock table has no entry for
			 * the page: forged in its name (an entry goes in
			 * before a lock is taken and out after it is dropped) */
			if (break_shared_lock(p, f)) {
				/* it may have taken the page since we looked at its
				 * table: then the lock was its own, give it back */
				if (cache_holder_claims(c, owner, ci, index) &&
				    restore_shared_lock(p, f))
					continue;
				warn_forged(ci, index, "a lock in the name of a writer that does "
					    "not hold it");
			}
			held_by = 0;
			continue;
		}
		t = now_ms();
		if (owner != held_by) {
			held_by = owner;
			since = t;
		}
		limit = atomic_load(&c->max_lock_hold_ms);
		if (limit && t - since >= limit) {
			cache_holder_expire(c, owner, ci, index, t - since);
			continue;       /* now no holder: broken on the next turn */
		}
		if (lock_page_timeout(p, NTFSD_LOCK_OWNER_DAEMON, HOLDER_POLL_MS))
			return;
	}
}

static void lock_page_private(struct cache_inode *ci, uint64_t index)
{
	_Atomic uint32_t *w = &cache_page_priv(ci, index)->state;

	while (!priv_trylock(w))
		priv_wait_clear(w, PP_LOCKED);
	lock_shared(ci, index);
}

static bool trylock_page_private(struct cache_inode *ci, uint64_t index)
{
	struct shm_page *p = cache_page(ci, index);
	uint32_t f;

	if (!priv_trylock(&cache_page_priv(ci, index)->state))
		return false;
	if (trylock_page(p, NTFSD_LOCK_OWNER_DAEMON))
		return true;
	f = page_flags(p);
	if (page_lock_owner_of(f) == NTFSD_LOCK_OWNER_DAEMON || !page_lock_owner_of(f) ||
	    !cache_holder_may_lock(ci->cache, page_lock_owner_of(f), ci)) {
		/* forged: take the lock the slow way, which breaks it */
		lock_shared(ci, index);
		return true;
	}
	priv_clear_wake(&cache_page_priv(ci, index)->state, PP_LOCKED);
	return false;
}

static void unlock_page_private(struct cache_inode *ci, uint64_t index)
{
	unlock_page(cache_page(ci, index));
	priv_clear_wake(&cache_page_priv(ci, index)->state, PP_LOCKED);
}

#if NTFSD_LOCKDEP

void cache_lock_page_at(struct cache_inode *ci, uint64_t index, const char *file, int line)
{
	lockdep_page_before(file, line);
	lock_page_private(ci, index);
	lockdep_page_acquired(file, line);
}

bool cache_trylock_page_at(struct cache_inode *ci, uint64_t index, const char *file, int line)
{
	if (!trylock_page_private(ci, index))
		return false;
	lockdep_page_acquired(file, line);
	return true;
}

void cache_unlock_page_at(struct cache_inode *ci, uint64_t index, const char *file, int line)
{
	lockdep_page_release(file, line);
	unlock_page_private(ci, index);
}

void cache_assert_page_locked_at(const struct cache_inode *ci, uint64_t index, const char *file,
				 int line)
{
	if (!(atomic_load(&cache_page_priv(ci, index)->state) & PP_LOCKED) || !lockdep_pages_held()) {
		log_error("lockdep: %s:%d: page %llu of MFT record %llu must be locked here and "
			  "is not", file, line, (unsigned long long)index,
			  (unsigned long long)ci->mft_no);
		abort();
	}
}

#else

void cache_lock_page(struct cache_inode *ci, uint64_t index)
{
	lock_page_private(ci, index);
}

bool cache_trylock_page(struct cache_inode *ci, uint64_t index)
{
	return trylock_page_private(ci, index);
}

void cache_unlock_page(struct cache_inode *ci, uint64_t index)
{
	unlock_page_private(ci, index);
}

#endif

void cache_set_page_writeback(struct cache_inode *ci, uint64_t index)
{
	cache_assert_page_locked(ci, index);
	atomic_fetch_or(&cache_page_priv(ci, index)->state, PP_WRITEBACK);
	page_set_bits(cache_page(ci, index), PG_writeback);
}

void cache_end_page_writeback(struct cache_inode *ci, uint64_t index)
{
	end_page_writeback(cache_page(ci, index));
	priv_clear_wake(&cache_page_priv(ci, index)->state, PP_WRITEBACK);
}

bool cache_page_writeback(const struct cache_inode *ci, uint64_t index)
{
	return atomic_load(&cache_page_priv(ci, index)->state) & PP_WRITEBACK;
}

void cache_wait_on_page_writeback(struct cache_inode *ci, uint64_t index)
{
#if NTFSD_LOCKDEP
	lockdep_wait_writeback(__FILE__, __LINE__);
#endif
	priv_wait_clear(&cache_page_priv(ci, index)->state, PP_WRITEBACK);
}

bool cache_clear_forged_writeback(struct cache_inode *ci, uint64_t index)
{
	struct shm_page *p = cache_page(ci, index);

	cache_assert_page_locked(ci, index);
	if (!page_test(p, PG_writeback) || cache_page_writeback(ci, index))
		return false;
	clear_page_bits_wake(p, PG_writeback);
	warn_forged(ci, index, "a writeback flag the daemon never set");
	return true;
}

void cache_pin_page(struct cache_inode *ci, uint64_t index, uint32_t n)
{
	atomic_fetch_add(&cache_page_priv(ci, index)->pins, n);
	page_pin(cache_page(ci, index));
	if (n > 1)
		atomic_fetch_add(&cache_page(ci, index)->pincount, n - 1);
}

void cache_unpin_page(struct cache_inode *ci, uint64_t index, uint32_t n)
{
	atomic_fetch_sub(&cache_page_priv(ci, index)->pins, n);
	atomic_fetch_sub(&cache_page(ci, index)->pincount, n);
}

bool cache_page_pinned(const struct cache_inode *ci, uint64_t index)
{
	return atomic_load(&cache_page_priv(ci, index)->pins) != 0;
}
