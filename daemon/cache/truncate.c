/*
 * truncate.c — changing a file's size (ntfsd's truncate_setsize), the
 * generic half: ordering with prepare-write, fencing pages from
 * write-back, dropping them.  The file system resizes on disk
 * (aops->truncate_blocks).
 *
 * Invariants:
 *  - Everything happens under the inode's size_lock, so it is ordered with
 *    prepare-write.  A shrink first fences the pages past the new end off
 *    from writeback (wb_fence: they stay dirty, unwritten) and waits for
 *    I/O already under way, then has the file system resize on disk; only
 *    when that succeeded are i_size lowered and the pages dropped, so a
 *    failed truncate loses no write, and no write lands on blocks being
 *    freed.
 *  - Dropping a page: it is locked, waited out of writeback, cleaned, made
 *    not uptodate, its generation bumped and its memory punched out of the
 *    data segment, so every client mapping and pread sees it gone.  The
 *    tail of the new last page is zeroed in the cache.
 */
#include "cache_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "crashpoint.h"
#include "dirty.h"
#include "error.h"
#include "log.h"
#include "page.h"
#include "sanity.h"

/* Drop page index from the cache entirely (see the invariants). */
static void truncate_page(struct cache_inode *ci, uint64_t index)
{
	struct shm_page *p = cache_page(ci, index);

	cache_lock_page(ci, index);
	while (cache_page_writeback(ci, index)) {
		cache_unlock_page(ci, index);
		cache_wait_on_page_writeback(ci, index);
		cache_lock_page(ci, index);
	}
	cache_clear_forged_writeback(ci, index);
	clear_page_dirty_for_io(cache_dirty_for(ci, index), index);
	page_clear_bits(p, PG_uptodate | PG_write_ready | PG_error);
	atomic_store(&p->buf_uptodate, 0);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_seq_cst);
	atomic_thread_fence(memory_order_seq_cst);
	if (fallocate(ci->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(index << NTFSD_PAGE_SHIFT), NTFSD_PAGE_SIZE) < 0)
		memset(cache_data(ci, index << NTFSD_PAGE_SHIFT, NTFSD_PAGE_SIZE), 0, NTFSD_PAGE_SIZE);
	cache_unaccount_page(ci, index);
	cache_unlock_page(ci, index);
}

/* Zero the cached bytes [from, end of its page). */
static void zero_page_tail(struct cache_inode *ci, uint64_t from)
{

	if (!(from % NTFSD_PAGE_SIZE))
		return;
	cache_lock_page(ci, from >> NTFSD_PAGE_SHIFT);
	memset(cache_data(ci, from, 1), 0, NTFSD_PAGE_SIZE - from % NTFSD_PAGE_SIZE);
	cache_unlock_page(ci, from >> NTFSD_PAGE_SHIFT);
}

/* Keep writeback off page index (it ends past the fence) and clients from
 * dirtying it anew without prepare-write, then wait out I/O under way. */
static void fence_page(struct cache_inode *ci, uint64_t index)
{
	struct shm_page *p = cache_page(ci, index);

	cache_assert_held(&ci->size_lock);
	cache_lock_page(ci, index);
	page_clear_bits(p, PG_write_ready);
	cache_unlock_page(ci, index);
	cache_wait_on_page_writeback(ci, index);
}

/*
 * Shrink to size.  The record is written first, while the pages past the
 * new end are fenced off from writeback but keep their data and dirty
 * bits: if it fails, nothing a client wrote is lost, the file is as it
 * was.  Only then do i_size and the pages follow.
 */
static int truncate_shrink(struct cache_inode *ci, uint64_t size)
{
	uint64_t i, used = cache_used_pages(ci), first = size >> NTFSD_PAGE_SHIFT;
	int err;

	atomic_store(&ci->wb_fence, size);
	for (i = first; i < used; i++)
		fence_page(ci, i);
	crashpoint("truncate-before-record");
	err = ci->cache->aops->truncate_blocks(ci, size);
	if (err) {
		atomic_store(&ci->wb_fence, UINT64_MAX);
		return err;
	}
	cache_publish_sizes(ci);
	for (i = cache_pages_for(size); i < used; i++)
		truncate_page(ci, i);
	zero_page_tail(ci, size);
	atomic_store(&ci->wb_fence, UINT64_MAX);
	return 0;
}

/* Grow to size: the new range is a hole (or zeroes in the record). */
static int truncate_grow(struct cache_inode *ci, uint64_t size)
{
	int err;

	zero_page_tail(ci, ci->i_size);
	crashpoint("truncate-before-record");
	err = ci->cache->aops->truncate_blocks(ci, size);
	if (err)
		return err;
	cache_use_pages(ci, size);
	return 0;
}

int cache_truncate(struct cache_inode *ci, uint64_t size)
{
	int err;

	if (ci->cache->read_only)
		return ntfs_fail(EROFS, "the volume is served read-only");
	err = cache_check_writable(ci);
	if (err)
		return err;
	if (size > CACHE_MAX_PAGES << NTFSD_PAGE_SHIFT)
		return cache_refuse_growth(ci, CACHE_MAX_PAGES + 1);
	cache_mutex_lock(&ci->size_lock);
	err = cache_inode_grow(ci, cache_pages_for(size));
	if (err) {
		cache_mutex_unlock(&ci->size_lock);
		return err;
	}
	if (size < ci->i_size)
		err = truncate_shrink(ci, size);
	else if (size > ci->i_size)
		err = truncate_grow(ci, size);
	if (!err && size != ci->i_size)
		err = cache_bug("MFT record %llu: truncate to %llu left i_size %llu",
				(unsigned long long)ci->mft_no, (unsigned long long)size,
				(unsigned long long)ci->i_size);
	if (!err)
		cache_inode_touch(ci);  /* ftruncate(2) moves the times even to the same size */
	cache_publish_sizes(ci);
	cache_inode_sanity_settled(ci);     /* on failure too: the file as it was */
	cache_mutex_unlock(&ci->size_lock);
	return err;
}

/* size_lock held: give back the room, best effort, tried once: a failure
 * leaves it allocated (no data is at stake) until the file grows again,
 * rather than a retry and a warning at every flusher pass. */
static int trim_locked(struct cache_inode *ci)
{
	int err = 0;

	cache_assert_held(&ci->size_lock);
	if (ci->trim_pending)
		err = ci->cache->aops->trim_allocation(ci);
	ci->trim_pending = false;
	cache_inode_sanity_settled(ci);
	if (err)
		log_warning("MFT record %llu: cannot give back the room allocated past its end: %s",
			    (unsigned long long)ci->mft_no, ntfs_last_error());
	return err;
}

int cache_trim_allocation(struct cache_inode *ci)
{
	int err;

	cache_mutex_lock(&ci->size_lock);
	err = trim_locked(ci);
	cache_mutex_unlock(&ci->size_lock);
	return err;
}

unsigned cache_reclaim_room(struct cache_inode *self)
{
	struct cache *c = self->cache;
	uint64_t cursor = 0;
	unsigned trimmed = 0;

	cache_assert_held(&self->size_lock);
	if (self->trim_pending && !trim_locked(self))
		trimmed++;
	for (;;) {
		struct cache_inode *ci = NULL, *it;

		/* by MFT number, so inodes freed meanwhile make it skip none */
		cache_mutex_lock(&c->lock);
		for (it = c->inodes; it; it = it->next)
			if (it != self && it->trim_pending && it->mft_no >= cursor &&
			    (!ci || it->mft_no < ci->mft_no))
				ci = it;
		if (ci) {
			ci->refs++;
			cursor = ci->mft_no + 1;
		}
		cache_mutex_unlock(&c->lock);
		if (!ci)
			break;
		/* a second size_lock may only be tried (cache.h); a file
		 * busy growing keeps its room this time */
		if (cache_mutex_trylock(&ci->size_lock)) {
			if (ci->trim_pending && !trim_locked(ci))
				trimmed++;
			cache_mutex_unlock(&ci->size_lock);
		}
		cache_inode_put(ci);
	}
	return trimmed;
}

void cache_trim_all(struct cache *c)
{
	struct cache_inode *ci;

	if (c->read_only)
		return;
	/* at shutdown: no other thread touches the inode list */
	for (ci = c->inodes; ci; ci = ci->next)
		if (ci->trim_pending && !cache_has_dirty(ci))
			cache_trim_allocation(ci);
	c->aops->sync_fs(c);
}
