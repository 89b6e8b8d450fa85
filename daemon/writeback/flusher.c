/*
 * flusher.c — see flusher.h.
 *
 * Invariants: the pool's lock is a leaf of the lock order (cache.h): it
 * guards the stop flag, the kicks and the live thresholds, and nothing is
 * taken under it; an inode's wb_lock is only tried here, so a flusher never
 * waits behind a sync of the same inode.
 */
#include "flusher.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "cache.h"
#include "log.h"
#include "page.h"
#include "utimes.h"
#include "dirops.h"
#include "writeback.h"

#define TICK_MS 100

struct flusher_pool {
	struct cache *cache;
	pthread_t *threads;
	unsigned nthreads;
	struct cache_mutex lock;
	pthread_cond_t cond;
	bool stop;
	unsigned kicks;
	struct flusher_config cfg;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t flusher_count_dirty(struct cache *c)
{
	struct cache_inode *ci;
	uint64_t n = 0;

	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci; ci = ci->next)
		n += cache_nr_dirty(ci);
	cache_mutex_unlock(&c->lock);
	atomic_store(&c->header->counters.dirty_pages, n);
	return n;
}

static bool inode_expired(struct cache_inode *ci, uint64_t expire_ns)
{
	uint64_t i = 0, now = now_ns();

	while ((i = dirty_bitmap_next(cache_dirty(ci), i)) != UINT64_MAX) {
		uint64_t t = atomic_load(&cache_page(ci, i)->first_dirtied_ns);

		if (t && now - t >= expire_ns)
			return true;
		i++;
	}
	return false;
}

/* Clusters allocated past the end as room to grow, in a file nobody has
 * open (c->lock held): given back by the next pass, not only at a sync. */
static bool idle_room(const struct cache_inode *ci)
{
	return ci->trim_pending && !ci->openers;
}

/* Take a reference on the dirty inode with the lowest MFT number at or
 * after *cursor and move the cursor past it, or NULL.  Keyed by MFT number,
 * not list position, so inodes freed meanwhile cannot make it skip one.
 * busy: also an inode that a writeback pass is writing (a sync must wait
 * for the pages that pass took: they are no longer dirty, and their
 * writes, or their errors, are not done yet).  The dirty count is read
 * before wb_running, which a pass sets before it takes a dirty page and
 * clears after its last page ended: an inode seen with neither has nothing
 * dirty and nothing in flight that was dirty before. */
static struct cache_inode *next_dirty_inode(struct cache *c, uint64_t *cursor, bool busy)
{
	struct cache_inode *ci, *pick = NULL;

	cache_mutex_lock(&c->lock);
	for (ci = c->inodes; ci; ci = ci->next)
		if (ci->mft_no >= *cursor && (!pick || ci->mft_no < pick->mft_no) &&
		    (cache_has_dirty(ci) || cache_inode_meta_dirty(ci) || idle_room(ci) ||
		     (atomic_load(&ci->orphan) && !ci->openers) ||
		     (busy && atomic_load(&ci->wb_running))))
			pick = ci;
	if (pick) {
		pick->refs++;
		*cursor = pick->mft_no + 1;
	}
	cache_mutex_unlock(&c->lock);
	return pick;
}

/* Drop the reference to ci, then bring its directory entries up to date
 * if its write-back wrote its inode: by number, with no reference held
 * (cache/utimes.h). */
static void put_and_sync_dir_copies(struct cache *c, struct cache_inode *ci)
{
	uint64_t ino = ci->mft_no;
	bool copies = cache_take_dir_copies(ci);

	cache_inode_put(ci);
	if (copies)
		cache_sync_dir_copies(c, ino);
}

/* One background pass: write back inodes that need it. */
static void flusher_pass(struct flusher_pool *fp, bool all)
{
	struct cache *c = fp->cache;
	uint64_t dirty = flusher_count_dirty(c), cursor = 0;
	bool over = dirty * NTFSD_PAGE_SIZE > fp->cfg.dirty_background;
	struct cache_inode *ci;

	while ((ci = next_dirty_inode(c, &cursor, false))) {
		if (cache_evict_orphan(ci)) {   /* closed after its unlink: freed */
			cache_inode_put(ci);
			continue;
		}
		uint64_t expire_ns = fp->cfg.expire_ms * 1000000ull;
		bool idle = !cache_has_dirty(ci) && !cache_inode_meta_dirty(ci);
		/* data written, the inode (sizes, times) not yet, and nothing
		 * changed for the expiry: write the inode now, not at a sync */
		bool meta = !cache_has_dirty(ci) && cache_inode_meta_dirty(ci) &&
			    cache_realtime_ns() - atomic_load(&ci->mtime_ns) >= expire_ns;

		if ((all || over || idle || meta || inode_expired(ci, expire_ns)) &&
		    cache_mutex_trylock(&ci->wb_lock)) {
			/* an idle file with room to give back, or with its inode
			 * to write: a sync pass writes its sizes and times and
			 * trims (writeback_inode_locked) */
			writeback_inode_locked(ci, idle || meta);
			cache_mutex_unlock(&ci->wb_lock);
		}
		put_and_sync_dir_copies(c, ci);
	}
	flusher_count_dirty(c);
}

static void *flusher_main(void *arg)
{
	struct flusher_pool *fp = arg;
	unsigned seen = 0;

	cache_mutex_lock(&fp->lock);
	while (!fp->stop) {
		struct timespec ts;
		bool kicked;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (fp->kicks == seen)
			pthread_cond_timedwait(&fp->cond, &fp->lock.m, &ts);
		if (fp->stop)
			break;
		kicked = fp->kicks != seen;
		seen = fp->kicks;
		cache_mutex_unlock(&fp->lock);
		flusher_pass(fp, kicked);
		cache_mutex_lock(&fp->lock);
	}
	cache_mutex_unlock(&fp->lock);
	return NULL;
}

int flusher_start(struct cache *c, const struct flusher_config *cfg, struct flusher_pool **out)
{
	struct flusher_pool *fp = calloc(1, sizeof(*fp));
	unsigned i;

	if (!fp)
		return -ENOMEM;
	fp->cache = c;
	fp->cfg = *cfg;
	fp->nthreads = cfg->threads ? cfg->threads : 1;
	fp->threads = calloc(fp->nthreads, sizeof(*fp->threads));
	if (!fp->threads) {
		free(fp);
		return -ENOMEM;
	}
	cache_mutex_init(&fp->lock, LOCK_FLUSHER);
	pthread_cond_init(&fp->cond, NULL);
	atomic_store(&c->header->dirty_limit, cfg->dirty_limit);
	atomic_store(&c->header->dirty_background, cfg->dirty_background);
	for (i = 0; i < fp->nthreads; i++)
		if (pthread_create(&fp->threads[i], NULL, flusher_main, fp)) {
			fp->nthreads = i;
			break;
		}
	*out = fp;
	return 0;
}

void flusher_stop(struct flusher_pool *fp)
{
	unsigned i;

	if (!fp)
		return;
	cache_mutex_lock(&fp->lock);
	fp->stop = true;
	pthread_cond_broadcast(&fp->cond);
	cache_mutex_unlock(&fp->lock);
	for (i = 0; i < fp->nthreads; i++)
		pthread_join(fp->threads[i], NULL);
	pthread_cond_destroy(&fp->cond);
	cache_mutex_destroy(&fp->lock);
	free(fp->threads);
	free(fp);
}

void flusher_kick(struct flusher_pool *fp)
{
	cache_mutex_lock(&fp->lock);
	fp->kicks++;
	pthread_cond_broadcast(&fp->cond);
	cache_mutex_unlock(&fp->lock);
}

void flusher_set_config(struct flusher_pool *fp, const struct flusher_config *cfg)
{
	cache_mutex_lock(&fp->lock);
	fp->cfg.dirty_background = cfg->dirty_background;
	fp->cfg.dirty_limit = cfg->dirty_limit;
	fp->cfg.expire_ms = cfg->expire_ms;
	atomic_store(&fp->cache->header->dirty_limit, cfg->dirty_limit);
	atomic_store(&fp->cache->header->dirty_background, cfg->dirty_background);
	cache_mutex_unlock(&fp->lock);
}

/* A writer waits at most this long per request: pages that cannot be
 * cleaned (held by a truncate, failing, or dirtied by a client as fast as
 * they are written) must not keep a pool thread forever. */
#define BALANCE_MAX_NS (5ull * 1000000000ull)

void flusher_balance_dirty(struct flusher_pool *fp)
{
	struct cache *c = fp->cache;
	uint64_t deadline = now_ns() + BALANCE_MAX_NS;

	while (fp->cfg.dirty_limit && now_ns() < deadline &&
	       flusher_count_dirty(c) * NTFSD_PAGE_SIZE > fp->cfg.dirty_limit) {
		struct cache_inode *ci;
		uint64_t cursor = 0;

		flusher_kick(fp);
		/* write back ourselves too: the writer waits for real progress */
		while ((ci = next_dirty_inode(c, &cursor, false))) {
			writeback_inode(ci, false);
			cache_inode_put(ci);
		}
	}
}

int flusher_sync_all(struct cache *c)
{
	struct cache_inode *ci;
	uint64_t cursor = 0;
	int err, first = 0;

	while ((ci = next_dirty_inode(c, &cursor, true))) {
		if (cache_evict_orphan(ci)) {
			cache_inode_put(ci);
			continue;
		}
		err = writeback_inode(ci, true);
		if (err && !first)
			first = err;
		put_and_sync_dir_copies(c, ci);
	}
	flusher_count_dirty(c);
	return first;
}
