/*
 * lockdep.h — the daemon's locks, with their rank in the lock order
 * (cache.h), checked in debug and sanitizer builds.
 *
 * Invariants:
 *  - Every daemon lock of cache/, writeback/ and the holder table is a
 *    struct cache_mutex or struct cache_rwlock given its rank at init; the
 *    page locks (page_lock.c) report to the checker as rank LOCK_PAGE.
 *  - With NTFSD_LOCKDEP (meson: buildtype debug, or any b_sanitize), each
 *    thread records what it holds: a small stack of the locks (with the
 *    file and line that took them) and a count of page locks.  A thread
 *    that waits for a lock whose rank is not above every rank it holds
 *    (the same rank included: no two inodes' wb_lock at once), that waits
 *    for a second page lock, or that releases a lock it does not hold is
 *    a bug: the checker names both locks and where they were taken, and
 *    aborts.  A trylock can never deadlock, so it is not checked against
 *    the order, only recorded.
 *  - Without NTFSD_LOCKDEP the wrappers are the pthread calls and the
 *    structs hold only the pthread object: zero cost, same behaviour.
 */
#ifndef NTFSD_CACHE_LOCKDEP_H
#define NTFSD_CACHE_LOCKDEP_H

#include <pthread.h>
#include <stdbool.h>

#ifndef NTFSD_LOCKDEP
#define NTFSD_LOCKDEP 0
#endif

/* The lock order, outermost first: see the numbered list in cache.h. */
enum cache_lock_rank {
	LOCK_NS = 1,          /* cache.ns_lock: lookups against namespace changes */
	LOCK_WB,              /* cache_inode.wb_lock */
	LOCK_SIZE,            /* cache_inode.size_lock */
	LOCK_PAGE,            /* page locks (page_lock.h) */
	LOCK_INIT,            /* cache_inode.init_lock */
	LOCK_RL,              /* cache_inode.rl_lock */
	LOCK_RECLAIM,         /* cache.reclaim_lock */
	LOCK_CACHE,           /* cache.lock */
	LOCK_HOLDERS,         /* the holder table's lock (holders.c) */
	LOCK_FLUSHER,         /* the flusher pool's lock (writeback/flusher.c) */
	LOCK_NR_RANKS
};

struct cache_mutex {
	pthread_mutex_t m;
#if NTFSD_LOCKDEP
	enum cache_lock_rank rank;
#endif
};

struct cache_rwlock {
	pthread_rwlock_t l;
#if NTFSD_LOCKDEP
	enum cache_lock_rank rank;
#endif
};

#if NTFSD_LOCKDEP

/* The checker (lockdep.c).  mode: what the thread holds the lock for. */
enum { LOCKDEP_EXCL = 0, LOCKDEP_READ = 1 };
void lockdep_before(const void *lock, enum cache_lock_rank rank, const char *file, int line);
void lockdep_acquired(const void *lock, enum cache_lock_rank rank, int mode, const char *file,
		      int line);
void lockdep_release(const void *lock, enum cache_lock_rank rank, const char *file, int line);
bool lockdep_held(const void *lock);
void lockdep_assert_held(const void *lock, enum cache_lock_rank rank, const char *file, int line);
/* Page locks: counted per thread. */
void lockdep_page_before(const char *file, int line);
void lockdep_page_acquired(const char *file, int line);
void lockdep_page_release(const char *file, int line);
unsigned lockdep_pages_held(void);
/* Waiting for a page's writeback: its end may need a page lock, init_lock
 * and rl_lock (writeback.c), so only wb_lock and size_lock may be held. */
void lockdep_wait_writeback(const char *file, int line);
/* Disk I/O and sleeps: never under reclaim_lock, cache->lock, the holder
 * table or the flusher pool's lock. */
void lockdep_may_sleep(const char *file, int line);

void cache_mutex_init(struct cache_mutex *l, enum cache_lock_rank rank);
void cache_rwlock_init(struct cache_rwlock *l, enum cache_lock_rank rank,
		       const pthread_rwlockattr_t *attr);

static inline void cache_mutex_lock_at(struct cache_mutex *l, const char *file, int line)
{
	lockdep_before(l, l->rank, file, line);
	pthread_mutex_lock(&l->m);
	lockdep_acquired(l, l->rank, LOCKDEP_EXCL, file, line);
}

static inline bool cache_mutex_trylock_at(struct cache_mutex *l, const char *file, int line)
{
	if (pthread_mutex_trylock(&l->m))
		return false;
	lockdep_acquired(l, l->rank, LOCKDEP_EXCL, file, line);
	return true;
}

static inline void cache_mutex_unlock_at(struct cache_mutex *l, const char *file, int line)
{
	lockdep_release(l, l->rank, file, line);
	pthread_mutex_unlock(&l->m);
}

static inline void cache_rwlock_rdlock_at(struct cache_rwlock *l, const char *file, int line)
{
	lockdep_before(l, l->rank, file, line);
	pthread_rwlock_rdlock(&l->l);
	lockdep_acquired(l, l->rank, LOCKDEP_READ, file, line);
}

static inline void cache_rwlock_wrlock_at(struct cache_rwlock *l, const char *file, int line)
{
	lockdep_before(l, l->rank, file, line);
	pthread_rwlock_wrlock(&l->l);
	lockdep_acquired(l, l->rank, LOCKDEP_EXCL, file, line);
}

static inline void cache_rwlock_unlock_at(struct cache_rwlock *l, const char *file, int line)
{
	lockdep_release(l, l->rank, file, line);
	pthread_rwlock_unlock(&l->l);
}

#define cache_mutex_lock(l) cache_mutex_lock_at((l), __FILE__, __LINE__)
#define cache_mutex_trylock(l) cache_mutex_trylock_at((l), __FILE__, __LINE__)
#define cache_mutex_unlock(l) cache_mutex_unlock_at((l), __FILE__, __LINE__)
#define cache_rwlock_rdlock(l) cache_rwlock_rdlock_at((l), __FILE__, __LINE__)
#define cache_rwlock_wrlock(l) cache_rwlock_wrlock_at((l), __FILE__, __LINE__)
#define cache_rwlock_unlock(l) cache_rwlock_unlock_at((l), __FILE__, __LINE__)
/* The calling thread holds l (a cache_mutex or a cache_rwlock, either mode). */
#define cache_assert_held(l) lockdep_assert_held((l), (l)->rank, __FILE__, __LINE__)
/* Only in NTFSD_LOCKDEP code: does the calling thread hold l? */
#define cache_lock_held(l) lockdep_held(l)
#define cache_assert_may_sleep() lockdep_may_sleep(__FILE__, __LINE__)

#else /* !NTFSD_LOCKDEP: the plain pthread calls */

static inline void cache_mutex_init(struct cache_mutex *l, enum cache_lock_rank rank)
{
	(void)rank;
	pthread_mutex_init(&l->m, NULL);
}

static inline void cache_rwlock_init(struct cache_rwlock *l, enum cache_lock_rank rank,
				     const pthread_rwlockattr_t *attr)
{
	(void)rank;
	pthread_rwlock_init(&l->l, attr);
}

static inline void cache_mutex_lock(struct cache_mutex *l)
{
	pthread_mutex_lock(&l->m);
}

static inline bool cache_mutex_trylock(struct cache_mutex *l)
{
	return !pthread_mutex_trylock(&l->m);
}

static inline void cache_mutex_unlock(struct cache_mutex *l)
{
	pthread_mutex_unlock(&l->m);
}

static inline void cache_rwlock_rdlock(struct cache_rwlock *l)
{
	pthread_rwlock_rdlock(&l->l);
}

static inline void cache_rwlock_wrlock(struct cache_rwlock *l)
{
	pthread_rwlock_wrlock(&l->l);
}

static inline void cache_rwlock_unlock(struct cache_rwlock *l)
{
	pthread_rwlock_unlock(&l->l);
}

#define cache_assert_held(l) ((void)sizeof(l))
#define cache_assert_may_sleep() ((void)0)

#endif /* NTFSD_LOCKDEP */

static inline void cache_mutex_destroy(struct cache_mutex *l)
{
	pthread_mutex_destroy(&l->m);
}

static inline void cache_rwlock_destroy(struct cache_rwlock *l)
{
	pthread_rwlock_destroy(&l->l);
}

#endif
