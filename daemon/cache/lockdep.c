/*
 * lockdep.c — the lock-order checker of debug and sanitizer builds (see
 * lockdep.h; the order itself is the numbered list in cache.h).
 *
 * Invariants: the state is per thread (_Thread_local), so recording costs
 * no lock; a thread holds at most LOCKDEP_DEPTH checked locks at once (the
 * deepest nesting the order allows is one of each rank) and any number of
 * page locks, counted; every report is one log line naming the site, the
 * lock and what the thread holds, followed by abort(), so a violation is
 * fatal where it happens, never a deadlock some time later.
 */
#include "lockdep.h"

#if NTFSD_LOCKDEP

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define LOCKDEP_DEPTH 16

struct held_lock {
	const void *lock;
	const char *file;
	int line;
	uint8_t rank, mode;
};

static _Thread_local struct {
	struct held_lock h[LOCKDEP_DEPTH];
	unsigned n;
	unsigned pages;                 /* page locks held */
	const char *page_file;          /* where the first of them was taken */
	int page_line;
} held;

static const char *const rank_names[LOCK_NR_RANKS] = {
	[LOCK_NS] = "ns_lock",
	[LOCK_WB] = "wb_lock",
	[LOCK_SIZE] = "size_lock",
	[LOCK_PAGE] = "a page lock",
	[LOCK_INIT] = "init_lock",
	[LOCK_RL] = "rl_lock",
	[LOCK_RECLAIM] = "reclaim_lock",
	[LOCK_CACHE] = "cache->lock",
	[LOCK_HOLDERS] = "the holder table lock",
	[LOCK_FLUSHER] = "the flusher pool lock",
};

static const char *rank_name(unsigned rank)
{
	return rank > 0 && rank < LOCK_NR_RANKS ? rank_names[rank] : "an unranked lock";
}

/* Where a file name starts inside the tree: "daemon/cache/x.c". */
static const char *short_file(const char *file)
{
	const char *p = strstr(file, "daemon/");

	return p ? p : file;
}

/* What the thread holds, for a report. */
static void describe_held(char *buf, size_t size)
{
	size_t off = 0;
	unsigned i;

	buf[0] = 0;
	for (i = 0; i < held.n && off < size; i++)
		off += (size_t)snprintf(buf + off, size - off, "%s%s (rank %u, %s at %s:%d)",
					off ? ", " : "", rank_name(held.h[i].rank), held.h[i].rank,
					held.h[i].mode == LOCKDEP_READ ? "read-locked" : "locked",
					short_file(held.h[i].file), held.h[i].line);
	if (held.pages && off < size)
		off += (size_t)snprintf(buf + off, size - off, "%s%u page lock%s (rank %u, the "
					"first taken at %s:%d)", off ? ", " : "", held.pages,
					held.pages == 1 ? "" : "s", LOCK_PAGE,
					short_file(held.page_file), held.page_line);
	if (!off)
		snprintf(buf, size, "nothing");
}

__attribute__((noreturn, format(printf, 3, 4)))
static void lockdep_fail(const char *file, int line, const char *fmt, ...)
{
	char what[512], holds[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	describe_held(holds, sizeof(holds));
	log_error("lockdep: %s:%d: %s; this thread holds %s (the lock order is at the top of "
		  "daemon/cache/cache.h)", short_file(file), line, what, holds);
	abort();
}

static const struct held_lock *find(const void *lock)
{
	unsigned i;

	for (i = held.n; i-- > 0;)
		if (held.h[i].lock == lock)
			return &held.h[i];
	return NULL;
}

void lockdep_before(const void *lock, enum cache_lock_rank rank, const char *file, int line)
{
	const struct held_lock *h = find(lock);
	unsigned i;

	if (h)
		lockdep_fail(file, line, "waiting for %s (rank %u) that this thread already "
			     "holds since %s:%d (self-deadlock)", rank_name(rank), rank,
			     short_file(h->file), h->line);
	if (held.pages && rank < LOCK_PAGE)
		lockdep_fail(file, line, "lock order violation: waiting for %s (rank %u) while holding a "
			     "page lock (rank %u)", rank_name(rank), rank, LOCK_PAGE);
	for (i = 0; i < held.n; i++)
		if (held.h[i].rank >= rank)
			lockdep_fail(file, line, "lock order violation: waiting for %s (rank %u) while "
				     "holding %s (rank %u, taken at %s:%d)", rank_name(rank), rank,
				     rank_name(held.h[i].rank), held.h[i].rank,
				     short_file(held.h[i].file), held.h[i].line);
}

void lockdep_acquired(const void *lock, enum cache_lock_rank rank, int mode, const char *file,
		      int line)
{
	if (held.n == LOCKDEP_DEPTH)
		lockdep_fail(file, line, "taking %s: more than %u locks held at once",
			     rank_name(rank), LOCKDEP_DEPTH);
	held.h[held.n++] = (struct held_lock){ .lock = lock, .file = file, .line = line,
					       .rank = (uint8_t)rank, .mode = (uint8_t)mode };
}

void lockdep_release(const void *lock, enum cache_lock_rank rank, const char *file, int line)
{
	unsigned i;

	for (i = held.n; i-- > 0;)
		if (held.h[i].lock == lock) {
			memmove(&held.h[i], &held.h[i + 1], (held.n - i - 1) * sizeof(held.h[0]));
			held.n--;
			return;
		}
	lockdep_fail(file, line, "releasing %s (rank %u) that this thread does not hold",
		     rank_name(rank), rank);
}

bool lockdep_held(const void *lock)
{
	return find(lock) != NULL;
}

void lockdep_assert_held(const void *lock, enum cache_lock_rank rank, const char *file, int line)
{
	if (!find(lock))
		lockdep_fail(file, line, "%s (rank %u) must be held here and is not",
			     rank_name(rank), rank);
}

void lockdep_page_before(const char *file, int line)
{
	unsigned i;

	for (i = 0; i < held.n; i++)
		if (held.h[i].rank > LOCK_PAGE)
			lockdep_fail(file, line, "lock order violation: waiting for a page lock (rank %u) "
				     "while holding %s (rank %u, taken at %s:%d)", LOCK_PAGE,
				     rank_name(held.h[i].rank), held.h[i].rank,
				     short_file(held.h[i].file), held.h[i].line);
	if (held.pages)
		lockdep_fail(file, line, "lock order violation: waiting for a page lock while holding "
			     "another (a second page lock may only be tried: cache_trylock_page)");
}

void lockdep_page_acquired(const char *file, int line)
{
	if (!held.pages++) {
		held.page_file = file;
		held.page_line = line;
	}
}

void lockdep_page_release(const char *file, int line)
{
	if (!held.pages)
		lockdep_fail(file, line, "unlocking a page while this thread holds no page lock");
	held.pages--;
}

unsigned lockdep_pages_held(void)
{
	return held.pages;
}

void lockdep_wait_writeback(const char *file, int line)
{
	unsigned i;

	if (held.pages)
		lockdep_fail(file, line, "lock order violation: waiting for a page's writeback while "
			     "holding a page lock (its end may need the page lock)");
	for (i = 0; i < held.n; i++)
		if (held.h[i].rank > LOCK_SIZE)
			lockdep_fail(file, line, "lock order violation: waiting for a page's writeback while "
				     "holding %s (rank %u, taken at %s:%d), which its end may need",
				     rank_name(held.h[i].rank), held.h[i].rank,
				     short_file(held.h[i].file), held.h[i].line);
}

void lockdep_may_sleep(const char *file, int line)
{
	unsigned i;

	for (i = 0; i < held.n; i++)
		if (held.h[i].rank >= LOCK_RECLAIM)
			lockdep_fail(file, line, "disk I/O or a sleep while holding %s (rank "
				     "%u, taken at %s:%d), which is never held across them",
				     rank_name(held.h[i].rank), held.h[i].rank,
				     short_file(held.h[i].file), held.h[i].line);
}

void cache_mutex_init(struct cache_mutex *l, enum cache_lock_rank rank)
{
	pthread_mutex_init(&l->m, NULL);
	l->rank = rank;
}

void cache_rwlock_init(struct cache_rwlock *l, enum cache_lock_rank rank,
		       const pthread_rwlockattr_t *attr)
{
	pthread_rwlock_init(&l->l, attr);
	l->rank = rank;
}

#else

/* ISO C wants a translation unit to declare something. */
typedef int lockdep_unused;

#endif
