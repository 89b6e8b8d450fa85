/*
 * flusher.h — the flusher pool: background writeback and dirty throttling.
 *
 * Invariants: background writeback starts when dirty data passes
 * dirty_background or a page has been dirty longer than the expiry; a
 * writer past dirty_limit is held in flusher_balance_dirty() until dirty
 * data falls back under it (throttled, never failed).  Each inode is
 * written back by at most one thread at a time (its wb_lock).  The
 * header's dirty_pages counter is recomputed from the page-state segments,
 * which clients dirty directly.
 */
#ifndef NTFSD_FLUSHER_H
#define NTFSD_FLUSHER_H

#include <stdint.h>

struct cache;

struct flusher_config {
	unsigned threads;
	uint64_t dirty_background;      /* bytes */
	uint64_t dirty_limit;           /* bytes */
	uint64_t expire_ms;
};

struct flusher_pool;

int flusher_start(struct cache *c, const struct flusher_config *cfg, struct flusher_pool **out);
/* Stop the threads (after the current pass). */
void flusher_stop(struct flusher_pool *fp);
void flusher_kick(struct flusher_pool *fp);
/* Block until dirty data is under the limit, writing back meanwhile. */
void flusher_balance_dirty(struct flusher_pool *fp);
/* Write back every inode and wait; returns the first error. */
int flusher_sync_all(struct cache *c);
/* Recount dirty pages into the header; returns the count. */
uint64_t flusher_count_dirty(struct cache *c);
void flusher_set_config(struct flusher_pool *fp, const struct flusher_config *cfg);

#endif
