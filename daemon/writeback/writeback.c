/*
 * writeback.c — writing back an inode: the generic pass over its dirty
 * pages, and sync.  Each page goes to the file system's writepage
 * (aops.h; NTFS: daemon/aops/writepage.c).
 *
 * Invariants (the rules of the Linux NTFS driver's ntfs_writepage(), the
 * generic half):
 *  - A page is handed to writepage locked.  A page wholly past i_size is
 *    discarded unwritten (not an error); a page straddling i_size is
 *    zeroed past it first; buffers wholly past it are cleaned without I/O,
 *    so nothing past i_size reaches the disk.  A page past the fence of a
 *    shrinking truncate stays dirty, unwritten.
 *  - Buffer bits are definitive: only dirty buffers are written.  The
 *    dirty bits are taken (and the page made clean) under the page lock,
 *    so a store after that re-dirties the page and is written by a later
 *    pass.  A dirty page that was never uptodate is never written: the
 *    cache does not hold the file's bytes.
 *  - A pass that cannot start for lack of memory leaves every page dirty;
 *    a sync retries pages re-dirtied for lack of memory until they are
 *    clean (about 5 s), then waits for every page's writeback, writes the
 *    inode (write_inode) and flushes (sync_fs).
 */
#include "writeback.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dirty.h"
#include "error.h"
#include "log.h"
#include "page.h"
#include "page_io.h"

static void warn_not_uptodate(struct cache_inode *ci, uint64_t index)
{
	if (!atomic_exchange(&ci->warned_not_uptodate, true))
		log_warning("MFT record %llu: page %llu is marked dirty but was never made "
			    "uptodate (a client wrote page state it should not have): its "
			    "bytes are not written, and the same for other pages of the file "
			    "is not logged again", (unsigned long long)ci->mft_no,
			    (unsigned long long)index);
}

/* Page locked; returns with it unlocked: the checks every page passes
 * before the file system's writepage sees it. */
static int writepage(struct cache_inode *ci, uint64_t index, void *batch, bool *wrote)
{
	struct shm_page *p = cache_page(ci, index);
	uint32_t nbuf = ci->buffers_per_page, bufs, bsize = ci->buffer_size, b;
	uint64_t pos = index << NTFSD_PAGE_SHIFT, i_size = ci->i_size, page_end, limit;

	cache_assert_held(&ci->wb_lock);
	cache_assert_page_locked(ci, index);
	if (pos >= i_size) {
		/* Wholly past i_size (truncate raced us): discard, not an error. */
		clear_page_dirty_for_io(cache_dirty_for(ci, index), index);
		cache_unlock_page(ci, index);
		return 0;
	}
	page_end = pos + NTFSD_PAGE_SIZE;
	if (page_end > atomic_load(&ci->wb_fence)) {
		/* a shrinking truncate holds it: it stays dirty */
		cache_unlock_page(ci, index);
		return 0;
	}
	if (!page_test(p, PG_uptodate)) {
		/* dirty but never read nor wholly written: the cache does not
		 * hold the file's bytes, so they must never reach the disk */
		clear_page_dirty_for_io(cache_dirty_for(ci, index), index);
		warn_not_uptodate(ci, index);
		cache_unlock_page(ci, index);
		return 0;
	}
	if (page_end > i_size)
		memset(cache_data(ci, i_size, page_end - i_size), 0, (size_t)(page_end - i_size));
	bufs = clear_page_dirty_for_io(cache_dirty_for(ci, index), index);
	/* Buffers wholly past i_size are clean and uptodate without I/O. */
	limit = page_end < i_size ? page_end : i_size;
	for (b = 0; b < nbuf; b++)
		if (pos + (uint64_t)b * bsize >= limit)
			bufs &= ~(1u << b);
	if (!bufs) {
		cache_unlock_page(ci, index);
		return 0;
	}
	*wrote = true;
	return ci->cache->aops->writepage(ci, index, bufs, batch);
}

int writeback_inode(struct cache_inode *ci, bool sync)
{
	int err;

	cache_mutex_lock(&ci->wb_lock);
	err = writeback_inode_locked(ci, sync);
	cache_mutex_unlock(&ci->wb_lock);
	return err;
}

/* One pass over the dirty pages.  -ENOMEM only if it could not start. */
static int writeback_pass(struct cache_inode *ci)
{
	const struct address_space_operations *aops = ci->cache->aops;
	void *bt;
	uint64_t i = 0;
	bool wrote = false;
	int err = 0, first_err = 0;

	cache_assert_held(&ci->wb_lock);
	bt = aops->writepages_begin(ci);
	if (!bt)
		return -ENOMEM;  /* the pages stay dirty for a later pass */
	/* before any dirty bit is taken, until every page taken has ended
	 * its writeback: flusher_sync_all() waits for passes it sees */
	atomic_store(&ci->wb_running, true);
	dirty_bitmap_trim(cache_dirty(ci));
	while ((i = dirty_bitmap_next(cache_dirty(ci), i)) != UINT64_MAX) {
		struct shm_page *p = cache_page(ci, i);

		if (i >= cache_used_pages(ci)) {
			/* no page of the file lies there: a client's bit */
			clear_page_dirty_for_io(cache_dirty_for(ci, i), i);
			i++;
			continue;
		}
		if (!cache_trylock_page(ci, i)) {
			/* its holder may wait for a page we hold under writeback */
			err = aops->writepages_flush(ci, bt);
			if (err && !first_err)
				first_err = err;
			cache_lock_page(ci, i);
		}
		if (!page_test(p, PG_dirty) && !atomic_load(&p->buf_dirty)) {
			/* a stale bitmap bit: clear it */
			clear_page_dirty_for_io(cache_dirty_for(ci, i), i);
			cache_unlock_page(ci, i);
			i++;
			continue;
		}
		if (cache_page_writeback(ci, i)) {
			cache_unlock_page(ci, i);
			err = aops->writepages_flush(ci, bt);
			if (err && !first_err)
				first_err = err;
			cache_wait_on_page_writeback(ci, i);
			continue;
		}
		cache_clear_forged_writeback(ci, i);
		err = writepage(ci, i, bt, &wrote);
		if (err && !first_err)
			first_err = err;
		i++;
	}
	err = aops->writepages_flush(ci, bt);
	if (err && !first_err)
		first_err = err;
	atomic_store(&ci->wb_running, false);
	aops->writepages_end(ci, bt);
	if (wrote)
		cache_inode_touch(ci);  /* the data changed: so do its times, once a pass */
	return first_err;
}

/* How long a sync keeps retrying pages that writeback re-dirtied for lack
 * of memory before it reports ENOMEM: about 5 s, backing off to 100 ms. */
#define SYNC_ENOMEM_TRIES 60

static void sync_backoff(unsigned try)
{
	unsigned ms = try < 7 ? 1u << try : 100;
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* Pages only a client's forgery can have dirtied: a read-only daemon's
 * or a system file's (neither ever hands out a writable segment); and an
 * unlinked file's (its record and clusters are free).  Their bits are
 * dropped, never written; a forgery is logged once per file. */
static bool drop_forged_dirt(struct cache_inode *ci)
{
	uint64_t i = 0;

	if (!ci->cache->read_only && !ci->system_file && !atomic_load(&ci->unlinked))
		return false;
	while ((i = dirty_bitmap_next(cache_dirty(ci), i)) != UINT64_MAX) {
		cache_lock_page(ci, i);
		clear_page_dirty_for_io(cache_dirty_for(ci, i), i);
		cache_unlock_page(ci, i);
		i++;
	}
	dirty_bitmap_trim(cache_dirty(ci));
	if (atomic_load(&ci->unlinked))
		return true;    /* the file is gone: its dirty bytes with it */
	if (!atomic_exchange(&ci->warned_system, true))
		log_warning("MFT record %llu: dirty pages on a %s: dropped, never written "
			    "(only a client writing page state it was not given can make them)",
			    (unsigned long long)ci->mft_no,
			    ci->system_file ? "system file" : "read-only volume");
	return true;
}

int writeback_inode_locked(struct cache_inode *ci, bool sync)
{
	uint64_t i, before;
	unsigned try;
	int err = 0, first_err = 0;
	bool meta;

	cache_assert_held(&ci->wb_lock);
	if (drop_forged_dirt(ci))
		return 0;

	if (!sync) {
		err = writeback_pass(ci);
		return err == -ENOMEM ? 0 : err;
	}
	/* A sync covers every page dirty when it began: pages given back for
	 * lack of memory are written again until they are clean. */
	for (try = 0;; try++) {
		before = atomic_load(&ci->wb_enomem);
		err = writeback_pass(ci);
		if (err && err != -ENOMEM && !first_err)
			first_err = err;
		if (err != -ENOMEM && atomic_load(&ci->wb_enomem) == before)
			break;
		if (try == SYNC_ENOMEM_TRIES) {
			log_error("MFT record %llu: sync gives up: write-back kept running out "
				  "of memory; its dirty pages stay dirty",
				  (unsigned long long)ci->mft_no);
			if (!first_err)
				first_err = -ENOMEM;
			break;
		}
		sync_backoff(try);
	}
	for (i = 0; i < cache_used_pages(ci); i++)
		cache_wait_on_page_writeback(ci, i);
	meta = cache_inode_meta_dirty(ci);
	err = ci->cache->aops->write_inode(ci);
	/* the parents' entries carry the sizes and times: they follow once
	 * the caller holds no lock of the inode (cache/utimes.h) */
	if (!err && meta)
		atomic_store(&ci->dircopy_dirty, true);
	if (!first_err)
		first_err = err;
	/* nobody is appending: the room to grow can go (sizes are on disk) */
	if (!err && ci->trim_pending && !ci->openers && !cache_has_dirty(ci))
		cache_trim_allocation(ci);
	err = ci->cache->aops->sync_fs(ci->cache);
	if (err && !first_err) {
		errseq_set(ci, -err);
		first_err = err;
	}
	return first_err;
}
