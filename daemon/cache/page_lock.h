/*
 * page_lock.h — the daemon's page locks and writeback bits, over page state
 * that clients can write.
 *
 * A page's shared flags word (shm/page.h) is writable by every client with
 * a writable handle on the file, so the daemon never trusts it for its own
 * bookkeeping.  Each page also has daemon-private state (struct page_priv):
 *
 *  - priv.state PP_LOCKED: a daemon thread holds the page.  Daemon threads
 *    exclude each other with it first, then take the shared PG_locked with
 *    owner NTFSD_LOCK_OWNER_DAEMON to exclude clients.  So a shared lock
 *    naming the daemon, seen by the thread that holds PP_LOCKED, is forged
 *    and is broken at once.
 *  - A shared lock naming anyone else is judged by the holder table
 *    (holders.h): an id that is not a connected client with a writable
 *    handle on this file is broken at once, and so is one whose lock
 *    table (shm_layout.h, writable by that client only) has no entry for
 *    the page: another writer forged it in that client's name.  A real
 *    holder is waited for at most max_lock_hold_ms, then disconnected and
 *    its lock broken.
 *  - priv.state PP_WRITEBACK is the truth about writeback: the daemon sets
 *    it before the shared PG_writeback and clears it after; the daemon
 *    waits on it, never on the shared bit.  A shared PG_writeback without
 *    it is forged and cleared (page locked) where the daemon meets it.
 *  - priv.pins counts the daemon's pins; the shared pincount mirrors it for
 *    clients and is never read back.
 *
 * Every break of a forged or expired lock is logged (once per file for
 * forged ones).  Waits on private state are unbounded (daemon threads
 * only hold it for bounded work); waits on client state never are.
 */
#ifndef NTFSD_CACHE_PAGE_LOCK_H
#define NTFSD_CACHE_PAGE_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "lockdep.h"

struct cache_inode;

#define PP_LOCKED    (1u << 0)
#define PP_WRITEBACK (1u << 1)
#define PP_WAITERS   (1u << 2)

struct page_priv {
	_Atomic uint32_t state;
	_Atomic uint32_t pins;
	_Atomic uint8_t referenced;       /* clock bit for reclaim */
	_Atomic uint8_t counted;          /* counted in cached_pages (memory held) */
	uint8_t reserved[6];
};

/* Page locks are rank LOCK_PAGE of the lock order (cache.h): with
 * NTFSD_LOCKDEP each call also tells the checker (lockdep.h), with the
 * caller's file and line; without it they are plain functions. */
#if NTFSD_LOCKDEP
void cache_lock_page_at(struct cache_inode *ci, uint64_t index, const char *file, int line);
bool cache_trylock_page_at(struct cache_inode *ci, uint64_t index, const char *file, int line);
void cache_unlock_page_at(struct cache_inode *ci, uint64_t index, const char *file, int line);
/* A daemon thread holds page index (this thread holds some page lock). */
void cache_assert_page_locked_at(const struct cache_inode *ci, uint64_t index, const char *file,
				 int line);
#define cache_lock_page(ci, i) cache_lock_page_at((ci), (i), __FILE__, __LINE__)
#define cache_trylock_page(ci, i) cache_trylock_page_at((ci), (i), __FILE__, __LINE__)
#define cache_unlock_page(ci, i) cache_unlock_page_at((ci), (i), __FILE__, __LINE__)
#define cache_assert_page_locked(ci, i) cache_assert_page_locked_at((ci), (i), __FILE__, __LINE__)
#else
void cache_lock_page(struct cache_inode *ci, uint64_t index);
bool cache_trylock_page(struct cache_inode *ci, uint64_t index);
void cache_unlock_page(struct cache_inode *ci, uint64_t index);
#define cache_assert_page_locked(ci, i) ((void)(ci), (void)(i))
#endif

/* Page locked: the page goes under writeback (private, then shared bit). */
void cache_set_page_writeback(struct cache_inode *ci, uint64_t index);
/* The last completion: clear both and wake the daemon's waiters. */
void cache_end_page_writeback(struct cache_inode *ci, uint64_t index);
bool cache_page_writeback(const struct cache_inode *ci, uint64_t index);
/* Only wb_lock and size_lock may be held (the end of writeback may need a
 * page lock, init_lock and rl_lock; checked with NTFSD_LOCKDEP). */
void cache_wait_on_page_writeback(struct cache_inode *ci, uint64_t index);
/* Page locked: drop a shared PG_writeback the daemon did not set (a
 * client's forgery); true if there was one. */
bool cache_clear_forged_writeback(struct cache_inode *ci, uint64_t index);

void cache_pin_page(struct cache_inode *ci, uint64_t index, uint32_t n);
void cache_unpin_page(struct cache_inode *ci, uint64_t index, uint32_t n);
bool cache_page_pinned(const struct cache_inode *ci, uint64_t index);

/* A client asks for a lock in its own name that it does not hold (its
 * lock table says so) to be broken: break page index's shared lock if it
 * names owner.  Only the owner's own locks, so a client can hurt no one
 * else with it.  True when broken. */
bool cache_break_lock_of(struct cache_inode *ci, uint64_t index, uint32_t owner);

#endif
